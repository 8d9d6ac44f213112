//! Every request/response pair, one module each. Adding an API = one module + one line in
//! the `apis!` table below.
//!
//! A response body is `u16 error code`, then either the typed response (code 0) or the
//! [`ApiError`] context and message (see [`crate::error`]).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ApiError, ErrorCode};
use crate::frame::{Frame, FrameHeader};
use crate::wire::{DecodeError, DecodeLimit, Reader};

pub mod acls;
pub mod add_partitions;
pub mod alter_topic_config;
pub mod api_versions;
pub mod authenticate;
pub mod commit_offsets;
pub mod create_topic;
pub mod delete_group;
pub mod delete_topic;
pub mod describe_group;
pub mod describe_topic;
pub mod fetch;
pub mod fetch_offsets;
pub mod heartbeat;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod raft;
pub mod reassign;
pub mod skip_damage;

/// A message body: encodes itself and decodes from a [`Reader`].
pub trait Body: Sized {
    /// Appends the body's wire form to `buf`.
    fn encode(&self, buf: &mut BytesMut);
    /// Reads a body from `r`.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;

    /// How long the broker asks the client to wait before its next request, in ms: a
    /// response's quota hint (Produce and Fetch carry one), else 0.
    fn throttle_ms(&self) -> u32 {
        0
    }
}

/// A request type, tied to its api key and its response type.
pub trait RequestBody: Body {
    /// The api key the request travels under.
    const API_KEY: ApiKey;
    /// What a successful answer holds.
    type Response: Body;
}

/// Why a received frame could not be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The frame's api key is not one this build knows.
    #[error("unknown api key {0}")]
    UnknownApi(u16),
    /// This build does not speak the frame's version of the API.
    #[error("api {api_key} version {version} is not supported (supported {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        api_key: u16,
        /// The version the frame has.
        version: u16,
        /// The oldest version supported.
        min: u16,
        /// The newest version supported.
        max: u16,
    },
    /// The body does not decode.
    #[error("malformed request body: {0}")]
    Decode(#[from] DecodeError),
}

impl RequestError {
    /// The error to answer the request with.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            RequestError::UnsupportedVersion {
                api_key, min, max, ..
            } => ApiError::UnsupportedVersion {
                api_key: *api_key,
                min: *min,
                max: *max,
            },
            RequestError::UnknownApi(k) => ApiError::UnsupportedVersion {
                api_key: *k,
                min: 1,
                max: 0,
            },
            RequestError::Decode(e) => ApiError::other(ErrorCode::InvalidRequest, e.to_string()),
        }
    }
}

