//! What a served request turns into: a [`Reply`] (an encoded response body, written without
//! copying its tail) and, on a connection, an [`Outbound`] frame on its way to the socket.

use bytes::{Bytes, BytesMut};
use steme_protocol::ApiError;
use steme_protocol::frame::FrameHeader;
use steme_protocol::messages::{Body, encode_response};
use tokio::sync::mpsc;

/// A response body ready to write: `head` then `tail` chunks, sent without copying them.
pub struct Reply {
    pub head: BytesMut,
    pub tail: Vec<Bytes>,
}

impl Reply {
    pub fn ok<B: Body>(body: B) -> Reply {
        Reply::of(Ok(body))
    }

    /// The response for `result`: the body, or the error code and message.
    pub fn of<B: Body>(result: Result<B, ApiError>) -> Reply {
        let mut head = BytesMut::new();
        encode_response(&result, &mut head);
        Reply {
            head,
            tail: Vec::new(),
        }
    }

    pub fn error(e: ApiError) -> Reply {
        Reply::of::<()>(Err(e))
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One response frame on its way to the socket.
pub struct Outbound {
    pub header: FrameHeader,
    pub reply: Reply,
}

/// Queues the answer to one request on its connection's writer, then releases what the
/// request held (its share of the connection's budgets): a budget frees only once its answer
/// is queued. `false` if the connection's writer is gone.
pub async fn answer<Held>(
    out: &mpsc::Sender<Outbound>,
    header: FrameHeader,
    reply: Reply,
    held: Held,
) -> bool {
    let sent = out.send(Outbound { header, reply }).await.is_ok();
    drop(held);
    sent
}
