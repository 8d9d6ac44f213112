//! The Python signing example (`examples/python/steme_sign.py`: BLAKE3 in pure Python, the
//! canonical encoding, Ed25519 signing) reproduces every cross-language test vector
//! (`protocol/testdata/assertion-vectors.json`) and BLAKE3's official vectors: runs
//! `tests/python/test_vectors.py`. Needs no broker, but does need `python3` (or
//! `$STEME_TEST_PYTHON`) with the `cryptography` package; without them it fails saying
//! so rather than skipping.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

fn python() -> String {
    std::env::var("STEME_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn python_signing_reproduces_every_vector() -> anyhow::Result<()> {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import cryptography"])
        .output()
        .with_context(|| {
            format!(
                "cannot run {python}: the Python vector test needs Python 3 \
                 (STEME_TEST_PYTHON names another interpreter)"
            )
        })?;
    ensure!(
        probe.status.success(),
        "{python} has no `cryptography` package (pip install cryptography): {}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );

    let root = repo_root();
    let script = root.join("tests/python/test_vectors.py");
    let out = Command::new(&python)
        .arg(&script)
        .current_dir(&root)
        .output()
        .with_context(|| format!("cannot run {python} {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "{} failed ({}):\n{stdout}{stderr}",
        script.display(),
        out.status
    );
    // unittest reports on stderr; make sure it ran something.
    ensure!(
        stderr.contains("\nOK") && !stderr.contains("Ran 0 tests"),
        "{} did not report its tests as run and passed:\n{stdout}{stderr}",
        script.display()
    );
    Ok(())
}
