//! The entries a group appended and has not applied yet, kept in memory as they were
//! written.
//!
//! openraft reads every entry back right after it is appended: each replication stream to
//! send it, and the state machine to apply it. Read from the log, each of those reads is a
//! checked walk (a CRC pass, D12) over bytes this broker has just checked and written. Served
//! from here, the bytes are the appender's own: the leader's batch as its produce handler
//! checked it, a follower's as its append checked it. So each broker checks a record once.
//!
//! Partition groups only (the metadata group's state machine does not hold the log to
//! say what it applied). An entry leaves when it is applied (by then every replica in step has been sent it; a
//! lagging one reads the log), when the log is truncated or purged at or below it, or when
//! the entries held pass [`RECENT_MAX_BYTES`] (oldest first).

use std::collections::VecDeque;

use openraft::EntryPayload;

use super::types::{Entry, term_of};

/// The most bytes of payload one group holds. Entries normally leave within milliseconds,
/// when applied; this bounds a group whose commits stall.
pub const RECENT_MAX_BYTES: usize = 4 << 20;

/// Appended, not yet applied entries with consecutive indexes.
#[derive(Default)]
pub struct Recent {
    entries: VecDeque<Entry>,
    bytes: usize,
}

fn size_of_entry(e: &Entry) -> usize {
    match &e.payload {
        EntryPayload::Normal(p) => p.bytes.len(),
        _ => 0,
    }
}

impl Recent {
    /// Keeps `entry`, appended right after the last one held (anything else is forgotten
    /// first: the log went somewhere this cache did not follow).
    pub fn push(&mut self, entry: Entry) {
        if self
            .entries
            .back()
            .is_some_and(|last| last.log_id.index + 1 != entry.log_id.index)
        {
            self.clear();
        }
        self.bytes += size_of_entry(&entry);
        self.entries.push_back(entry);
        while self.bytes > RECENT_MAX_BYTES {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= size_of_entry(&e);
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Forgets entries at or below `index` (applied, or purged).
    pub fn forget_upto(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= index)
        {
            self.pop_front();
        }
    }

    /// Forgets entries at or above `index` (truncated).
    pub fn forget_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= size_of_entry(&e);
            }
        }
    }

    /// Entries `[start, end)` if every one of them is held and the last one's term is
    /// `term_in_log(end - 1)`, the log's own (a cheap guard against a change to the log this
    /// cache missed).
    pub fn get(
        &self,
        start: u64,
        end: u64,
        term_in_log: impl FnOnce(u64) -> Option<u64>,
    ) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.log_id.index;
        if start < first || end <= start || end > first + self.entries.len() as u64 {
            return None;
        }
        let from = (start - first) as usize;
        let upto = (end - first) as usize;
        let last = &self.entries[upto - 1];
        if term_in_log(last.log_id.index) != Some(term_of(&last.log_id)) {
            return None;
        }
        Some(self.entries.range(from..upto).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::raft::types::{Proposal, log_id};

    fn entry(term: u64, index: u64, len: usize) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Proposal::new(Bytes::from(vec![index as u8; len]))),
        }
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_whole_with_the_logs_term() {
        let mut r = Recent::default();
        for i in 5..10 {
            r.push(entry(2, i, 10));
        }
        let term2 = |_| Some(2);
        assert_eq!(indexes(r.get(6, 9, term2)), Some(vec![6, 7, 8]));
        assert_eq!(indexes(r.get(4, 9, term2)), None, "starts before");
        assert_eq!(indexes(r.get(6, 11, term2)), None, "ends after");
        assert_eq!(indexes(r.get(6, 9, |_| Some(3))), None, "the log moved on");
        assert_eq!(indexes(r.get(6, 9, |_| None)), None);

        r.forget_upto(6);
        r.forget_from(9);
        assert_eq!(indexes(r.get(7, 9, term2)), Some(vec![7, 8]));
        assert_eq!(indexes(r.get(6, 8, term2)), None);
        // A gap forgets everything before it.
        r.push(entry(3, 20, 10));
        assert_eq!(indexes(r.get(7, 9, term2)), None);
        assert_eq!(indexes(r.get(20, 21, |_| Some(3))), Some(vec![20]));
    }

    #[test]
    fn holds_at_most_its_byte_budget_dropping_the_oldest() {
        let mut r = Recent::default();
        let each = RECENT_MAX_BYTES / 4;
        for i in 0..10 {
            r.push(entry(1, i, each));
        }
        assert!(r.bytes <= RECENT_MAX_BYTES);
        assert_eq!(indexes(r.get(6, 10, |_| Some(1))), Some(vec![6, 7, 8, 9]));
        assert_eq!(indexes(r.get(5, 10, |_| Some(1))), None);
        r.clear();
        assert_eq!(r.bytes, 0);
    }
}
