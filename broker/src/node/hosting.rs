//! The partitions this broker hosts: opened and closed as the metadata places them,
//! taken out of service when their storage fails and reopened from what is durable, and
//! looked up by the handlers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use steme_segments::LogConfig;

use super::{Broker, Failed, OPEN_RETRY, log_config};
use crate::error::BrokerError;
use crate::metadata::TopicMeta;
use crate::partition::{Partition, Placement, RecordChecks};

impl Broker {
    /// The broker's log settings with a topic's overrides.
    fn topic_log_config(&self, t: &TopicMeta) -> LogConfig {
        let mut c = log_config(&self.cfg);
        if t.name == crate::groups::GROUPS_TOPIC {
            // Compacted below its last snapshot instead (`compact_groups`): the broker's
            // retention by size or age could drop commits no snapshot holds yet.
            c.retention_bytes = None;
            c.retention_age = None;
            return c;
        }
        let topic = t.config();
        if let Some(b) = topic.retention_bytes {
            c.retention_bytes = Some(b);
        }
        if let Some(ms) = topic.retention_ms {
            c.retention_age = Some(Duration::from_millis(ms));
        }
        if let Some(b) = topic.segment_bytes {
            c.segment_bytes = b;
        }
        c
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.cfg
            .data_dir
            .join("topics")
            .join(format!("{topic}-{partition}"))
    }