macro_rules! apis {
    ($( $key:literal => $variant:ident ( $module:ident :: $req:ident, $resp:ident ), versions $min:literal ..= $max:literal; )*) => {
        /// The api key of each request type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ApiKey {
            $(
                #[doc = concat!("`", stringify!($variant), "`: api key ", stringify!($key), ".")]
                $variant = $key,
            )*
        }

        impl ApiKey {
            /// Every api with the versions this build speaks, for the version handshake.
            pub const ALL: &'static [(ApiKey, u16, u16)] = &[ $( (ApiKey::$variant, $min, $max), )* ];

            /// The api of a wire key, if this build knows it.
            pub fn from_u16(v: u16) -> Option<ApiKey> {
                match v {
                    $( $key => Some(ApiKey::$variant), )*
                    _ => None,
                }
            }

            /// The oldest and newest version of the api this build speaks.
            pub fn versions(self) -> (u16, u16) {
                match self {
                    $( ApiKey::$variant => ($min, $max), )*
                }
            }
        }

        $(
            impl RequestBody for $module::$req {
                const API_KEY: ApiKey = ApiKey::$variant;
                type Response = $module::$resp;
            }
        )*

        /// Any request, as the broker receives it.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Request {
            $(
                #[doc = concat!("A [`", stringify!($module), "::", stringify!($req), "`].")]
                $variant($module::$req),
            )*
        }

        /// Any successful response.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Response {
            $(
                #[doc = concat!("A [`", stringify!($module), "::", stringify!($resp), "`].")]
                $variant($module::$resp),
            )*
        }

        $(
            impl From<$module::$req> for Request {
                fn from(r: $module::$req) -> Request { Request::$variant(r) }
            }
            impl From<$module::$resp> for Response {
                fn from(r: $module::$resp) -> Response { Response::$variant(r) }
            }
        )*

        impl Request {
            /// The api this request belongs to.
            pub fn api_key(&self) -> ApiKey {
                match self { $( Request::$variant(_) => ApiKey::$variant, )* }
            }

            /// Appends the request's body to `buf`.
            pub fn encode(&self, buf: &mut BytesMut) {
                match self { $( Request::$variant(r) => r.encode(buf), )* }
            }

            /// Decodes the body of a request frame, checking the api key and version. What it
            /// returns takes at most [`DecodeLimit::REQUEST`] of the body's length in memory.
            pub fn decode(header: &FrameHeader, body: Bytes) -> Result<Request, RequestError> {
                let key = ApiKey::from_u16(header.api_key)
                    .ok_or(RequestError::UnknownApi(header.api_key))?;
                let (min, max) = key.versions();
                if !(min..=max).contains(&header.api_version) {
                    return Err(RequestError::UnsupportedVersion {
                        api_key: header.api_key,
                        version: header.api_version,
                        min,
                        max,
                    });
                }
                let mut r = Reader::with_limit(body, DecodeLimit::REQUEST);
                let req = match key {
                    $( ApiKey::$variant => Request::$variant($module::$req::decode(&mut r)?), )*
                };
                r.finish()?;
                Ok(req)
            }
        }

        impl Response {
            /// The api this response answers.
            pub fn api_key(&self) -> ApiKey {
                match self { $( Response::$variant(_) => ApiKey::$variant, )* }
            }

            /// Appends the response's body (after the error code) to `buf`.
            pub fn encode(&self, buf: &mut BytesMut) {
                match self { $( Response::$variant(r) => r.encode(buf), )* }
            }

            /// Decodes a successful response body of api `key` (after the error code).
            pub fn decode(key: ApiKey, r: &mut Reader) -> Result<Response, DecodeError> {
                Ok(match key {
                    $( ApiKey::$variant => Response::$variant($module::$resp::decode(r)?), )*
                })
            }
        }
    };
}

apis! {
    0 => ApiVersions(api_versions::ApiVersionsRequest, ApiVersionsResponse), versions 0..=0;
    1 => Metadata(metadata::MetadataRequest, MetadataResponse), versions 0..=0;
    2 => CreateTopic(create_topic::CreateTopicRequest, CreateTopicResponse), versions 0..=0;
    3 => DeleteTopic(delete_topic::DeleteTopicRequest, DeleteTopicResponse), versions 0..=0;
    4 => DescribeTopic(describe_topic::DescribeTopicRequest, DescribeTopicResponse), versions 0..=0;
    5 => Produce(produce::ProduceRequest, ProduceResponse), versions 1..=1;
    6 => Fetch(fetch::FetchRequest, FetchResponse), versions 1..=1;
    7 => ListOffsets(list_offsets::ListOffsetsRequest, ListOffsetsResponse), versions 0..=0;
    8 => Heartbeat(heartbeat::HeartbeatRequest, HeartbeatResponse), versions 0..=0;
    9 => CommitOffsets(commit_offsets::CommitOffsetsRequest, CommitOffsetsResponse), versions 0..=0;
    10 => FetchOffsets(fetch_offsets::FetchOffsetsRequest, FetchOffsetsResponse), versions 0..=0;
    11 => LeaveGroup(leave_group::LeaveGroupRequest, LeaveGroupResponse), versions 0..=0;
    12 => ListGroups(list_groups::ListGroupsRequest, ListGroupsResponse), versions 0..=0;
    13 => DescribeGroup(describe_group::DescribeGroupRequest, DescribeGroupResponse), versions 0..=0;
    14 => Raft(raft::RaftRequest, RaftResponse), versions 0..=0;
    15 => DeleteGroup(delete_group::DeleteGroupRequest, DeleteGroupResponse), versions 0..=0;
    16 => SkipDamage(skip_damage::SkipDamageRequest, SkipDamageResponse), versions 0..=0;
    17 => AuthChallenge(authenticate::AuthChallengeRequest, AuthChallengeResponse), versions 0..=0;
    18 => Authenticate(authenticate::AuthenticateRequest, AuthenticateResponse), versions 0..=0;
    19 => AlterAcl(acls::AlterAclRequest, AlterAclResponse), versions 0..=0;
    20 => ListAcls(acls::ListAclsRequest, ListAclsResponse), versions 0..=0;
    21 => AlterTopicConfig(alter_topic_config::AlterTopicConfigRequest, AlterTopicConfigResponse), versions 0..=0;
    22 => ReassignPartition(reassign::ReassignPartitionRequest, ReassignPartitionResponse), versions 0..=0;
    23 => DecommissionBroker(reassign::DecommissionBrokerRequest, DecommissionBrokerResponse), versions 0..=0;
    24 => AddPartitions(add_partitions::AddPartitionsRequest, AddPartitionsResponse), versions 0..=0;
}

