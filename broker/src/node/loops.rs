//! The node's background tasks. Each holds the broker weakly and ends when it is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Broker;
use crate::error::BrokerError;
use crate::metadata::Command;
use crate::partition::Partition;

/// How often failed partitions are looked for and reopened.
const HEALTH_TICK: Duration = Duration::from_millis(250);
/// How often members that stopped heartbeating are looked for.
const EXPIRY_TICK: Duration = Duration::from_millis(250);
/// How often damaged ranges are looked for and repaired from replicas.
const REPAIR_TICK: Duration = Duration::from_secs(2);

/// Registers this broker in the metadata, retrying until a quorum is up.
pub(super) async fn register(weak: Weak<Broker>) {
    loop {
        let Some(broker) = weak.upgrade() else { return };
        match broker.register().await {
            Ok(()) => return,
            Err(e) => tracing::info!(error = %e, "not registered yet; retrying"),
        }
        drop(broker);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Opens and closes partitions as the metadata changes, and reopens those whose storage
/// failed (e.g. once disk space returns). Placement is reconciled when the metadata
/// changes, or while a partition waits to be reopened; otherwise a tick only looks for
/// failed storage (a flag per partition).
pub(super) async fn reconcile(weak: Weak<Broker>) {
    let Some(mut rx) = weak.upgrade().map(|b| b.meta_state.clone()) else {
        return;
    };
    loop {
        let changed = tokio::time::timeout(HEALTH_TICK, rx.changed()).await;
        if matches!(changed, Ok(Err(_))) {
            return;
        }
        let Some(broker) = weak.upgrade() else { return };
        if broker.is_stopping() {
            return;
        }
        broker.check_health().await;
        if changed.is_err() && !broker.reopening() {
            continue;
        }
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "could not open a partition; retrying");
        }
    }
}

/// Records in the metadata each partition leadership this broker wins, so that every
/// broker can name every partition's leader (Kafka's leader and leader epoch).
pub(super) async fn report_leaders(
    weak: Weak<Broker>,
    mut rx: mpsc::UnboundedReceiver<(u64, u64)>,
) {
    while let Some((group, term)) = rx.recv().await {
        let Some(broker) = weak.upgrade() else { return };
        let cmd = Command::PartitionLeader {
            group,
            node: broker.cfg.node_id,
            term,
        };
        tokio::spawn(async move {
            for _ in 0..10 {
                match broker.propose_metadata(cmd.clone()).await {
                    Ok(()) => return,
                    Err(BrokerError::MetadataTimeout { .. }) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        // Stale (a newer leader reported) or the topic is gone.
                        tracing::debug!(group, term, error = %e, "leader report refused");
                        return;
                    }
                }
            }
        });
    }
}

/// Moves leadership back to each partition's preferred replica (the first) once it is
/// caught up, so that leaders stay spread after a failover.
pub(super) async fn rebalance(weak: Weak<Broker>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(broker) = weak.upgrade() else { return };
        let led: Vec<Arc<Partition>> = broker
            .hosted()
            .into_iter()
            .filter(|p| p.leader().0 == Some(broker.cfg.node_id))
            .collect();
        for p in led {
            p.hand_back_leadership().await;
        }
    }
}

/// Ends the sessions of members that stopped heartbeating, on every coordinator here.
pub(super) async fn expire_sessions(weak: Weak<Broker>) {
    loop {
        tokio::time::sleep(EXPIRY_TICK).await;
        let Some(broker) = weak.upgrade() else { return };
        for c in broker.current_coordinators().await {
            c.expire(&|t| broker.topic_view(t)).await;
        }
    }
}

/// Repairs the damaged ranges of every hosted partition from its other replicas (see
/// `partition::integrity`); ranges with no healthy copy are retried every round.
pub(super) async fn repair(weak: Weak<Broker>) {
    loop {
        tokio::time::sleep(REPAIR_TICK).await;
        let Some(broker) = weak.upgrade() else { return };
        let damaged: Vec<Arc<Partition>> = broker
            .hosted()
            .into_iter()
            .filter(|p| !p.damaged().is_empty())
            .collect();
        for p in damaged {
            p.repair().await;
        }
    }
}

/// Re-verifies every hosted replica's log in small steps, at `rate` bytes per second in
/// all (see `Partition::scrub_step`). Damage it finds is recorded, so the repair loop
/// fixes it from another replica before the other copies are lost too.
pub(super) async fn scrub(weak: Weak<Broker>, rate: u64, interval: Duration) {
    const STEP: u64 = 1 << 20;
    loop {
        let Some(broker) = weak.upgrade() else { return };
        let hosted = broker.hosted();
        drop(broker);
        let mut round = 0u64;
        for p in hosted {
            let bytes = tokio::task::spawn_blocking(move || p.scrub_step(STEP, interval))
                .await
                .unwrap_or(0);
            round += bytes;
            if bytes > 0 {
                tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate as f64)).await;
            }
        }
        if round == 0 {
            // Nothing hosted, or nothing written yet.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Every `every`: the groups topic's segments below its last snapshot are deleted
/// ([`Broker::compact_groups`]).
pub(super) async fn compact_groups(weak: Weak<Broker>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(broker) = weak.upgrade() else { return };
        if broker.is_stopping() {
            return;
        }
        broker.compact_groups().await;
    }
}
