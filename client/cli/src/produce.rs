//! `steme produce TOPIC --key FILE`: assertions as JSON lines on stdin, one ack line out
//! per input line, in input order.
//!
//! Lines are signed and enqueued as they are read, so up to `--window` records are in
//! flight at once; acks are printed as soon as the oldest one is answered. A line that does
//! not parse or sign stops reading: the lines before it are still acknowledged and printed,
//! then the command fails naming the line.
//!
//! A line is signed as it stands: one without `issued_at` keeps it absent (0), so the same
//! input signed with the same key always gives the same ids, and producing it again is
//! answered with `"duplicate": true` (the HLC records when it was stored).
//! `--issued-at now` stamps lines without one with the current time instead.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow};
use steme_client::{Assertion, PendingAck, Producer, ProducerConfig, SignedAssertion, SigningKey};
use tokio::io::AsyncBufReadExt;

use crate::args::{IssuedAtArg, ProduceArgs};
use crate::keys::read_key;

pub use steme_client::json::AckLine;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses and signs one input line as it stands; with `stamp_ms`, an `issued_at` absent or
/// 0 becomes that time.
pub fn sign_line(
    line: &str,
    key: &SigningKey,
    stamp_ms: Option<u64>,
) -> anyhow::Result<SignedAssertion> {
    let mut a: Assertion = serde_json::from_str(line).context("not an assertion")?;
    if let Some(now) = stamp_ms
        && a.issued_at == 0
    {
        a.issued_at = now;
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
                        let stamp = args.issued_at.map(|IssuedAtArg::Now| now_ms());
                        match sign_line(&text, &key, stamp) {
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
    use steme_client::{Ack, AssertionId};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn ack_line_has_the_contract_fields_in_order() {
        let ack = Ack {
            id: AssertionId([0xab; 32]),
            partition: 2,
            offset: 17,
            hlc: (1_795_946_400u64 << 32) + 1,
            duplicate: true,
        };
        let line = serde_json::to_string(&AckLine::from(&ack)).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"id":"{}","partition":2,"offset":17,"hlc":{},"time":"2026-11-29T10:00:00.000000000Z","logical":1,"duplicate":true}}"#,
                "ab".repeat(32),
                (1_795_946_400u64 << 32) + 1
            )
        );
    }

    #[test]
    fn a_line_signs_as_it_stands_unless_stamping_is_asked_for() {
        let line = r#"{"subject":"s","predicate":"p","object":"o","source":"x"}"#;
        let s = sign_line(line, &key(), None).unwrap();
        assert_eq!(s.assertion().issued_at, 0, "no issued_at is invented");
        let again = sign_line(line, &key(), None).unwrap();
        assert_eq!(s.id(), again.id(), "the same line gives the same id");
        let stamped = sign_line(line, &key(), Some(1234)).unwrap();
        assert_eq!(stamped.assertion().issued_at, 1234);
        assert_ne!(stamped.id(), s.id());
        let s = sign_line(
            r#"{"subject":"s","predicate":"p","object":1,"source":"x","issued_at":99,"confidence":0.5}"#,
            &key(),
            Some(1234),
        )
        .unwrap();
        assert_eq!(s.assertion().issued_at, 99, "a given issued_at is kept");
        assert_eq!(s.assertion().confidence, Some(0.5));
        s.verify().unwrap();
    }

    #[test]
    fn bad_lines_say_why() {
        let err = sign_line(r#"{"subject":"s"}"#, &key(), None).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("not an assertion: missing field"),
            "{err:#}"
        );
        let err = sign_line(
            r#"{"subject":"","predicate":"p","object":"o","source":"x"}"#,
            &key(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot sign it: subject must not be empty"
        );
        assert!(sign_line("not json", &key(), None).is_err());
    }
}
