//! Hybrid Logical Clock readings as times a person can type and read: the one place the
//! CLI and the HTTP gateway convert between a record's 64-bit HLC and RFC 3339 text.
//!
//! # What an HLC holds
//!
//! Brokers stamp records with `uhlc` readings (D6), NTP64 values relative to the Unix epoch:
//!
//! ```text
//! bit 63                32 31                         4 3        0
//!     +--------------------+----------------------------+----------+
//!     | seconds            | fraction of a second       | logical  |
//!     | since 1970-01-01   | (units of 2^-32 s)         | counter  |
//!     +--------------------+----------------------------+----------+
//! ```
//!
//! `uhlc` keeps its logical counter in the low [`LOGICAL_BITS`] bits of the fraction
//! (`uhlc::CSIZE`), and record *i* of a batch is stamped `base_hlc + i`, so the counter of a
//! record in a long batch carries into the fraction: the physical time is what remains with
//! the counter bits masked off.
//!
//! # As text
//!
//! - Out: [`Stamp`] is `hlc` (the raw u64, unchanged), `time` (the physical part as RFC 3339
//!   in UTC with 9 fractional digits, rounded down to the nanosecond, e.g.
//!   `"2026-11-29T10:00:00.123456789Z"`) and `logical` (the counter, 0 when none).
//! - In ([`parse_time`]): RFC 3339 with any offset and any number of fractional digits, a
//!   time relative to now (`-90s`, `-15m`, `-1h`, `-2d`), or a raw HLC (decimal u64). A time
//!   maps to the smallest HLC whose physical part is at or after it, so a record's printed
//!   `time` read back finds that record (or one stamped in the same instant before it).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Bits of an HLC that hold the logical counter (`uhlc::CSIZE`).
pub const LOGICAL_BITS: u32 = 4;
/// The logical counter of an HLC.
pub const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// NTP64 fraction units per second.
const FRACTION_PER_SECOND: u128 = 1 << 32;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// An HLC as printed: the raw value, its physical time and its logical counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The raw HLC (NTP64), as the broker stamped it.
    pub hlc: u64,
    /// The physical part as RFC 3339, UTC, 9 fractional digits.
    pub time: String,
    /// The logical counter (the low [`LOGICAL_BITS`] bits).
    pub logical: u64,
}

impl Stamp {
    /// The printed form of `hlc`.
    pub fn of(hlc: u64) -> Stamp {
        Stamp {
            hlc,
            time: format_rfc3339(hlc),
            logical: hlc & LOGICAL_MASK,
        }
    }
}

/// The physical time of `hlc` (its counter bits masked off), rounded down to the nanosecond.
pub fn to_timestamp(hlc: u64) -> Timestamp {
    let physical = hlc & !LOGICAL_MASK;
    let seconds = i64::from((physical >> 32) as u32);
    let fraction = u128::from(physical & 0xffff_ffff);
    let nanos = (fraction * NANOS_PER_SECOND / FRACTION_PER_SECOND) as i32;
    // Seconds below 2^32 and nanos below 10^9 are always within jiff's range (years to 9999).
    Timestamp::new(seconds, nanos).expect("an NTP64 time is within jiff's range")
}

/// The physical time of `hlc` as RFC 3339 in UTC with 9 fractional digits.
pub fn format_rfc3339(hlc: u64) -> String {
    format!("{:.9}", to_timestamp(hlc))
}

/// The smallest HLC whose physical part is at or after `time`: every record stamped at or
/// after `time` has an HLC at least this, every record stamped before it has a smaller one.
pub fn hlc_at_or_after(time: Timestamp) -> Result<u64, String> {
    let nanos = time.as_nanosecond();
    if nanos < 0 {
        return Err(format!(
            "{time} is before 1970-01-01, which an HLC cannot hold"
        ));
    }
    let nanos = nanos as u128;
    let (seconds, subsec) = (nanos / NANOS_PER_SECOND, nanos % NANOS_PER_SECOND);
    // The first fraction unit at or after `subsec`, then the first physical step (counter
    // bits zero) at or after that; the carry may reach the next second.
    let fraction = (subsec * FRACTION_PER_SECOND).div_ceil(NANOS_PER_SECOND);
    let fraction = fraction.next_multiple_of(u128::from(LOGICAL_MASK) + 1);
    let hlc = (seconds << 32) + fraction;
    u64::try_from(hlc).map_err(|_| format!("{time} is after 2106-02-07, which an HLC cannot hold"))
}

/// Reads a time as `--from time:…` and `--to time:…` take it: RFC 3339 (any offset), a time
/// relative to `now` (`-90s`, `-15m`, `-1h`, `-2d`), or a raw HLC (decimal u64).
pub fn parse_time(text: &str, now: Timestamp) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("bad HLC {text:?}: {e}"));
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = parse_relative(ago).ok_or_else(|| {
            format!("bad relative time {text:?}: expected -N followed by s, m, h or d (e.g. -1h)")
        })?;
        let time = now
            .checked_sub(ago)
            .map_err(|e| format!("{text:?} reaches before any time an HLC holds: {e}"))?;
        return hlc_at_or_after(time);
    }
    let time: Timestamp = text.parse().map_err(|e| {
        format!(
            "bad time {text:?}: expected RFC 3339 (2026-11-29T10:00:00Z, any offset), \
             a relative time (-1h) or a raw HLC: {e}"
        )
    })?;
    hlc_at_or_after(time)
}