/// Builds the frame of a request.
pub fn request_frame<R: RequestBody>(correlation_id: u32, req: &R) -> Frame {
    let mut body = BytesMut::new();
    req.encode(&mut body);
    Frame {
        header: FrameHeader {
            api_key: R::API_KEY as u16,
            api_version: R::API_KEY.versions().1,
            correlation_id,
        },
        body: body.freeze(),
    }
}

/// Writes a response body: the error code, then the response or the error's context.
pub fn encode_response<B: Body>(result: &Result<B, ApiError>, buf: &mut BytesMut) {
    match result {
        Ok(body) => {
            buf.put_u16_le(ErrorCode::None as u16);
            body.encode(buf);
        }
        Err(e) => e.encode(buf),
    }
}

/// Builds the frame answering `request` (its header is echoed).
pub fn response_frame<B: Body>(request: &FrameHeader, result: &Result<B, ApiError>) -> Frame {
    let mut body = BytesMut::new();
    encode_response(result, &mut body);
    Frame {
        header: *request,
        body: body.freeze(),
    }
}

/// Decodes a response body: `Ok(Ok(response))`, `Ok(Err(broker error))`, or `Err` when the
/// bytes are malformed.
pub fn decode_response<B: Body>(body: Bytes) -> Result<Result<B, ApiError>, DecodeError> {
    let mut r = Reader::new(body);
    let at = r.position();
    let raw = r.u16()?;
    let code = ErrorCode::try_from(raw).map_err(|_| DecodeError::InvalidTag {
        what: "error code",
        tag: raw.into(),
        offset: at,
    })?;
    let result = if code == ErrorCode::None {
        Ok(B::decode(&mut r)?)
    } else {
        Err(ApiError::decode(code, &mut r)?)
    };
    r.finish()?;
    Ok(result)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers every message module's tests use.
    use super::*;

    /// Encodes `v`, decodes it back, checks equality and that every truncation fails.
    pub fn roundtrip<B: Body + PartialEq + std::fmt::Debug>(v: &B) {
        let mut buf = BytesMut::new();
        v.encode(&mut buf);
        let full = buf.freeze();
        let mut r = Reader::new(full.clone());
        let back = B::decode(&mut r).expect("decodes");
        r.finish().expect("consumes every byte");
        assert_eq!(&back, v);
        for cut in 0..full.len() {
            let mut r = Reader::new(full.slice(..cut));
            let res = B::decode(&mut r).and_then(|_| r.finish());
            assert!(res.is_err(), "truncated at {cut} of {} decoded", full.len());
        }
    }

    /// Decodes `body` as a request of api `key`, as the broker does (with the request
    /// decode budget).
    pub fn decode_request(key: ApiKey, body: Vec<u8>) -> Result<Request, RequestError> {
        let header = FrameHeader {
            api_key: key as u16,
            api_version: key.versions().1,
            correlation_id: 1,
        };
        Request::decode(&header, Bytes::from(body))
    }

    /// The budget error a decode stopped with, if that is why it stopped.
    pub fn budget_exceeded(res: Result<Request, RequestError>) -> Option<(&'static str, u64)> {
        match res {
            Err(RequestError::Decode(DecodeError::BudgetExceeded { what, count, .. })) => {
                Some((what, count))
            }
            _ => None,
        }
    }

    /// How many bytes `v` encodes to; used to check that the `min_size` given to
    /// [`Reader::vec`] is the size of the smallest element, no more (or valid input would be
    /// refused) and no less (or a lying count could reserve more than the frame holds).
    pub fn encoded_len<B: Body>(v: &B) -> usize {
        let mut buf = BytesMut::new();
        v.encode(&mut buf);
        buf.len()
    }
}

