//! Test vectors for the canonical assertion encoding, ids and signatures.
//!
//! `protocol/testdata/assertion-vectors.json` holds, for fixed Ed25519 seeds, the input
//! fields, the canonical bytes in hex, the id, the public key and the signature. Another
//! SDK proves it encodes identically by reproducing every vector. Ed25519 signing is
//! deterministic, so the signatures are reproducible too.
//!
//! Regenerate (only when the format changes on purpose, with a version bump):
//! `STEME_WRITE_VECTORS=1 cargo test -p steme-protocol --test vectors`.

use serde::{Deserialize, Serialize};
use steme_protocol::assertion::verify_one;
use steme_protocol::{Assertion, AssertionId, SigningKey, Value};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vector {
    name: String,
    /// The 32-byte Ed25519 secret seed, hex.
    seed: String,
    assertion: Assertion,
    canonical: String,
    id: String,
    public_key: String,
    signature: String,
}

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/assertion-vectors.json"
);

fn inputs() -> Vec<(&'static str, [u8; 32], Assertion)> {
    let base = Assertion {
        subject: "urn:steme:person:ada".into(),
        predicate: "schema:name".into(),
        object: Value::Text("Ada Lovelace".into()),
        source: "https://example.org/biographies".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_764_000_000_000,
    };
    let with = |f: &dyn Fn(&mut Assertion)| {
        let mut a = base.clone();
        f(&mut a);
        a
    };
    vec![
        ("text", [1; 32], base.clone()),
        (
            "integer-negative",
            [2; 32],
            with(&|a| a.object = Value::Integer(-1_234_567_890_123)),
        ),
        (
            "integer-max",
            [2; 32],
            with(&|a| a.object = Value::Integer(i64::MAX)),
        ),
        (
            "float",
            [3; 32],
            with(&|a| a.object = Value::Float(-1_234.567_890_123)),
        ),
        (
            "float-negative-zero",
            [3; 32],
            with(&|a| a.object = Value::Float(-0.0)),
        ),
        (
            "boolean",
            [4; 32],
            with(&|a| a.object = Value::Boolean(true)),
        ),
        (
            "bytes",
            [5; 32],
            with(&|a| a.object = Value::Bytes(vec![0x00, 0x01, 0xfe, 0xff])),
        ),
        (
            "ref",
            [6; 32],
            with(&|a| a.object = Value::Ref("urn:steme:person:byron".into())),
        ),
        ("confidence", [7; 32], with(&|a| a.confidence = Some(0.75))),
        (
            "supersedes",
            [8; 32],
            with(&|a| {
                a.supersedes = Some(AssertionId([0xab; 32]));
                a.object = Value::Text("Augusta Ada King".into());
            }),
        ),
        (
            "all-optional-fields",
            [9; 32],
            with(&|a| {
                a.confidence = Some(1.0);
                a.supersedes = Some(AssertionId([0x11; 32]));
            }),
        ),
        (
            "unicode-empty-source",
            [10; 32],
            with(&|a| {
                a.subject = "urn:steme:città:München".into();
                a.object = Value::Text("日本語 🦀".into());
                a.source = String::new();
                a.issued_at = 0;
            }),
        ),
        ("same-fields-other-signer", [11; 32], base.clone()),
    ]
}

fn generate() -> Vec<Vector> {
    inputs()
        .into_iter()
        .map(|(name, seed, assertion)| {
            let key = SigningKey::from_bytes(&seed);
            let signed = assertion.sign(&key).expect("vector inputs are valid");
            Vector {
                name: name.into(),
                seed: hex::encode(seed),
                assertion,
                canonical: hex::encode(signed.canonical()),
                id: signed.id().to_hex(),
                public_key: hex::encode(signed.signer()),
                signature: hex::encode(signed.signature().to_bytes()),
            }
        })
        .collect()
}

#[test]
fn vectors_match_committed_file() -> Result<(), Box<dyn std::error::Error>> {
    let fresh = generate();
    if std::env::var_os("STEME_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&fresh)? + "\n")?;
    }
    let committed: Vec<Vector> = serde_json::from_str(&std::fs::read_to_string(PATH)?)?;
    assert_eq!(committed.len(), fresh.len());
    for (c, f) in committed.iter().zip(&fresh) {
        assert_eq!(
            c, f,
            "vector {} differs from what this build produces",
            c.name
        );
        // Each vector also stands on its own: decode its bytes and verify its signature.
        let canonical = hex::decode(&c.canonical)?;
        let (decoded, signer) = Assertion::decode(&canonical)?;
        assert_eq!(decoded, c.assertion);
        assert_eq!(hex::encode(signer), c.public_key);
        assert_eq!(AssertionId::of(&canonical).to_hex(), c.id);
        let sig: [u8; 64] = hex::decode(&c.signature)?.try_into().expect("64 bytes");
        verify_one(&canonical, &sig)?;
    }
    Ok(())
}
