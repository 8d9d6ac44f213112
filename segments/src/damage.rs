//! Damaged ranges: bytes below a durable point that fail their checks.
//!
//! A damaged range is never served, never skipped in silence and never cut: reads that
//! reach it fail with [`crate::Error::Damaged`], naming its Raft indexes and offsets, and
//! everything around it is served. Entries keep their place: the log's indexes and offsets
//! run on past the range as if it were whole, so the Raft layer neither re-replicates nor
//! truncates over it. Because every replica stores an entry as the same bytes (frame
//! header and batch, base offset patched identically), a healthy replica's copy of the
//! range fits exactly and [`crate::Log::repair`] writes it in place.
//!
//! The known ranges live in a registry shared by the writer and readers, persisted in the
//! partition directory's `damage` file (replaced atomically) so that a range found by a
//! read or a scrub is still known after a restart, when recovery would trust the segment.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::files::write_file_atomically;
use crate::format::{SPARSE_ENTRY_LEN, SparseEntry, u32_at, u64_at};
use crate::io::FileIo;
use crate::segment::{Segment, read_small, segment_path};
use crate::state::Shared;

/// The file that lists the known damaged ranges of a partition.
pub(crate) const DAMAGE_FILE: &str = "damage";
/// Version 1, without skips (still read).
const DAMAGE_MAGIC_V1: u32 = u32::from_le_bytes(*b"STMG");
/// Version 2: each range followed by its skip, if any.
const DAMAGE_MAGIC: u32 = u32::from_le_bytes(*b"STM2");

/// One damaged range of a segment. `indexes` and `offsets` are exact at both ends: the
/// range runs from a frame that failed its checks to the next frame whose index and offset
/// are known from an intact source (the sparse index, the segment summary, a later intact
/// frame or the recorded durable point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Base offset of the segment holding the range.
    pub segment: u64,
    /// Byte positions in the segment file.
    pub positions: Range<u64>,
    /// Raft indexes of the entries in the range.
    pub indexes: Range<u64>,
    /// Record offsets of the batches in the range (empty if it holds only control entries).
    pub offsets: Range<u64>,
    /// Whether an intact frame starts exactly at `positions.end`, so a repair must fill the
    /// range exactly. Otherwise the range runs to the end of the segment's data (its true
    /// end is not known) and a repair may be longer.
    pub ends_at_frame: bool,
    /// What the first bad frame failed.
    pub reason: String,
    /// The operator's decision to give the range up, if taken (see [`crate::Log::skip_damage`]).
    pub skipped: Option<Skip>,
}

/// An operator's record that a damaged range with no healthy copy anywhere is given up:
/// reads of it then fail with the skip named, so that consumers move past it knowingly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why, in the operator's words.
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offsets {}..{} (raft indexes {}..{}, bytes {}..{} of segment {:020}.log): {}",
            self.offsets.start,
            self.offsets.end,
            self.indexes.start,
            self.indexes.end,
            self.positions.start,
            self.positions.end,
            self.segment,
            self.reason
        )?;
        if let Some(skip) = &self.skipped {
            write!(f, "; skipped at {} ms: {}", skip.at_ms, skip.reason)?;
        }
        Ok(())
    }
}

impl Damage {
    /// The damage that starts at the frame at `position` of `seg`, which should hold index
    /// `index` and start at offset `offset`: it ends at the next sparse index entry, or at
    /// the segment's end.
    pub(crate) fn at(
        seg: &Segment,
        position: u64,
        index: u64,
        offset: u64,
        reason: String,
    ) -> Damage {
        let table = seg.sparse_table();
        let n = table.len() / SPARSE_ENTRY_LEN;
        let next = (0..n)
            .map(|i| SparseEntry::at(table, i))
            .find(|e| e.position > position && e.index > index);
        let (end_pos, end_index, end_offset) = match next {
            Some(e) => (e.position, e.index, e.offset),
            None => (
                seg.summary.size,
                seg.summary.last_index.wrapping_add(1),
                seg.summary.end_offset,
            ),
        };
        Damage {
            segment: seg.base_offset(),
            positions: position..end_pos.max(position),
            indexes: index..end_index.max(index),
            offsets: offset..end_offset.max(offset),
            ends_at_frame: true,
            reason,
            skipped: None,
        }
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        segment_path(dir, self.segment)
    }
}

