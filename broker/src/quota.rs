//! Quotas (D11): record bytes per second produced and fetched, and connections held, per
//! principal on this broker (as Kafka's client quotas are per broker).
//!
//! Byte rates are kept with a virtual clock per principal and direction (GCRA): each
//! request moves the principal's clock on by `bytes / rate`; a clock more than one second
//! (the burst) ahead of now is a debt, answered as the response's `throttle_ms`. The broker
//! also holds back the next Produce or Fetch of every connection of an indebted principal
//! until the debt is paid, so a client that ignores the hint is slowed just the same; it is
//! never disconnected for it, and its other requests (heartbeats, commits, metadata) are
//! not held. Over time a principal gets its quota, within one request's worth of bytes.
//!
//! Connections are counted from their first request past the handshake and
//! authentication, under the principal they then have (a connection has one). One over
//! the quota is refused with `Throttled` and closed.
//!
//! A `key:` principal costs a client nothing to make. Quotas per principal bound clients
//! that keep their identity; against one that mints keys, the per-IP connection limit and
//! authorization (no ACL for an unknown key) are the bounds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steme_protocol::ApiError;
use steme_protocol::acl::ANONYMOUS;
use tokio::time::Instant;

use crate::config::{Config, QuotaLimits};

/// A clock this far ahead of now is allowed (the burst); beyond it is a debt.
const BURST: Duration = Duration::from_secs(1);

/// Principals tracked before idle ones are forgotten.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Default)]
struct Usage {
    /// Virtual clocks: when the bytes charged so far would have been sent at the quota.
    produce_tat: Option<Instant>,
    fetch_tat: Option<Instant>,
    connections: u32,
}

/// Which rate a charge counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Produce,
    Fetch,
}

/// The quotas of one broker, shared by its connections.
#[derive(Debug)]
pub struct Quotas {
    defaults: QuotaLimits,
    overrides: HashMap<String, QuotaLimits>,
    /// Whether any limit is set at all; if not, nothing is tracked.
    enabled: bool,
    usage: Mutex<Table>,
}

/// Usage by principal; idle principals are forgotten when the table has doubled since the
/// last time, so that the cost of forgetting stays constant per principal added.
#[derive(Debug)]
struct Table {
    by_principal: HashMap<Arc<str>, Usage>,
    prune_at: usize,
}

