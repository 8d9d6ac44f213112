//! `steme-segments`: the durable, memory-mapped, offset-addressed log of one partition. It
//! is also the partition's Raft log (D2): every entry carries a Raft index and term and is
//! either a record batch (taking offsets) or an opaque control entry. No networking, no
//! Raft types. File formats are drawn in `segments/FORMAT.md`.
//!
//! - [`config`]: [`LogConfig`], [`FlushPolicy`], [`RecoveryPolicy`].
//! - [`error`]: the crate's one error enum.
//! - [`format`](mod@format): byte layouts of segment headers, entry frames, index files and metadata.
//! - [`io`]: the [`FileIo`] trait, the real implementation and a fault-injecting one.
//! - `sys`: the only `unsafe` — read-only mappings handed out as `Bytes`, and `fallocate`.
//! - `segment`: one segment in memory and every lookup inside it.
//! - `log`: the writer [`Log`]: append, roll, truncate, purge, reset, retention,
//!   metadata, recovery on open.
//! - `recovery`: what [`Log::open`] trusts, scans and cuts ([`RecoveryReport`]).
//! - `state`: what the writer, readers and flushers share (segments, group-commit locks).
//! - `files`: creating, replacing, zeroing and removing segment and index files.
//! - `flush`: group commit, the durable index and the poisoned state ([`Flusher`]).
//! - `reader`: [`LogReader`], concurrent zero-copy reads by index, offset, time and id.
//! - `idmap`: every sealed segment's ids in one table, so dedup cost does not grow with
//!   the log.
//! - `checked`: the checked walk every served frame goes through, and the scrubber's step.
//! - `damage`: damaged ranges ([`Damage`]) and their persisted registry.
//! - `log::repair`: [`Log::repair`], a damaged range rewritten from a healthy copy.
//!
//! # Durability
//! An append is durable once [`Log::durable_index`] (or [`Flusher::durable_index`])
//! reaches it. A [`Flusher`] can sync from another thread while the writer keeps
//! appending; one `fdatasync` covers every append before it. After a failed write or sync
//! the log is poisoned and refuses writes ([`Error::Poisoned`]). Each sync also records,
//! in the active segment's header slot, the [`DurablePoint`] the sync before it reached
//! (lag-one, so the slot never names unsynced bytes); [`Flusher::record_durable`] records
//! the latest one when the log goes idle.
//!
//! # Recovery and damage
//! [`Log::open`] trusts sealed segments below the recovery checkpoint (their index files
//! hold their summary), and scans the rest — in practice the last one or two segments —
//! frame by frame: CRCs, Raft index continuity, term monotonicity and batch base offsets.
//! Damage **past** the recorded durable point is a torn tail: cut (zeroing it), reported
//! in [`RecoveryReport::cut`]. Damage **below** it is corruption: a [`Damage`] range that
//! keeps its place (indexes and offsets run on past it), is never served (reads fail with
//! [`Error::Damaged`]), never cut, never deleted by retention, and is repaired with
//! [`Log::repair`] from another replica's [`LogReader::read_frames`]. Reads and the
//! scrubber ([`LogReader::scrub`]) find damage in segments recovery trusted.
//!
//! # API at a glance
//! - [`Log::open`]`(dir, LogConfig, Arc<dyn FileIo>) -> (Log, RecoveryReport)`.
//! - Writes (one writer, `&mut Log`): [`Log::append`] / [`Log::append_many`] with
//!   [`Payload::Batch`] (base offset patched in place) or [`Payload::Control`];
//!   [`Log::truncate_after`] / [`Log::truncate_from`]; [`Log::purge_upto`]; [`Log::reset`];
//!   [`Log::roll`]; [`Log::retention_plan`] (limits changed live by
//!   [`Log::set_retention`]); [`Log::set_meta`]; [`Log::flush`]; [`Log::close`].
//! - [`Flusher`] (clone, any thread): `flush`, `record_durable`, `durable_index`,
//!   `wait_durable`.
//! - [`LogReader`] (clone, any thread): `read_entries`, `read_from_offset`,
//!   `read_frames`, `scrub`, `damaged`, `offset_for_time`, `lookup_id`, `index_ids`,
//!   `term_at`, offsets and indexes.
//!
//! # Content-id index
//! Exact for the whole retained log: sealed segments have a mmapped `.ids` file (Bloom
//! filter + sorted 8-byte id prefixes, ≈ 13.3 bytes per record on disk, no heap), the
//! active segment a hash map (≈ 19–37 bytes per record in RAM). Over them, the id map
//! (`idmap`) holds every sealed segment's ids in one table (10.7–21.3 bytes per record in
//! RAM, [`LogReader::id_map_stats`]), so a lookup probes one table, not every segment:
//! its cost does not grow with the log. It is loaded after open, a bounded chunk per
//! [`LogReader::index_ids`] call, so opening costs the same for any size; until a segment
//! is loaded, lookups search it directly. Candidates are confirmed by hashing the stored
//! record. The append path never hashes: [`LogReader::index_ids`] (for the apply loop)
//! and lookups index what was appended since.
#![deny(unsafe_code)]

mod checked;
pub mod config;
mod damage;
pub mod error;
mod files;
mod flush;
pub mod format;
mod idmap;
pub mod io;
mod log;
mod reader;
mod recovery;
mod segment;
mod state;
mod sys;

pub use checked::Scrubbed;
pub use config::{FlushPolicy, LogConfig, RecoveryPolicy};
pub use damage::{Damage, Skip};
pub use error::{Error, Result};
pub use flush::Flusher;
pub use format::{DurablePoint, EntryKind};
pub use io::{Fault, FaultyIo, FileIo, RealIo};
pub use log::{Appended, Cut, Log, MetaWrite, NewEntry, Payload, PurgePlan, RecoveryReport};
pub use reader::{Entry, IdMapStats, LogReader, OffsetRead};
pub use segment::{ids_path, index_path, segment_path};
