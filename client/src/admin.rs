//! The admin client: topics (growing one with [`Admin::add_partitions`]), cluster metadata,
//! and moving replicas between brokers ([`Admin::reassign_partition`],
//! [`Admin::decommission_broker`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), steme_client::ClientError> {
//! use steme_client::{Admin, ClientConfig, TopicOptions};
//!
//! let admin = Admin::connect("127.0.0.1:9092", ClientConfig::default()).await?;
//! admin.create_topic("facts", 8, TopicOptions::default()).await?;
//! for p in admin.describe_topic("facts").await?.partitions {
//!     println!("partition {} leader {:?} high watermark {}", p.partition, p.leader, p.high_watermark);
//! }
//! # Ok(())
//! # }
//! ```

pub use steme_protocol::messages::add_partitions::AddPartitionsResponse;
pub use steme_protocol::messages::create_topic::{ConfigEntry, CreateTopicResponse};
pub use steme_protocol::messages::describe_topic::{DescribeTopicResponse, PartitionDescription};
pub use steme_protocol::messages::list_offsets::{ListOffsetsResponse, OffsetSpec};
pub use steme_protocol::messages::metadata::{
    BrokerInfo, BrokerState, MetadataResponse, PartitionMetadata, SplitInfo, SplitPoint,
    TopicMetadata,
};
pub use steme_protocol::messages::reassign::{
    DecommissionBrokerResponse, ReassignPartitionResponse,
};

use steme_protocol::acl::Acl;
use steme_protocol::messages::acls::{AclEntry, AlterAclRequest, ListAclsRequest};
use steme_protocol::messages::add_partitions::AddPartitionsRequest;
use steme_protocol::messages::alter_topic_config::AlterTopicConfigRequest;
use steme_protocol::messages::create_topic::CreateTopicRequest;
use steme_protocol::messages::delete_topic::DeleteTopicRequest;
use steme_protocol::messages::describe_topic::{DamagedRange, DescribeTopicRequest};
use steme_protocol::messages::reassign::{DecommissionBrokerRequest, ReassignPartitionRequest};
use steme_protocol::messages::skip_damage::SkipDamageRequest;

use crate::cluster::{ClientConfig, Cluster};
use crate::error::ClientError;

/// Settings of a new topic beyond its partition count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOptions {
    /// Replicas per partition; 0 = the broker's default.
    pub replication_factor: u16,
    /// Overrides of the broker's topic defaults (`key`, `value`), validated by the broker.
    pub configs: Vec<(String, String)>,
}

/// Creates, deletes and describes topics; reads metadata and offsets.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Cluster,
}

impl Admin {
    /// Bootstraps from `bootstrap` (comma-separated addresses).
    pub async fn connect(bootstrap: &str, config: ClientConfig) -> Result<Admin, ClientError> {
        Ok(Admin::new(Cluster::connect(bootstrap, config).await?))
    }

    /// An admin over an existing cluster handle.
    pub fn new(cluster: Cluster) -> Admin {
        Admin { cluster }
    }

