//! Configuration of one partition log.

use std::time::Duration;

use crate::error::{Error, Result};

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// `fdatasync` before every append returns (the safe default).
    EveryAppend,
    /// Group commit: a background flusher syncs once `ms` milliseconds have passed since the
    /// first unsynced append, or once `bytes` unsynced bytes have piled up, whichever comes
    /// first. One sync covers every append before it.
    Interval { ms: u64, bytes: u64 },
    /// The log never syncs on its own; the caller drives [`crate::Flusher::flush`].
    Never,
}

/// What recovery does when it finds damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPolicy {
    /// Cut the log at the first torn frame, CRC mismatch, index gap or term regression,
    /// and report what was cut (an unsynced tail is expected after a crash).
    TolerateCorruptTail,
    /// Refuse to open a damaged log.
    FailOnCorruption,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this many bytes.
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (and holds records).
    pub segment_age: Option<Duration>,
    /// Bytes of log between two sparse (offset / Raft index / time) index entries.
    pub index_interval_bytes: u64,
    pub flush: FlushPolicy,
    /// Keep at most this many bytes of sealed segments ([`crate::Log::retention_plan`]).
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose last append is older than this.
    pub retention_age: Option<Duration>,
    /// Size the active segment to `segment_bytes` when it is created (sparse `set_len`),
    /// so appends never grow the file and the mapping covers every future write.
    pub preallocate: bool,
    /// The largest single entry payload accepted.
    pub max_entry_bytes: u64,
    pub recovery: RecoveryPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 << 20,
            segment_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            flush: FlushPolicy::EveryAppend,
            retention_bytes: None,
            retention_age: None,
            preallocate: true,
            max_entry_bytes: 64 << 20,
            recovery: RecoveryPolicy::TolerateCorruptTail,
        }
    }
}

impl LogConfig {
    pub(crate) fn check(&self) -> Result<()> {
        if self.segment_bytes < 4096 {
            return Err(Error::Config("segment_bytes must be at least 4096".into()));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config(
                "index_interval_bytes must be positive".into(),
            ));
        }
        if self.max_entry_bytes > u64::from(u32::MAX) - 64 {
            return Err(Error::Config("max_entry_bytes must fit a u32 frame".into()));
        }
        if let FlushPolicy::Interval { ms, bytes } = self.flush
            && (ms == 0 || bytes == 0)
        {
            return Err(Error::Config(
                "flush interval and bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}
