//! File helpers shared by the writer and recovery: creating, replacing, zeroing and
//! removing segment and index files.

use std::fs::{self, File};
use std::path::Path;

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::format::SegmentHeader;
use crate::io::FileIo;
use crate::segment::{
    ActiveIds, IdIndex, Segment, SparseIndex, ids_path, index_path, segment_path,
};
use crate::sys::map_file;

pub(crate) fn remove_segment_files(dir: &Path, base: u64) {
    // Unlinking keeps the pages of live mappings; readers finish undisturbed.
    let _ = fs::remove_file(segment_path(dir, base));
    let _ = fs::remove_file(index_path(dir, base));
    let _ = fs::remove_file(ids_path(dir, base));
}

pub(crate) fn write_file_atomically(
    io: &dyn FileIo,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> std::io::Result<File> {
    let tmp = crate::segment::unique_tmp(path);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    io.write_at(&file, 0, &[bytes])?;
    if sync {
        io.sync_data(&file)?;
    }
    fs::rename(&tmp, path)?;
    Ok(file)
}

pub(crate) fn zero_range(io: &dyn FileIo, file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: u64 = 64 << 10;
    let zeros = vec![0u8; CHUNK as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK);
        io.write_at(file, at, &[&zeros[..n as usize]])?;
        at += n;
    }
    Ok(())
}

/// Creates a segment file with its header, preallocated, and maps it.
pub(crate) fn create_segment(
    dir: &Path,
    cfg: &LogConfig,
    io: &dyn FileIo,
    header: SegmentHeader,
) -> Result<(Segment, File)> {
    let path = segment_path(dir, header.base_offset);
    // Never truncate an inode someone may have mapped: a leftover file of this name goes
    // first (unlinking keeps old mappings valid).
    let _ = fs::remove_file(&path);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(Error::io("create segment", &path))?;
    let len = if cfg.preallocate {
        cfg.segment_bytes
    } else {
        1 << 20
    };
    file.set_len(len).map_err(Error::io("preallocate", &path))?;
    io.write_at(&file, 0, &[&header.encode()])
        .map_err(Error::io("write segment header", &path))?;
    let data = map_file(&file).map_err(Error::io("map", &path))?;
    Ok((
        Segment::new_active(dir, header, data, cfg.index_interval_bytes),
        file,
    ))
}

/// Turns a sealed segment back into an active one (in-memory tables).
pub(crate) fn make_active(seg: &mut Segment) {
    if let SparseIndex::Sealed(_) = seg.sparse {
        let table = seg.sparse_table().to_vec();
        seg.sparse = SparseIndex::Active(table);
    }
    if let IdIndex::Sealed(_) = seg.ids {
        let mut ids = ActiveIds::default();
        for (p, rel) in seg.id_entries() {
            ids.insert(p, rel);
        }
        seg.ids = IdIndex::active(ids, seg.summary.size as usize);
    }
}
