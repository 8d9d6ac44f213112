//! ApiVersions: the handshake a client sends first on every connection, to learn who it is
//! talking to and which versions of each api the broker speaks.
//!
//! Request:
//!
//! ```text
//! +---------------------+------------------------+
//! | client_name: string | client_version: string |
//! +---------------------+------------------------+
//! ```
//!
//! The client's name and version are for the broker's logs and metrics only; they change
//! nothing in how the broker answers.
//!
//! Response (after the error code):
//!
//! ```text
//! +---------------+--------------------+-----------------+
//! | broker_id u64 | cluster_id: string | apis: [ range ] |
//! +---------------+--------------------+-----------------+
//!
//! range = api_key u16 | min u16 | max u16
//! ```
//!
//! One entry per api the broker speaks, with the lowest and highest version it accepts. A
//! client uses, per api, the highest version both sides know, and ignores api keys it does
//! not know (they come from a newer broker), which is why `api_key` is a plain `u16` here.

use bytes::{BufMut, BytesMut};

use crate::messages::{ApiKey, Body};
use crate::wire::{DecodeError, Reader, put_count, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// The first request of a connection: who the client is; the answer says which versions the broker speaks.
pub struct ApiVersionsRequest {
    /// The client's name (for the broker's logs).
    pub client_name: String,
    /// The client's version.
    pub client_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The broker's id and the versions it speaks, per API.
pub struct ApiVersionsResponse {
    /// The answering broker's node id.
    pub broker_id: u64,
    /// Identifies the cluster, so a client can tell that a bootstrap list mixes clusters.
    pub cluster_id: String,
    /// The versions supported, per API.
    pub apis: Vec<ApiVersionRange>,
}

/// The versions of one api that a broker accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    /// The API.
    pub api_key: u16,
    /// The oldest version supported.
    pub min: u16,
    /// The newest version supported.
    pub max: u16,
}

impl ApiVersionRange {
    /// Bytes one entry takes on the wire.
    const SIZE: usize = 3 * size_of::<u16>();
}

impl ApiVersionsResponse {
    /// The answer of a broker running this build.
    pub fn new(broker_id: u64, cluster_id: impl Into<String>) -> Self {
        ApiVersionsResponse {
            broker_id,
            cluster_id: cluster_id.into(),
            apis: supported_apis(),
        }
    }

    /// The range the broker accepts for `key`, if it speaks that api at all.
    pub fn range(&self, key: ApiKey) -> Option<ApiVersionRange> {
        self.apis.iter().copied().find(|a| a.api_key == key as u16)
    }
}

/// Every api this build speaks, from [`ApiKey::ALL`].
pub fn supported_apis() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .iter()
        .map(|&(key, min, max)| ApiVersionRange {
            api_key: key as u16,
            min,
            max,
        })
        .collect()
}

impl Body for ApiVersionsRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.client_name);
        put_string(buf, &self.client_version);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ApiVersionsRequest {
            client_name: r.string()?,
            client_version: r.string()?,
        })
    }
}

impl Body for ApiVersionsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.broker_id);
        put_string(buf, &self.cluster_id);
        put_count(buf, self.apis.len());
        for a in &self.apis {
            buf.put_u16_le(a.api_key);
            buf.put_u16_le(a.min);
            buf.put_u16_le(a.max);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ApiVersionsResponse {
            broker_id: r.u64()?,
            cluster_id: r.string()?,
            apis: r.vec_of("api version ranges", ApiVersionRange::SIZE, |r| {
                Ok(ApiVersionRange {
                    api_key: r.u16()?,
                    min: r.u16()?,
                    max: r.u16()?,
                })
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{encoded_len, roundtrip};

    #[test]
    fn roundtrip_request() {
        roundtrip(&ApiVersionsRequest {
            client_name: "steme-cli".into(),
            client_version: "0.1.0".into(),
        });
        roundtrip(&ApiVersionsRequest {
            client_name: String::new(),
            client_version: String::new(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&ApiVersionsResponse::new(3, "cluster-a"));
        roundtrip(&ApiVersionsResponse {
            broker_id: 0,
            cluster_id: String::new(),
            apis: vec![ApiVersionRange {
                api_key: 999,
                min: 0,
                max: 7,
            }],
        });
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = ApiVersionsResponse {
            broker_id: 0,
            cluster_id: String::new(),
            apis: vec![],
        };
        let one = ApiVersionsResponse {
            apis: vec![ApiVersionRange {
                api_key: 0,
                min: 0,
                max: 0,
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            ApiVersionRange::SIZE
        );
    }

    #[test]
    fn supported_apis_lists_every_api_key() {
        let resp = ApiVersionsResponse::new(1, "c");
        assert_eq!(resp.apis.len(), ApiKey::ALL.len());
        for &(key, min, max) in ApiKey::ALL {
            let range = resp.range(key).expect("listed");
            assert_eq!((range.min, range.max), (min, max));
        }
    }
}