impl Body for () {
    fn encode(&self, _: &mut BytesMut) {}
    fn decode(_: &mut Reader) -> Result<(), DecodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_dispatch_checks_key_and_version() {
        let req = fetch::FetchRequest {
            topic: "t".into(),
            partition: 1,
            offset: 5,
            max_bytes: 1024,
            max_wait_ms: 100,
        };
        let frame = request_frame(7, &req);
        let back = Request::decode(&frame.header, frame.body.clone()).unwrap();
        assert_eq!(back, Request::Fetch(req));
        let mut h = frame.header;
        h.api_version = 9;
        assert!(matches!(
            Request::decode(&h, frame.body.clone()),
            Err(RequestError::UnsupportedVersion { version: 9, .. })
        ));
        h.api_key = 999;
        assert_eq!(
            Request::decode(&h, frame.body),
            Err(RequestError::UnknownApi(999))
        );
    }

    #[test]
    fn every_api_key_roundtrips_through_u16() {
        for (i, &(key, min, max)) in ApiKey::ALL.iter().enumerate() {
            assert_eq!(key as u16, i as u16, "api keys are dense and in order");
            assert_eq!(ApiKey::from_u16(key as u16), Some(key));
            assert_eq!(key.versions(), (min, max));
            assert!(min <= max);
        }
        assert_eq!(ApiKey::from_u16(ApiKey::ALL.len() as u16), None);
    }

    #[test]
    fn every_request_dispatches_by_its_own_key() {
        let requests: Vec<Request> = vec![
            api_versions::ApiVersionsRequest {
                client_name: "c".into(),
                client_version: "1".into(),
            }
            .into(),
            metadata::MetadataRequest { topics: None }.into(),
            delete_topic::DeleteTopicRequest { name: "t".into() }.into(),
            list_groups::ListGroupsRequest {}.into(),
            delete_group::DeleteGroupRequest { group: "g".into() }.into(),
            skip_damage::SkipDamageRequest {
                topic: "t".into(),
                partition: 0,
                first_offset: 1,
                reason: "r".into(),
            }
            .into(),
            raft::RaftRequest {
                group_id: raft::METADATA_GROUP,
                payload: Bytes::from_static(b"rpc"),
            }
            .into(),
        ];
        for req in requests {
            let mut body = BytesMut::new();
            req.encode(&mut body);
            let header = FrameHeader {
                api_key: req.api_key() as u16,
                api_version: 0,
                correlation_id: 1,
            };
            assert_eq!(Request::decode(&header, body.freeze()).unwrap(), req);
        }
    }

    #[test]
    fn response_envelope_carries_ok_and_err() {
        let ok: Result<fetch::FetchResponse, ApiError> = Ok(fetch::FetchResponse {
            throttle_ms: 0,
            high_watermark: 3,
            log_start_offset: 0,
            records: Bytes::from_static(b"abc"),
        });
        let f = response_frame(
            &FrameHeader {
                api_key: 6,
                api_version: 0,
                correlation_id: 1,
            },
            &ok,
        );
        assert_eq!(decode_response(f.body).unwrap(), ok);
        let err: Result<fetch::FetchResponse, ApiError> = Err(ApiError::OffsetOutOfRange {
            log_start: 1,
            high_watermark: 2,
        });
        let mut b = BytesMut::new();
        encode_response(&err, &mut b);
        assert_eq!(decode_response(b.freeze()).unwrap(), err);
    }
}
