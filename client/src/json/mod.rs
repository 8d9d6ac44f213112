//! The JSON forms shared by the `steme` CLI and the HTTP gateway (the `json` feature): an
//! ack ([`AckLine`]), a record ([`RecordLine`]) and the times they carry ([`time`]).
//!
//! Both print the HLC three ways (`hlc`, `time`, `logical`: see [`time::Stamp`]), and a
//! record carries the signed assertion's own JSON fields (`id`, `signer`, the assertion's
//! fields, `signature`), so a consumed line minus its place (`partition`, `offset`, the
//! stamp) is a signed assertion that can be produced again as it stands.

pub mod time;

use serde::{Deserialize, Serialize};
use steme_protocol::{Assertion, AssertionId};

use crate::{Ack, ClientError, Record};
use time::Stamp;

/// One ack, as printed: `hlc` also as `time` and `logical` (see [`Stamp`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AckLine {
    /// The assertion's id.
    pub id: AssertionId,
    /// The partition that holds it.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
    /// When it was stored.
    #[serde(flatten)]
    pub stamp: Stamp,
    /// It was already stored (this ack names the first copy).
    pub duplicate: bool,
}

impl From<&Ack> for AckLine {
    fn from(a: &Ack) -> Self {
        AckLine {
            id: a.id,
            partition: a.partition,
            offset: a.offset,
            stamp: Stamp::of(a.hlc),
            duplicate: a.duplicate,
        }
    }
}

/// One record, as printed: where it is, when it was stored (`hlc`, and as `time` and
/// `logical`: see [`Stamp`]), who signed it, the assertion's fields, the signature.
#[derive(Debug, Serialize)]
pub struct RecordLine {
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: u64,
    /// When it was stored.
    #[serde(flatten)]
    pub stamp: Stamp,
    /// The assertion's id.
    pub id: AssertionId,
    /// The signer's public key, hex.
    pub signer: String,
    /// The assertion's fields.
    #[serde(flatten)]
    pub assertion: Assertion,
    /// The Ed25519 signature over the id, hex.
    pub signature: String,
}

impl RecordLine {
    /// The printed form of `record`; fails if its bytes do not decode.
    pub fn new(record: &Record) -> Result<RecordLine, ClientError> {
        Ok(RecordLine {
            partition: record.partition(),
            offset: record.offset(),
            stamp: Stamp::of(record.hlc()),
            id: record.id(),
            signer: hex::encode(record.signer()),
            assertion: record.assertion()?,
            signature: hex::encode(record.signature()),
        })
    }
}
