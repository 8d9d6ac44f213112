//! What a broker tells Prometheus (D13): one registry per broker (a dev cluster runs
//! several in one process), served on the admin listener ([`crate::admin`]).
//!
//! Two kinds of figures:
//! - **events**, counted where they happen, each an atomic add on the hot path: records
//!   produced, duplicates, signature failures, fetched bytes, produce and fsync latencies,
//!   leadership gained, open connections;
//! - **state**, read from the broker when scraped ([`Broker::render_metrics`]): per-partition
//!   offsets, leadership and term, under-replicated and offline partitions, consumer-group
//!   lag. Nothing keeps them current between scrapes, so an idle broker pays nothing.
//!
//! The names are a contract (dashboards and alerts use them): see the list below.
//!
//! [`Broker::render_metrics`]: crate::node::Broker::render_metrics

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A partition's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: u32,
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

/// One broker's metrics.
pub struct Metrics {
    registry: Registry,
    /// Records appended by produce requests this broker led (duplicates not counted).
    pub produce_records: Counter,
    /// Records refused as duplicates of one already in the log.
    pub duplicates: Counter,
    /// Produce requests refused for a bad signature (or a signer the topic does not allow).
    pub signature_failures: Counter,
    /// Produce requests, from arrival to answer (committed, or refused).
    pub produce_latency: Histogram,
    /// Record bytes answered to fetches.
    pub fetch_bytes: Counter,
    /// One fsync of one partition log (the syncer's group commit).
    pub fsync_latency: Histogram,
    /// Times a replica on this broker became its partition's leader.
    pub leader_changes: Counter,
    /// Open client connections.
    pub connections: Gauge,
    /// Read at scrape time.
    pub(crate) state: StateGauges,
    /// One scrape at a time: a scrape clears and refills the state gauges.
    pub(crate) scrape: Mutex<()>,
}

/// The figures read from the broker's state when scraped.
pub(crate) struct StateGauges {
    pub high_watermark: Family<PartitionLabels, Gauge>,
    pub log_end_offset: Family<PartitionLabels, Gauge>,
    pub log_start_offset: Family<PartitionLabels, Gauge>,
    pub is_leader: Family<PartitionLabels, Gauge>,
    pub raft_term: Family<PartitionLabels, Gauge>,
    pub under_replicated: Gauge,
    pub offline: Gauge,
    pub group_lag: Family<GroupLabels, Gauge>,
    pub group_committed: Family<GroupLabels, Gauge>,
}

impl StateGauges {
    /// Forgets every labelled series (partitions and groups come and go).
    pub fn clear(&self) {
        self.high_watermark.clear();
        self.log_end_offset.clear();
        self.log_start_offset.clear();
        self.is_leader.clear();
        self.raft_term.clear();
        self.group_lag.clear();
        self.group_committed.clear();
    }
}

