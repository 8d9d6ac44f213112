//! Everything openraft (D1): the type configuration, our encodings of Raft state, the log
//! store over the segment log, the partition state machine, the hosted groups
//! ([`group::GroupRaft`]), our RPC encoding and the openraft side of the transport (the links
//! themselves are the peer plane, [`crate::peer`]).

pub mod codec;
pub mod group;
pub mod log_store;
pub mod marker;
pub mod network;
mod recent;
pub mod rpc;
pub mod state_machine;
pub mod throttle;
pub mod types;

/// The id of the cluster metadata group (D9).
pub use steme_protocol::messages::raft::METADATA_GROUP;

use std::sync::Arc;

use crate::config::Config;

/// openraft settings for one group, tuned for many groups per broker: heartbeats and
/// election timeouts from the broker config, pre-vote on, snapshots only when retention asks
/// for one (D2), and no log kept behind a snapshot.
pub fn raft_config(cfg: &Config) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let c = openraft::Config {
        cluster_name: "steme".into(),
        heartbeat_interval: cfg.heartbeat_interval_ms,
        election_timeout_min: cfg.election_timeout_min_ms,
        election_timeout_max: cfg.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        enable_pre_vote: Some(true),
        ..openraft::Config::default()
    };
    c.validate().map(Arc::new)
}

#[cfg(test)]
mod conformance {
    //! openraft's storage conformance suite against our log store and state machine.
    use std::sync::Arc;

    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};
    use steme_segments::{FlushPolicy, Log, LogConfig, RealIo};

    use super::log_store::{GroupKind, GroupLog, LogStore, Syncer};
    use super::state_machine::PartitionSm;
    use super::types::TypeConfig;

    struct Builder {
        syncer: Syncer,
    }

    impl StoreBuilder<TypeConfig, LogStore, PartitionSm, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, PartitionSm), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("temp dir");
            let cfg = LogConfig {
                segment_bytes: 1 << 20,
                flush: FlushPolicy::Never,
                ..LogConfig::default()
            };
            let (log, _) = Log::open(dir.path(), cfg, Arc::new(RealIo)).expect("open log");
            let group = GroupLog::new(1, GroupKind::Partition, log).expect("group log");
            let (sm, _state) = PartitionSm::open(group.clone()).expect("state machine");
            Ok((dir, LogStore::new(group, self.syncer.clone(), false), sm))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite_passes() -> Result<(), StorageError<TypeConfig>> {
        let syncer = Syncer::start(crate::metrics::Metrics::new().fsync_latency).expect("syncer");
        Suite::test_all(Builder { syncer }).await
    }
}
