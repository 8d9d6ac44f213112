//! AlterTopicConfig: change a topic's settings after it was created, through the metadata
//! group (send it to the metadata leader, see [`super::metadata`]).
//!
//! Request:
//!
//! ```text
//! +---------------+------------------+----------------------+
//! | topic: string | set: [ config ]  | delete: [ key ]      |
//! +---------------+------------------+----------------------+
//!
//! config = key: string (1 to 255 bytes) | value: string   (as in CreateTopic)
//! key    = string (1 to 255 bytes)
//! ```
//!
//! Response (after the error code): the topic's overrides as they stand once the change
//! is applied, sorted by key.
//!
//! ```text
//! +---------------+----------------------+
//! | topic: string | configs: [ config ]  |
//! +---------------+----------------------+
//! ```
//!
//! `set` gives keys new values; `delete` returns keys to the broker's default. The broker
//! validates every value as CreateTopic does (same bounds, same errors) and refuses
//! unknown keys, keys that cannot change on a live topic (`segment.bytes`, the partition
//! count), a key both set and deleted, and internal topics; a refusal changes nothing. The
//! response is sent once the change is applied by the metadata group; every broker then
//! applies it to the partitions it hosts without a restart. An unknown topic is answered
//! with `UnknownTopic`.

use bytes::BytesMut;

use crate::messages::Body;
use crate::messages::create_topic::ConfigEntry;
use crate::wire::{DecodeError, Reader, put_count, put_string};

/// Changes some of a topic's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterTopicConfigRequest {
    /// The topic to change.
    pub topic: String,
    /// Keys to give these values (validated by the broker as at create).
    pub set: Vec<ConfigEntry>,
    /// Keys to return to the broker's default.
    pub delete: Vec<String>,
}

/// The topic's settings once the change is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterTopicConfigResponse {
    /// The topic changed.
    pub topic: String,
    /// Every override the topic now has, sorted by key (keys not listed take the
    /// broker's default).
    pub configs: Vec<ConfigEntry>,
}

/// The fewest bytes one deleted key takes: a one-byte key.
const MIN_KEY_SIZE: usize = 2 + 1;

impl Body for AlterTopicConfigRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        ConfigEntry::encode_all(&self.set, buf);
        put_count(buf, self.delete.len());
        for key in &self.delete {
            put_string(buf, key);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AlterTopicConfigRequest {
            topic: r.topic_name()?,
            set: ConfigEntry::decode_all(r)?,
            delete: r.vec_of("deleted config keys", MIN_KEY_SIZE, |r| {
                r.name("config key", crate::MAX_NAME_LEN)
            })?,
        })
    }
}

impl Body for AlterTopicConfigResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        ConfigEntry::encode_all(&self.configs, buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AlterTopicConfigResponse {
            topic: r.string()?,
            configs: ConfigEntry::decode_all(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{budget_exceeded, decode_request, encoded_len, roundtrip};
    use crate::messages::{ApiKey, RequestError};

    fn entry(key: &str, value: &str) -> ConfigEntry {
        ConfigEntry {
            key: key.into(),
            value: value.into(),
        }
    }

    fn body(req: &AlterTopicConfigRequest) -> Vec<u8> {
        let mut b = BytesMut::new();
        req.encode(&mut b);
        b.to_vec()
    }

    fn request(set: Vec<ConfigEntry>, delete: Vec<String>) -> AlterTopicConfigRequest {
        AlterTopicConfigRequest {
            topic: "facts".into(),
            set,
            delete,
        }
    }

    #[test]
    fn roundtrip_alter_topic_config_request() {
        roundtrip(&request(
            vec![
                entry("retention.bytes", "65536"),
                entry("verify.signatures", "true"),
            ],
            vec!["retention.ms".into()],
        ));
        roundtrip(&request(vec![], vec![]));
        roundtrip(&request(vec![entry("k", "")], vec!["k2".into()]));
    }

    #[test]
    fn roundtrip_alter_topic_config_response() {
        roundtrip(&AlterTopicConfigResponse {
            topic: "facts".into(),
            configs: vec![entry("retention.bytes", "65536")],
        });
        roundtrip(&AlterTopicConfigResponse {
            topic: "facts".into(),
            configs: vec![],
        });
    }

    #[test]
    fn truncated_alter_topic_config_request_is_refused_at_every_cut() -> Result<(), String> {
        let full = body(&request(
            vec![entry("retention.ms", "1000")],
            vec!["retention.bytes".into()],
        ));
        for cut in 0..full.len() {
            let res = decode_request(ApiKey::AlterTopicConfig, full[..cut].to_vec());
            if res.is_ok() {
                return Err(format!("decoded when cut at {cut} of {}", full.len()));
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_alter_topic_config_with_empty_topic_or_keys() {
        let empty_topic = AlterTopicConfigRequest {
            topic: String::new(),
            ..request(vec![], vec![])
        };
        assert!(matches!(
            decode_request(ApiKey::AlterTopicConfig, body(&empty_topic)),
            Err(RequestError::Decode(DecodeError::InvalidName {
                what: "topic name",
                ..
            }))
        ));
        // An empty key first, then a long one (the count is checked before any key).
        let empty_deleted = request(vec![], vec![String::new(), "retention.ms".into()]);
        assert!(matches!(
            decode_request(ApiKey::AlterTopicConfig, body(&empty_deleted)),
            Err(RequestError::Decode(DecodeError::InvalidName {
                what: "config key",
                ..
            }))
        ));
        let empty_set = request(vec![entry("", "1")], vec![]);
        assert!(matches!(
            decode_request(ApiKey::AlterTopicConfig, body(&empty_set)),
            Err(RequestError::Decode(DecodeError::InvalidName {
                what: "config key",
                ..
            }))
        ));
    }

    #[test]
    fn rejects_alter_topic_config_with_many_tiny_deleted_keys() {
        let req = request(vec![], vec!["k".into(); 20_000]);
        let res = decode_request(ApiKey::AlterTopicConfig, body(&req));
        assert_eq!(budget_exceeded(res), Some(("deleted config keys", 20_000)));
    }

    #[test]
    fn min_key_size_is_the_smallest_encoding() {
        let none = request(vec![], vec![]);
        let one = request(vec![], vec!["k".into()]);
        assert_eq!(encoded_len(&one) - encoded_len(&none), MIN_KEY_SIZE);
    }
}
