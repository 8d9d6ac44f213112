//! Topic settings: the strings a CreateTopic (or an AlterTopicConfig) carries, parsed
//! once into a typed [`TopicConfig`] with every value inside its named bounds.
//!
//! Three ways in:
//!
//! - [`TopicConfig::parse`] is strict, for new topics: an unknown key, a value that is not
//!   a number (or a boolean), or a number outside its range is refused with a
//!   [`TopicConfigError`] naming the key, the value and the range. The metadata state
//!   machine applies it to every CreateTopic, so a forged or old proposal cannot bring an
//!   out-of-range value in either.
//! - [`TopicConfig::alter`] is as strict for the values an AlterTopicConfig sets, and also
//!   refuses keys a live topic cannot change ([`FIXED_AT_CREATE`]).
//! - [`TopicConfig::from_stored`] is lenient, for topics already in the metadata (written
//!   by an older broker that checked less): it never fails, so a bad stored value cannot
//!   keep a broker from starting. See its doc for what it does with each kind of bad value.

use std::collections::BTreeMap;
use std::num::ParseIntError;
use std::time::Duration;

/// Key: verify producers' signatures on this topic (`true`/`false`, any case).
pub const VERIFY_SIGNATURES: &str = "verify.signatures";
/// Key: bytes after which a partition's active segment is rolled.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// Key: bytes a partition keeps before retention deletes its oldest segments.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// Key: age in milliseconds after which retention deletes a segment.
pub const RETENTION_MS: &str = "retention.ms";
/// Key: the only public keys (hex, comma-separated) whose records the topic accepts.
pub const SIGNERS_ALLOWED: &str = "signers.allowed";
/// Key: a `key:` principal may produce only records it signed itself (`true`/`false`).
pub const SIGNERS_MUST_MATCH_PRINCIPAL: &str = "signers.must_match_principal";

/// Every key a topic may set.
pub const KNOWN_KEYS: &[&str] = &[
    VERIFY_SIGNATURES,
    RETENTION_MS,
    RETENTION_BYTES,
    SEGMENT_BYTES,
    SIGNERS_ALLOWED,
    SIGNERS_MUST_MATCH_PRINCIPAL,
];

/// Keys a live topic cannot change (refused by [`TopicConfig::alter`]), with why. The
/// partition count and replication factor are not settings at all; they are named here so
/// that `--set partitions=…` is told why rather than that the key is unknown.
pub const FIXED_AT_CREATE: &[(&str, &str)] = &[
    (
        SEGMENT_BYTES,
        "a partition's segments are sized when its log opens, and the log cannot resize them \
         live; set it when creating the topic",
    ),
    (
        "partitions",
        "the partition count is fixed at create: a record's partition is its subject's hash \
         modulo the count, so changing it would move every subject",
    ),
    (
        "replication.factor",
        "the replication factor is fixed at create",
    ),
];

/// The most keys an allow-list may name.
pub const MAX_ALLOWED_SIGNERS: usize = 1024;

/// The smallest segment: 4 KiB (smaller rolls a file per handful of records).
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// The largest segment: 1 GiB. A partition's active segment is sized to `segment.bytes`
/// when it is created, so a huge value fails to open the partition; large ones also make
/// retention (which deletes whole segments) coarse.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The least a partition may retain: one smallest segment.
pub const MIN_RETENTION_BYTES: u64 = MIN_SEGMENT_BYTES;
/// The most a partition may be asked to retain: 2^60 bytes (an exbibyte), far past any
/// disk, and far from overflowing the sums retention makes.
pub const MAX_RETENTION_BYTES: u64 = 1 << 60;
/// The shortest retention: one second.
pub const MIN_RETENTION_MS: u64 = 1_000;
/// The longest retention: 100 years of 365 days.
pub const MAX_RETENTION_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1_000;

/// A topic's overrides of the broker's defaults; `None` leaves the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    pub verify_signatures: Option<bool>,
    /// Within [`MIN_SEGMENT_BYTES`]`..=`[`MAX_SEGMENT_BYTES`].
    pub segment_bytes: Option<u64>,
    /// Within [`MIN_RETENTION_BYTES`]`..=`[`MAX_RETENTION_BYTES`].
    pub retention_bytes: Option<u64>,
    /// Within [`MIN_RETENTION_MS`]`..=`[`MAX_RETENTION_MS`].
    pub retention_ms: Option<u64>,
    /// The public keys whose records are accepted, sorted (`None`: any key).
    pub signers_allowed: Option<Vec<[u8; 32]>>,
    /// A `key:` principal may produce only records it signed itself.
    pub signers_must_match_principal: bool,
}

