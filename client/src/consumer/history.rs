//! Reading across partition splits: a topic's metadata with its splits
//! ([`Consumer::topic_metadata`]) and one subject's whole history, in HLC order
//! ([`Consumer::subject_history`]). Both leave the consumer's own assignment alone.

use std::collections::BTreeMap;
use std::time::Duration;

use steme_protocol::messages::metadata::TopicMetadata;

use super::split::{ReadUntil, subject_chain};
use super::{Consumer, ConsumerConfig, Position, Record};
use crate::cluster::Cluster;
use crate::error::ClientError;

/// How long one poll of a history read waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);

impl Consumer {
    /// Fresh metadata of `topic`: its partitions, its map epoch and its splits (see
    /// [`split`](super::split)). The cluster handle's cache is refreshed with it.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata, ClientError> {
        topic_metadata(&self.cluster, topic).await
    }

    /// Every record of `subject` in `topic`, in HLC order, up to the high watermarks as of
    /// the call.
    ///
    /// It follows the subject through the topic's splits ([`subject_chain`]): each
    /// partition that held it is read from its log start, up to the split point that moved
    /// the subject on, or to its high watermark for the partition it is in now; only the
    /// records whose subject is `subject` are kept. The partitions are read with a
    /// consumer of their own over the same cluster handle and configuration (verification,
    /// offset reset, retries), so this consumer's assignment and positions are untouched.
    /// Integrity errors end the read, as they end [`poll`](Self::poll) (a range an operator
    /// skipped included: the history would have a hole).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), steme_client::ClientError> {
    /// use steme_client::{Consumer, ConsumerConfig};
    ///
    /// let consumer = Consumer::connect("127.0.0.1:9092", ConsumerConfig::default()).await?;
    /// for record in consumer.subject_history("facts", "urn:person:ada").await? {
    ///     let assertion = record.assertion()?;
    ///     println!("{} {} {:?}", record.hlc(), assertion.predicate, assertion.object);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subject_history(
        &self,
        topic: &str,
        subject: &str,
    ) -> Result<Vec<Record>, ClientError> {
        let meta = self.topic_metadata(topic).await?;
        let chain = subject_chain(&meta, subject);
        let mut reader = Consumer::new(
            self.cluster.clone(),
            ConsumerConfig {
                start: Position::Earliest,
                ..self.config.clone()
            },
        );
        // Where each partition of the chain ends, as of now.
        let mut ends = BTreeMap::new();
        for step in &chain {
            let p = step.partition;
            reader.add_partition(topic, p, Position::Earliest)?;
            reader.seek(p, Position::Earliest).await?;
            let high_watermark = match reader.high_watermark(p) {
                Some(hw) => hw,
                None => reader.fetch_high_watermark(p).await?,
            };
            // A recorded split point is below the high watermark; the bound only keeps a
            // reader from waiting for offsets that are not there.
            let end = match step.until {
                ReadUntil::SplitPoint(offset) => offset.min(high_watermark),
                ReadUntil::HighWatermark => high_watermark,
            };
            ends.insert(p, end);
        }
        let mut found: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        reader.pause_reached(&mut ends)?;
        while !ends.is_empty() {
            for record in reader.poll(POLL_WAIT).await? {
                let wanted = ends
                    .get(&record.partition())
                    .is_some_and(|&end| record.offset() < end);
                if wanted && record.assertion()?.subject == subject {
                    found.entry(record.partition()).or_default().push(record);
                }
            }
            reader.pause_reached(&mut ends)?;
        }
        // The chain never visits a partition twice (a subject moves only to partitions the
        // split created), so its steps in order are the history in order.
        Ok(chain
            .iter()
            .flat_map(|step| found.remove(&step.partition).unwrap_or_default())
            .collect())
    }
}

/// Fresh metadata of `topic` (refreshing the cluster handle's cache with it).
pub(crate) async fn topic_metadata(
    cluster: &Cluster,
    topic: &str,
) -> Result<TopicMetadata, ClientError> {
    let resp = cluster.refresh(Some(&[topic.to_owned()])).await?;
    resp.topics
        .into_iter()
        .find(|t| t.name == topic)
        .ok_or_else(|| ClientError::UnknownTopic {
            topic: topic.to_owned(),
        })
}
