//! `steme keygen` and key files: the 32-byte Ed25519 seed in hex, one line, mode 0600,
//! read and written by the library ([`steme_client::keys`]).

use std::path::Path;

use steme_client::SigningKey;
use steme_client::keys::{
    Existing, KeyFileError, generate_signing_key, load_signing_key, save_signing_key,
};

use crate::args::KeygenArgs;

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = generate()?;
    write_key(&args.out, &key, args.force)?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}

/// A fresh key from the operating system's random source.
pub fn generate() -> anyhow::Result<SigningKey> {
    Ok(generate_signing_key()?)
}

/// Writes the key's seed as hex to `path` with mode 0600; refuses to replace an existing
/// file unless `force`.
pub fn write_key(path: &Path, key: &SigningKey, force: bool) -> anyhow::Result<()> {
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    save_signing_key(path, key, existing).map_err(|e| match e {
        KeyFileError::Exists { path } => anyhow::anyhow!(
            "{} already exists (use --force to overwrite it)",
            path.display()
        ),
        other => other.into(),
    })
}

/// Reads a key file written by [`write_key`].
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(load_signing_key(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_round_trip_is_private_and_not_overwritten() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("k.hex");
        let key = generate()?;
        write_key(&path, &key, false)?;
        assert_eq!(read_key(&path)?.to_bytes(), key.to_bytes());
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let other = generate()?;
        assert_ne!(other.to_bytes(), key.to_bytes());
        let err = write_key(&path, &other, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(read_key(&path)?.to_bytes(), key.to_bytes(), "untouched");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        write_key(&path, &other, true)?;
        assert_eq!(read_key(&path)?.to_bytes(), other.to_bytes());
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        Ok(())
    }

    #[test]
    fn bad_key_file_is_a_clear_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bad");
        std::fs::write(&path, "not hex\n")?;
        let err = read_key(&path).unwrap_err();
        assert!(format!("{err:#}").contains("64-hex-digit"), "{err:#}");
        assert!(read_key(&dir.path().join("missing")).is_err());
        Ok(())
    }
}
