//! What a caller's requests reach the brokers as: one cluster handle with one set of broker
//! credentials, its producers (one per topic, made on first use), and the room it may take
//! in the gateway's buffer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use steme_client::{ClientConfig, ClientError, Cluster, Producer, ProducerConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::HttpError;

/// How long a post's records may wait in the producer for more to join their batch. A post
/// arrives whole, so its records fill batches at once; this only gathers concurrent posts.
const LINGER: Duration = Duration::from_millis(1);

/// A broker identity and what the gateway keeps for it.
pub struct Identity {
    /// The principal's name (in logs and metrics), "gateway" for the gateway's own.
    pub name: String,
    cluster: Cluster,
    producer_config: ProducerConfig,
    producers: tokio::sync::Mutex<HashMap<String, Producer>>,
    /// Bytes of posted records not yet acknowledged; a post that finds too little room is
    /// answered 429 rather than queued.
    buffer: Arc<Semaphore>,
    /// The buffer's size: a post larger than it takes the whole buffer (it is admitted
    /// once nothing else is waiting for acks) rather than never.
    buffer_bytes: usize,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity that reaches `bootstrap` with `client`'s credentials; no broker is
    /// contacted until the first request.
    pub fn new(
        name: &str,
        bootstrap: &str,
        client: ClientConfig,
        buffer_bytes: usize,
        request_timeout: Duration,
    ) -> Result<Identity, ClientError> {
        // `try_acquire_many` takes a u32.
        let buffer_bytes = buffer_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let cluster = Cluster::lazy(bootstrap, client.clone())?;
        let producer_config = ProducerConfig {
            linger: LINGER,
            request_timeout,
            // The gateway's own buffer admits posts; the producer's must never be the one
            // that waits.
            buffer_bytes: buffer_bytes.saturating_mul(2),
            client,
            ..ProducerConfig::default()
        };
        Ok(Identity {
            name: name.to_owned(),
            cluster,
            producer_config,
            producers: tokio::sync::Mutex::new(HashMap::new()),
            buffer: Arc::new(Semaphore::new(buffer_bytes)),
            buffer_bytes,
        })
    }

    /// The cluster handle, for reads and metadata.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The producer of `topic`, made on first use (which fails if the topic does not
    /// exist). The map stays locked while one is made: that happens once per topic.
    pub async fn producer(&self, topic: &str) -> Result<Producer, ClientError> {
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(topic) {
            return Ok(p.clone());
        }
        let made = Producer::new(self.cluster.clone(), topic, self.producer_config.clone()).await?;
        producers.insert(topic.to_owned(), made.clone());
        Ok(made)
    }

    /// Room for `bytes` of records until they are acknowledged, or 429: the broker throttles
    /// this principal, or the buffer is full.
    pub fn admit(&self, bytes: usize) -> Result<OwnedSemaphorePermit, HttpError> {
        if let Some(wait) = self.cluster.throttled_for() {
            return Err(HttpError::too_many(
                "throttled",
                format!(
                    "the cluster throttles principal {} (its quota) for {wait:?}",
                    self.name
                ),
                wait,
            ));
        }
        let want = u32::try_from(bytes.min(self.buffer_bytes)).unwrap_or(u32::MAX);
        self.buffer.clone().try_acquire_many_owned(want).map_err(|_| {
            HttpError::too_many(
                "buffer_full",
                format!(
                    "the gateway holds as many unacknowledged records of principal {} as it may",
                    self.name
                ),
                Duration::from_secs(1),
            )
        })
    }

    /// Closes every producer, sending what they hold.
    pub async fn close(&self) {
        let producers: Vec<Producer> = self
            .producers
            .lock()
            .await
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in producers {
            let _ = p.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_are_admitted_while_the_buffer_has_room_and_a_huge_one_takes_it_all() {
        let identity = Identity::new(
            "p",
            "127.0.0.1:1",
            ClientConfig::default(),
            1 << 20,
            Duration::from_secs(1),
        )
        .expect("an identity");
        let half = identity.admit(512 << 10).expect("room for half");
        let quarter = identity.admit(256 << 10).expect("room for a quarter");
        let refused = identity.admit(512 << 10).expect_err("no room left");
        assert_eq!(refused.code(), "buffer_full");
        drop((half, quarter));
        // Larger than the whole buffer: admitted alone, never refused for ever.
        let huge = identity
            .admit(5 << 20)
            .expect("an empty buffer admits any post");
        assert!(
            identity.admit(1).is_err(),
            "the huge post holds the whole buffer"
        );
        drop(huge);
        assert!(identity.admit(1).is_ok());
    }
}
