//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use steme_protocol::BatchError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a partition log. I/O errors keep their cause and name
/// the file and the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync failed, so what the kernel holds for this log is unknown
    /// (fsyncgate): the log refuses every further write. Reopen it to recover.
    #[error("log is poisoned and refuses writes: {reason}")]
    Poisoned { reason: String },
    #[error("raft index {got} does not follow the log: expected {expected}")]
    NonConsecutiveIndex { expected: u64, got: u64 },
    #[error("term regression at index {index}: term {got} after term {last}")]
    TermRegression { index: u64, last: u64, got: u64 },
    #[error("entry {index} is not a valid record batch")]
    InvalidBatch {
        index: u64,
        #[source]
        source: BatchError,
    },
    #[error("entry {index} is {len} bytes, more than the limit {max}")]
    EntryTooLarge { index: u64, len: u64, max: u64 },
    #[error("raft index {index} is outside the log [{first}, {next})")]
    IndexOutOfRange { index: u64, first: u64, next: u64 },
    #[error("offset {offset} is outside the log [{start}, {end})")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("cannot purge up to {index}: the log ends at {last:?}; use reset to move past it")]
    PurgeBeyondEnd { index: u64, last: Option<u64> },
    /// Recovery found damage and the policy was [`crate::RecoveryPolicy::FailOnCorruption`],
    /// or the directory is inconsistent in a way no tail cut can fix.
    #[error("corrupt log {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A read reached a damaged range: its bytes failed their checks. It is never served;
    /// repair it from a replica ([`crate::Log::repair`]). If an operator gave it up
    /// ([`crate::Log::record_skip`]), `damage.skipped` says when and why.
    #[error("damaged log {}: {damage}", dir.display())]
    Damaged {
        dir: PathBuf,
        damage: Box<crate::Damage>,
    },
    /// A repair was refused: the bytes offered do not fit the damaged range.
    #[error("repair of {} refused: {reason}", dir.display())]
    RepairRefused { dir: PathBuf, reason: String },
    /// No damaged range starts at the index a skip names.
    #[error("no damaged range of {} starts at raft index {first_index}", dir.display())]
    NoSuchDamage { dir: PathBuf, first_index: u64 },
    #[error("bad metadata file {path}: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
