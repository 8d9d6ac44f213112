//! The admin client: topics and cluster metadata.
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

pub use steme_protocol::messages::create_topic::{ConfigEntry, CreateTopicResponse};
pub use steme_protocol::messages::describe_topic::{DescribeTopicResponse, PartitionDescription};
pub use steme_protocol::messages::list_offsets::{ListOffsetsResponse, OffsetSpec};
pub use steme_protocol::messages::metadata::{
    BrokerInfo, MetadataResponse, PartitionMetadata, TopicMetadata,
};

use steme_protocol::messages::create_topic::CreateTopicRequest;
use steme_protocol::messages::delete_topic::DeleteTopicRequest;
use steme_protocol::messages::describe_topic::DescribeTopicRequest;

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

    pub fn new(cluster: Cluster) -> Admin {
        Admin { cluster }
    }

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

    /// The topic's settings and, per partition, leader and log figures.
    pub async fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse, ClientError> {
        let req = DescribeTopicRequest {
            name: name.to_owned(),
        };
        self.cluster.call_any(&req).await
    }

    /// Brokers and topics (`None` = every topic), refreshing the client's cache on the way.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        self.cluster.refresh(topics).await
    }

    /// Every topic with its partitions, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicMetadata>, ClientError> {
        let mut topics = self.metadata(None).await?.topics;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
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
