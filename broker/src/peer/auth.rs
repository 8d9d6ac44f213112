//! Peer authentication (D8, D11): a challenge–response on a shared cluster secret, then every
//! frame sealed with a keyed BLAKE3 MAC.
//!
//! Brokers share a secret (`--cluster-secret-file`). It never crosses the wire: each side
//! proves it holds the secret by a MAC over a transcript both sides saw, and the connection's
//! keys are derived from the same transcript, so they are fresh for every connection.
//!
//! The handshake, before any frame (all integers little-endian):
//!
//! ```text
//! dialer -> acceptor   Hello      magic[8] "STMPEER1" | dialer_id u64 | target_id u64 | nonce_d[32]
//! acceptor -> dialer   Challenge  magic[8] "STMPEER1" | acceptor_id u64 | nonce_a[32] | proof_a[32]
//! dialer -> acceptor   Proof      proof_d[32]
//! acceptor -> dialer   Verdict    u8 (0 accepted, 1 bad proof, 2 not the node you dialled)
//!
//! T        = "steme peer v1" | dialer_id | acceptor_id | nonce_d | nonce_a
//! K        = BLAKE3 derive_key("steme cluster secret v1", secret file contents)
//! proof_a  = keyed_hash(K, "acceptor" | T)      proof_d = keyed_hash(K, "dialer" | T)
//! key d->a = keyed_hash(K, "dialer to acceptor" | T)
//! key a->d = keyed_hash(K, "acceptor to dialer" | T)
//! ```
//!
//! The acceptor proves itself first, over a nonce of its own, so what an unauthenticated
//! dialer learns cannot be replayed anywhere; the two proofs carry different labels, so one
//! cannot be reflected as the other. Both ids are in the transcript: a peer cannot later
//! claim to be another broker on this connection.
//!
//! After the handshake every frame is the protocol's frame with a MAC appended inside its
//! length, so framing and size limits work as they do on the client plane:
//!
//! ```text
//! +-----------------------------+------------------+-----------------------------------+
//! | frame head (length counts   | body             | tag[32] = keyed_hash(key of this  |
//! | body + tag)                 |                  |   direction, seq u64 | head | body)|
//! +-----------------------------+------------------+-----------------------------------+
//! ```
//!
//! `seq` counts the frames sent in that direction from 0 and is not sent: a frame that is
//! replayed, reordered, dropped or injected fails its check, and the connection is closed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use steme_protocol::frame::{FRAME_HEADER_LEN, Frame, FrameError, FrameHeader, decode_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::raft::types::NodeId;

/// Bytes of the MAC after every sealed frame's body.
pub const TAG_LEN: usize = blake3::OUT_LEN;
/// The handshake as a whole must finish within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The least secret we accept: 32 bytes (64 hex characters is what `generate` writes).
pub const MIN_SECRET_LEN: usize = 32;

const MAGIC: [u8; 8] = *b"STMPEER1";
const NONCE_LEN: usize = 32;
const HELLO_LEN: usize = MAGIC.len() + 8 + 8 + NONCE_LEN;
const CHALLENGE_LEN: usize = MAGIC.len() + 8 + NONCE_LEN + TAG_LEN;
const KEY_CONTEXT: &str = "steme cluster secret v1";
const TRANSCRIPT_LABEL: &[u8] = b"steme peer v1";

const ACCEPTED: u8 = 0;
const BAD_PROOF: u8 = 1;
const WRONG_NODE: u8 = 2;

/// The cluster secret, as the key derived from the file's contents.
#[derive(Clone)]
pub struct ClusterSecret {
    key: [u8; 32],
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Why the secret could not be loaded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("cluster secret file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cluster secret file {path} holds {len} bytes; it needs at least {MIN_SECRET_LEN} \
         (create one with 32 random bytes, e.g. `openssl rand -hex 32 > FILE`)"
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("cannot get random bytes for a cluster secret: {0}")]
    Random(#[source] getrandom::Error),
}

impl ClusterSecret {
    /// Derives the key from secret bytes (surrounding whitespace is not part of the secret).
    pub fn from_bytes(secret: &[u8]) -> ClusterSecret {
        ClusterSecret {
            key: blake3::derive_key(KEY_CONTEXT, secret.trim_ascii()),
        }
    }

