//! Appending: checking and stamping each new entry, writing whole frames with one
//! vectored write, and keeping the active file allocated ahead of the writer.

use std::time::Instant;

use steme_protocol::BatchError;
use steme_protocol::batch::{patch_base_offset, validate, validate_framing};

use super::{ALLOCATE_AHEAD, Log};
use crate::config::FlushPolicy;
use crate::error::{Error, Result};
use crate::format::{EntryKind, FRAME_HEADER_LEN, FrameHeader};
use crate::segment::segment_path;
use crate::state::{lock, now_ms};
use crate::sys::map_file;

/// The payload of a new entry.
#[derive(Debug)]
pub enum Payload<'a> {
    /// A record batch, checked whole (framing and CRC) before it is stored. The log sets its
    /// `base_offset` (and corrects the CRC) in place; every other byte is stored as given.
    Batch(&'a mut [u8]),
    /// A record batch whose CRC the caller has just checked, with its records' content id
    /// prefixes ([`crate::format::id_prefix`]) in order (a leader's copy of a producer's
    /// batch, which the broker validated and hashed). Only its framing is checked, and its
    /// ids are indexed as given rather than hashed again. A wrong CRC is not detected here,
    /// but it stays wrong on disk (see [`steme_protocol::batch::patch_header`]) and reads
    /// refuse the batch.
    Checked { batch: &'a mut [u8], ids: &'a [u64] },
    /// A record batch checked whole, like [`Payload::Batch`], whose records' id prefixes
    /// come with it (a leader's hint to its followers, which then need not hash them).
    /// Wrong prefixes cannot make a lookup find a record that is not there: every id
    /// lookup confirms a candidate by hashing the stored record. They could only hide one.
    /// A hint whose length is not the batch's record count is ignored (the records are
    /// hashed), never an error.
    Hinted { batch: &'a mut [u8], ids: &'a [u64] },
    /// Opaque control bytes (membership, blank): stored with a CRC, takes no offset.
    Control(&'a [u8]),
}

/// One entry to append.
#[derive(Debug)]
pub struct NewEntry<'a> {
    pub index: u64,
    pub term: u64,
    pub payload: Payload<'a>,
}

/// Where an appended entry landed. For a control entry `base_offset == end_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub base_offset: u64,
    pub end_offset: u64,
}

/// Frame and index facts of an entry about to be written.
struct Planned<'a> {
    header: [u8; FRAME_HEADER_LEN],
    frame: FrameHeader,
    batch: Option<steme_protocol::BatchHeader>,
    /// The records' content id prefixes, when the appender gave them (none for a control
    /// entry).
    ids: Option<&'a [u64]>,
}

impl Log {
    // -----------------------------------------------------------------------------------
    // Appending

    /// Appends one entry. See [`Log::append_many`].
    pub fn append(&mut self, index: u64, term: u64, payload: Payload<'_>) -> Result<Appended> {
        let mut one = [NewEntry {
            index,
            term,
            payload,
        }];
        let done = self.append_many(&mut one)?;
        Ok(done[0])
    }