/// Latency buckets from 50 µs to about 3.3 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(50e-6, 2.0, 17)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            produce_records: Counter::default(),
            duplicates: Counter::default(),
            signature_failures: Counter::default(),
            produce_latency: Histogram::new(latency_buckets()),
            fetch_bytes: Counter::default(),
            fsync_latency: Histogram::new(latency_buckets()),
            leader_changes: Counter::default(),
            connections: Gauge::default(),
            state: StateGauges {
                high_watermark: Family::default(),
                log_end_offset: Family::default(),
                log_start_offset: Family::default(),
                is_leader: Family::default(),
                raft_term: Family::default(),
                under_replicated: Gauge::default(),
                offline: Gauge::default(),
                group_lag: Family::default(),
                group_committed: Family::default(),
            },
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        // Counters get `_total` and units their suffix from the encoder.
        r.register(
            "steme_produce_records",
            "Records appended by produce requests this broker led (duplicates excluded)",
            m.produce_records.clone(),
        );
        r.register(
            "steme_duplicates",
            "Produced records answered as duplicates of one already stored",
            m.duplicates.clone(),
        );
        r.register(
            "steme_signature_failures",
            "Produce requests refused for a bad signature or a signer the topic does not allow",
            m.signature_failures.clone(),
        );
        r.register_with_unit(
            "steme_produce_latency",
            "Produce requests from arrival to answer",
            Unit::Seconds,
            m.produce_latency.clone(),
        );
        r.register(
            "steme_fetch_bytes",
            "Record bytes answered to fetches",
            m.fetch_bytes.clone(),
        );
        r.register_with_unit(
            "steme_fsync_latency",
            "One fsync of one partition log",
            Unit::Seconds,
            m.fsync_latency.clone(),
        );
        r.register(
            "steme_leader_changes",
            "Times a replica on this broker became its partition's leader",
            m.leader_changes.clone(),
        );
        r.register(
            "steme_connections",
            "Open client connections",
            m.connections.clone(),
        );
        let s = &m.state;
        r.register(
            "steme_partition_high_watermark",
            "End of what consumers may read from this replica",
            s.high_watermark.clone(),
        );
        r.register(
            "steme_partition_log_end_offset",
            "End of this replica's log, committed or not",
            s.log_end_offset.clone(),
        );
        r.register(
            "steme_partition_log_start_offset",
            "First offset this replica retains",
            s.log_start_offset.clone(),
        );
        r.register(
            "steme_partition_is_leader",
            "1 if this broker's replica leads the partition",
            s.is_leader.clone(),
        );
        r.register(
            "steme_raft_term",
            "The Raft term (leader epoch) of the partition's group on this broker",
            s.raft_term.clone(),
        );
        r.register(
            "steme_under_replicated_partitions",
            "Partitions this broker leads with a replica out of sync",
            s.under_replicated.clone(),
        );
        r.register(
            "steme_offline_partitions",
            "Partitions without a live leader (reported by the metadata leader; 0 elsewhere)",
            s.offline.clone(),
        );
        r.register(
            "steme_group_lag",
            "Records between a consumer group's committed offset and the high watermark \
             (from the group's coordinator, for partitions hosted on its broker)",
            s.group_lag.clone(),
        );
        r.register(
            "steme_group_committed_offset",
            "A consumer group's committed offset, for every partition it committed (from the \
             group's coordinator); with steme_partition_high_watermark it gives the lag of \
             partitions hosted elsewhere",
            s.group_committed.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The registry in Prometheus text format (0.0.4).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Records one produce request's latency.
    pub fn observe_produce(&self, took: Duration) {
        self.produce_latency.observe(took.as_secs_f64());
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics with one series in every labelled family (those without one print
    /// nothing): partition `facts`/0 with a high watermark of 7 and 1 elsewhere, group `g`
    /// with a lag of 2 and a committed offset of 5.
    fn populated() -> Metrics {
        let m = Metrics::new();
        let facts = PartitionLabels {
            topic: "facts".into(),
            partition: 0,
        };
        let s = &m.state;
        s.high_watermark.get_or_create(&facts).set(7);
        for family in [
            &s.log_end_offset,
            &s.log_start_offset,
            &s.is_leader,
            &s.raft_term,
        ] {
            family.get_or_create(&facts).set(1);
        }
        let g = GroupLabels {
            group: "g".into(),
            topic: "facts".into(),
            partition: 0,
        };
        s.group_lag.get_or_create(&g).set(2);
        s.group_committed.get_or_create(&g).set(5);
        m
    }

    #[test]
    fn the_grafana_dashboard_asks_only_for_exported_series() {
        let exported = populated().encode();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../grafana/steme-dashboard.json")).unwrap();
        let mut asked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for (at, _) in expr.match_indices("steme_") {
                    let name: String = expr[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    assert!(
                        exported.lines().any(|l| l.starts_with(&name)),
                        "panel {:?} asks for {name}, which no broker exports",
                        panel["title"]
                    );
                    asked += 1;
                }
            }
        }
        assert!(asked >= 13, "the dashboard asks for {asked} series");
    }

    #[test]
    fn every_contract_name_is_exported() {
        let m = populated();
        m.produce_records.inc();
        m.fsync_latency.observe(0.001);
        let text = m.encode();
        for name in [
            "steme_partition_high_watermark{topic=\"facts\",partition=\"0\"} 7",
            "steme_partition_log_end_offset",
            "steme_partition_log_start_offset",
            "steme_partition_is_leader",
            "steme_under_replicated_partitions 0",
            "steme_offline_partitions 0",
            "steme_raft_term",
            "steme_leader_changes_total 0",
            "steme_produce_records_total 1",
            "steme_produce_latency_seconds_bucket",
            "steme_fetch_bytes_total",
            "steme_fsync_latency_seconds_count 1",
            "steme_signature_failures_total",
            "steme_duplicates_total",
            "steme_connections 0",
            "steme_group_lag{group=\"g\",topic=\"facts\",partition=\"0\"} 2",
            "steme_group_committed_offset{group=\"g\",topic=\"facts\",partition=\"0\"} 5",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