    /// Reads a secret file.
    pub fn load(path: &Path) -> Result<ClusterSecret, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Io {
            path: path.to_owned(),
            source,
        })?;
        let len = bytes.trim_ascii().len();
        if len < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: path.to_owned(),
                len,
            });
        }
        Ok(ClusterSecret::from_bytes(&bytes))
    }

    /// Reads the secret file at `path`, first writing a new random one (mode 0600) if there
    /// is none.
    pub fn load_or_generate(path: &Path) -> Result<ClusterSecret, SecretError> {
        if !path.exists() {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).map_err(SecretError::Random)?;
            write_private(path, format!("{}\n", hex::encode(raw)).as_bytes()).map_err(
                |source| SecretError::Io {
                    path: path.to_owned(),
                    source,
                },
            )?;
        }
        ClusterSecret::load(path)
    }

    /// A key for another purpose, derived from the same secret (e.g. the key brokers sign
    /// internal records with).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::keyed_hash(&self.key, purpose.as_bytes()).into()
    }
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Why a handshake failed. Each is logged and the connection closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("handshake i/o: {0}")]
    Io(#[from] io::Error),
    #[error("handshake not completed within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("not a Steme peer (bad magic {0:02x?}); is this a client connecting to the peer port?")]
    BadMagic([u8; 8]),
    #[error(
        "peer claims node id {0}, which is not a broker id (ids start at 1 and differ from ours)"
    )]
    BadId(NodeId),
    #[error("peer {0} does not prove the cluster secret (different --cluster-secret-file?)")]
    BadProof(NodeId),
    #[error("dialled broker {expected}, reached broker {found} (check the --peer address)")]
    WrongNode { expected: NodeId, found: NodeId },
    #[error("peer {peer} refused us: {reason}")]
    Refused { peer: NodeId, reason: &'static str },
    #[error("cannot get random bytes: {0}")]
    Random(#[source] getrandom::Error),
}

/// An authenticated connection's state: who the peer is, and the keys of both directions.
#[derive(Debug)]
pub struct Session {
    pub peer: NodeId,
    pub sealer: Sealer,
    pub opener: Opener,
}

fn nonce() -> Result<[u8; NONCE_LEN], HandshakeError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(HandshakeError::Random)?;
    Ok(n)
}

struct Transcript([u8; TRANSCRIPT_LABEL.len() + 16 + 2 * NONCE_LEN]);