    /// Appends entries in order. Indexes must follow the log (`next_index()`), terms never
    /// decrease, batches must be valid. Every entry is checked before anything is written,
    /// so a bad entry appends nothing. Each batch's `base_offset` is set to the log end
    /// offset (patched in the caller's buffer, CRC included).
    ///
    /// The entries are durable once [`Log::durable_index`] reaches them: at once under
    /// [`FlushPolicy::EveryAppend`], at the next group commit otherwise. Any write or sync
    /// error poisons the log.
    pub fn append_many(&mut self, entries: &mut [NewEntry<'_>]) -> Result<Vec<Appended>> {
        self.shared.check_writable()?;
        let now = now_ms();
        let (mut next, mut term, mut end) = {
            let st = self.shared.read();
            (st.next_index(), st.last_term, st.end_offset())
        };
        let mut plan = Vec::with_capacity(entries.len());
        let mut done = Vec::with_capacity(entries.len());
        for e in entries.iter_mut() {
            if e.index != next {
                return Err(Error::NonConsecutiveIndex {
                    expected: next,
                    got: e.index,
                });
            }
            if e.term < term {
                return Err(Error::TermRegression {
                    index: e.index,
                    last: term,
                    got: e.term,
                });
            }
            let (bytes, kind): (&[u8], EntryKind) = match &e.payload {
                Payload::Batch(b)
                | Payload::Checked { batch: b, .. }
                | Payload::Hinted { batch: b, .. } => (&**b, EntryKind::Batch),
                Payload::Control(c) => (c, EntryKind::Control),
            };
            if bytes.len() as u64 > self.cfg.max_entry_bytes {
                return Err(Error::EntryTooLarge {
                    index: e.index,
                    len: bytes.len() as u64,
                    max: self.cfg.max_entry_bytes,
                });
            }
            let base = end;
            let mut batch = None;
            let mut ids = None;
            let invalid = |source| Error::InvalidBatch {
                index: e.index,
                source,
            };
            let crc_checked = matches!(e.payload, Payload::Checked { .. });
            let stamped = match &mut e.payload {
                Payload::Batch(b) => Some((validate(b).map_err(invalid)?, b)),
                Payload::Checked {
                    batch: b,
                    ids: known,
                }
                | Payload::Hinted {
                    batch: b,
                    ids: known,
                } => {
                    let h = if crc_checked {
                        validate_framing(b)
                    } else {
                        validate(b)
                    }
                    .map_err(invalid)?;
                    if known.len() == h.record_count as usize {
                        ids = Some(*known);
                    } else if crc_checked {
                        return Err(invalid(BatchError::CountMismatch {
                            offset: 0,
                            declared: h.record_count,
                            found: u32::try_from(known.len()).unwrap_or(u32::MAX),
                        }));
                    }
                    // A hint of the wrong length is only advice gone wrong: the records are
                    // hashed by the index catch-up, as for a batch without one.
                    Some((h, b))
                }
                Payload::Control(_) => {
                    ids = Some(&[][..]);
                    None
                }
            };
            if let Some((mut h, b)) = stamped {
                patch_base_offset(b, base);
                h.base_offset = base;
                end = h.end_offset();
                batch = Some(h);
            }
            let payload: &[u8] = match &e.payload {
                Payload::Batch(b)
                | Payload::Checked { batch: b, .. }
                | Payload::Hinted { batch: b, .. } => b,
                Payload::Control(c) => c,
            };
            let frame = FrameHeader {
                payload_len: payload.len() as u32,
                index: e.index,
                term: e.term,
                kind,
            };
            plan.push(Planned {
                header: frame.encode(payload),
                frame,
                batch,
                ids,
            });
            done.push(Appended {
                index: e.index,
                base_offset: base,
                end_offset: end,
            });
            next += 1;
            term = e.term;
        }

        let mut i = 0;
        while i < plan.len() {
            if self.should_roll(&plan[i], now) {
                self.roll_at(now)?;
            }
            // Take as many entries as fit in the active segment (at least one).
            let (pos, base_offset) = {
                let st = self.shared.read();
                (st.active().summary.size, st.active().base_offset())
            };
            let mut j = i;
            let mut total = 0u64;
            while j < plan.len() {
                let len = plan[j].frame.frame_len();
                if j > i
                    && (pos + total + len > self.cfg.segment_bytes
                        || self.should_roll(&plan[j], now))
                {
                    break;
                }
                total += len;
                j += 1;
            }
            let mut bufs: Vec<&[u8]> = Vec::with_capacity(2 * (j - i));
            for (p, e) in plan[i..j].iter().zip(entries[i..j].iter()) {
                bufs.push(&p.header);
                bufs.push(match &e.payload {
                    Payload::Batch(b)
                    | Payload::Checked { batch: b, .. }
                    | Payload::Hinted { batch: b, .. } => b,
                    Payload::Control(c) => c,
                });
            }
            self.ensure_capacity(pos + total)?;
            let path = segment_path(&self.shared.dir, base_offset);
            if let Err(e) = self.shared.io.write_at(&self.active_file, pos, &bufs) {
                self.shared.poison(format!(
                    "write of {total} bytes at {pos} in {} failed: {e}",
                    path.display()
                ));
                return Err(Error::io("write", path)(e));
            }
            self.written_to = self.written_to.max(pos + total);
            {
                let mut st = self.shared.write();
                let seg = st.active_mut();
                let mut at = pos;
                for p in &plan[i..j] {
                    seg.apply_frame(at, &p.frame, p.batch.as_ref(), now);
                    let first = p.batch.map_or(0, |b| b.base_offset);
                    seg.index_appended(at, at + p.frame.frame_len(), first, p.ids);
                    at += p.frame.frame_len();
                }
                st.last_term = plan[j - 1].frame.term;
            }
            {
                let mut s = lock(&self.shared.sync);
                s.appended_next = plan[j - 1].frame.index + 1;
                let was_clean = s.first_unflushed.is_none();
                s.unflushed_bytes += total;
                s.first_unflushed.get_or_insert_with(Instant::now);
                if let FlushPolicy::Interval { bytes, .. } = self.cfg.flush
                    && (was_clean || s.unflushed_bytes >= bytes)
                {
                    self.shared.sync_cond.notify_all();
                }
            }
            i = j;
        }
        if self.cfg.flush == FlushPolicy::EveryAppend {
            // Acknowledged entries are known durable on the next open, at once: damage to
            // them is repaired, never cut as a torn tail.
            self.shared.flush()?;
            self.shared.record_durable()?;
        }
        Ok(done)
    }

    fn should_roll(&self, p: &Planned<'_>, now: u64) -> bool {
        let st = self.shared.read();
        let a = st.active();
        if !a.has_records() {
            // A segment is named by its base offset: one without records cannot be rolled
            // (the next would have the same name).
            return false;
        }
        let full = a.summary.size + p.frame.frame_len() > self.cfg.segment_bytes;
        let old = self
            .cfg
            .segment_age
            .is_some_and(|age| now.saturating_sub(a.header.created_ms) >= age.as_millis() as u64);
        let count = p.batch.map_or(0, |b| u64::from(b.record_count));
        let offsets_full = a.summary.end_offset + count - a.base_offset() > u64::from(u32::MAX);
        full || old || offsets_full
    }

    /// Grows the active file (never shrinks it) so that `end` bytes fit, remapping it.
    fn ensure_capacity(&mut self, end: u64) -> Result<()> {
        let (len, path) = {
            let st = self.shared.read();
            (st.active().data.len() as u64, st.active().log_path())
        };
        if end <= len {
            return self.allocate_ahead(end, &path);
        }
        let grow = if self.cfg.preallocate {
            self.cfg.segment_bytes
        } else {
            1 << 20
        };
        let new_len = end.max(len + grow).max(end.next_multiple_of(4096));
        self.active_file
            .set_len(new_len)
            .map_err(Error::io("extend", &path))?;
        let data = map_file(&self.active_file).map_err(Error::io("map", &path))?;
        self.shared.write().active_mut().data = data;
        self.allocate_ahead(end, &path)
    }

    /// Keeps the active file's blocks allocated [`ALLOCATE_AHEAD`] past `end`, so the
    /// group commit's `fdatasync` writes data, not block allocations (one `fallocate` per
    /// few MiB written).
    fn allocate_ahead(&mut self, end: u64, path: &std::path::Path) -> Result<()> {
        if end <= self.allocated_to {
            return Ok(());
        }
        let from = self.allocated_to.max(end.saturating_sub(1) / 4096 * 4096);
        let to = end + ALLOCATE_AHEAD;
        crate::sys::allocate(&self.active_file, from, to - from)
            .map_err(Error::io("allocate", path))?;
        self.allocated_to = to;
        Ok(())
    }
}
