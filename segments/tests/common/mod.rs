//! Helpers shared by the integration tests: valid record batches without signing, and a
//! reference model of the log.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use steme_protocol::batch::patch_header;
use steme_protocol::{AssertionId, BatchBuilder, RecordBatch};
use steme_segments::{EntryKind, FileIo, Log, LogConfig, LogReader, Payload, RealIo};

/// Canonical-shaped assertion bytes (version, signer key, then a unique tail), `len` long.
pub fn assertion_bytes(seed: u64, i: u32, len: usize) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend([7u8; 32]);
    v.extend(seed.to_le_bytes());
    v.extend(i.to_le_bytes());
    v.resize(len.max(v.len()), 0xA5);
    v
}

/// A valid batch of `count` records (not signed: the log does not verify signatures),
/// stamped with `base_hlc`.
pub fn make_batch(seed: u64, count: u32, base_hlc: u64, assertion_len: usize) -> BytesMut {
    let mut b = BatchBuilder::with_capacity(64 + count as usize * (assertion_len + 80));
    for i in 0..count {
        b.push_raw(&assertion_bytes(seed, i, assertion_len), &[0x5a; 64]);
    }
    let mut buf = BytesMut::from(&b.finish()[..]);
    patch_header(&mut buf, 0, base_hlc, 1);
    buf
}

pub fn ids_of(batch: &[u8]) -> Vec<AssertionId> {
    let b = RecordBatch::new(Bytes::copy_from_slice(batch)).expect("valid batch");
    b.records().map(|r| r.id()).collect()
}

/// The id prefixes of a batch's records, as a leader gives them (`Payload::Checked` and
/// `Payload::Hinted`).
pub fn prefixes_of(batch: &[u8]) -> Vec<u64> {
    ids_of(batch)
        .iter()
        .map(|id| steme_segments::format::id_prefix(id.as_bytes()))
        .collect()
}

/// Small segments and a dense sparse index, so a few entries exercise rolling and
/// lookups across segments. No syncing on append: these tests are about content (the
/// page cache survives a dropped `Log`); `tests/durability.rs` covers syncing.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8192,
        index_interval_bytes: 300,
        flush: steme_segments::FlushPolicy::Never,
        ..LogConfig::default()
    }
}

/// Real writes, no syncs: for tests that reopen hundreds of times and check content only.
#[derive(Debug)]
pub struct NoSyncIo;

impl FileIo for NoSyncIo {
    fn write_at(&self, file: &std::fs::File, pos: u64, bufs: &[&[u8]]) -> std::io::Result<()> {
        RealIo.write_at(file, pos, bufs)
    }
    fn sync_data(&self, _: &std::fs::File) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn open(dir: &Path, cfg: LogConfig) -> anyhow::Result<Log> {
    Ok(Log::open(dir, cfg, Arc::new(RealIo) as Arc<dyn FileIo>)?.0)
}

/// One entry as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    /// Stored bytes (base offset already patched).
    pub payload: Vec<u8>,
    pub base_offset: u64,
    pub end_offset: u64,
    pub base_hlc: u64,
    pub ids: Vec<AssertionId>,
}

/// The reference model: a `Vec` of entries plus where the log starts.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub entries: Vec<ModelEntry>,
    pub start_index: u64,
    pub start_offset: u64,
}

impl Model {
    pub fn next_index(&self) -> u64 {
        self.start_index + self.entries.len() as u64
    }