impl Transcript {
    fn new(dialer: NodeId, acceptor: NodeId, nonce_d: &[u8], nonce_a: &[u8]) -> Transcript {
        let mut t = [0u8; TRANSCRIPT_LABEL.len() + 16 + 2 * NONCE_LEN];
        let mut at = 0;
        for part in [
            TRANSCRIPT_LABEL,
            &dialer.to_le_bytes(),
            &acceptor.to_le_bytes(),
            nonce_d,
            nonce_a,
        ] {
            t[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Transcript(t)
    }

    fn mac(&self, secret: &ClusterSecret, label: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&secret.key);
        h.update(label);
        h.update(&self.0);
        h.finalize()
    }

    fn session(&self, secret: &ClusterSecret, peer: NodeId, dialer: bool) -> Session {
        let d2a = *self.mac(secret, b"dialer to acceptor").as_bytes();
        let a2d = *self.mac(secret, b"acceptor to dialer").as_bytes();
        let (send, recv) = if dialer { (d2a, a2d) } else { (a2d, d2a) };
        Session {
            peer,
            sealer: Sealer { key: send, seq: 0 },
            opener: Opener { key: recv, seq: 0 },
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn check_magic(b: &[u8]) -> Result<(), HandshakeError> {
    let got: [u8; 8] = b[..8].try_into().expect("8 bytes");
    if got != MAGIC {
        return Err(HandshakeError::BadMagic(got));
    }
    Ok(())
}

/// Authenticates an outgoing connection to broker `target` as broker `me`.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    secret: &ClusterSecret,
    me: NodeId,
    target: NodeId,
) -> Result<Session, HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, dial_inner(io, secret, me, target))
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn dial_inner<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    secret: &ClusterSecret,
    me: NodeId,
    target: NodeId,
) -> Result<Session, HandshakeError> {
    let nonce_d = nonce()?;
    let mut hello = [0u8; HELLO_LEN];
    hello[..8].copy_from_slice(&MAGIC);
    hello[8..16].copy_from_slice(&me.to_le_bytes());
    hello[16..24].copy_from_slice(&target.to_le_bytes());
    hello[24..].copy_from_slice(&nonce_d);
    io.write_all(&hello).await?;
    io.flush().await?;

    let mut ch = [0u8; CHALLENGE_LEN];
    io.read_exact(&mut ch).await?;
    check_magic(&ch)?;
    let found = u64_at(&ch, 8);
    if found != target {
        return Err(HandshakeError::WrongNode {
            expected: target,
            found,
        });
    }
    let nonce_a = &ch[16..16 + NONCE_LEN];
    let proof_a = blake3::Hash::from_bytes(ch[16 + NONCE_LEN..].try_into().expect("32 bytes"));
    let t = Transcript::new(me, target, &nonce_d, nonce_a);
    // `blake3::Hash` compares in constant time.
    if t.mac(secret, b"acceptor") != proof_a {
        return Err(HandshakeError::BadProof(target));
    }
    io.write_all(t.mac(secret, b"dialer").as_bytes()).await?;
    io.flush().await?;
    let mut verdict = [0u8; 1];
    io.read_exact(&mut verdict).await?;
    match verdict[0] {
        ACCEPTED => Ok(t.session(secret, target, true)),
        BAD_PROOF => Err(HandshakeError::Refused {
            peer: target,
            reason: "our proof of the cluster secret was wrong",
        }),
        _ => Err(HandshakeError::Refused {
            peer: target,
            reason: "it is not the broker we dialled",
        }),
    }
}

/// Authenticates an incoming connection as broker `me`; returns the session with the
/// dialer's proven id.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    secret: &ClusterSecret,
    me: NodeId,
) -> Result<Session, HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_inner(io, secret, me))
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn accept_inner<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    secret: &ClusterSecret,
    me: NodeId,
) -> Result<Session, HandshakeError> {
    let mut hello = [0u8; HELLO_LEN];
    io.read_exact(&mut hello).await?;
    check_magic(&hello)?;
    let dialer = u64_at(&hello, 8);
    let target = u64_at(&hello, 16);
    if dialer == 0 || dialer == me {
        return Err(HandshakeError::BadId(dialer));
    }
    let nonce_d = &hello[24..];
    let nonce_a = nonce()?;
    let t = Transcript::new(dialer, me, nonce_d, &nonce_a);
    let mut ch = [0u8; CHALLENGE_LEN];
    ch[..8].copy_from_slice(&MAGIC);
    ch[8..16].copy_from_slice(&me.to_le_bytes());
    ch[16..16 + NONCE_LEN].copy_from_slice(&nonce_a);
    ch[16 + NONCE_LEN..].copy_from_slice(t.mac(secret, b"acceptor").as_bytes());
    io.write_all(&ch).await?;
    io.flush().await?;

    let mut proof = [0u8; TAG_LEN];
    io.read_exact(&mut proof).await?;
    let verdict = if target != me {
        WRONG_NODE
    } else if t.mac(secret, b"dialer") != blake3::Hash::from_bytes(proof) {
        BAD_PROOF
    } else {
        ACCEPTED
    };
    io.write_all(&[verdict]).await?;
    io.flush().await?;
    match verdict {
        ACCEPTED => Ok(t.session(secret, dialer, false)),
        WRONG_NODE => Err(HandshakeError::WrongNode {
            expected: target,
            found: me,
        }),
        _ => Err(HandshakeError::BadProof(dialer)),
    }
}

