//! What the admin listener reports of a broker: its metrics, read from the broker's state
//! when scraped, and whether it is ready to serve.

use std::collections::HashMap;

use openraft::type_config::async_runtime::WatchReceiver;
use serde::Serialize;

use super::Broker;
use crate::metrics::{GroupLabels, PartitionLabels};

/// Why a broker is not ready, one reason per problem (empty: ready).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub problems: Vec<String>,
}

impl Broker {
    /// The metrics in Prometheus text format, the state figures read now.
    pub async fn render_metrics(&self) -> String {
        let me = self.cfg.node_id;
        // Lag of every group this broker coordinates (loading a coordinator may read its
        // partition, so before the scrape lock).
        let mut committed = Vec::new();
        if let Ok(coordinators) = self.led_coordinators().await {
            for c in coordinators {
                committed.extend(c.committed_offsets().await);
            }
        }
        let offline = if self.is_metadata_leader() {
            self.partitions_without_live_leader()
        } else {
            0
        };
        let m = &self.metrics;
        let _one_scrape = m.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let s = &m.state;
        s.clear();
        let mut under_replicated = 0;
        let mut high_watermarks = HashMap::new();
        for p in self.hosted() {
            let labels = PartitionLabels {
                topic: p.topic.clone(),
                partition: p.partition,
            };
            let hwm = p.high_watermark();
            high_watermarks.insert((p.topic.clone(), p.partition), hwm);
            let (leader, term) = p.leader();
            s.high_watermark.get_or_create(&labels).set(gauge(hwm));
            s.log_end_offset
                .get_or_create(&labels)
                .set(gauge(p.log_end_offset()));
            s.log_start_offset
                .get_or_create(&labels)
                .set(gauge(p.log_start_offset()));
            s.is_leader
                .get_or_create(&labels)
                .set(i64::from(leader == Some(me)));
            s.raft_term.get_or_create(&labels).set(gauge(term));
            if p.in_sync_replicas()
                .is_some_and(|isr| isr.len() < p.replicas().len())
            {
                under_replicated += 1;
            }
        }
        s.under_replicated.set(under_replicated);
        s.offline.set(offline);
        for (group, (topic, partition), offset) in committed {
            let labels = GroupLabels {
                group,
                topic,
                partition,
            };
            s.group_committed.get_or_create(&labels).set(gauge(offset));
            if let Some(&hwm) = high_watermarks.get(&(labels.topic.clone(), labels.partition)) {
                s.group_lag
                    .get_or_create(&labels)
                    .set(gauge(hwm.saturating_sub(offset)));
            }
        }
        m.encode()
    }

    /// Partitions of the cluster without a live leader, as this broker sees them: none
    /// known, or one whose broker its failure detector does not hear.
    fn partitions_without_live_leader(&self) -> i64 {
        let state = self.metadata();
        let me = self.cfg.node_id;
        let mut offline = 0;
        for t in state.topics.values() {
            for p in 0..t.partitions.len() as u32 {
                let live = self
                    .leader_of(&state, &t.name, p)
                    .node
                    .is_some_and(|l| l == me || self.transport.peer_alive(l));
                if !live {
                    offline += 1;
                }
            }
        }
        offline
    }

    /// Ready when the metadata group has a leader, this broker is registered in it, and
    /// every partition the metadata places here is open.
    pub fn readiness(&self) -> Readiness {
        let mut problems = Vec::new();
        if !self.metadata_quorum() {
            problems.push(
                "the metadata group has no live leader with a quorum (not yet, or lost)".to_owned(),
            );
        }
        let state = self.metadata();
        let me = self.cfg.node_id;
        if state.brokers.get(&me) != Some(&self.advertised.client) {
            problems.push(format!("broker {me} is not yet registered in the metadata"));
        }
        let offline: HashMap<(String, u32), String> = self.offline().into_iter().collect();
        for t in state.topics.values() {
            for (p, placement) in t.partitions.iter().enumerate() {
                let p = p as u32;
                if !placement.hosted_on(me) || self.partition(&t.name, p).is_ok() {
                    continue;
                }
                problems.push(match offline.get(&(t.name.clone(), p)) {
                    Some(why) => format!("partition {}/{p} is offline here: {why}", t.name),
                    None => format!("partition {}/{p} is not open yet", t.name),
                });
            }
        }
        Readiness {
            ready: problems.is_empty(),
            problems,
        }
    }
}

impl Broker {
    /// Whether the metadata group has a leader that holds a quorum: this broker, acknowledged
    /// by a quorum lately, or another broker its failure detector hears.
    fn metadata_quorum(&self) -> bool {
        let m = self.meta.metrics();
        let m = m.borrow_watched();
        let me = self.cfg.node_id;
        match m.current_leader {
            None => false,
            Some(l) if l == me => {
                let alone = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .all(|v| v == me);
                alone
                    || m.last_quorum_acked
                        .as_ref()
                        .is_some_and(|t| openraft::Instant::elapsed(&**t) < QUORUM_ACK_WITHIN)
            }
            Some(l) => self.transport.peer_alive(l),
        }
    }
}

/// How recently a quorum must have acknowledged the metadata leader for it to count as
/// holding one (a few election timeouts).
const QUORUM_ACK_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// An offset or term as a gauge value.
fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