    /// The cluster handle it uses.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Creates `name` with `partitions` partitions; answered once committed in the
    /// metadata group. An existing topic is an error (`TopicExists`).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        options: TopicOptions,
    ) -> Result<CreateTopicResponse, ClientError> {
        let req = CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            replication_factor: options.replication_factor,
            configs: options
                .configs
                .into_iter()
                .map(|(key, value)| ConfigEntry { key, value })
                .collect(),
        };
        self.cluster.call_metadata_leader(&req).await
    }

    /// Deletes `name` and all its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let req = DeleteTopicRequest {
            name: name.to_owned(),
        };
        self.cluster.call_metadata_leader(&req).await.map(drop)
    }

    /// Changes a live topic's settings: each `set` pair gives a key its value, each
    /// `delete` key returns to the broker's default. The broker validates the values as at
    /// create and refuses unknown keys and keys that cannot change live (`segment.bytes`);
    /// a refusal changes nothing. Answered once the metadata group applied the change,
    /// with every override the topic now has, sorted by key; each broker applies it to
    /// its partitions without a restart (retention from its next check, produce checks
    /// from the next request).
    pub async fn alter_topic_config(
        &self,
        topic: &str,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let req = AlterTopicConfigRequest {
            topic: topic.to_owned(),
            set: set
                .into_iter()
                .map(|(key, value)| ConfigEntry { key, value })
                .collect(),
            delete,
        };
        Ok(self.cluster.call_metadata_leader(&req).await?.configs)
    }

    /// Grows `topic` to `count` partitions (the new total), keeping every subject's order:
    /// subjects that jump hash sends to a new partition are written there from each old
    /// partition's split point on. Answered once the metadata group recorded the new map,
    /// with the map epoch and count it now has; the split points follow within a fraction
    /// of a second (until then the new partitions refuse records with `SplitPending`, and
    /// [`SplitInfo::sealed`] in [`leader_metadata`](Self::leader_metadata) is false).
    /// Asking for the count the topic has changes nothing; fewer is refused, as is a growth
    /// while the previous one still records its split points.
    pub async fn add_partitions(
        &self,
        topic: &str,
        count: u32,
    ) -> Result<AddPartitionsResponse, ClientError> {
        let req = AddPartitionsRequest {
            topic: topic.to_owned(),
            count,
        };
        self.cluster.call_metadata_leader(&req).await
    }

    /// Moves `topic`/`partition` to `replicas` (distinct active brokers, the preferred
    /// leader first). Answered once the metadata group recorded the move, not once it is
    /// done: the partition's leader then adds the new replicas as learners, lets them catch
    /// up, promotes them and removes the old ones. Until then the partition's metadata lists
    /// the `target`. Asking for the replicas it already has, or already moves to, changes
    /// nothing; asking for others while it moves is refused.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        replicas: Vec<u64>,
    ) -> Result<ReassignPartitionResponse, ClientError> {
        let req = ReassignPartitionRequest {
            topic: topic.to_owned(),
            partition,
            replicas,
        };
        self.cluster.call_metadata_leader(&req).await
    }

    /// Retires broker `node_id`: it becomes *draining*, the cluster moves every replica it
    /// holds to other brokers, then it becomes *removed*. Answered once the draining is
    /// recorded, with the broker's state (already `Removed` if it was). Refused when the
    /// other active brokers could not hold every topic's replication factor.
    pub async fn decommission_broker(
        &self,
        node_id: u64,
    ) -> Result<DecommissionBrokerResponse, ClientError> {
        self.cluster
            .call_metadata_leader(&DecommissionBrokerRequest { node_id })
            .await
    }

    /// The topic's settings and, per partition, leader and log figures: each partition as
    /// its leader describes it (or, without a reachable leader, the replica furthest
    /// ahead). Every broker describes only the replicas it hosts, so all are asked.
    pub async fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse, ClientError> {
        let views = self.describe_replicas(name).await?;
        let mut head: Option<DescribeTopicResponse> = None;
        // Per partition: the chosen description, and whether its broker leads it.
        let mut chosen: std::collections::BTreeMap<u32, (PartitionDescription, bool)> =
            std::collections::BTreeMap::new();
        let mut first_error = None;
        for v in views {
            let d = match v.result {
                Ok(d) => d,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for p in d.partitions.iter().cloned() {
                let leads = p.leader == Some(v.node_id);
                let better = match chosen.get(&p.partition) {
                    None => true,
                    Some((q, q_leads)) => {
                        leads || (!q_leads && p.high_watermark > q.high_watermark)
                    }
                };
                if better {
                    chosen.insert(p.partition, (p, leads));
                }
            }
            head.get_or_insert(DescribeTopicResponse {
                partitions: Vec::new(),
                ..d
            });
        }
        match (head, first_error) {
            (Some(mut d), _) => {
                d.partitions = chosen.into_values().map(|(p, _)| p).collect();
                Ok(d)
            }
            (None, Some(e)) => Err(e),
            (None, None) => Err(ClientError::UnknownTopic {
                topic: name.to_owned(),
            }),
        }
    }

    /// Every broker's own view of the replicas of `name` it hosts, or why it could not be
    /// asked. Removed brokers (decommissioned, gone) are not asked.
    pub async fn describe_replicas(&self, name: &str) -> Result<Vec<ReplicaView>, ClientError> {
        let meta = self.metadata(Some(&[name.to_owned()])).await?;
        if meta.brokers.is_empty() {
            // A cluster just started: no broker has registered its address yet.
            return Err(ClientError::NoBrokers {
                tried: "the metadata (no broker has registered its address yet)".into(),
                last: None,
            });
        }
        let req = DescribeTopicRequest {
            name: name.to_owned(),
        };
        let timeout = self.cluster.config().request_timeout;
        let mut views = Vec::with_capacity(meta.brokers.len());
        for b in meta
            .brokers
            .iter()
            .filter(|b| b.state != BrokerState::Removed)
        {
            let result = match self.cluster.connection(&b.addr).await {
                Ok(conn) => conn.call(&req, timeout).await,
                Err(e) => Err(e),
            };
            views.push(ReplicaView {
                node_id: b.node_id,
                addr: b.addr.clone(),
                result,
            });
        }
        Ok(views)
    }

    /// Gives up the damaged range of `topic`/`partition` that starts at `first_offset`, on
    /// every replica that lists it (see [`steme_protocol::messages::skip_damage`]): each
    /// such broker's answer, the range as it now records it or why it refused. Empty if no
    /// replica lists such a range. A range is skipped only where it is quarantined (no
    /// healthy copy anywhere); the records in it are lost to consumers, who move past it
    /// with a notice ([`ClientError::SkippedData`]).
    pub async fn skip_damaged(
        &self,
        topic: &str,
        partition: u32,
        first_offset: u64,
        reason: &str,
    ) -> Result<Vec<(u64, Result<DamagedRange, ClientError>)>, ClientError> {
        let req = SkipDamageRequest {
            topic: topic.to_owned(),
            partition,
            first_offset,
            reason: reason.to_owned(),
        };
        let timeout = self.cluster.config().request_timeout;
        let mut out = Vec::new();
        for view in self.describe_replicas(topic).await? {
            let lists_it = view.result.as_ref().is_ok_and(|d| {
                d.partitions.iter().any(|p| {
                    p.partition == partition
                        && p.damaged.iter().any(|r| r.first_offset == first_offset)
                })
            });
            if !lists_it {
                continue;
            }
            let result = match self.cluster.connection(&view.addr).await {
                Ok(conn) => conn.call(&req, timeout).await.map(|r| r.range),
                Err(e) => Err(e),
            };
            out.push((view.node_id, result));
        }
        Ok(out)
    }

    /// Adds an ACL (see [`steme_protocol::acl`]); adding one that exists changes nothing.
    pub async fn add_acl(&self, acl: &Acl) -> Result<(), ClientError> {
        self.alter_acl(true, acl).await
    }

    /// Removes an ACL; one that does not exist is an error.
    pub async fn remove_acl(&self, acl: &Acl) -> Result<(), ClientError> {
        self.alter_acl(false, acl).await
    }

    async fn alter_acl(&self, add: bool, acl: &Acl) -> Result<(), ClientError> {
        let req = AlterAclRequest {
            add,
            acl: AclEntry::from(acl),
        };
        self.cluster.call_metadata_leader(&req).await.map(drop)
    }

    /// Every ACL of the cluster, sorted by principal, resource and operation, as the
    /// metadata leader holds them.
    pub async fn list_acls(&self) -> Result<Vec<AclEntry>, ClientError> {
        let resp = self
            .cluster
            .call_metadata_leader(&ListAclsRequest {})
            .await?;
        Ok(resp.acls)
    }

    /// Brokers and topics (`None` = every topic), refreshing the client's cache on the way.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        self.cluster.refresh(topics).await
    }

    /// Brokers and topics (`None` = every topic) as the metadata leader has them: what a
    /// change just recorded is checked against. Any other broker may trail it, and a
    /// broker decommissioned and removed no longer hears of changes at all.
    pub async fn leader_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        let req = steme_protocol::messages::metadata::MetadataRequest {
            topics: topics.map(<[String]>::to_vec),
        };
        let mut answer = self.cluster.call_metadata_leader(&req).await?;
        // Metadata is served by every broker: if the one asked is not the leader it names
        // (a stale cache, or a broker that left), ask the one named, a few hops at most.
        let mut asked = Vec::new();
        for _ in 0..3 {
            let Some(leader) = answer.metadata_leader.and_then(|l| answer.broker(l)) else {
                break;
            };
            if asked.contains(&leader.addr) {
                break;
            }
            asked.push(leader.addr.clone());
            let conn = self.cluster.connection(&leader.addr).await?;
            let fresh = conn
                .call(&req, self.cluster.config().request_timeout)
                .await?;
            let settled = fresh.metadata_leader == answer.metadata_leader;
            answer = fresh;
            if settled {
                break;
            }
        }
        Ok(answer)
    }

    /// Every topic with its partitions, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicMetadata>, ClientError> {
        let mut topics = self.metadata(None).await?.topics;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// A consumer group's members, assignment, committed offsets and lag (see
    /// [`crate::group::describe_group`]).
    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<steme_protocol::messages::describe_group::DescribeGroupResponse, ClientError> {
        crate::group::describe_group(&self.cluster, group).await
    }

    /// An offset of one partition: earliest, latest, or the first at or after an HLC.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<ListOffsetsResponse, ClientError> {
        let config = self.cluster.config();
        crate::consumer::list_offsets(
            &self.cluster,
            topic,
            partition,
            spec,
            config.request_timeout,
            config.reconnect_backoff,
        )
        .await
    }
}

/// One broker's answer to a `DescribeTopic`: the replicas it hosts, as it sees them.
#[derive(Debug)]
pub struct ReplicaView {
    /// The replica's broker.
    pub node_id: u64,
    /// The broker's address.
    pub addr: String,
    /// What that broker said about the topic (its own copy), or why it could not be asked.
    pub result: Result<DescribeTopicResponse, ClientError>,
}