/// Seals the frames one side sends.
pub struct Sealer {
    key: [u8; 32],
    seq: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("seq", &self.seq).finish()
    }
}

/// A sealed frame's head and tag; the body goes between them, as it is.
pub struct Sealed {
    pub head: [u8; FRAME_HEADER_LEN],
    pub tag: [u8; TAG_LEN],
}

/// One frame being sealed: feed it the body's parts in order, then take head and tag.
pub struct Sealing {
    head: [u8; FRAME_HEADER_LEN],
    hasher: blake3::Hasher,
    body_len: usize,
    fed: usize,
}

impl Sealing {
    pub fn update(&mut self, part: &[u8]) {
        self.fed += part.len();
        self.hasher.update(part);
    }

    /// The frame's head and its tag. The parts fed must add up to the announced length.
    pub fn finish(self) -> ([u8; FRAME_HEADER_LEN], [u8; TAG_LEN]) {
        debug_assert_eq!(
            self.fed, self.body_len,
            "sealed body differs from its length"
        );
        (self.head, *self.hasher.finalize().as_bytes())
    }
}

impl Sealer {
    /// Starts sealing the next frame, whose body is `body_len` bytes.
    pub fn start(&mut self, header: &FrameHeader, body_len: usize) -> Sealing {
        let head = header.encode_head(body_len + TAG_LEN);
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&self.seq.to_le_bytes());
        hasher.update(&head);
        self.seq += 1;
        Sealing {
            head,
            hasher,
            body_len,
            fed: 0,
        }
    }

    /// Seals the next frame, whose body is `parts` in order.
    pub fn seal(&mut self, header: &FrameHeader, parts: &[&[u8]]) -> Sealed {
        let mut s = self.start(header, parts.iter().map(|p| p.len()).sum());
        for p in parts {
            s.update(p);
        }
        let (head, tag) = s.finish();
        Sealed { head, tag }
    }
}

/// Why a received frame was not accepted; the connection is closed after any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("frame {seq} has no room for its MAC ({len} bytes)")]
    NoTag { seq: u64, len: usize },
    #[error("frame {seq} fails its MAC (altered, replayed, reordered or injected)")]
    BadTag { seq: u64 },
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Checks and unseals the frames one side receives.
pub struct Opener {
    key: [u8; 32],
    seq: u64,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener").field("seq", &self.seq).finish()
    }
}

