//! `steme produce TOPIC --key FILE`: assertions as JSON lines on stdin, one ack line out
//! per input line, in input order.
//!
//! Lines are signed and enqueued as they are read, so up to `--window` records are in
//! flight at once; acks are printed as soon as the oldest one is answered. A line that does
//! not parse or sign stops reading: the lines before it are still acknowledged and printed,
//! then the command fails naming the line.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Serialize;
use steme_client::{
    Ack, Assertion, AssertionId, PendingAck, Producer, ProducerConfig, SignedAssertion, SigningKey,
};
use tokio::io::AsyncBufReadExt;

use crate::args::ProduceArgs;
use crate::keys::read_key;

/// One ack, as printed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AckLine {
    pub id: AssertionId,
    pub partition: u32,
    pub offset: u64,
    pub hlc: u64,
    pub duplicate: bool,
}

impl From<&Ack> for AckLine {
    fn from(a: &Ack) -> Self {
        AckLine {
            id: a.id,
            partition: a.partition,
            offset: a.offset,
            hlc: a.hlc,
            duplicate: a.duplicate,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses and signs one input line; `issued_at` absent or 0 becomes now.
pub fn sign_line(line: &str, key: &SigningKey, now_ms: u64) -> anyhow::Result<SignedAssertion> {
    let mut a: Assertion = serde_json::from_str(line).context("not an assertion")?;
    if a.issued_at == 0 {
        a.issued_at = now_ms;
    }
    a.sign(key).context("cannot sign it")
}

pub async fn run(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let key = read_key(&args.key)?;
    let config = ProducerConfig {
        linger: Duration::from_millis(args.linger_ms),
        acks: args.acks.to_acks(),
        ..crate::producer_config()
    };
    let producer = Producer::connect(bootstrap, &args.topic, config)
        .await
        .with_context(|| format!("cannot produce to topic {:?}", args.topic))?;

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pending: VecDeque<(u64, PendingAck)> = VecDeque::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line_no = 0u64;
    let mut reading = true;
    let mut failure: Option<anyhow::Error> = None;
    let window = args.window.max(1);

    while reading || !pending.is_empty() {
        let can_read = reading && pending.len() < window;
        let has_pending = !pending.is_empty();
        tokio::select! {
            biased;
            ack = async { (&mut pending.front_mut().expect("has_pending").1).await }, if has_pending => {
                let (n, _) = pending.pop_front().expect("has_pending");
                match ack {
                    Ok(ack) => {
                        serde_json::to_writer(&mut out, &AckLine::from(&ack))?;
                        out.write_all(b"\n")?;
                    }
                    Err(e) => {
                        failure.get_or_insert_with(|| anyhow!(e).context(format!("line {n} was not stored")));
                        reading = false;
                    }
                }
                if pending.is_empty() {
                    out.flush()?;
                }
            }
            line = lines.next_line(), if can_read => {
                match line.context("cannot read stdin")? {
                    None => reading = false,
                    Some(text) => {
                        line_no += 1;
                        if text.trim().is_empty() {
                            continue;
                        }
                        match sign_line(&text, &key, now_ms()) {
                            Ok(signed) => pending.push_back((line_no, producer.enqueue(signed).await?)),
                            Err(e) => {
                                failure = Some(e.context(format!("line {line_no}")));
                                reading = false;
                            }
                        }
                    }
                }
            }
        }
    }
    out.flush()?;
    producer.close().await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn ack_line_has_the_contract_fields_in_order() {
        let ack = Ack {
            id: AssertionId([0xab; 32]),
            partition: 2,
            offset: 17,
            hlc: 7_000_000_000,
            duplicate: true,
        };
        let line = serde_json::to_string(&AckLine::from(&ack)).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"id":"{}","partition":2,"offset":17,"hlc":7000000000,"duplicate":true}}"#,
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn issued_at_defaults_to_now() {
        let s = sign_line(
            r#"{"subject":"s","predicate":"p","object":"o","source":"x"}"#,
            &key(),
            1234,
        )
        .unwrap();
        assert_eq!(s.assertion().issued_at, 1234);
        let s = sign_line(
            r#"{"subject":"s","predicate":"p","object":1,"source":"x","issued_at":99,"confidence":0.5}"#,
            &key(),
            1234,
        )
        .unwrap();
        assert_eq!(s.assertion().issued_at, 99);
        assert_eq!(s.assertion().confidence, Some(0.5));
        s.verify().unwrap();
    }

    #[test]
    fn bad_lines_say_why() {
        let err = sign_line(r#"{"subject":"s"}"#, &key(), 1).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("not an assertion: missing field"),
            "{err:#}"
        );
        let err = sign_line(
            r#"{"subject":"","predicate":"p","object":"o","source":"x"}"#,
            &key(),
            1,
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot sign it: subject must not be empty"
        );
        assert!(sign_line("not json", &key(), 1).is_err());
    }
}
