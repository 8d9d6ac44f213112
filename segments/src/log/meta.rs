//! The log's small metadata file (the Raft layer's key/values and the log's own state):
//! sequenced writes, so that a caller can make it durable without holding its lock on the
//! log.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Log, META_FILE};
use crate::error::{Error, Result};
use crate::files::write_file_atomically;
use crate::state::{Shared, lock};

impl Log {
    /// The Raft layer's small key/values (vote, committed, applied, …), in its own
    /// encodings.
    pub fn meta(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.meta.kv
    }

    pub fn meta_get(&self, key: &str) -> Option<&[u8]> {
        self.meta.kv.get(key).map(Vec::as_slice)
    }

    /// Sets (`Some`) or removes (`None`) keys, atomically and durably (write a temporary
    /// file, fsync, rename, fsync the directory) before returning.
    pub fn set_meta(&mut self, updates: &[(&str, Option<&[u8]>)]) -> Result<()> {
        self.prepare_meta(updates)?.commit()
    }

    /// Applies `updates` in memory and returns the metadata file write that makes them
    /// durable, for the caller to [`MetaWrite::commit`] after releasing whatever lock it
    /// holds on this log (the write fsyncs twice). Writes are sequenced: committing an
    /// older write after a newer one has landed does nothing (the newer one holds its
    /// updates too).
    pub fn prepare_meta(&mut self, updates: &[(&str, Option<&[u8]>)]) -> Result<MetaWrite> {
        self.shared.check_writable()?;
        for (k, v) in updates {
            if k.len() > usize::from(u16::MAX) {
                return Err(Error::Config(format!(
                    "meta key too long: {} bytes",
                    k.len()
                )));
            }
            match v {
                Some(v) => self.meta.kv.insert((*k).to_owned(), v.to_vec()),
                None => self.meta.kv.remove(*k),
            };
        }
        Ok(self.meta_write())
    }

    fn meta_write(&mut self) -> MetaWrite {
        self.meta_seq += 1;
        MetaWrite {
            shared: self.shared.clone(),
            bytes: self.meta.encode(),
            seq: self.meta_seq,
        }
    }

    pub(super) fn write_meta(&mut self) -> Result<()> {
        self.meta_write().commit()
    }
}

/// A metadata file write prepared by [`Log::prepare_meta`]: the encoded file and its place
/// in the sequence of writes.
#[must_use = "the metadata is durable only once committed"]
pub struct MetaWrite {
    shared: Arc<Shared>,
    bytes: Vec<u8>,
    seq: u64,
}

impl MetaWrite {
    /// Writes the file (temporary file, fsync, rename, fsync of the directory), unless a
    /// later write has already landed. A failure poisons the log.
    pub fn commit(self) -> Result<()> {
        let mut written = lock(&self.shared.meta_written);
        if *written >= self.seq {
            return Ok(());
        }
        let path = self.shared.dir.join(META_FILE);
        if let Err(e) = write_file_atomically(self.shared.io.as_ref(), &path, &self.bytes, true)
            .and_then(|_| self.shared.io.sync_dir(&self.shared.dir))
        {
            self.shared
                .poison(format!("writing {} failed: {e}", path.display()));
            return Err(Error::io("write metadata", path)(e));
        }
        *written = self.seq;
        Ok(())
    }
}