impl Opener {
    /// The next whole frame in `buf`, checked and without its tag; `Ok(None)` until one has
    /// fully arrived. `max_frame` bounds the frame as the protocol's framing does (the tag
    /// is allowed on top).
    pub fn open(
        &mut self,
        buf: &mut BytesMut,
        max_frame: usize,
    ) -> Result<Option<Frame>, OpenError> {
        let Some(frame) = decode_frame(buf, max_frame + TAG_LEN)? else {
            return Ok(None);
        };
        let len = frame.body.len();
        if len < TAG_LEN {
            return Err(OpenError::NoTag { seq: self.seq, len });
        }
        let body: Bytes = frame.body.slice(..len - TAG_LEN);
        let tag: [u8; TAG_LEN] = frame.body[len - TAG_LEN..].try_into().expect("tag length");
        let head = frame.header.encode_head(len);
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&self.seq.to_le_bytes());
        h.update(&head);
        h.update(&body);
        if h.finalize() != blake3::Hash::from_bytes(tag) {
            return Err(OpenError::BadTag { seq: self.seq });
        }
        self.seq += 1;
        Ok(Some(Frame {
            header: frame.header,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::from_bytes(s.as_bytes())
    }

    async fn pair(
        dial_secret: &ClusterSecret,
        accept_secret: &ClusterSecret,
        dialer: NodeId,
        target: NodeId,
        acceptor: NodeId,
    ) -> (
        Result<Session, HandshakeError>,
        Result<Session, HandshakeError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        // Each side drops its end when it is done, as a closed connection would.
        tokio::join!(
            async move { dial(&mut a, dial_secret, dialer, target).await },
            async move { accept(&mut b, accept_secret, acceptor).await }
        )
    }

    fn frame(corr: u32, body: &[u8], sealer: &mut Sealer) -> BytesMut {
        let header = FrameHeader {
            api_key: 14,
            api_version: 0,
            correlation_id: corr,
        };
        let sealed = sealer.seal(&header, &[body]);
        let mut out = BytesMut::new();
        out.extend_from_slice(&sealed.head);
        out.extend_from_slice(body);
        out.extend_from_slice(&sealed.tag);
        out
    }

    #[tokio::test]
    async fn peers_with_the_same_secret_agree_on_ids_and_keys() {
        let s = secret("a shared cluster secret of enough bytes");
        let (d, a) = pair(&s, &s, 1, 2, 2).await;
        let (mut d, mut a) = (d.unwrap(), a.unwrap());
        assert_eq!(d.peer, 2);
        assert_eq!(a.peer, 1);
        // Both directions open what the other side sealed, in order.
        for i in 0..3u32 {
            let mut wire = frame(i, format!("hello {i}").as_bytes(), &mut d.sealer);
            let f = a.opener.open(&mut wire, 1 << 20).unwrap().unwrap();
            assert_eq!(f.header.correlation_id, i);
            assert_eq!(&f.body[..], format!("hello {i}").as_bytes());
            let mut back = frame(i, b"answer", &mut a.sealer);
            let f = d.opener.open(&mut back, 1 << 20).unwrap().unwrap();
            assert_eq!(&f.body[..], b"answer");
        }
    }

    #[tokio::test]
    async fn rejects_a_wrong_secret_on_either_side() {
        let good = secret("the right secret, long enough....");
        let bad = secret("the wrong secret, long enough....");
        // The acceptor's proof fails at the dialer: it sends no proof of its own.
        let (d, a) = pair(&bad, &good, 1, 2, 2).await;
        assert!(matches!(d, Err(HandshakeError::BadProof(2))), "{d:?}");
        assert!(a.is_err());
    }

    #[tokio::test]
    async fn rejects_a_dialer_that_cannot_prove_the_secret() {
        let s = secret("a shared cluster secret of enough bytes");
        let (mut c, mut b) = tokio::io::duplex(4096);
        let attacker = async move {
            let mut hello = [0u8; HELLO_LEN];
            hello[..8].copy_from_slice(&MAGIC);
            hello[8..16].copy_from_slice(&1u64.to_le_bytes());
            hello[16..24].copy_from_slice(&2u64.to_le_bytes());
            c.write_all(&hello).await.unwrap();
            let mut ch = [0u8; CHALLENGE_LEN];
            c.read_exact(&mut ch).await.unwrap();
            // Replays the acceptor's own proof as its answer.
            c.write_all(&ch[16 + NONCE_LEN..]).await.unwrap();
            let mut verdict = [0u8; 1];
            c.read_exact(&mut verdict).await.unwrap();
            verdict[0]
        };
        let (verdict, r) = tokio::join!(attacker, async move { accept(&mut b, &s, 2).await });
        assert_eq!(verdict, BAD_PROOF);
        assert!(matches!(r, Err(HandshakeError::BadProof(1))), "{r:?}");
    }

    #[tokio::test]
    async fn rejects_the_wrong_node_and_impossible_ids() {
        let s = secret("a shared cluster secret of enough bytes");
        let (d, _) = pair(&s, &s, 1, 2, 3).await;
        assert!(matches!(
            d,
            Err(HandshakeError::WrongNode {
                expected: 2,
                found: 3
            })
        ));
        let (_, a) = pair(&s, &s, 3, 3, 3).await;
        assert!(matches!(a, Err(HandshakeError::BadId(3))), "{a:?}");
        let (_, a) = pair(&s, &s, 0, 3, 3).await;
        assert!(matches!(a, Err(HandshakeError::BadId(0))), "{a:?}");
    }

    #[tokio::test]
    async fn rejects_a_client_speaking_frames_to_the_peer_port() {
        let s = secret("a shared cluster secret of enough bytes");
        let (mut c, mut b) = tokio::io::duplex(4096);
        let mut hello = BytesMut::new();
        steme_protocol::frame::Frame {
            header: FrameHeader {
                api_key: 14,
                api_version: 0,
                correlation_id: 1,
            },
            body: Bytes::from(vec![0u8; 64]),
        }
        .encode(&mut hello);
        c.write_all(&hello).await.unwrap();
        let r = accept(&mut b, &s, 2).await;
        assert!(matches!(r, Err(HandshakeError::BadMagic(_))), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_dialer_times_out() {
        let s = secret("a shared cluster secret of enough bytes");
        let (_c, mut b) = tokio::io::duplex(4096);
        let r = accept(&mut b, &s, 2).await;
        assert!(matches!(r, Err(HandshakeError::Timeout)), "{r:?}");
    }

    #[tokio::test]
    async fn flipped_replayed_reordered_and_injected_frames_fail_their_mac() {
        let s = secret("a shared cluster secret of enough bytes");
        let (d, a) = pair(&s, &s, 1, 2, 2).await;
        let (mut d, a) = (d.unwrap(), a.unwrap());
        let mut opener = a.opener;
        let f0 = frame(0, b"first", &mut d.sealer);
        let f1 = frame(1, b"second", &mut d.sealer);

        // Every single flipped bit, anywhere in the frame, is caught.
        for at in 0..f0.len() {
            let mut o = Opener {
                key: opener.key,
                seq: 0,
            };
            let mut bad = f0.clone();
            bad[at] ^= 0x01;
            let r = o.open(&mut bad, 1 << 20);
            assert!(!matches!(r, Ok(Some(_))), "flip at byte {at} accepted");
        }
        // Reordered: the second frame first.
        let r = opener.open(&mut f1.clone(), 1 << 20);
        assert!(matches!(r, Err(OpenError::BadTag { seq: 0 })), "{r:?}");
        // In order, then a replay of the first.
        let mut o = Opener {
            key: opener.key,
            seq: 0,
        };
        assert!(o.open(&mut f0.clone(), 1 << 20).unwrap().is_some());
        assert!(o.open(&mut f1.clone(), 1 << 20).unwrap().is_some());
        assert!(matches!(
            o.open(&mut f0.clone(), 1 << 20),
            Err(OpenError::BadTag { seq: 2 })
        ));
        // Injected: a frame sealed under another connection's key.
        let (d2, _) = pair(&s, &s, 1, 2, 2).await;
        let mut other = d2.unwrap();
        let mut o = Opener {
            key: opener.key,
            seq: 0,
        };
        let r = o.open(&mut frame(0, b"first", &mut other.sealer), 1 << 20);
        assert!(matches!(r, Err(OpenError::BadTag { seq: 0 })), "{r:?}");
        // A frame too short to hold a tag.
        let mut short = BytesMut::new();
        short.extend_from_slice(
            &FrameHeader {
                api_key: 14,
                api_version: 0,
                correlation_id: 0,
            }
            .encode_head(4),
        );
        short.extend_from_slice(&[0; 4]);
        let r = opener.open(&mut short, 1 << 20);
        assert!(matches!(r, Err(OpenError::NoTag { .. })), "{r:?}");
    }

    #[test]
    fn secret_files_are_checked_and_generated_private() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "too short\n").unwrap();
        assert!(matches!(
            ClusterSecret::load(&short),
            Err(SecretError::TooShort { len: 9, .. })
        ));
        assert!(matches!(
            ClusterSecret::load(&dir.path().join("missing")),
            Err(SecretError::Io { .. })
        ));
        let path = dir.path().join("cluster.secret");
        let first = ClusterSecret::load_or_generate(&path).unwrap();
        let again = ClusterSecret::load_or_generate(&path).unwrap();
        assert_eq!(first.key, again.key, "an existing file is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        assert_ne!(first.derive("a"), first.derive("b"));
    }
}