impl Shared {
    /// Records damage found by a read or a scrub: first in the registry (persisted, and
    /// consulted by every read before it walks), then as a hole in its segment (so walks
    /// that do not check, like id lookups, jump over it). A registry that cannot be
    /// written stays in memory; the damage is found again after a restart by its CRCs.
    pub(crate) fn register(&self, d: Damage) {
        let merged = {
            let mut r = self.damage();
            let merged = r.add(d);
            if merged.is_some() {
                let _ = r.save(self.io.as_ref(), &self.dir);
            }
            merged
        };
        if let Some(d) = merged {
            let mut st = self.write();
            if let Some(seg) = st
                .segments
                .iter_mut()
                .find(|s| s.base_offset() == d.segment)
            {
                seg.add_hole(d.positions);
            }
        }
    }
}

/// The known damaged ranges, ordered by index, never overlapping.
#[derive(Debug, Default, Clone)]
pub(crate) struct Registry {
    pub ranges: Vec<Damage>,
}

impl Registry {
    /// Adds a range, merged with any range of the same segment it overlaps or touches.
    /// Returns the range as merged, or `None` if a known range already held it.
    pub fn add(&mut self, d: Damage) -> Option<Damage> {
        if self
            .ranges
            .iter()
            .any(|r| r.indexes.start <= d.indexes.start && d.indexes.end <= r.indexes.end)
        {
            return None;
        }
        let mut merged = d;
        self.ranges.retain(|r| {
            let touches =
                r.indexes.start <= merged.indexes.end && merged.indexes.start <= r.indexes.end;
            if r.segment != merged.segment || !touches {
                return true;
            }
            merged.ends_at_frame = if r.positions.end > merged.positions.end {
                r.ends_at_frame
            } else {
                merged.ends_at_frame
            };
            merged.positions = r.positions.start.min(merged.positions.start)
                ..r.positions.end.max(merged.positions.end);
            merged.indexes =
                r.indexes.start.min(merged.indexes.start)..r.indexes.end.max(merged.indexes.end);
            merged.offsets =
                r.offsets.start.min(merged.offsets.start)..r.offsets.end.max(merged.offsets.end);
            // A skip covers the range it was given for, not records found damaged since.
            merged.skipped = None;
            false
        });
        let at = self
            .ranges
            .partition_point(|r| r.indexes.start < merged.indexes.start);
        self.ranges.insert(at, merged.clone());
        Some(merged)
    }

    /// The first range holding an index at or after `index`.
    pub fn first_from_index(&self, index: u64) -> Option<&Damage> {
        self.ranges.iter().find(|r| r.indexes.end > index)
    }

    /// The first range holding records at or after `offset`.
    pub fn first_from_offset(&self, offset: u64) -> Option<&Damage> {
        self.ranges
            .iter()
            .find(|r| r.offsets.end > offset && !r.offsets.is_empty())
    }

