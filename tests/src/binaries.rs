//! Finding the `steme-broker`, `steme` and `steme-gateway` executables, building them first.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for a package's own binaries, and this crate
//! depends on the broker and client as libraries, so `cargo test -p steme-tests` alone would
//! neither build the binaries nor notice that they are stale. Hence, once per test process:
//!
//! 1. `CARGO_BIN_EXE_steme-broker` / `CARGO_BIN_EXE_steme`, if set, are used as they are.
//! 2. Otherwise `cargo build -p steme-broker -p steme-cli -p steme-gateway --bins` runs (a no-op when they
//!    are fresh; cargo does not hold its build lock while tests run) into the target
//!    directory this test executable lives in (`<target>/<profile>/deps/<test>` — so
//!    `CARGO_TARGET_DIR` and `--release` are followed), with the same profile, and the
//!    binaries are taken from `<target>/<profile>/`.
//!
//! `STEME_E2E_NO_BUILD=1` skips the build and only looks for the files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The broker executable.
pub fn broker() -> anyhow::Result<PathBuf> {
    locate("steme-broker")
}

/// The `steme` CLI executable.
pub fn cli() -> anyhow::Result<PathBuf> {
    locate("steme")
}

/// The `steme-gateway` executable.
pub fn gateway() -> anyhow::Result<PathBuf> {
    locate("steme-gateway")
}

fn locate(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return Ok(PathBuf::from(path));
    }
    // One build per process, shared by every test; its failure is reported to each.
    static PROFILE_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = PROFILE_DIR
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} does not exist after building it", path.display());
    }
    Ok(path)
}

/// `<target>/<profile>`: where this test executable's binaries are, given that it runs
/// from `<target>/<profile>/deps/`.
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    let deps = exe.parent().context("test executable has no directory")?;
    if deps.file_name().is_some_and(|n| n == "deps")
        && let Some(profile) = deps.parent()
    {
        return Ok(profile.to_owned());
    }
    // Not run by cargo: fall back to the conventional places.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("debug"))
}

fn build() -> anyhow::Result<PathBuf> {
    let profile = profile_dir()?;
    if std::env::var_os("STEME_E2E_NO_BUILD").is_some() {
        return Ok(profile);
    }
    let target = profile
        .parent()
        .context("profile directory has no parent")?
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "build",
            "-p",
            "steme-broker",
            "-p",
            "steme-cli",
            "-p",
            "steme-gateway",
        ])
        .arg("--bins")
        .env("CARGO_TARGET_DIR", &target);
    // Build with the profile the tests were built with, so that `cargo test --workspace`
    // (which builds these binaries for the broker's and client's own tests) and this build
    // share artifacts instead of rebuilding each other's: `test` (in `debug/`) by default,
    // `release` for `cargo test --release`, a custom profile by its directory's name.
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => cmd.args(["--profile", "test"]),
        Some("release") => cmd.arg("--release"),
        Some(custom) => cmd.args(["--profile", custom]),
    };
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(profile)
}