    pub fn end_offset(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.start_offset, |e| e.end_offset)
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// Appends through the log and mirrors it in the model.
    pub fn append(
        &mut self,
        log: &mut Log,
        term: u64,
        batch: Option<BytesMut>,
        control: &[u8],
    ) -> anyhow::Result<()> {
        let index = self.next_index();
        match batch {
            Some(mut b) => {
                // Entries come in turn as a leader appends them (CRC checked by the caller,
                // ids given), as a follower does with its leader's id hints, and as one
                // without hints: every path, interleaved.
                let ids = prefixes_of(&b);
                let a = match index % 3 {
                    0 => log.append(index, term, Payload::Batch(&mut b))?,
                    1 => log.append(
                        index,
                        term,
                        Payload::Checked {
                            batch: &mut b,
                            ids: &ids,
                        },
                    )?,
                    _ => log.append(
                        index,
                        term,
                        Payload::Hinted {
                            batch: &mut b,
                            ids: &ids,
                        },
                    )?,
                };
                let h = steme_protocol::batch::validate(&b)?;
                anyhow::ensure!(a.base_offset == self.end_offset());
                self.entries.push(ModelEntry {
                    index,
                    term,
                    kind: EntryKind::Batch,
                    ids: ids_of(&b),
                    payload: b.to_vec(),
                    base_offset: a.base_offset,
                    end_offset: a.end_offset,
                    base_hlc: h.base_hlc,
                });
            }
            None => {
                let a = log.append(index, term, Payload::Control(control))?;
                self.entries.push(ModelEntry {
                    index,
                    term,
                    kind: EntryKind::Control,
                    payload: control.to_vec(),
                    base_offset: a.base_offset,
                    end_offset: a.end_offset,
                    base_hlc: 0,
                    ids: vec![],
                });
            }
        }
        Ok(())
    }

    /// Keeps entries up to and including `index`.
    pub fn truncate_after(&mut self, index: u64) {
        let keep = (index + 1).saturating_sub(self.start_index) as usize;
        self.entries.truncate(keep);
    }

    /// Drops entries below `first` (the log's new start after a purge).
    pub fn purge_below(&mut self, first: u64, first_offset: u64) {
        let n = (first - self.start_index) as usize;
        if n >= self.entries.len() {
            self.entries.clear();
        } else {
            self.entries.drain(..n);
        }
        self.start_index = first;
        self.start_offset = first_offset;
    }

