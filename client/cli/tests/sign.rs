//! `steme sign`, the real binary: every cross-language test vector
//! (`protocol/testdata/assertion-vectors.json`) signed with its seed gives the vector's id,
//! signer and signature, and the printed line reads back as a signed assertion that
//! verifies. A bad line fails the command naming it, after the lines before it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, ensure};
use serde::Deserialize;
use steme_client::SignedAssertion;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../protocol/testdata/assertion-vectors.json"
);

#[derive(Deserialize)]
struct Vector {
    name: String,
    seed: String,
    /// The assertion's fields, kept as the JSON the file holds.
    assertion: serde_json::Value,
    id: String,
    public_key: String,
    signature: String,
}

fn vectors() -> anyhow::Result<Vec<Vector>> {
    let text = std::fs::read_to_string(VECTORS).with_context(|| format!("reading {VECTORS}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// Runs `steme sign --key KEY` with `stdin` as its input.
fn steme_sign(key: &Path, stdin: &str) -> anyhow::Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steme"))
        .args(["sign", "--key"])
        .arg(key)
        .env_remove("STEME_BOOTSTRAP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(stdin.as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn key_file(dir: &Path, seed_hex: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("{seed_hex}.key"));
    std::fs::write(&path, format!("{seed_hex}\n"))?;
    Ok(path)
}

#[test]
fn signs_every_vector_as_the_vector_says() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let vectors = vectors()?;
    ensure!(!vectors.is_empty(), "no vectors in {VECTORS}");
    for v in vectors {
        let key = key_file(dir.path(), &v.seed)?;
        let out = steme_sign(&key, &format!("{}\n", v.assertion))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "{}: steme sign failed: {stderr}",
            v.name
        );
        let stdout = String::from_utf8(out.stdout)?;
        let lines: Vec<&str> = stdout.lines().collect();
        ensure!(
            lines.len() == 1,
            "{}: expected one line, got {stdout:?}",
            v.name
        );

        let printed: serde_json::Value = serde_json::from_str(lines[0])?;
        ensure!(printed["id"] == v.id.as_str(), "{}: id {printed}", v.name);
        ensure!(
            printed["signer"] == v.public_key.as_str(),
            "{}: signer {printed}",
            v.name
        );
        ensure!(
            printed["signature"] == v.signature.as_str(),
            "{}: signature {printed}",
            v.name
        );
        for (field, value) in v.assertion.as_object().context("assertion object")? {
            ensure!(
                &printed[field] == value,
                "{}: field {field} is {} in {printed}",
                v.name,
                printed[field]
            );
        }

        let signed: SignedAssertion = serde_json::from_str(lines[0])
            .with_context(|| format!("{}: does not read back", v.name))?;
        signed
            .verify()
            .with_context(|| format!("{}: does not verify", v.name))?;
        ensure!(signed.id().to_hex() == v.id, "{}: id read back", v.name);
    }
    Ok(())
}

#[test]
fn a_bad_line_fails_naming_it_after_printing_the_lines_before() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path(), &"42".repeat(32))?;
    let input = concat!(
        r#"{"subject":"s1","predicate":"p","object":"o","source":"x"}"#,
        "\n\n",
        r#"{"subject":"s2","predicate":"p","object":true,"source":"x"}"#,
        "\n",
        "not json\n",
        r#"{"subject":"s4","predicate":"p","object":"o","source":"x"}"#,
        "\n",
    );
    let out = steme_sign(&key, input)?;
    let stderr = String::from_utf8(out.stderr)?;
    ensure!(!out.status.success(), "a bad line must fail the command");
    ensure!(
        stderr.starts_with("steme: error: line 4: not an assertion"),
        "stderr: {stderr}"
    );
    let subjects: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| -> anyhow::Result<String> {
            let s: SignedAssertion = serde_json::from_str(l)?;
            s.verify()?;
            Ok(s.assertion().subject.clone())
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(subjects == ["s1", "s2"], "printed {subjects:?}");
    Ok(())
}

#[test]
fn a_missing_key_file_is_an_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = steme_sign(&dir.path().join("absent.key"), "")?;
    ensure!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    ensure!(stderr.contains("absent.key"), "stderr: {stderr}");
    Ok(())
}
