//! The broker's Hybrid Logical Clock (D6).
//!
//! One `uhlc::HLC` per broker, identified by the broker id. The leader of a partition stamps a
//! batch with `base = max(now, last_in_log + 1)`; record *i* gets `base + i`, and the clock is
//! advanced past the last record so that the next stamp on any partition of this broker is
//! later. A producer's causality token (the highest HLC it has seen) is merged first, so an
//! assertion produced after seeing HLC *h* is stamped after *h* even on another partition.

use std::time::Duration;

use uhlc::{HLC, HLCBuilder, ID, NTP64, Timestamp};

/// Why a causality token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("causality token {token} is beyond the allowed clock skew (broker clock {broker_now})")]
pub struct ClockSkew {
    pub token: u64,
    pub broker_now: u64,
}

/// The broker clock.
pub struct Clock {
    hlc: HLC,
    id: ID,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").field("id", &self.id).finish()
    }
}

impl Clock {
    /// `max_skew` bounds how far ahead of this broker's physical clock a causality token may
    /// be before it is refused.
    pub fn new(broker_id: u64, max_skew: Duration) -> Clock {
        let id = ID::try_from(broker_id.max(1)).expect("non-zero id");
        let hlc = HLCBuilder::new()
            .with_id(id)
            .with_max_delta(max_skew)
            .build();
        Clock { hlc, id }
    }

    /// The current HLC reading, without stamping anything.
    pub fn now(&self) -> u64 {
        self.hlc.new_timestamp().get_time().as_u64()
    }

    /// Merges a producer's causality token.
    pub fn observe(&self, token: u64) -> Result<(), ClockSkew> {
        self.hlc
            .update_with_timestamp(&Timestamp::new(NTP64(token), self.id))
            .map_err(|_| ClockSkew {
                token,
                broker_now: self.now(),
            })
    }

    /// Stamps a batch of `count` records that must come after `last_in_log`: returns the base
    /// HLC and advances the clock past the last record.
    pub fn stamp(&self, last_in_log: u64, count: u32) -> u64 {
        let base = self
            .hlc
            .new_timestamp()
            .get_time()
            .as_u64()
            .max(last_in_log.saturating_add(1));
        let last = base + u64::from(count.saturating_sub(1));
        // Our own stamps are never beyond the skew bound by more than a batch's worth of
        // nanoseconds; if the update were refused the next stamp is still ordered by
        // `last_in_log`, which the caller tracks.
        let _ = self
            .hlc
            .update_with_timestamp(&Timestamp::new(NTP64(last), self.id));
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase_across_batches() {
        let c = Clock::new(1, Duration::from_millis(500));
        let mut last = 0;
        for n in [1u32, 5, 300, 1, 64] {
            let base = c.stamp(last, n);
            assert!(base > last);
            last = base + u64::from(n) - 1;
        }
    }

    #[test]
    fn stamp_follows_last_in_log_even_if_clock_is_behind() {
        let c = Clock::new(1, Duration::from_millis(500));
        let far = c.now() + (1 << 40);
        assert_eq!(c.stamp(far, 3), far + 1);
    }

    #[test]
    fn causality_token_orders_later_stamps() {
        let c = Clock::new(2, Duration::from_millis(500));
        let token = c.now() + (1u64 << 30); // ~0.25 s ahead: within skew
        c.observe(token).unwrap();
        assert!(c.stamp(0, 1) > token);
    }

    #[test]
    fn refuses_token_beyond_skew() {
        let c = Clock::new(3, Duration::from_millis(500));
        let token = c.now() + (10u64 << 32); // 10 s ahead
        let err = c.observe(token).unwrap_err();
        assert_eq!(err.token, token);
        assert!(err.broker_now < token);
    }
}
