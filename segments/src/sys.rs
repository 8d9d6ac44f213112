//! The one place with `unsafe`: `fallocate` ([`allocate`]), and read-only shared mappings
//! of segment and index files,
//! handed out as [`Bytes`] that own the mapping (`Bytes::from_owner`), so every read is a
//! zero-copy slice and the mapping lives as long as the last slice of it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;
use memmap2::Mmap;

/// Maps all of `file` (its current length) read-only and shared.
///
/// The log upholds the invariants that make the mapped bytes safe to hand out as `&[u8]`:
/// - **No shrinking under a mapping.** A file is never made shorter while a mapping of it
///   may be alive (that would turn reads of the lost pages into SIGBUS). Truncating the
///   uncommitted tail zeroes bytes in place; segments are deleted only by unlinking, which
///   keeps the pages of live mappings.
/// - **No concurrent writes to published bytes.** Readers only slice bytes below a
///   segment's published logical end; the single writer appends strictly after it. The only
///   writes below it are the zeroing of a truncated, uncommitted tail (which Raft never lets
///   a consumer read) — documented on [`crate::Log::truncate_after`].
/// - **Recovery shrinks only to the recovered end.** [`crate::Log::open`] cuts the last
///   segment to its logical end before mapping it. A reader left over from an earlier
///   `Log` in the same process only holds bytes below that end: every completed write is
///   in the page cache, so recovery keeps all of them, and pages below the new length stay.
/// - **Index files are replaced, never rewritten**: written under a unique temporary name
///   and renamed into place, so a mapped index file is never truncated.
pub(crate) fn map_file(file: &File) -> io::Result<Bytes> {
    // SAFETY: the mapping is read-only and shared. Other processes are not expected to
    // modify the partition directory; within this process the invariants above ensure that
    // no byte a reader can reach is concurrently written or unmapped by truncation.
    let map = unsafe { Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Allocates the disk blocks of `file`'s range from `offset`, `len` bytes long (the size
/// is not changed), so that a later `fdatasync` of writes there does not also have to
/// allocate them. Segments are sized sparsely up front (no disk used for what is never
/// written); the writer allocates a few MiB ahead of itself. Best effort: `Ok` where the
/// call is not available.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Ok(());
        };
        // SAFETY: plain syscall on a file descriptor this `File` owns for the call's
        // duration; no memory is passed.
        let r =
            unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // Filesystems without fallocate (tmpfs has it; some do not): nothing to do.
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(e);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
    Ok(())
}
