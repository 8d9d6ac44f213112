//! What the `steme` CLI tests share: running a command that must succeed, reading JSON
//! lines, and making input. Each test file uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;
use steme_tests::cli::steme;

/// How long one CLI command may take.
pub const T: Duration = Duration::from_secs(30);

/// Every non-empty line of `text`, each a JSON value.
pub fn json_lines(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l:?}")))
        .collect()
}

/// `text` as exactly one JSON object on one line.
pub fn one_json(text: &str) -> anyhow::Result<Value> {
    let lines = json_lines(text)?;
    ensure!(
        lines.len() == 1 && lines[0].is_object(),
        "expected one JSON object, got {text:?}"
    );
    Ok(lines.into_iter().next().expect("one line"))
}

/// `v[name]`, which must be there.
pub fn field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    v.get(name).with_context(|| format!("no {name:?} in {v}"))
}

/// `v[name]` as a u64.
pub fn u64_of(v: &Value, name: &str) -> anyhow::Result<u64> {
    field(v, name)?
        .as_u64()
        .with_context(|| format!("{name:?} of {v} is not a u64"))
}

/// `v[name]` as a string.
pub fn str_of<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    field(v, name)?
        .as_str()
        .with_context(|| format!("{name:?} of {v} is not a string"))
}

/// Runs `steme ARGS` with `stdin`; it must succeed. Returns its stdout.
pub async fn ok(bootstrap: &str, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    Ok(steme(bootstrap, args, stdin, T).await?.success()?.stdout)
}

/// Writes a fresh key into `dir` with `steme keygen` and returns its path.
pub async fn keygen(bootstrap: &str, dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("producer.key");
    let path = path.to_str().context("temp path is not UTF-8")?.to_owned();
    ok(bootstrap, &["keygen", "--out", &path], "").await?;
    Ok(path)
}

/// `n` assertion lines without `issued_at`, subjects `urn:{prefix}:{i}` from `first`.
pub fn assertion_lines(prefix: &str, first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| {
            format!(
                r#"{{"subject":"urn:{prefix}:{i}","predicate":"p","object":{i},"source":"cli-test"}}"#
            ) + "\n"
        })
        .collect()
}

/// Checks that `time` has the printed form: RFC 3339, UTC, 9 fractional digits.
pub fn check_time_form(time: &str) -> anyhow::Result<()> {
    let b = time.as_bytes();
    ensure!(
        b.len() == 30
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'.'
            && b[29] == b'Z'
            && b[20..29].iter().all(u8::is_ascii_digit),
        "{time:?} is not RFC 3339 UTC with 9 fractional digits"
    );
    Ok(())
}

/// Runs `steme ARGS` with `stdin`; it must succeed and print JSON lines, which are returned.
pub async fn ok_lines(bootstrap: &str, args: &[&str], stdin: &str) -> anyhow::Result<Vec<Value>> {
    json_lines(&ok(bootstrap, args, stdin).await?)
}