impl Quotas {
    pub fn new(config: &Config) -> Quotas {
        let none = QuotaLimits::default();
        let enabled = config.quota_defaults != none || config.quotas.values().any(|q| *q != none);
        Quotas {
            defaults: config.quota_defaults,
            overrides: config
                .quotas
                .iter()
                .map(|(p, q)| (p.clone(), q.or(config.quota_defaults)))
                .collect(),
            enabled,
            usage: Mutex::new(Table {
                by_principal: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }

    fn limits(&self, principal: &str) -> QuotaLimits {
        self.overrides
            .get(principal)
            .copied()
            .unwrap_or(self.defaults)
    }

    /// Charges `bytes` to `principal`'s rate; answers the throttle hint (zero if within
    /// quota).
    pub fn charge(&self, principal: Option<&Arc<str>>, dir: Direction, bytes: usize) -> Duration {
        if !self.enabled || bytes == 0 {
            return Duration::ZERO;
        }
        let key = key_of(principal);
        let limits = self.limits(&key);
        let rate = match dir {
            Direction::Produce => limits.produce_bytes_per_sec,
            Direction::Fetch => limits.fetch_bytes_per_sec,
        };
        let Some(rate) = rate else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let mut usage = self.usage.lock().expect("quota lock");
        let u = entry(&mut usage, key);
        let tat = match dir {
            Direction::Produce => &mut u.produce_tat,
            Direction::Fetch => &mut u.fetch_tat,
        };
        let next = tat.map_or(now, |t| t.max(now)) + cost;
        *tat = Some(next);
        next.saturating_duration_since(now + BURST)
    }

    /// How long `principal`'s connections hold back their next request: its deepest debt.
    pub fn debt(&self, principal: Option<&Arc<str>>) -> Duration {
        if !self.enabled {
            return Duration::ZERO;
        }
        let usage = self.usage.lock().expect("quota lock");
        let key: &str = principal.map_or(ANONYMOUS, |p| p);
        let Some(u) = usage.by_principal.get(key) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        [u.produce_tat, u.fetch_tat]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_duration_since(now + BURST))
            .max()
            .unwrap_or_default()
    }

    /// Counts a connection of `principal`, or refuses it over the connection quota. The
    /// slot is given back when dropped.
    pub fn connect(
        self: &Arc<Self>,
        principal: Option<&Arc<str>>,
    ) -> Result<ConnectionSlot, ApiError> {
        let key = key_of(principal);
        if self.enabled
            && let Some(max) = self.limits(&key).connections
        {
            let mut usage = self.usage.lock().expect("quota lock");
            let u = entry(&mut usage, key.clone());
            if u.connections >= max {
                return Err(ApiError::Throttled {
                    retry_after_ms: 1_000,
                    message: format!(
                        "connection quota: {key} already holds {max} connections to this \
                         broker, its most; closed"
                    ),
                });
            }
            u.connections += 1;
            return Ok(ConnectionSlot {
                quotas: Some(self.clone()),
                principal: key,
            });
        }
        Ok(ConnectionSlot {
            quotas: None,
            principal: key,
        })
    }
}

fn key_of(principal: Option<&Arc<str>>) -> Arc<str> {
    principal.cloned().unwrap_or_else(|| Arc::from(ANONYMOUS))
}

/// The usage of `key`, forgetting idle principals first when many are tracked (key
/// principals cost a client nothing to make).
fn entry(usage: &mut Table, key: Arc<str>) -> &mut Usage {
    let map = &mut usage.by_principal;
    if map.len() >= usage.prune_at && !map.contains_key(&key) {
        let now = Instant::now();
        map.retain(|_, u| {
            u.connections > 0
                || [u.produce_tat, u.fetch_tat]
                    .into_iter()
                    .flatten()
                    .any(|t| t > now)
        });
        usage.prune_at = (map.len() * 2).max(PRUNE_AT);
    }
    map.entry(key).or_default()
}

/// A connection counted against its principal's connection quota, until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    quotas: Option<Arc<Quotas>>,
    principal: Arc<str>,
}

impl ConnectionSlot {
    /// Whether this slot counts `principal` (or, for `None`, the anonymous one).
    pub fn is_for(&self, principal: Option<&Arc<str>>) -> bool {
        *self.principal == *principal.map_or(ANONYMOUS, |p| &**p)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(q) = &self.quotas
            && let Some(u) = q
                .usage
                .lock()
                .expect("quota lock")
                .by_principal
                .get_mut(&self.principal)
        {
            u.connections = u.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(produce: u64, connections: u32) -> Arc<Quotas> {
        let config = Config {
            quota_defaults: QuotaLimits {
                produce_bytes_per_sec: Some(produce),
                fetch_bytes_per_sec: None,
                connections: Some(connections),
            },
            ..Config::default()
        };
        Arc::new(Quotas::new(&config))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_free_and_a_debt_is_hinted() {
        let q = quotas(1_000_000, 10);
        let p: Arc<str> = Arc::from("cert:a");
        assert_eq!(
            q.charge(Some(&p), Direction::Produce, 1_000_000),
            Duration::ZERO
        );
        let hint = q.charge(Some(&p), Direction::Produce, 500_000);
        assert_eq!(hint, Duration::from_millis(500));
        assert_eq!(q.debt(Some(&p)), Duration::from_millis(500));
        assert_eq!(q.debt(None), Duration::ZERO, "principals are apart");
        assert_eq!(
            q.charge(Some(&p), Direction::Fetch, 1 << 30),
            Duration::ZERO
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(q.debt(Some(&p)), Duration::ZERO);
    }

    #[test]
    fn connections_over_the_quota_are_refused_and_slots_come_back() {
        let q = quotas(1 << 20, 2);
        let a = q.connect(None).unwrap();
        let _b = q.connect(None).unwrap();
        let err = q.connect(None).unwrap_err();
        assert!(
            err.to_string().contains("anonymous already holds 2"),
            "{err}"
        );
        let other: Arc<str> = Arc::from("cert:b");
        assert!(q.connect(Some(&other)).is_ok());
        drop(a);
        assert!(q.connect(None).is_ok());
    }
}