    /// What `read_from_offset` must return.
    pub fn offset_read(&self, offset: u64, max: u64, upper: u64) -> (Vec<Vec<u8>>, u64) {
        let limit = upper.min(self.end_offset());
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next = offset;
        for e in self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Batch && e.end_offset > offset)
        {
            let len = e.payload.len() as u64;
            if e.end_offset > limit || (!out.is_empty() && bytes + len > max) {
                break;
            }
            out.push(e.payload.clone());
            bytes += len;
            next = e.end_offset;
        }
        (out, next)
    }

    /// First offset with HLC >= t (HLCs increase with offset in these tests).
    pub fn offset_for_time(&self, t: u64) -> Option<u64> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Batch)
            .find(|e| e.base_hlc + (e.end_offset - e.base_offset) > t)
            .map(|e| e.base_offset + t.saturating_sub(e.base_hlc))
    }

    /// First offset of a record with this id.
    pub fn lookup(&self, id: &AssertionId) -> Option<u64> {
        self.entries.iter().find_map(|e| {
            e.ids
                .iter()
                .position(|x| x == id)
                .map(|i| e.base_offset + i as u64)
        })
    }

    /// Checks every read path of `r` against the model.
    pub fn check(&self, r: &LogReader) -> anyhow::Result<()> {
        anyhow::ensure!(
            r.first_index() == self.start_index,
            "first index {} vs {}",
            r.first_index(),
            self.start_index
        );
        anyhow::ensure!(
            r.next_index() == self.next_index(),
            "next index {} vs {}",
            r.next_index(),
            self.next_index()
        );
        anyhow::ensure!(r.log_start_offset() == self.start_offset, "start offset");
        anyhow::ensure!(
            r.log_end_offset() == self.end_offset(),
            "end offset {} vs {}",
            r.log_end_offset(),
            self.end_offset()
        );
        let got = r.read_entries(self.start_index..self.next_index() + 5)?;
        anyhow::ensure!(
            got.len() == self.entries.len(),
            "entry count {} vs {}",
            got.len(),
            self.entries.len()
        );
        for (g, m) in got.iter().zip(&self.entries) {
            anyhow::ensure!(
                g.index == m.index
                    && g.term == m.term
                    && g.kind == m.kind
                    && g.payload[..] == m.payload[..],
                "entry {} differs",
                m.index
            );
        }
        for e in self.entries.iter().step_by(3) {
            let one = r.read_entries(e.index..e.index + 2)?;
            anyhow::ensure!(
                one.first().map(|x| x.index) == Some(e.index),
                "read at {}",
                e.index
            );
            anyhow::ensure!(r.term_at(e.index) == Some(e.term));
        }
        let end = self.end_offset();
        let mut offsets: Vec<u64> = (self.start_offset..end).step_by(3).collect();
        offsets.push(end);
        for &o in &offsets {
            for (max, upper) in [
                (0, u64::MAX),
                (700, u64::MAX),
                (5000, end.saturating_sub(2)),
                (u64::MAX, u64::MAX),
            ] {
                let got = r.read_from_offset(o, max, upper)?;
                let (want, next) = self.offset_read(o, max, upper);
                let got_v: Vec<Vec<u8>> = got.batches.iter().map(|b| b.to_vec()).collect();
                anyhow::ensure!(got_v == want, "offset read at {o} max {max} upper {upper}");
                anyhow::ensure!(got.next_offset == next, "next offset at {o}");
            }
        }
        if self.start_offset > 0 {
            anyhow::ensure!(
                r.read_from_offset(self.start_offset - 1, 100, u64::MAX)
                    .is_err()
            );
        }
        let max_hlc = self
            .entries
            .iter()
            .map(|e| e.base_hlc + (e.end_offset - e.base_offset))
            .max()
            .unwrap_or(0);
        for t in (0..max_hlc + 3).step_by((max_hlc / 300).max(5) as usize) {
            anyhow::ensure!(
                r.offset_for_time(t) == self.offset_for_time(t),
                "time {t}: {:?} vs {:?}",
                r.offset_for_time(t),
                self.offset_for_time(t)
            );
        }
        // Lookups as the id map stands (loaded by earlier checks, then changed by whatever
        // ran since: retention, truncation, repair), then again once it holds everything.
        self.check_lookups(r, "id lookup, map partly loaded")?;
        while r.index_ids() > 0 {}
        let stats = r.id_map_stats();
        anyhow::ensure!(stats.loaded_segments == stats.sealed_segments, "{stats:?}");
        self.check_lookups(r, "id lookup, map loaded")
    }

    fn check_lookups(&self, r: &LogReader, what: &str) -> anyhow::Result<()> {
        for e in self.entries.iter().filter(|e| e.kind == EntryKind::Batch) {
            for id in &e.ids {
                anyhow::ensure!(r.lookup_id(id) == self.lookup(id), "{what}");
            }
        }
        let absent = AssertionId::of(b"never appended");
        anyhow::ensure!(r.lookup_id(&absent).is_none(), "{what}: absent id found");
        Ok(())
    }
}

/// The segment files of a partition directory, oldest first.
pub fn segment_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut logs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    Ok(logs)
}

/// `(start, end, index)` of every frame in a segment file.
pub fn frames(path: &Path) -> anyhow::Result<Vec<(usize, usize, u64)>> {
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut pos = steme_segments::format::SEGMENT_HEADER_LEN;
    while let Some(h) = steme_segments::format::FrameHeader::peek(&data[pos..]) {
        let end = pos + steme_segments::format::FRAME_HEADER_LEN + h.payload_len as usize;
        out.push((pos, end, h.index));
        pos = end;
    }
    Ok(out)
}

/// Makes `to` an exact copy of `from`, overwriting files in place (cheaper for the file
/// system than a fresh directory per case).
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(to)? {
        let e = e?;
        if !from.join(e.file_name()).exists() {
            std::fs::remove_file(e.path())?;
        }
    }
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}
