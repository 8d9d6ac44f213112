//! `--json` output shared by the commands: one JSON object per line on stdout.

use std::io::Write;

use serde::Serialize;

use crate::args::KeygenArgs;

/// Prints `value` as one line of JSON.
pub fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `steme keygen --json`: writes the key as `keygen` does and prints
/// `{"public_key": "<hex>", "path": "<file>"}`.
pub fn keygen_json(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = crate::keys::generate()?;
    crate::keys::write_key(&args.out, &key, args.force)?;
    json_line(&serde_json::json!({
        "public_key": hex::encode(key.verifying_key().to_bytes()),
        "path": args.out.display().to_string(),
    }))
}

/// A list of node ids as the commands print them: `[4,2,3]`.
pub fn ids(list: &[u64]) -> String {
    let inner: Vec<String> = list.iter().map(u64::to_string).collect();
    format!("[{}]", inner.join(","))
}
