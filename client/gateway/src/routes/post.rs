//! `POST /v1/topics/{topic}/assertions`: signed assertions in, one ack per record out, in
//! input order, once every record is committed. Every record is checked (parsed, its id
//! recomputed, its signature verified) before any is sent: one bad record and nothing of
//! the request is stored.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use std::sync::Arc;
use steme_client::json::AckLine;
use steme_client::{Ack, Assertion, AssertionId, SignedAssertion, SigningKey, Value};
use steme_protocol::assertion::BatchVerifier;
use steme_protocol::assertion::verify_one;

use crate::error::{BadRecord, HttpError, error_chain};
use crate::principals::Caller;
use crate::routes::PathParams;
use crate::state::Gateway;

/// How the records came, and so how the acks go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A JSON array.
    Array,
    /// JSON lines.
    Lines,
}

/// A posted record: the signed form (`steme sign`), or a consumed line (`steme consume`,
/// whose place fields are ignored), or, for a gateway with `--sign-with`, the plain
/// assertion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    subject: String,
    predicate: String,
    object: Value,
    source: String,
    #[serde(default)]
    confidence: Option<f64>,
    #[serde(default)]
    supersedes: Option<AssertionId>,
    #[serde(default)]
    issued_at: u64,
    #[serde(default)]
    id: Option<AssertionId>,
    #[serde(default)]
    signer: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    // Where `steme consume` found it: not part of the assertion.
    #[serde(default, rename = "partition")]
    _partition: Option<IgnoredAny>,
    #[serde(default, rename = "offset")]
    _offset: Option<IgnoredAny>,
    #[serde(default, rename = "hlc")]
    _hlc: Option<IgnoredAny>,
    #[serde(default, rename = "time")]
    _time: Option<IgnoredAny>,
    #[serde(default, rename = "logical")]
    _logical: Option<IgnoredAny>,
}

impl Posted {
    /// The signed assertion, signed here only if the gateway has a key and the record came
    /// without any of `id`, `signer` and `signature`.
    fn into_signed(self, key: Option<&SigningKey>) -> Result<SignedAssertion, String> {
        let assertion = Assertion {
            subject: self.subject,
            predicate: self.predicate,
            object: self.object,
            source: self.source,
            confidence: self.confidence,
            supersedes: self.supersedes,
            issued_at: self.issued_at,
        };
        let (signer, signature) = match (self.signer, self.signature, key) {
            (Some(signer), Some(signature), _) => (signer, signature),
            (None, None, Some(key)) if self.id.is_none() => {
                return assertion.sign(key).map_err(|e| e.to_string());
            }
            (None, None, Some(_)) => {
                return Err("an id without signer and signature: sign it, or send neither".into());
            }
            _ => {
                return Err(match key {
                    Some(_) => "signer and signature go together".into(),
                    None => {
                        "not signed: signer and signature are required (this gateway signs nothing)"
                            .into()
                    }
                });
            }
        };
        let signer: [u8; 32] = hex_array(&signer, "signer")?;
        let signature: [u8; 64] = hex_array(&signature, "signature")?;
        let signed =
            SignedAssertion::new(assertion, signer, signature).map_err(|e| e.to_string())?;
        match self.id {
            Some(id) if id != signed.id() => Err(format!(
                "id {id} does not match the fields (they hash to {})",
                signed.id()
            )),
            _ => Ok(signed),
        }
    }
}

fn hex_array<const N: usize>(text: &str, field: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| format!("{field} is not {} hex digits", 2 * N))?;
    Ok(out)
}

/// Splits a body into its records' JSON texts, without parsing them yet.
fn split(body: &[u8], max_records: usize) -> Result<(Form, Vec<&str>), HttpError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| HttpError::bad_request(format!("the body is not UTF-8: {e}")))?;
    let too_many = |n: usize| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!("{n} records or more in one post; at most {max_records} are taken"),
        )
    };
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| HttpError::bad_request(format!("the body is not a JSON array: {e}")))?;
        if items.len() > max_records {
            return Err(too_many(items.len()));
        }
        return Ok((Form::Array, items.into_iter().map(RawValue::get).collect()));
    }
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if lines.len() == max_records {
            return Err(too_many(max_records + 1));
        }
        lines.push(line);
    }
    Ok((Form::Lines, lines))
}

/// Parses and verifies every record; every bad one is named by its index in the request.
fn check(texts: &[&str], key: Option<&SigningKey>) -> Result<Vec<SignedAssertion>, Vec<BadRecord>> {
    let mut bad = Vec::new();
    // Each parsed record with its index in the request.
    let mut parsed = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        match serde_json::from_str::<Posted>(text)
            .map_err(|e| e.to_string())
            .and_then(|p| p.into_signed(key))
        {
            Ok(s) => parsed.push((index, s)),
            Err(error) => bad.push(BadRecord { index, error }),
        }
    }
    let sigs: Vec<[u8; 64]> = parsed
        .iter()
        .map(|(_, s)| s.signature().to_bytes())
        .collect();
    let all = parsed
        .iter()
        .zip(&sigs)
        .map(|((_, s), sig)| (s.canonical(), sig));
    if BatchVerifier::default().verify(all).is_err() {
        // Name every bad one, not only the first.
        for ((index, s), sig) in parsed.iter().zip(&sigs) {
            if let Err(e) = verify_one(s.canonical(), sig) {
                bad.push(BadRecord {
                    index: *index,
                    error: e.to_string(),
                });
            }
        }
    }
    if !bad.is_empty() {
        bad.sort_by_key(|b| b.index);
        return Err(bad);
    }
    Ok(parsed.into_iter().map(|(_, s)| s).collect())
}

