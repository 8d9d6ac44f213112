//! `steme keygen` and key files: the 32-byte Ed25519 seed in hex, one line, mode 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use steme_client::SigningKey;

use crate::args::KeygenArgs;

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = generate()?;
    write_key(&args.out, &key, args.force)?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}

/// A fresh key from the operating system's random source.
pub fn generate() -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("cannot read the system's random source: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes the key's seed as hex to `path` with mode 0600; refuses to replace an existing
/// file unless `force`.
pub fn write_key(path: &Path, key: &SigningKey, force: bool) -> anyhow::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut file = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists (use --force to overwrite it)",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
        }
    })?;
    // An existing file keeps its old mode on open; make sure the secret is private.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads a key file written by [`write_key`].
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let mut seed = [0u8; 32];
    if let Err(e) = hex::decode_to_slice(text.trim(), &mut seed) {
        bail!(
            "key file {} does not hold a 64-hex-digit Ed25519 seed ({e})",
            path.display()
        );
    }
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

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
