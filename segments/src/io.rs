//! File I/O behind a small trait, so tests can fail the Nth write or fsync, tear a write or
//! flip a bit ([`FaultyIo`]). Opening, renaming, deleting and mapping files go straight to
//! `std`: the faults that matter for durability are in writing and syncing bytes.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;

/// How the log writes and syncs bytes. Every data, index and metadata write goes through it.
pub trait FileIo: Send + Sync + fmt::Debug + 'static {
    /// Writes all of `bufs`, back to back, starting at byte `pos` of `file`.
    fn write_at(&self, file: &File, pos: u64, bufs: &[&[u8]]) -> io::Result<()>;
    /// `fdatasync`: makes every completed write to `file` durable.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// `fsync` of a directory, making renames, creations and deletions in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real thing: vectored `write` at a position, `fdatasync`, directory `fsync`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

impl FileIo for RealIo {
    fn write_at(&self, file: &File, pos: u64, bufs: &[&[u8]]) -> io::Result<()> {
        if let [one] = bufs {
            // pwrite: leaves the file cursor alone (a flusher writes a segment's durable
            // point while the writer appends).
            return std::os::unix::fs::FileExt::write_all_at(file, one, pos);
        }
        // The log's single writer is the only user of the file cursor, so seek + writev is
        // a positioned vectored write without `unsafe` (std has no stable pwritev).
        let mut f = file;
        f.seek(SeekFrom::Start(pos))?;
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            match f.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// One planned fault. Calls are counted from 1 over the life of the [`FaultyIo`], writes
/// and syncs separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The Nth write fails without writing anything.
    FailWrite(u64),
    /// The Nth write stores only its first `keep` bytes, then fails (a crash mid-write).
    TearWrite { nth: u64, keep: usize },
    /// The Nth write succeeds but bit `bit` of its `byte`th byte is flipped on the way to
    /// disk (silent media corruption).
    FlipBit { nth: u64, byte: usize, bit: u8 },
    /// The Nth data or directory sync fails.
    FailSync(u64),
}

#[derive(Debug, Default)]
struct FaultState {
    faults: Vec<Fault>,
    writes: u64,
    syncs: u64,
    /// With [`FaultyIo::journaled`]: every write not yet covered by a sync of its file,
    /// with the bytes it overwrote, oldest first.
    journal: Option<Vec<Undo>>,
}

/// How to undo one unsynced write.
#[derive(Debug)]
struct Undo {
    file: File,
    inode: (u64, u64),
    pos: u64,
    old: Vec<u8>,
    old_len: u64,
}

fn inode(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// A [`FileIo`] that injects planned faults and otherwise behaves like [`RealIo`].
#[derive(Debug, Default)]
pub struct FaultyIo {
    state: Mutex<FaultState>,
}

impl FaultyIo {
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }

    /// Plans a fault (see [`Fault`] for how calls are counted).
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// A `FaultyIo` that remembers every write until a sync of its file covers it, so that
    /// [`FaultyIo::lose_unsynced`] can undo them as a power failure would.
    pub fn journaled() -> FaultyIo {
        let io = FaultyIo::default();
        io.lock().journal = Some(Vec::new());
        io
    }

    /// A power failure: undoes every write that no sync of its file has covered since,
    /// except those `keep` (called with each one's position in the order they were
    /// written) says reached the disk anyway. Newest first, so overlapping writes unwind
    /// in order. Returns how many were undone.
    pub fn lose_unsynced(&self, mut keep: impl FnMut(usize) -> bool) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let undo = self
            .lock()
            .journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut lost = 0;
        for (i, u) in undo.into_iter().enumerate().rev() {
            if keep(i) {
                continue;
            }
            u.file.write_all_at(&u.old, u.pos)?;
            if u.file.metadata()?.len() > u.old_len {
                u.file.set_len(u.old_len)?;
            }
            lost += 1;
        }
        Ok(lost)
    }

    fn remember(&self, file: &File, pos: u64, len: usize) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.lock().journal.is_none() {
            return Ok(());
        }
        let old_len = file.metadata()?.len();
        let mut old = vec![0u8; len.min(old_len.saturating_sub(pos) as usize)];
        file.read_exact_at(&mut old, pos)?;
        let u = Undo {
            file: file.try_clone()?,
            inode: inode(file)?,
            pos,
            old,
            old_len,
        };
        if let Some(j) = self.lock().journal.as_mut() {
            j.push(u);
        }
        Ok(())
    }

    /// Writes and syncs seen so far, so a test can aim a fault at "the next one".
    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.writes, s.syncs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A panicking test thread must not hide the plan from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl FileIo for FaultyIo {
    fn write_at(&self, file: &File, pos: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let fault = {
            let mut s = self.lock();
            s.writes += 1;
            let n = s.writes;
            s.faults.iter().copied().find(|f| match *f {
                Fault::FailWrite(k) => k == n,
                Fault::TearWrite { nth, .. } | Fault::FlipBit { nth, .. } => nth == n,
                Fault::FailSync(_) => false,
            })
        };
        let len = bufs.iter().map(|b| b.len()).sum();
        self.remember(file, pos, len)?;
        match fault {
            None => RealIo.write_at(file, pos, bufs),
            Some(Fault::FailWrite(_)) => Err(injected("write failed")),
            Some(Fault::TearWrite { keep, .. }) => {
                let all: Vec<u8> = bufs.concat();
                RealIo.write_at(file, pos, &[&all[..keep.min(all.len())]])?;
                Err(injected("torn write"))
            }
            Some(Fault::FlipBit { byte, bit, .. }) => {
                let mut all: Vec<u8> = bufs.concat();
                if let Some(b) = all.get_mut(byte) {
                    *b ^= 1 << (bit % 8);
                }
                RealIo.write_at(file, pos, &[&all])
            }
            Some(Fault::FailSync(_)) => RealIo.write_at(file, pos, bufs),
        }
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        if self.next_sync_fails() {
            return Err(injected("fdatasync failed"));
        }
        RealIo.sync_data(file)?;
        let synced = inode(file)?;
        if let Some(j) = self.lock().journal.as_mut() {
            j.retain(|u| u.inode != synced);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.next_sync_fails() {
            return Err(injected("directory fsync failed"));
        }
        RealIo.sync_dir(dir)
    }
}

impl FaultyIo {
    fn next_sync_fails(&self) -> bool {
        let mut s = self.lock();
        s.syncs += 1;
        let n = s.syncs;
        s.faults.contains(&Fault::FailSync(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn real_io_writes_vectored_at_position() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        RealIo.write_at(&file, 3, &[b"ab", b"", b"cde"])?;
        RealIo.write_at(&file, 0, &[b"xyz"])?;
        let mut got = Vec::new();
        File::open(&path)?.read_to_end(&mut got)?;
        assert_eq!(got, b"xyzabcde");
        Ok(())
    }

    #[test]
    fn faulty_io_tears_and_flips() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let io = FaultyIo::new();
        io.inject(Fault::TearWrite { nth: 1, keep: 3 });
        io.inject(Fault::FlipBit {
            nth: 2,
            byte: 0,
            bit: 0,
        });
        io.inject(Fault::FailSync(1));
        assert!(io.write_at(&file, 0, &[b"hello"]).is_err());
        io.write_at(&file, 3, &[b"a"])?;
        assert!(io.sync_data(&file).is_err());
        io.sync_data(&file)?;
        let mut got = Vec::new();
        File::open(&path)?.read_to_end(&mut got)?;
        assert_eq!(got, b"hel`");
        assert_eq!(io.counts(), (2, 2));
        Ok(())
    }
}