/// Why a topic setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicConfigError {
    #[error("unknown topic config `{key}` (known: {})", KNOWN_KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("topic config `{key}={value}` is not true or false")]
    NotABool { key: &'static str, value: String },
    #[error(
        "topic config `{key}` must list 1 to {MAX_ALLOWED_SIGNERS} Ed25519 public keys, as 64 hex digits each, comma-separated: {reason}"
    )]
    BadKeyList { key: &'static str, reason: String },
    #[error("topic config `{key}={value}` is not a whole number of {unit}")]
    NotANumber {
        key: &'static str,
        value: String,
        unit: &'static str,
        #[source]
        source: ParseIntError,
    },
    #[error("topic config `{key}` cannot be changed on a live topic: {why}")]
    NotLive { key: String, why: &'static str },
    #[error("topic config `{key}` is both set and deleted")]
    SetAndDeleted { key: String },
    #[error("topic config `{key}={value}` is out of range: {unit} must be {min} to {max}")]
    OutOfRange {
        key: &'static str,
        value: u64,
        unit: &'static str,
        min: u64,
        max: u64,
    },
}

/// A numeric setting's key, unit and bounds.
struct Bounded {
    key: &'static str,
    unit: &'static str,
    min: u64,
    max: u64,
}

const SEGMENT: Bounded = Bounded {
    key: SEGMENT_BYTES,
    unit: "bytes",
    min: MIN_SEGMENT_BYTES,
    max: MAX_SEGMENT_BYTES,
};
const RETENTION_SIZE: Bounded = Bounded {
    key: RETENTION_BYTES,
    unit: "bytes",
    min: MIN_RETENTION_BYTES,
    max: MAX_RETENTION_BYTES,
};
const RETENTION_AGE: Bounded = Bounded {
    key: RETENTION_MS,
    unit: "milliseconds",
    min: MIN_RETENTION_MS,
    max: MAX_RETENTION_MS,
};

impl Bounded {
    /// The value, if it is a number within the bounds.
    fn parse(&self, value: &str) -> Result<u64, TopicConfigError> {
        let n = value
            .trim()
            .parse::<u64>()
            .map_err(|source| TopicConfigError::NotANumber {
                key: self.key,
                value: value.to_owned(),
                unit: self.unit,
                source,
            })?;
        if !(self.min..=self.max).contains(&n) {
            return Err(TopicConfigError::OutOfRange {
                key: self.key,
                value: n,
                unit: self.unit,
                min: self.min,
                max: self.max,
            });
        }
        Ok(n)
    }

    /// The value moved into the bounds, if it is a number at all.
    fn clamp(&self, value: &str) -> Option<u64> {
        value
            .trim()
            .parse::<u64>()
            .ok()
            .map(|n| n.clamp(self.min, self.max))
    }
}

/// A `signers.allowed` value: 1 to [`MAX_ALLOWED_SIGNERS`] hex public keys.
fn parse_keys(value: &str) -> Result<Vec<[u8; 32]>, TopicConfigError> {
    let bad = |reason: String| TopicConfigError::BadKeyList {
        key: SIGNERS_ALLOWED,
        reason,
    };
    let keys = value
        .split(',')
        .map(str::trim)
        .map(|hex_key| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(hex_key, &mut k).map_err(|e| bad(format!("`{hex_key}`: {e}")))?;
            Ok(k)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() || keys.len() > MAX_ALLOWED_SIGNERS {
        return Err(bad(format!("{} keys", keys.len())));
    }
    // Sorted, so that checking a record's signer is a binary search.
    let mut keys = keys;
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl TopicConfig {
    /// Parses a new topic's settings, refusing anything unknown, malformed or out of range.
    pub fn parse(configs: &BTreeMap<String, String>) -> Result<TopicConfig, TopicConfigError> {
        let mut c = TopicConfig::default();
        for (key, value) in configs {
            match key.as_str() {
                VERIFY_SIGNATURES => {
                    c.verify_signatures =
                        Some(parse_bool(value).ok_or_else(|| TopicConfigError::NotABool {
                            key: VERIFY_SIGNATURES,
                            value: value.clone(),
                        })?);
                }
                SIGNERS_ALLOWED => c.signers_allowed = Some(parse_keys(value)?),
                SIGNERS_MUST_MATCH_PRINCIPAL => {
                    c.signers_must_match_principal =
                        parse_bool(value).ok_or_else(|| TopicConfigError::NotABool {
                            key: SIGNERS_MUST_MATCH_PRINCIPAL,
                            value: value.clone(),
                        })?;
                }
                SEGMENT_BYTES => c.segment_bytes = Some(SEGMENT.parse(value)?),
                RETENTION_BYTES => c.retention_bytes = Some(RETENTION_SIZE.parse(value)?),
                RETENTION_MS => c.retention_ms = Some(RETENTION_AGE.parse(value)?),
                _ => return Err(TopicConfigError::UnknownKey { key: key.clone() }),
            }
        }
        Ok(c)
    }

    /// A live topic's overrides after an alter: `current` with `set` given their values and
    /// `delete` returned to the broker's default. Each value of `set` is validated as
    /// [`TopicConfig::parse`] validates a new topic's (same bounds, same errors). Refused,
    /// naming the key: a key in [`FIXED_AT_CREATE`], an unknown key (set, or deleted while
    /// not stored), and a key both set and deleted. Values already stored are kept as they
    /// are: an older broker's out-of-range value does not block changing another key.
    pub fn alter(
        current: &BTreeMap<String, String>,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<BTreeMap<String, String>, TopicConfigError> {
        for key in set.keys().chain(delete) {
            if let Some((_, why)) = FIXED_AT_CREATE.iter().find(|(k, _)| k == key) {
                return Err(TopicConfigError::NotLive {
                    key: key.clone(),
                    why,
                });
            }
        }
        if let Some(key) = delete.iter().find(|k| set.contains_key(*k)) {
            return Err(TopicConfigError::SetAndDeleted { key: key.clone() });
        }
        if let Some(key) = delete
            .iter()
            .find(|k| !KNOWN_KEYS.contains(&k.as_str()) && !current.contains_key(*k))
        {
            return Err(TopicConfigError::UnknownKey { key: key.clone() });
        }
        TopicConfig::parse(set)?;
        let mut out = current.clone();
        for key in delete {
            out.remove(key);
        }
        out.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(out)
    }

    /// Reads the settings of a topic already in the metadata. Never fails:
    ///
    /// - a number outside its range is **clamped** into it (a `segment.bytes` of 10^18
    ///   stored by an older broker opens as 1 GiB segments), so the topic keeps the nearest
    ///   behaviour it can have;
    /// - an unknown key, or a value that is not a number (or a boolean), is **ignored**: the
    ///   broker's default applies.
    ///
    /// Each is logged as a warning naming the topic, key and value.
    pub fn from_stored(topic: &str, configs: &BTreeMap<String, String>) -> TopicConfig {
        let mut c = TopicConfig::default();
        for (key, value) in configs {
            let bounded = match key.as_str() {
                VERIFY_SIGNATURES => {
                    c.verify_signatures = parse_bool(value);
                    if c.verify_signatures.is_none() {
                        tracing::warn!(
                            topic,
                            key,
                            value,
                            "ignoring a stored topic setting that is not true or false"
                        );
                    }
                    continue;
                }
                SIGNERS_ALLOWED => {
                    // Fails closed: a list that no longer parses admits no one.
                    c.signers_allowed = Some(parse_keys(value).unwrap_or_else(|e| {
                        tracing::warn!(topic, key, value, error = %e, "a stored signer allow-list does not parse; admitting no signer");
                        Vec::new()
                    }));
                    continue;
                }
                SIGNERS_MUST_MATCH_PRINCIPAL => {
                    // Fails closed too: anything but "false" keeps the check on.
                    c.signers_must_match_principal = parse_bool(value) != Some(false);
                    continue;
                }
                SEGMENT_BYTES => (&SEGMENT, &mut c.segment_bytes),
                RETENTION_BYTES => (&RETENTION_SIZE, &mut c.retention_bytes),
                RETENTION_MS => (&RETENTION_AGE, &mut c.retention_ms),
                _ => {
                    tracing::warn!(
                        topic,
                        key,
                        value,
                        "ignoring an unknown stored topic setting"
                    );
                    continue;
                }
            };
            let (bounds, slot) = bounded;
            *slot = bounds.clamp(value);
            match *slot {
                None => {
                    tracing::warn!(
                        topic,
                        key,
                        value,
                        "ignoring a stored topic setting that is not a number"
                    );
                }
                Some(n) if value.trim() != n.to_string() => {
                    tracing::warn!(
                        topic,
                        key,
                        value,
                        clamped = n,
                        min = bounds.min,
                        max = bounds.max,
                        "clamping an out-of-range stored topic setting"
                    );
                }
                Some(_) => {}
            }
        }
        c
    }

    /// `retention.ms` as a duration.
    pub fn retention_age(&self) -> Option<Duration> {
        self.retention_ms.map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_key_within_bounds() {
        let c = TopicConfig::parse(&configs(&[
            ("verify.signatures", "FALSE"),
            ("segment.bytes", "4096"),
            ("retention.bytes", "1073741824"),
            ("retention.ms", "604800000"),
            (
                "signers.allowed",
                &format!("{}, {}", "ab".repeat(32), "01".repeat(32)),
            ),
            ("signers.must_match_principal", "true"),
        ]))
        .unwrap();
        assert_eq!(
            c,
            TopicConfig {
                verify_signatures: Some(false),
                segment_bytes: Some(4096),
                retention_bytes: Some(1 << 30),
                retention_ms: Some(604_800_000),
                signers_allowed: Some(vec![[0x01; 32], [0xab; 32]]),
                signers_must_match_principal: true,
            }
        );
        for bad in [
            "",
            "abc",
            &"zz".repeat(32),
            &format!("{},", "ab".repeat(32)),
        ] {
            assert!(
                matches!(
                    TopicConfig::parse(&configs(&[("signers.allowed", bad)])),
                    Err(TopicConfigError::BadKeyList { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(c.retention_age(), Some(Duration::from_secs(604_800)));
        assert_eq!(
            TopicConfig::parse(&BTreeMap::new()).unwrap(),
            TopicConfig::default()
        );
    }

    #[test]
    fn bounds_are_inclusive() {
        for (key, value) in [
            (SEGMENT_BYTES, MIN_SEGMENT_BYTES),
            (SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            (RETENTION_BYTES, MIN_RETENTION_BYTES),
            (RETENTION_BYTES, MAX_RETENTION_BYTES),
            (RETENTION_MS, MIN_RETENTION_MS),
            (RETENTION_MS, MAX_RETENTION_MS),
        ] {
            let value = value.to_string();
            TopicConfig::parse(&configs(&[(key, &value)])).unwrap();
        }
    }

    #[test]
    fn rejects_segment_bytes_of_1e18() {
        let err =
            TopicConfig::parse(&configs(&[("segment.bytes", "1000000000000000000")])).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::OutOfRange {
                key: SEGMENT_BYTES,
                value: 1_000_000_000_000_000_000,
                unit: "bytes",
                min: MIN_SEGMENT_BYTES,
                max: MAX_SEGMENT_BYTES,
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("segment.bytes=1000000000000000000") && msg.contains("4096 to 1073741824"),
            "{msg}"
        );
        let err = TopicConfig::parse(&configs(&[("segment.bytes", "1e18")])).unwrap_err();
        assert!(matches!(
            err,
            TopicConfigError::NotANumber {
                key: SEGMENT_BYTES,
                ..
            }
        ));
    }

    #[test]
    fn rejects_each_setting_just_outside_its_range() {
        for (key, value) in [
            (SEGMENT_BYTES, MIN_SEGMENT_BYTES - 1),
            (SEGMENT_BYTES, MAX_SEGMENT_BYTES + 1),
            (RETENTION_BYTES, MIN_RETENTION_BYTES - 1),
            (RETENTION_BYTES, MAX_RETENTION_BYTES + 1),
            (RETENTION_MS, MIN_RETENTION_MS - 1),
            (RETENTION_MS, MAX_RETENTION_MS + 1),
        ] {
            let value = value.to_string();
            let err = TopicConfig::parse(&configs(&[(key, &value)])).unwrap_err();
            assert!(
                matches!(err, TopicConfigError::OutOfRange { key: k, .. } if k == key),
                "{key}={value}: {err}"
            );
        }
    }

    #[test]
    fn rejects_unknown_keys_and_malformed_values() {
        let err = TopicConfig::parse(&configs(&[("colour", "blue")])).unwrap_err();
        assert!(err.to_string().contains("unknown topic config `colour`"));
        let err = TopicConfig::parse(&configs(&[("verify.signatures", "yes")])).unwrap_err();
        assert!(matches!(err, TopicConfigError::NotABool { .. }));
        let err = TopicConfig::parse(&configs(&[("retention.ms", "-1")])).unwrap_err();
        assert!(matches!(err, TopicConfigError::NotANumber { .. }));
        assert!(
            std::error::Error::source(&err).is_some(),
            "the parse error is kept"
        );
    }

    #[test]
    fn alter_sets_and_deletes_keys_over_the_current_ones() {
        let current = configs(&[("retention.ms", "60000"), ("segment.bytes", "16384")]);
        let after = TopicConfig::alter(
            &current,
            &configs(&[("retention.bytes", "65536"), ("verify.signatures", "false")]),
            &["retention.ms".to_owned()],
        )
        .unwrap();
        assert_eq!(
            after,
            configs(&[
                ("retention.bytes", "65536"),
                ("segment.bytes", "16384"),
                ("verify.signatures", "false"),
            ])
        );
        // Deleting a known key that is not set is a no-op, not an error.
        let same = TopicConfig::alter(&current, &BTreeMap::new(), &["retention.bytes".into()]);
        assert_eq!(same.unwrap(), current);
    }

    #[test]
    fn alter_validates_values_as_create_does() {
        let current = configs(&[("retention.ms", "60000")]);
        for (key, value) in [
            (RETENTION_BYTES, "1"),
            (RETENTION_BYTES, "lots"),
            (RETENTION_MS, "999"),
            (RETENTION_MS, "-5"),
            (VERIFY_SIGNATURES, "maybe"),
            (SIGNERS_ALLOWED, "not-a-key"),
            (SIGNERS_MUST_MATCH_PRINCIPAL, "yes"),
            ("colour", "blue"),
        ] {
            let set = configs(&[(key, value)]);
            let at_create = TopicConfig::parse(&set).unwrap_err();
            let at_alter = TopicConfig::alter(&current, &set, &[]).unwrap_err();
            assert_eq!(at_alter, at_create, "{key}={value}");
        }
    }

    #[test]
    fn alter_refuses_keys_that_cannot_change_live() {
        let current = configs(&[("segment.bytes", "16384")]);
        for key in [SEGMENT_BYTES, "partitions", "replication.factor"] {
            let err = TopicConfig::alter(&current, &configs(&[(key, "8192")]), &[]).unwrap_err();
            assert!(
                matches!(&err, TopicConfigError::NotLive { key: k, .. } if k == key),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
            let err = TopicConfig::alter(&current, &BTreeMap::new(), &[key.into()]).unwrap_err();
            assert!(matches!(err, TopicConfigError::NotLive { .. }), "{err}");
        }
        let err = TopicConfig::alter(&current, &configs(&[("partitions", "8")]), &[]).unwrap_err();
        assert!(err.to_string().contains("fixed at create"), "{err}");
    }

    #[test]
    fn alter_refuses_unknown_deletes_and_a_key_both_set_and_deleted() {
        let current = configs(&[("colour", "blue")]);
        let err = TopicConfig::alter(&current, &BTreeMap::new(), &["flavour".into()]);
        assert!(matches!(err, Err(TopicConfigError::UnknownKey { .. })));
        // A stored key an older broker knew may still be removed.
        let after = TopicConfig::alter(&current, &BTreeMap::new(), &["colour".into()]).unwrap();
        assert!(after.is_empty());
        let err = TopicConfig::alter(
            &current,
            &configs(&[("retention.ms", "60000")]),
            &["retention.ms".into()],
        );
        assert!(matches!(err, Err(TopicConfigError::SetAndDeleted { .. })));
    }

    #[test]
    fn stored_values_out_of_range_are_clamped_and_malformed_ones_ignored() {
        let c = TopicConfig::from_stored(
            "t",
            &configs(&[
                ("segment.bytes", "1000000000000000000"),
                ("retention.bytes", "1"),
                ("retention.ms", "soon"),
                ("verify.signatures", "perhaps"),
                ("colour", "blue"),
                ("signers.allowed", "not keys"),
                ("signers.must_match_principal", "perhaps"),
            ]),
        );
        // The signer settings fail closed: no one admitted, the check kept on.
        assert_eq!(
            c,
            TopicConfig {
                verify_signatures: None,
                segment_bytes: Some(MAX_SEGMENT_BYTES),
                retention_bytes: Some(MIN_RETENTION_BYTES),
                retention_ms: None,
                signers_allowed: Some(Vec::new()),
                signers_must_match_principal: true,
            }
        );
    }
}
