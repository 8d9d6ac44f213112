//! Tests of the batch equation with one term per signer key ([`super::batch`]): the
//! forgeries it must refuse, and agreement with single verification and with
//! `ed25519_dalek::verify_batch`.

use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;

use super::tests::{key, sample};
use super::*;

/// `n` records signed by `signers` keys in turn, and their signatures.
fn signed_by(n: u64, signers: u8) -> (Vec<SignedAssertion>, Vec<[u8; 64]>) {
    let signed: Vec<SignedAssertion> = (0..n)
        .map(|i| {
            sample(i)
                .sign(&key(1 + (i % u64::from(signers)) as u8))
                .unwrap()
        })
        .collect();
    let sigs = signed.iter().map(|s| s.signature().to_bytes()).collect();
    (signed, sigs)
}

/// The three verdicts on the same records: [`BatchVerifier`] (and the record it names),
/// every record on its own, and `ed25519_dalek::verify_batch`.
fn verdicts(canonical: &[Vec<u8>], sigs: &[[u8; 64]]) -> (Result<(), usize>, bool, bool) {
    let records = || canonical.iter().map(|c| &c[..]).zip(sigs);
    let batch = BatchVerifier::default()
        .verify(records())
        .map_err(|e| e.index);
    let one_by_one = records().all(|(c, s)| verify_one(c, s).is_ok());
    (batch, one_by_one, dalek_verify_batch(records()))
}

fn canonicals(signed: &[SignedAssertion]) -> Vec<Vec<u8>> {
    signed.iter().map(|s| s.canonical().to_vec()).collect()
}

fn s_of(sig: &[u8; 64]) -> Scalar {
    Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap()
}

fn with_s(sig: &[u8; 64], s: Scalar) -> [u8; 64] {
    let mut out = *sig;
    out[32..].copy_from_slice(s.as_bytes());
    out
}

#[test]
fn valid_records_of_one_or_many_signers_pass() {
    for signers in [1, 2, 5, 13] {
        let (signed, sigs) = signed_by(300, signers);
        assert_eq!(
            verdicts(&canonicals(&signed), &sigs),
            (Ok(()), true, true),
            "{signers} signers"
        );
    }
}

/// Two forged signatures of one key whose errors cancel in a sum over the key — `s + d`
/// on one record, `s - d` on another — are refused: each signature keeps its own random
/// weight, so the errors never cancel.
#[test]
fn compensating_forgeries_under_one_key_are_refused() {
    let (signed, mut sigs) = signed_by(40, 1);
    let d = Scalar::from(12345u64);
    sigs[10] = with_s(&sigs[10], s_of(&sigs[10]) + d);
    sigs[30] = with_s(&sigs[30], s_of(&sigs[30]) - d);
    assert_eq!(
        verdicts(&canonicals(&signed), &sigs),
        (Err(10), false, false)
    );
    // The same with the signatures of two records of one signer swapped.
    let (signed, mut sigs) = signed_by(40, 2);
    sigs.swap(4, 6);
    assert_eq!(
        verdicts(&canonicals(&signed), &sigs),
        (Err(4), false, false)
    );
}

/// A signature made by one key under a record that names another key — with both keys
/// in the batch — is refused.
#[test]
fn a_signature_under_another_signers_record_is_refused() {
    let (signed, sigs) = signed_by(20, 2);
    let mut canonical = canonicals(&signed);
    let other_key = canonical[1][SIGNER_RANGE].to_vec();
    canonical[2][SIGNER_RANGE].copy_from_slice(&other_key);
    assert_eq!(verdicts(&canonical, &sigs), (Err(2), false, false));
}

/// `s + L` is the same scalar, but not its canonical encoding: refused, as single
/// verification refuses it (signatures are not malleable).
#[test]
fn a_non_canonical_s_is_refused() {
    // L, the order of the base point, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let (signed, mut sigs) = signed_by(8, 1);
    let mut carry = 0u16;
    for (b, l) in sigs[3][32..].iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(
        verdicts(&canonicals(&signed), &sigs),
        (Err(3), false, false)
    );
}

/// An `R` that is not a curve point.
#[test]
fn an_r_off_the_curve_is_refused() {
    let (signed, mut sigs) = signed_by(8, 1);
    // y = 2 is not the y of any point on the curve.
    sigs[5][..32].copy_from_slice(&{
        let mut y = [0u8; 32];
        y[0] = 2;
        y
    });
    assert_eq!(
        verdicts(&canonicals(&signed), &sigs),
        (Err(5), false, false)
    );
}

/// What may happen to a record on its way.
#[derive(Debug, Clone)]
enum Damage {
    SignatureBit(usize, usize),
    RecordBit(usize, usize),
    Swap(usize, usize),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the signers and the damage, the batch says what single verification and
    /// `ed25519_dalek::verify_batch` say, and names the first record that fails alone
    /// (batches of up to 300 records: more than one chunk, and failed chunks searched by
    /// halves).
    #[test]
    fn agrees_with_single_verification_and_dalek(
        n in 1u64..300,
        signers in 1u8..5,
        damage in proptest::collection::vec(
            prop_oneof![
                (any::<usize>(), 0usize..512).prop_map(|(i, b)| Damage::SignatureBit(i, b)),
                (any::<usize>(), any::<usize>()).prop_map(|(i, b)| Damage::RecordBit(i, b)),
                (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Damage::Swap(i, j)),
            ],
            0..3,
        ),
    ) {
        let (signed, mut sigs) = signed_by(n, signers);
        let mut canonical = canonicals(&signed);
        let n = n as usize;
        for d in damage {
            match d {
                Damage::SignatureBit(i, b) => sigs[i % n][b / 8] ^= 1 << (b % 8),
                Damage::RecordBit(i, b) => {
                    let c = &mut canonical[i % n];
                    let b = b % (c.len() * 8);
                    c[b / 8] ^= 1 << (b % 8);
                }
                Damage::Swap(i, j) => sigs.swap(i % n, j % n),
            }
        }
        let (batch, one_by_one, dalek) = verdicts(&canonical, &sigs);
        prop_assert_eq!(batch.is_ok(), one_by_one);
        prop_assert_eq!(dalek, one_by_one);
        if let Err(index) = batch {
            let first_bad = canonical
                .iter()
                .zip(&sigs)
                .position(|(c, s)| verify_one(c, s).is_err());
            prop_assert_eq!(Some(index), first_bad);
        }
    }
}