/// Reads the body, at most `limit` bytes.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, HttpError> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if error_chain(&e).contains("length limit") {
            too_large()
        } else {
            HttpError::bad_request(format!("cannot read the body: {}", error_chain(&e)))
        }
    })
}

pub async fn post(
    State(gateway): State<Arc<Gateway>>,
    Caller(identity): Caller,
    PathParams(topic): PathParams<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let limits = &gateway.limits;
    let body = read_body(&headers, body, limits.max_body_bytes).await?;
    let signer = gateway.signer.clone();
    let max_records = limits.max_records;
    // Parsing, hashing and verifying a thousand records is milliseconds of CPU: off the
    // runtime's threads.
    let checked = tokio::task::spawn_blocking(move || {
        let (form, texts) = split(&body, max_records)?;
        let total = texts.len();
        check(&texts, signer.as_ref())
            .map(|records| (form, records))
            .map_err(|bad| HttpError::invalid_records(total, bad))
    })
    .await
    .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let (form, records) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            gateway.metrics.rejected(&e);
            return Err(e);
        }
    };
    if records.is_empty() {
        return Ok(answer(form, &[]));
    }
    let bytes: usize = records.iter().map(|r| r.canonical().len() + 64).sum();
    let _room = identity.admit(bytes)?;
    let producer = identity.producer(&topic).await?;
    let count = records.len();
    let pending = producer.enqueue_many(records.into_iter()).await?;
    let results = pending.await;
    let mut acks = Vec::with_capacity(count);
    for r in results {
        acks.push(r?);
    }
    gateway.metrics.stored(&acks);
    Ok(answer(form, &acks))
}

fn answer(form: Form, acks: &[Ack]) -> Response {
    let lines: Vec<AckLine> = acks.iter().map(AckLine::from).collect();
    let (content_type, body) = match form {
        Form::Array => ("application/json", serde_json::to_vec(&lines)),
        Form::Lines => ("application/x-ndjson", to_lines(&lines)),
    };
    match body {
        Ok(body) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response(),
        Err(e) => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

/// Items as JSON lines.
pub fn to_lines<T: serde::Serialize>(items: &[T]) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(items.len() * 160);
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_line(key: &SigningKey, subject: &str) -> String {
        let a = Assertion::builder(subject, "p")
            .object(Value::Integer(1))
            .source("s")
            .build()
            .unwrap();
        serde_json::to_string(&a.sign(key).unwrap()).unwrap()
    }

    #[test]
    fn arrays_and_lines_split_into_records() {
        let (form, items) = split(br#" [{"a":1}, {"b":[2]}] "#, 10).unwrap();
        assert_eq!(form, Form::Array);
        assert_eq!(items, [r#"{"a":1}"#, r#"{"b":[2]}"#]);
        let (form, items) = split(b"{\"a\":1}\n\n  {\"b\":2}\r\n", 10).unwrap();
        assert_eq!(form, Form::Lines);
        assert_eq!(items, [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(
            split(b"[1,2,3]", 2).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            split(b"1\n2\n3", 2).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            split(b"[1,", 2).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn every_bad_record_is_named() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let good = signed_line(&key, "urn:a");
        let mut tampered: serde_json::Value =
            serde_json::from_str(&signed_line(&key, "urn:b")).unwrap();
        let sig = tampered["signature"].as_str().unwrap().to_owned();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        tampered["signature"] = format!("{flipped}{}", &sig[1..]).into();
        let tampered = tampered.to_string();
        let mut wrong_id: serde_json::Value =
            serde_json::from_str(&signed_line(&key, "urn:c")).unwrap();
        wrong_id["subject"] = "urn:d".into();
        let wrong_id = wrong_id.to_string();
        let texts = [good.as_str(), tampered.as_str(), "{}", wrong_id.as_str()];
        let bad = check(&texts, None).unwrap_err();
        let indexes: Vec<usize> = bad.iter().map(|b| b.index).collect();
        assert_eq!(indexes, [1, 2, 3], "every bad record, in order: {bad:?}");
        assert_eq!(bad[0].error, "signature does not verify");
        let bad = check(&[good.as_str(), tampered.as_str()], None).unwrap_err();
        assert_eq!(
            bad,
            [BadRecord {
                index: 1,
                error: "signature does not verify".into()
            }]
        );
        assert!(wrong_id.contains("urn:d"));
        assert_eq!(check(&[good.as_str()], None).unwrap().len(), 1);
    }

    #[test]
    fn unsigned_records_are_signed_only_with_a_key() {
        let plain = r#"{"subject":"urn:a","predicate":"p","object":"o","source":"s"}"#;
        let bad = check(&[plain], None).unwrap_err();
        assert!(bad[0].error.contains("not signed"), "{bad:?}");
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = check(&[plain], Some(&key)).unwrap();
        assert_eq!(signed[0].signer(), &key.verifying_key().to_bytes());
    }

    #[test]
    fn a_consumed_line_is_accepted_as_it_stands() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut line: serde_json::Value =
            serde_json::from_str(&signed_line(&key, "urn:a")).unwrap();
        for (k, v) in [
            ("partition", 1u64),
            ("offset", 9),
            ("hlc", 77),
            ("logical", 0),
        ] {
            line[k] = v.into();
        }
        line["time"] = "2026-11-30T10:00:00.000000000Z".into();
        let line = line.to_string();
        assert_eq!(check(&[line.as_str()], None).unwrap().len(), 1);
        let extra = line.replace("\"hlc\"", "\"other\"");
        assert!(
            check(&[extra.as_str()], None).unwrap_err()[0]
                .error
                .contains("unknown field")
        );
    }
}