    /// Opens the partitions the metadata places here (as a replica, or as one a move adds)
    /// and closes (and deletes) the ones it no longer places here.
    pub(super) async fn reconcile(&self) -> Result<(), BrokerError> {
        if self.is_stopping() {
            return Ok(());
        }
        let state = self.meta_state.borrow().clone();
        let me = self.cfg.node_id;
        let mut wanted = Vec::new();
        for t in state.topics.values() {
            for (p, meta) in t.partitions.iter().enumerate() {
                if meta.hosted_on(me) {
                    wanted.push((
                        t.name.clone(),
                        p as u32,
                        meta.group,
                        meta.replicas.clone(),
                        meta.target.clone(),
                        self.topic_log_config(t),
                        RecordChecks {
                            verify: t
                                .config()
                                .verify_signatures
                                .unwrap_or(self.cfg.verify_signatures),
                            counts: t.counts().into(),
                        },
                    ));
                }
            }
        }
        // A partition no longer placed here is no longer offline here either.
        self.failed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, p), _| wanted.iter().any(|w| &w.0 == t && w.1 == *p));
        let stale: Vec<Arc<Partition>> = {
            let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
            parts
                .values()
                .filter(|p| {
                    state
                        .topics
                        .get(&p.topic)
                        .and_then(|t| t.partitions.get(p.partition as usize))
                        .is_none_or(|m| m.group != p.group || !m.hosted_on(me))
                })
                .cloned()
                .collect()
        };
        for p in stale {
            self.unhost(&p);
            p.shutdown().await;
            let dir = self.partition_dir(&p.topic, p.partition);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition");
            }
            tracing::info!(topic = %p.topic, partition = p.partition, "partition deleted here (deleted, or moved away)");
        }
        for (topic, partition, group, replicas, target, topic_log, checks) in wanted {
            let key = (topic.clone(), partition);
            let hosted = self
                .partitions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            if let Some(p) = hosted {
                // Settings altered since it opened: retention applies live (produce reads
                // the topic's settings from the metadata on every request). A move may
                // have changed the replicas.
                p.set_retention(topic_log.retention_bytes, topic_log.retention_age);
                p.set_placement(&replicas, target.as_deref());
                p.set_checks(checks);
                continue;
            }
            let dir = self.partition_dir(&topic, partition);
            let failed = self
                .failed
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            if failed
                .as_ref()
                .is_some_and(|f| f.retry_at > tokio::time::Instant::now())
            {
                continue;
            }
            let place = Placement {
                topic: topic.clone(),
                partition,
                group,
                replicas,
                log: topic_log,
                checks,
            };
            let opened = Partition::open(
                self.ctx.clone(),
                &dir,
                place,
                failed.as_ref().and_then(|f| f.discard_after),
            )
            .await;
            let p = match opened {
                Ok(p) => {
                    p.set_placement(&p.replicas(), target.as_deref());
                    p
                }
                Err(source) => {
                    // One partition that cannot open is reported offline with its reason;
                    // the broker and every other partition go on serving.
                    let reason = format!("cannot open: {}", error_chain(&source));
                    match &failed {
                        Some(f) => {
                            tracing::warn!(topic = %topic, partition, %reason, was = %f.reason, "partition still offline")
                        }
                        None => {
                            tracing::error!(topic = %topic, partition, %reason, "partition offline")
                        }
                    }
                    self.failed
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(
                            key,
                            Failed {
                                reason,
                                discard_after: failed.and_then(|f| f.discard_after),
                                retry_at: tokio::time::Instant::now() + OPEN_RETRY,
                            },
                        );
                    continue;
                }
            };
            if failed.is_some() {
                tracing::info!(topic = %topic, partition, "partition recovered after a storage failure");
            } else {
                tracing::info!(topic = %topic, partition, group, "partition open");
            }
            self.failed
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            self.by_group
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(p.group, p.clone());
            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, p);
        }
        Ok(())
    }

    /// Takes a partition out of the maps (the caller shuts it down).
    fn unhost(&self, p: &Arc<Partition>) {
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(p.topic.clone(), p.partition));
        let mut by_group = self.by_group.write().unwrap_or_else(|p| p.into_inner());
        if by_group.get(&p.group).is_some_and(|q| Arc::ptr_eq(q, p)) {
            by_group.remove(&p.group);
        }
    }

    /// Takes partitions whose Raft group stopped on a storage error out of service; the
    /// next reconcile reopens them from what is durable.
    /// Whether a partition placed here waits to be (re)opened.
    pub(super) fn reopening(&self) -> bool {
        !self
            .failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    pub(super) async fn check_health(&self) {
        let broken: Vec<Arc<Partition>> = self
            .hosted()
            .into_iter()
            .filter(|p| p.failure().is_some())
            .collect();
        for p in broken {
            let reason = p.failure().unwrap_or_default();
            let durable = p.durable_index();
            tracing::error!(topic = %p.topic, partition = p.partition, %reason, ?durable, "partition storage failed; reopening");
            let key = (p.topic.clone(), p.partition);
            self.failed
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    key.clone(),
                    Failed {
                        reason,
                        discard_after: Some(durable.unwrap_or(0)),
                        retry_at: tokio::time::Instant::now(),
                    },
                );
            self.unhost(&p);
            p.shutdown().await;
        }
    }

    /// The partition `topic`/`partition` if it is hosted here, else why not.
    pub(crate) fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Partition>, BrokerError> {
        let key = (topic.to_owned(), partition);
        if let Some(p) = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        if let Some(f) = self
            .failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Err(BrokerError::Recovering {
                topic: key.0,
                partition,
                reason: f.reason.clone(),
            });
        }
        match self.meta_state.borrow().topics.get(topic) {
            None => Err(BrokerError::UnknownTopic { topic: key.0 }),
            Some(t) if partition as usize >= t.partitions.len() => {
                Err(BrokerError::UnknownPartition {
                    topic: key.0,
                    partition,
                    count: t.partitions.len() as u32,
                })
            }
            Some(_) => Err(BrokerError::NotHosted {
                topic: key.0,
                partition,
                node: self.cfg.node_id,
            }),
        }
    }

    /// The partitions placed here that are not serving, with why.
    pub(crate) fn offline(&self) -> Vec<((String, u32), String)> {
        self.failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, f)| (k.clone(), f.reason.clone()))
            .collect()
    }

    /// Every partition hosted here.
    pub(crate) fn hosted(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