    /// Forgets ranges wholly outside `[start, next)` (purged, reset or truncated away).
    pub fn retain_within(&mut self, start: u64, next: u64) {
        self.ranges
            .retain(|r| r.indexes.end > start && r.indexes.start < next);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&DAMAGE_MAGIC.to_le_bytes());
        b.extend_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for r in &self.ranges {
            for v in [
                r.segment,
                r.positions.start,
                r.positions.end,
                r.indexes.start,
                r.indexes.end,
                r.offsets.start,
                r.offsets.end,
                u64::from(r.ends_at_frame),
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            put_text(&mut b, &r.reason);
            match &r.skipped {
                None => b.push(0),
                Some(skip) => {
                    b.push(1);
                    b.extend_from_slice(&skip.at_ms.to_le_bytes());
                    put_text(&mut b, &skip.reason);
                }
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The registry in a `damage` file; `None` if the file is damaged itself.
    pub fn decode(b: &[u8]) -> Option<Registry> {
        let body = b.get(..b.len().checked_sub(4)?)?;
        if crc32fast::hash(body) != u32_at(b, body.len()) {
            return None;
        }
        let with_skips = match u32_at(body, 0) {
            DAMAGE_MAGIC => true,
            DAMAGE_MAGIC_V1 => false,
            _ => return None,
        };
        let n = u32_at(body, 4) as usize;
        let mut at = 8;
        let mut ranges = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let v: Vec<u64> = (0..8)
                .map(|i| body.get(at + 8 * i..at + 8 * i + 8).map(|x| u64_at(x, 0)))
                .collect::<Option<_>>()?;
            at += 64;
            let reason = text_at(body, &mut at)?;
            let skipped = if with_skips {
                let flag = *body.get(at)?;
                at += 1;
                match flag {
                    0 => None,
                    1 => {
                        let at_ms = u64_at(body.get(at..at + 8)?, 0);
                        at += 8;
                        let reason = text_at(body, &mut at)?;
                        Some(Skip { at_ms, reason })
                    }
                    _ => return None,
                }
            } else {
                None
            };
            ranges.push(Damage {
                segment: v[0],
                positions: v[1]..v[2],
                indexes: v[3]..v[4],
                offsets: v[5]..v[6],
                ends_at_frame: v[7] != 0,
                reason,
                skipped,
            });
        }
        (at == body.len()).then_some(Registry { ranges })
    }

    /// Reads the registry of `dir`. A missing file is an empty registry; an unreadable or
    /// damaged one is reported, so the caller can re-verify rather than forget.
    pub fn load(dir: &Path) -> Result<Registry, String> {
        match read_small(&dir.join(DAMAGE_FILE)) {
            Ok(b) => Registry::decode(&b).ok_or_else(|| "damage file fails its crc".to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(format!("cannot read damage file: {e}")),
        }
    }

    /// Replaces the `damage` file (or removes it when there is no damage).
    pub fn save(&self, io: &dyn FileIo, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(DAMAGE_FILE);
        if self.ranges.is_empty() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            write_file_atomically(io, &path, &self.encode(), true)?;
        }
        io.sync_dir(dir)
    }
}

/// Appends `text` (cut at 64 KiB) with its u16 length.
fn put_text(b: &mut Vec<u8>, text: &str) {
    let mut len = text.len().min(u16::MAX as usize);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    b.extend_from_slice(&(len as u16).to_le_bytes());
    b.extend_from_slice(&text.as_bytes()[..len]);
}

/// The text at `*at` (see [`put_text`]); moves `*at` past it.
fn text_at(body: &[u8], at: &mut usize) -> Option<String> {
    let len = usize::from(u16::from_le_bytes(body.get(*at..*at + 2)?.try_into().ok()?));
    let text = String::from_utf8_lossy(body.get(*at + 2..*at + 2 + len)?).into_owned();
    *at += 2 + len;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: Range<u64>, o: Range<u64>) -> Damage {
        Damage {
            segment: 0,
            positions: i.start * 100..i.end * 100,
            indexes: i,
            offsets: o,
            ends_at_frame: true,
            reason: "test".into(),
            skipped: None,
        }
    }

    #[test]
    fn registry_merges_orders_and_roundtrips() {
        let mut r = Registry::default();
        assert!(r.add(d(10..12, 50..60)).is_some());
        assert!(r.add(d(3..5, 10..20)).is_some());
        assert!(r.add(d(10..11, 50..55)).is_none(), "inside a known range");
        let merged = r.add(d(11..14, 55..70)).expect("merged");
        assert_eq!((merged.indexes, merged.positions), (10..14, 1000..1400));
        assert!(r.add(d(14..15, 70..71)).is_some(), "touching ranges merge");
        let got: Vec<_> = r.ranges.iter().map(|x| x.indexes.clone()).collect();
        assert_eq!(got, vec![3..5, 10..15]);
        assert_eq!(r.ranges[1].offsets, 50..71);
        assert_eq!(
            r.first_from_offset(20).map(|x| x.offsets.clone()),
            Some(50..71)
        );
        assert_eq!(
            r.first_from_index(5).map(|x| x.indexes.clone()),
            Some(10..15)
        );
        r.ranges[0].skipped = Some(Skip {
            at_ms: 7,
            reason: "given up".into(),
        });
        let b = r.encode();
        let back = Registry::decode(&b).expect("decodes");
        assert_eq!(back.ranges, r.ranges);
        // A range found damaged next to a skipped one merges with it, and is not skipped.
        let mut grown = back.clone();
        let merged = grown.add(d(5..6, 20..21)).expect("merged");
        assert_eq!((merged.indexes, merged.skipped), (3..6, None));
        // Version 1 files (no skips) still read.
        let mut v1 = DAMAGE_MAGIC_V1.to_le_bytes().to_vec();
        v1.extend_from_slice(&1u32.to_le_bytes());
        for v in [0u64, 300, 500, 3, 5, 10, 20, 1] {
            v1.extend_from_slice(&v.to_le_bytes());
        }
        put_text(&mut v1, "test");
        v1.extend_from_slice(&crc32fast::hash(&v1).to_le_bytes());
        let old = Registry::decode(&v1).expect("v1 decodes");
        assert_eq!(old.ranges, vec![d(3..5, 10..20)]);
        let mut bad = b.clone();
        bad[9] ^= 1;
        assert!(Registry::decode(&bad).is_none());
        r.retain_within(6, 100);
        assert_eq!(r.ranges.len(), 1);
    }
}