/// `N` followed by `s`, `m`, `h` or `d`.
fn parse_relative(text: &str) -> Option<SignedDuration> {
    let unit = text.chars().last()?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: i64 = digits.parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    Some(SignedDuration::from_secs(count.checked_mul(seconds)?))
}

/// The current time.
pub fn now() -> Timestamp {
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn known_vectors_format_as_utc_with_nanoseconds() {
        // 2026-11-29T10:00:00Z is 1795946400 s after the epoch.
        let ten = 1_795_946_400u64 << 32;
        assert_eq!(format_rfc3339(ten), "2026-11-29T10:00:00.000000000Z");
        assert_eq!(Stamp::of(ten + 3).logical, 3);
        assert_eq!(Stamp::of(ten + 3).time, "2026-11-29T10:00:00.000000000Z");
        // Half a second is 2^31 fraction units.
        assert_eq!(
            format_rfc3339(ten + (1 << 31)),
            "2026-11-29T10:00:00.500000000Z"
        );
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_rfc3339(u64::MAX), "2106-02-07T06:28:15.999999996Z");
        // A counter that carried into the fraction is physical time, not logical.
        assert_eq!(Stamp::of(ten + 16).logical, 0);
        assert_eq!(Stamp::of(ten + 16).time, "2026-11-29T10:00:00.000000003Z");
    }

    #[test]
    fn rfc3339_with_any_offset_and_fraction_parses() {
        let now = ts("2030-01-01T00:00:00Z");
        let ten = 1_795_946_400u64 << 32;
        assert_eq!(parse_time("2026-11-29T10:00:00Z", now), Ok(ten));
        assert_eq!(parse_time("2026-11-29T11:00:00+01:00", now), Ok(ten));
        assert_eq!(parse_time("2026-11-29T05:30:00-04:30", now), Ok(ten));
        assert_eq!(
            parse_time("2026-11-29T10:00:00.5Z", now),
            Ok(ten + (1 << 31))
        );
        // One nanosecond past a second: the first physical step after it.
        assert_eq!(
            parse_time("2026-11-29T10:00:00.000000001Z", now),
            Ok(ten + 16)
        );
        assert!(
            parse_time("2026-11-29T10:00:00", now).is_err(),
            "an offset is required"
        );
        assert!(parse_time("1969-12-31T23:59:59Z", now).is_err());
        assert!(parse_time("2200-01-01T00:00:00Z", now).is_err());
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("", now).is_err());
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now = ts("2026-11-29T10:00:00Z");
        let at = |t: &str| parse_time(t, now).map(format_rfc3339);
        assert_eq!(at("-90s").unwrap(), "2026-11-29T09:58:30.000000000Z");
        assert_eq!(at("-15m").unwrap(), "2026-11-29T09:45:00.000000000Z");
        assert_eq!(at("-1h").unwrap(), "2026-11-29T09:00:00.000000000Z");
        assert_eq!(at("-2d").unwrap(), "2026-11-27T10:00:00.000000000Z");
        for bad in ["-1", "-h", "-1w", "-1.5h", "--1h", "-99999999999999999d"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn raw_hlcs_are_kept_as_they_are() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(
            parse_time("7713603779369791536", now),
            Ok(7713603779369791536)
        );
        assert_eq!(parse_time("0", now), Ok(0));
        assert!(parse_time("18446744073709551616", now).is_err());
    }

    proptest! {
        #[test]
        fn printed_time_reads_back_as_the_physical_part(hlc in any::<u64>()) {
            let stamp = Stamp::of(hlc);
            let back = parse_time(&stamp.time, Timestamp::UNIX_EPOCH).unwrap();
            prop_assert_eq!(back, hlc & !LOGICAL_MASK);
            prop_assert_eq!(back + stamp.logical, hlc);
        }

        #[test]
        fn a_time_maps_to_the_first_hlc_at_or_after_it(nanos in 0i128..(1i128 << 32) * 1_000_000_000) {
            let time = Timestamp::from_nanosecond(nanos).unwrap();
            let Ok(hlc) = hlc_at_or_after(time) else {
                // Only the last few nanoseconds before 2^32 s have no physical step left.
                prop_assert!(nanos > ((1i128 << 32) * 1_000_000_000) - 4);
                return Ok(());
            };
            prop_assert_eq!(hlc & LOGICAL_MASK, 0);
            prop_assert!(to_timestamp(hlc) >= time);
            prop_assert!(hlc == 0 || to_timestamp(hlc - 16) < time);
        }
    }
}
