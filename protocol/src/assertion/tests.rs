//! Tests of the assertion model, its encoding, ids, signatures and JSON form.

use super::*;

pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn sample(i: u64) -> Assertion {
    Assertion {
        subject: format!("urn:steme:subject:{i}"),
        predicate: "schema:name".into(),
        object: Value::Text(format!("Thing number {i}")),
        source: "test".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_700_000_000_000 + i,
    }
}

pub(crate) fn sample_signed(i: u64) -> SignedAssertion {
    sample(i).sign(&key(7)).unwrap()
}

#[test]
fn same_fields_same_signer_same_id() {
    let a = sample_signed(1);
    let b = sample(1).sign(&key(7)).unwrap();
    assert_eq!(a.id(), b.id());
    let c = sample(1).sign(&key(8)).unwrap();
    assert_ne!(a.id(), c.id(), "the signer's key is part of the id");
}

#[test]
fn roundtrip_canonical_all_value_kinds() {
    let objects = [
        Value::Text("héllo".into()),
        Value::Integer(-42),
        Value::Float(-0.0),
        Value::Boolean(true),
        Value::Bytes(vec![0, 1, 255]),
        Value::Ref("urn:x".into()),
    ];
    for object in objects {
        let mut a = sample(3);
        a.object = object;
        a.confidence = Some(0.25);
        a.supersedes = Some(AssertionId([9; 32]));
        let s = a.sign(&key(1)).unwrap();
        let (back, signer) = Assertion::decode(s.canonical()).unwrap();
        assert_eq!(back, a);
        assert_eq!(&signer, s.signer());
        assert_eq!(subject_of(s.canonical()).unwrap(), a.subject);
        s.verify().unwrap();
    }
}

#[test]
fn rejects_non_canonical_bytes() {
    let s = sample_signed(1);
    let mut b = s.canonical().to_vec();
    b.push(0);
    assert!(matches!(
        Assertion::decode(&b),
        Err(AssertionError::Decode(DecodeError::TrailingBytes { .. }))
    ));
    let mut b = s.canonical().to_vec();
    b[FLAGS_OFFSET] = 0x80;
    assert!(Assertion::decode(&b).is_err());
    let mut b = s.canonical().to_vec();
    b[0] = 2;
    assert_eq!(Assertion::decode(&b), Err(AssertionError::Version(2)));
}

#[test]
fn rejects_bad_values() {
    let mut a = sample(1);
    a.object = Value::Float(f64::NAN);
    assert!(a.sign(&key(1)).is_err());
    let mut a = sample(1);
    a.confidence = Some(1.5);
    assert!(a.sign(&key(1)).is_err());
    let mut a = sample(1);
    a.subject.clear();
    assert_eq!(
        a.sign(&key(1)),
        Err(AssertionError::Empty { field: "subject" })
    );
}

#[test]
fn tampered_signature_or_field_fails_verification() {
    let s = sample_signed(2);
    let mut sig = s.signature().to_bytes();
    sig[0] ^= 1;
    assert!(verify_one(s.canonical(), &sig).is_err());
    let mut c = s.canonical().to_vec();
    let last = c.len() - 1;
    c[last] ^= 1;
    assert!(verify_one(&c, &s.signature().to_bytes()).is_err());
}

#[test]
fn batch_verify_names_first_bad_record() {
    let signed: Vec<_> = (0..150).map(sample_signed).collect();
    let sigs: Vec<[u8; 64]> = signed.iter().map(|s| s.signature().to_bytes()).collect();
    let mut v = BatchVerifier::default();
    let ok = v.verify(signed.iter().zip(&sigs).map(|(s, g)| (s.canonical(), g)));
    assert_eq!(ok, Ok(()));
    let ids: Vec<AssertionId> = v.ids().collect();
    assert_eq!(ids, signed.iter().map(|s| s.id()).collect::<Vec<_>>());
    let mut bad = sigs.clone();
    bad[97][5] ^= 0x10;
    bad[120][5] ^= 0x10;
    let err = verify_batch(signed.iter().zip(&bad).map(|(s, g)| (s.canonical(), g))).unwrap_err();
    assert_eq!(err.index, 97);
}

#[test]
fn batch_verify_refuses_weak_key_up_front() {
    // The identity point (compressed y = 1) has small order.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let a = sample(1);
    let canonical = a.canonical_bytes(&weak).unwrap();
    let sig = [0u8; 64];
    let good = sample_signed(2);
    let good_sig = good.signature().to_bytes();
    let err = verify_batch([(good.canonical(), &good_sig), (&canonical[..], &sig)]).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.reason, AssertionError::WeakKey);
}

