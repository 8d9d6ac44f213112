//! Partitioning (D7): `partition = jump_consistent_hash(u64 from BLAKE3(subject)[0..8], P)`.
//!
//! Every assertion about one subject lands in one partition, in order. Jump consistent hash
//! (Lamping and Veach, 2014) moves only about `1/(n+1)` of subjects when a topic grows from
//! `n` to `n+1` partitions.

/// The partition of `subject` in a topic of `partitions` partitions (at least 1).
pub fn partition_for(subject: &str, partitions: u32) -> u32 {
    jump_consistent_hash(subject_key(subject), partitions)
}

/// The key jump hash places `subject` by: the first 8 bytes of its BLAKE3 hash. Hash it
/// once to place a subject under several partition counts (a topic that grew).
pub fn subject_key(subject: &str) -> u64 {
    let digest = blake3::hash(subject.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Jump consistent hash of `key` into `buckets` buckets; `buckets == 0` is treated as 1.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = (((b + 1) as f64) * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_is_stable() {
        for p in 1..50 {
            for i in 0..200 {
                let s = format!("subject-{i}");
                let got = partition_for(&s, p);
                assert!(got < p);
                assert_eq!(got, partition_for(&s, p));
            }
        }
        assert_eq!(partition_for("x", 0), 0);
    }

    #[test]
    fn growing_moves_about_one_in_n_plus_one() {
        let subjects: Vec<String> = (0..20_000).map(|i| format!("urn:s:{i}")).collect();
        for n in [1u32, 2, 3, 7, 15, 31, 63] {
            let moved = subjects
                .iter()
                .filter(|s| partition_for(s, n) != partition_for(s, n + 1))
                .count();
            let expected = subjects.len() as f64 / f64::from(n + 1);
            let ratio = moved as f64 / expected;
            assert!(
                (0.85..1.15).contains(&ratio),
                "n={n}: moved {moved}, expected about {expected:.0}"
            );
            // Every moved subject moves to the new partition, never between old ones.
            assert!(
                subjects
                    .iter()
                    .filter(|s| partition_for(s, n) != partition_for(s, n + 1))
                    .all(|s| partition_for(s, n + 1) == n)
            );
        }
    }

    #[test]
    fn spreads_evenly() {
        let p = 16;
        let mut counts = vec![0u32; p as usize];
        for i in 0..32_000 {
            counts[partition_for(&format!("k{i}"), p) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1700..2300).contains(&c)),
            "{counts:?}"
        );
    }
}
