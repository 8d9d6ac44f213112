//! `steme sign --key FILE`: assertions as JSON lines on stdin, one signed JSON line out per
//! input line, in input order. Offline: no broker is asked anything.
//!
//! Input is what `steme produce` reads (blank lines skipped); each line is signed as it
//! stands by [`sign_line`], so the same input and key always give the same ids. The output
//! line is the signed assertion's JSON form: `id`, the assertion's fields, `signer` and
//! `signature` in hex. It is what the HTTP gateway's `POST /v1/topics/{topic}/assertions`
//! takes, and it reads back as a [`SignedAssertion`] (which recomputes the id).
//!
//! A line that does not parse or sign stops the command: the lines before it are printed,
//! then it fails naming the line.
//!
//! [`SignedAssertion`]: steme_client::SignedAssertion

use std::io::{BufRead, BufReader, Read, Write};

use anyhow::Context;
use steme_client::SigningKey;

use crate::args::{IssuedAtArg, SignArgs};
use crate::keys::read_key;
use crate::produce::{now_ms, sign_line};

pub fn run(args: &SignArgs) -> anyhow::Result<()> {
    let key = read_key(&args.key)?;
    let stamp = args.issued_at.map(|IssuedAtArg::Now| now_ms as fn() -> u64);
    sign_lines(
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        &key,
        stamp,
    )?;
    Ok(())
}

/// Signs every non-blank line of `input` and writes one signed JSON line per line to
/// `output`; returns how many were signed. `stamp` gives the time for lines without
/// `issued_at` (see [`sign_line`]). The output is flushed whenever the input has nothing
/// more buffered, so a pipe fed slowly sees each line as soon as it is signed, and before
/// an error is returned.
pub fn sign_lines(
    input: impl Read,
    output: impl Write,
    key: &SigningKey,
    stamp: Option<fn() -> u64>,
) -> anyhow::Result<u64> {
    let mut input = BufReader::new(input);
    let mut out = std::io::BufWriter::new(output);
    let mut line = String::new();
    let mut line_no = 0u64;
    let mut signed = 0u64;
    loop {
        line.clear();
        if input.read_line(&mut line).context("cannot read stdin")? == 0 {
            break;
        }
        line_no += 1;
        if !line.trim().is_empty() {
            let result = sign_line(&line, key, stamp.map(|now| now()));
            let assertion = match result {
                Ok(a) => a,
                Err(e) => {
                    out.flush()?;
                    return Err(e.context(format!("line {line_no}")));
                }
            };
            serde_json::to_writer(&mut out, &assertion)?;
            out.write_all(b"\n")?;
            signed += 1;
        }
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use steme_client::SignedAssertion;

    use crate::args::{Cli, Command};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn sign_text(text: &str) -> (anyhow::Result<u64>, Vec<SignedAssertion>) {
        let mut out = Vec::new();
        let result = sign_lines(text.as_bytes(), &mut out, &key(), None);
        let lines = String::from_utf8(out).expect("utf-8 output");
        let signed = lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("a signed assertion"))
            .collect();
        (result, signed)
    }

    #[test]
    fn each_line_becomes_one_signed_line_that_reads_back_and_verifies() {
        let input = concat!(
            r#"{"subject":"s1","predicate":"p","object":"o","source":"x"}"#,
            "\n\n   \n",
            r#"{"subject":"s2","predicate":"p","object":{"bytes":"00ff"},"source":"x","issued_at":5}"#,
            "\n"
        );
        let (result, signed) = sign_text(input);
        assert_eq!(result.unwrap(), 2, "blank lines are skipped");
        assert_eq!(signed.len(), 2);
        assert_eq!(signed[0].assertion().subject, "s1");
        assert_eq!(signed[1].assertion().issued_at, 5);
        for s in &signed {
            assert_eq!(s.signer(), &key().verifying_key().to_bytes());
            s.verify().unwrap();
        }
    }

    #[test]
    fn output_is_the_signed_json_form_and_is_deterministic() {
        let line = r#"{"subject":"s","predicate":"p","object":1,"source":"x","issued_at":9}"#;
        let mut out = Vec::new();
        sign_lines(line.as_bytes(), &mut out, &key(), None).unwrap();
        let expected = sign_line(line, &key(), None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", serde_json::to_string(&expected).unwrap()),
            "a last line without a newline is signed too"
        );
        assert_eq!(
            serde_json::to_string(&expected).unwrap(),
            format!(
                r#"{{"id":"{}","subject":"s","predicate":"p","object":1,"source":"x","issued_at":9,"signer":"{}","signature":"{}"}}"#,
                expected.id(),
                hex::encode(expected.signer()),
                hex::encode(expected.signature().to_bytes()),
            )
        );
    }

    #[test]
    fn a_bad_line_stops_after_printing_the_lines_before_it() {
        let input = concat!(
            r#"{"subject":"s1","predicate":"p","object":"o","source":"x"}"#,
            "\n\n",
            r#"{"subject":"","predicate":"p","object":"o","source":"x"}"#,
            "\n",
            r#"{"subject":"s3","predicate":"p","object":"o","source":"x"}"#,
            "\n"
        );
        let (result, signed) = sign_text(input);
        let err = result.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "line 3: cannot sign it: subject must not be empty"
        );
        assert_eq!(signed.len(), 1, "only the line before the bad one");
        assert_eq!(signed[0].assertion().subject, "s1");
    }

    #[test]
    fn issued_at_now_stamps_only_lines_without_one() {
        let input = concat!(
            r#"{"subject":"s","predicate":"p","object":"o","source":"x"}"#,
            "\n",
            r#"{"subject":"s","predicate":"p","object":"o","source":"x","issued_at":3}"#,
        );
        let mut out = Vec::new();
        sign_lines(input.as_bytes(), &mut out, &key(), Some(|| 1234)).unwrap();
        let times: Vec<u64> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let s: SignedAssertion = serde_json::from_str(l).unwrap();
                s.assertion().issued_at
            })
            .collect();
        assert_eq!(times, [1234, 3]);
    }

    #[test]
    fn the_command_line_names_a_key_and_optionally_issued_at() {
        let cli =
            Cli::try_parse_from(["steme", "sign", "--key", "k.hex", "--issued-at", "now"]).unwrap();
        let Command::Sign(args) = cli.command else {
            panic!("not sign: {:?}", cli.command)
        };
        assert_eq!(args.key, std::path::Path::new("k.hex"));
        assert_eq!(args.issued_at, Some(IssuedAtArg::Now));
        assert!(
            Cli::try_parse_from(["steme", "sign"]).is_err(),
            "--key is required"
        );
    }
}