/// The verifier keeps recent signers decoded: with more signers than it keeps, taking
/// turns, every record is still checked against its own key, a weak key is refused
/// whoever came before it, and one verifier serves request after request.
#[test]
fn batch_verify_with_many_signers_checks_each_record_against_its_own_key() {
    let signed: Vec<SignedAssertion> = (0..300u64)
        .map(|i| sample(i).sign(&key(1 + (i % 13) as u8)).unwrap())
        .collect();
    let sigs: Vec<[u8; 64]> = signed.iter().map(|s| s.signature().to_bytes()).collect();
    let mut v = BatchVerifier::default();
    for _ in 0..2 {
        v.verify(signed.iter().zip(&sigs).map(|(s, g)| (s.canonical(), g)))
            .unwrap();
    }
    // Record 200's signature, made by its own signer, under the bytes of a signer seen
    // before (record 199's): refused.
    let mut canonical = signed[200].canonical().to_vec();
    canonical[SIGNER_RANGE].copy_from_slice(&signed[199].canonical()[SIGNER_RANGE]);
    let err = v
        .verify(
            signed[..200]
                .iter()
                .zip(&sigs)
                .map(|(s, g)| (s.canonical(), g))
                .chain([(&canonical[..], &sigs[200])]),
        )
        .unwrap_err();
    assert_eq!(err.index, 200);
    // A weak key after many good ones.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let bad = sample(1).canonical_bytes(&weak).unwrap();
    let err = v
        .verify(
            signed[..70]
                .iter()
                .zip(&sigs)
                .map(|(s, g)| (s.canonical(), g))
                .chain([(&bad[..], &[0u8; 64])]),
        )
        .unwrap_err();
    assert_eq!((err.index, err.reason), (70, AssertionError::WeakKey));
}

#[test]
fn json_roundtrips_exactly() {
    let mut a = sample(5);
    a.object = Value::Float(1.0);
    a.confidence = Some(0.1);
    a.supersedes = Some(sample_signed(4).id());
    let s = a.sign(&key(3)).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: SignedAssertion = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    for object in [
        Value::Bytes(vec![1, 2]),
        Value::Ref("r".into()),
        Value::Integer(i64::MIN),
        Value::Boolean(false),
    ] {
        let j = serde_json::to_string(&object).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), object);
    }
    let tampered = json.replace("urn:steme:subject:5", "urn:steme:subject:6");
    assert!(serde_json::from_str::<SignedAssertion>(&tampered).is_err());
}

#[test]
fn json_accepts_plain_and_tagged_objects() {
    let a: Assertion = serde_json::from_str(
        r#"{"subject":"s","predicate":"p","object":{"integer":3},"source":"x"}"#,
    )
    .unwrap();
    assert_eq!(a.object, Value::Integer(3));
    let a: Assertion =
        serde_json::from_str(r#"{"subject":"s","predicate":"p","object":2.5,"source":"x"}"#)
            .unwrap();
    assert_eq!(a.object, Value::Float(2.5));
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,40}".prop_map(Value::Text),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            any::<bool>().prop_map(Value::Boolean),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            ".{1,20}".prop_map(Value::Ref),
        ]
    }

    fn assertion() -> impl Strategy<Value = Assertion> {
        (
            ".{1,30}",
            ".{1,30}",
            value(),
            ".{0,20}",
            prop::option::of(0.0f64..=1.0),
            prop::option::of(any::<[u8; 32]>()),
            any::<u64>(),
        )
            .prop_map(
                |(subject, predicate, object, source, confidence, supersedes, issued_at)| {
                    Assertion {
                        subject,
                        predicate,
                        object,
                        source,
                        confidence,
                        supersedes: supersedes.map(AssertionId),
                        issued_at,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// decode(encode(a)) == a, the JSON form round-trips, and the subject slice agrees.
        #[test]
        fn canonical_and_json_roundtrip(a in assertion(), signer in any::<[u8; 32]>()) {
            let bytes = a.canonical_bytes(&signer).unwrap();
            let (back, s) = Assertion::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &a);
            prop_assert_eq!(s, signer);
            prop_assert_eq!(subject_of(&bytes).unwrap(), a.subject.as_str());
            let json = serde_json::to_string(&a).unwrap();
            let from_json: Assertion = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(from_json.canonical_bytes(&signer).unwrap(), bytes);
        }
    }
}
