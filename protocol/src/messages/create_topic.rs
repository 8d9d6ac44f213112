//! CreateTopic: create a topic with a number of partitions, through the metadata group
//! (send it to the metadata leader, see [`super::metadata`]).
//!
//! Request:
//!
//! ```text
//! +--------------+----------------+------------------------+---------------------+
//! | name: string | partitions u32 | replication_factor u16 | configs: [ config ] |
//! +--------------+----------------+------------------------+---------------------+
//!
//! config = key: string (1 to 255 bytes) | value: string
//! replication_factor 0 = the broker's default
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +--------------+----------------+------------------------+
//! | name: string | partitions u32 | replication_factor u16 |
//! +--------------+----------------+------------------------+
//! ```
//!
//! The response is sent once the topic is committed in the metadata group, and names the
//! replication factor actually used (the default, when the request asked for 0). A topic
//! that already exists is answered with `TopicExists`.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_count, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Creates a topic (through the metadata group).
pub struct CreateTopicRequest {
    /// The topic's name.
    pub name: String,
    /// The partitions.
    pub partitions: u32,
    /// Replicas per partition; 0 leaves it to the broker's default.
    pub replication_factor: u16,
    /// Topic settings (retention and the like) that override the broker's defaults.
    pub configs: Vec<ConfigEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The topic as created.
pub struct CreateTopicResponse {
    /// The topic's name.
    pub name: String,
    /// The partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u16,
}

/// One topic setting, as text (the broker parses and validates it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The setting's name.
    pub key: String,
    /// The setting's value, as text.
    pub value: String,
}

impl ConfigEntry {
    /// The fewest bytes one entry takes: a one-byte key and an empty value.
    pub(crate) const MIN_SIZE: usize = 2 + 1 + 2;

    pub(crate) fn encode_all(entries: &[ConfigEntry], buf: &mut impl BufMut) {
        put_count(buf, entries.len());
        for e in entries {
            put_string(buf, &e.key);
            put_string(buf, &e.value);
        }
    }

    pub(crate) fn decode_all(r: &mut Reader) -> Result<Vec<ConfigEntry>, DecodeError> {
        r.vec_of("config entries", ConfigEntry::MIN_SIZE, |r| {
            Ok(ConfigEntry {
                key: r.name("config key", crate::MAX_NAME_LEN)?,
                value: r.string()?,
            })
        })
    }
}

impl Body for CreateTopicRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.name);
        buf.put_u32_le(self.partitions);
        buf.put_u16_le(self.replication_factor);
        ConfigEntry::encode_all(&self.configs, buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateTopicRequest {
            name: r.string()?,
            partitions: r.u32()?,
            replication_factor: r.u16()?,
            configs: ConfigEntry::decode_all(r)?,
        })
    }
}

impl Body for CreateTopicResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.name);
        buf.put_u32_le(self.partitions);
        buf.put_u16_le(self.replication_factor);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateTopicResponse {
            name: r.string()?,
            partitions: r.u32()?,
            replication_factor: r.u16()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{budget_exceeded, decode_request, encoded_len, roundtrip};
    use crate::messages::{ApiKey, RequestError};

    fn request_with(configs: Vec<ConfigEntry>) -> Vec<u8> {
        let mut b = BytesMut::new();
        CreateTopicRequest {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs,
        }
        .encode(&mut b);
        b.to_vec()
    }

    #[test]
    fn rejects_create_topic_with_empty_config_key() {
        let body = request_with(vec![ConfigEntry {
            key: String::new(),
            value: "1".into(),
        }]);
        let err = decode_request(ApiKey::CreateTopic, body).unwrap_err();
        assert!(matches!(
            err,
            RequestError::Decode(DecodeError::InvalidName {
                what: "config key",
                ..
            })
        ));
    }

    #[test]
    fn rejects_create_topic_with_many_tiny_configs() {
        let tiny = ConfigEntry {
            key: "k".into(),
            value: String::new(),
        };
        let body = request_with(vec![tiny; 10_000]);
        let res = decode_request(ApiKey::CreateTopic, body);
        assert_eq!(budget_exceeded(res), Some(("config entries", 10_000)));
    }

    #[test]
    fn roundtrip_request() {
        roundtrip(&CreateTopicRequest {
            name: "facts".into(),
            partitions: 12,
            replication_factor: 3,
            configs: vec![
                ConfigEntry {
                    key: "retention.ms".into(),
                    value: "604800000".into(),
                },
                ConfigEntry {
                    key: "k".into(),
                    value: String::new(),
                },
            ],
        });
        roundtrip(&CreateTopicRequest {
            name: "t".into(),
            partitions: 1,
            replication_factor: 0,
            configs: vec![],
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&CreateTopicResponse {
            name: "facts".into(),
            partitions: 12,
            replication_factor: 3,
        });
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = CreateTopicRequest {
            name: String::new(),
            partitions: 1,
            replication_factor: 0,
            configs: vec![],
        };
        let one = CreateTopicRequest {
            configs: vec![ConfigEntry {
                key: "k".into(),
                value: String::new(),
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            ConfigEntry::MIN_SIZE
        );
    }
}
