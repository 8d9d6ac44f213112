//! Key files: an Ed25519 signing key kept on disk as its 32-byte seed, in hex, on one line
//! (the format `steme keygen` writes and `steme produce --key` reads), readable by its owner
//! only (mode 0600).
//!
//! [`save_signing_key`] writes atomically: the seed goes to a temporary file in the same
//! directory (mode 0600 from its creation, synced), which then takes the key file's name;
//! a crash leaves either the old file or the new one, never half a key.
//!
//! ```no_run
//! use steme_client::keys::{Existing, generate_signing_key, load_signing_key, save_signing_key};
//!
//! let key = generate_signing_key()?;
//! save_signing_key("signer.key".as_ref(), &key, Existing::Refuse)?;
//! assert_eq!(load_signing_key("signer.key".as_ref())?.to_bytes(), key.to_bytes());
//! # Ok::<(), steme_client::keys::KeyFileError>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use steme_protocol::SigningKey;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// There is no file at `path`.
    #[error("key file {} does not exist", path.display())]
    NotFound {
        /// The file asked for.
        path: PathBuf,
    },
    /// A file is already at `path` and [`Existing::Refuse`] was asked for.
    #[error("{} already exists", path.display())]
    Exists {
        /// The file that is in the way.
        path: PathBuf,
    },
    /// The file does not hold 64 hex digits (whitespace around them aside).
    #[error("key file {} does not hold a 64-hex-digit Ed25519 seed ({source})", path.display())]
    Malformed {
        /// The file read.
        path: PathBuf,
        /// What the hex decoder found.
        #[source]
        source: hex::FromHexError,
    },
    /// Reading or writing failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`read`, `create`, `write`, `rename`…).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("cannot read the system's random source")]
    Random(#[source] getrandom::Error),
}

impl KeyFileError {
    /// The kind of I/O error this is, as [`std::io::Error::kind`] would say
    /// ([`ErrorKind::NotFound`] for a missing file, [`ErrorKind::AlreadyExists`] for a file
    /// in the way, [`ErrorKind::InvalidData`] for a malformed one).
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeyFileError::NotFound { .. } => ErrorKind::NotFound,
            KeyFileError::Exists { .. } => ErrorKind::AlreadyExists,
            KeyFileError::Malformed { .. } => ErrorKind::InvalidData,
            KeyFileError::Io { source, .. } => source.kind(),
            KeyFileError::Random(_) => ErrorKind::Other,
        }
    }

    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError {
        let path = path.to_owned();
        move |source| KeyFileError::Io { op, path, source }
    }
}

/// What [`save_signing_key`] does when the key file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave it untouched and fail with [`KeyFileError::Exists`].
    Refuse,
    /// Replace it (atomically).
    Replace,
}

/// A fresh signing key from the operating system's random source.
pub fn generate_signing_key() -> Result<SigningKey, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyFileError::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a key file: 64 hex digits, surrounding whitespace (the trailing newline) ignored.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => KeyFileError::NotFound {
            path: path.to_owned(),
        },
        _ => KeyFileError::io("read", path)(e),
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|source| KeyFileError::Malformed {
        path: path.to_owned(),
        source,
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key`'s seed to `path` as one line of hex, mode 0600, atomically (see the module
/// documentation). An existing file is refused or replaced as `existing` says.
pub fn save_signing_key(
    path: &Path,
    key: &SigningKey,
    existing: Existing,
) -> Result<(), KeyFileError> {
    if existing == Existing::Refuse && path.symlink_metadata().is_ok() {
        return Err(KeyFileError::Exists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(
        || std::ffi::OsString::from("key"),
        std::ffi::OsStr::to_os_string,
    );
    let (tmp_path, mut tmp) = create_temporary(dir, &name)?;
    let written = writeln!(tmp, "{}", hex::encode(key.to_bytes()))
        .and_then(|()| tmp.sync_all())
        .map_err(KeyFileError::io("write", &tmp_path))
        .and_then(|()| publish(&tmp_path, path, existing));
    // Gone after a rename or a link; left over only after a failure.
    let _ = std::fs::remove_file(&tmp_path);
    written?;
    // The new name is durable once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(KeyFileError::io("sync", dir))
}

/// A new file next to the key file, private from its creation.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> Result<(PathBuf, File), KeyFileError> {
    let mut last = None;
    for attempt in 0..16u32 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{attempt}.tmp", std::process::id()));
        let tmp_path = dir.join(tmp_name);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&tmp_path) {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((tmp_path, e)),
            Err(e) => return Err(KeyFileError::io("create", &tmp_path)(e)),
        }
    }
    let (tmp_path, e) = last.expect("at least one attempt");
    Err(KeyFileError::io("create", &tmp_path)(e))
}

/// Gives the temporary file the key file's name: a hard link when an existing file must
/// not be replaced (it fails, atomically, if one appeared meanwhile), a rename otherwise.
fn publish(tmp: &Path, path: &Path, existing: Existing) -> Result<(), KeyFileError> {
    match existing {
        Existing::Replace => std::fs::rename(tmp, path).map_err(KeyFileError::io("rename", path)),
        Existing::Refuse => std::fs::hard_link(tmp, path).map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyFileError::io("link", path)(e)
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn save_then_load_round_trips() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("signer.key");
        let key = generate_signing_key()?;
        save_signing_key(&path, &key, Existing::Refuse)?;
        assert_eq!(load_signing_key(&path)?.to_bytes(), key.to_bytes());
        let leftovers = std::fs::read_dir(dir.path())?.count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        Ok(())
    }

    #[test]
    fn the_format_is_one_line_of_hex() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("k");
        let key = SigningKey::from_bytes(&[0xab; 32]);
        save_signing_key(&path, &key, Existing::Refuse)?;
        assert_eq!(
            std::fs::read_to_string(&path)?,
            format!("{}\n", "ab".repeat(32))
        );
        // Files written by hand (no newline, spaces) still load.
        std::fs::write(&path, format!("  {}  ", "cd".repeat(32)))?;
        assert_eq!(load_signing_key(&path)?.to_bytes(), [0xcd; 32]);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn saved_key_is_readable_by_its_owner_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("k");
        save_signing_key(&path, &generate_signing_key()?, Existing::Refuse)?;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        // A replaced file that was world-readable becomes private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        save_signing_key(&path, &generate_signing_key()?, Existing::Replace)?;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        Ok(())
    }

    #[test]
    fn an_existing_file_is_refused_or_replaced() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("k");
        let first = generate_signing_key()?;
        let second = generate_signing_key()?;
        save_signing_key(&path, &first, Existing::Refuse)?;
        let err = save_signing_key(&path, &second, Existing::Refuse).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            load_signing_key(&path)?.to_bytes(),
            first.to_bytes(),
            "untouched"
        );
        save_signing_key(&path, &second, Existing::Replace)?;
        assert_eq!(load_signing_key(&path)?.to_bytes(), second.to_bytes());
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_malformed_file_is_a_clear_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bad");
        for content in ["not hex\n", "abcd\n", &"ab".repeat(33)] {
            std::fs::write(&path, content)?;
            let err = load_signing_key(&path).unwrap_err();
            assert!(matches!(err, KeyFileError::Malformed { .. }), "{err}");
            assert_eq!(err.kind(), ErrorKind::InvalidData);
            let text = err.to_string();
            assert!(
                text.contains("64-hex-digit") && text.contains("bad"),
                "{text}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_missing_file_is_not_found() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("missing");
        let err = load_signing_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::NotFound { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"));
        Ok(())
    }
}
