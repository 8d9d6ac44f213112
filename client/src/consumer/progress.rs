//! Fetch answers that bring no records although they should: `CorruptData` (the leader's
//! copy of the range is damaged) and empty answers below the high watermark. Neither is
//! re-sent in a tight loop nor forever: each is retried after a growing backoff, a bounded
//! number of times in a row, and then `poll` returns a typed error. The position stays
//! where it was either way, so a range is never skipped.

/// Consecutive answers of each kind for one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NoProgress {
    corrupt_data: u32,
    empty: u32,
}

/// What to do after an answer that brought nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Fetch again after the backoff of this attempt (0 = the first retry).
    Retry { attempt: u32 },
    /// The budget is spent: return the error. `answers` such answers came in a row; the count
    /// starts again, so a caller that polls on gets a fresh budget, with backoff.
    GiveUp { answers: u32 },
}

impl NoProgress {
    /// Counts a `CorruptData` answer, `retries` of which may be retried in a row.
    pub(super) fn corrupt_data(&mut self, retries: u32) -> Verdict {
        Self::count(&mut self.corrupt_data, retries)
    }

    /// Counts an empty answer below the high watermark, `retries` of which may be retried
    /// in a row.
    pub(super) fn empty_below_high_watermark(&mut self, retries: u32) -> Verdict {
        Self::count(&mut self.empty, retries)
    }

    /// An empty answer at the high watermark: the normal end of a long poll.
    pub(super) fn caught_up(&mut self) {
        self.empty = 0;
    }

    /// Records came: the partition reads again.
    pub(super) fn progressed(&mut self) {
        *self = NoProgress::default();
    }

    /// Whether the last answers brought records, or nothing because there was nothing.
    pub(super) fn is_clear(&self) -> bool {
        *self == NoProgress::default()
    }

    fn count(answers: &mut u32, retries: u32) -> Verdict {
        *answers = answers.saturating_add(1);
        if *answers > retries {
            let given_up = *answers;
            *answers = 0;
            Verdict::GiveUp { answers: given_up }
        } else {
            Verdict::Retry {
                attempt: *answers - 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_then_the_budget_starts_again() {
        let mut p = NoProgress::default();
        assert_eq!(p.corrupt_data(2), Verdict::Retry { attempt: 0 });
        assert_eq!(p.corrupt_data(2), Verdict::Retry { attempt: 1 });
        assert_eq!(p.corrupt_data(2), Verdict::GiveUp { answers: 3 });
        assert!(p.is_clear());
        assert_eq!(p.corrupt_data(2), Verdict::Retry { attempt: 0 });
        assert_eq!(
            NoProgress::default().corrupt_data(0),
            Verdict::GiveUp { answers: 1 }
        );
    }

    #[test]
    fn only_answers_in_a_row_count() {
        let mut p = NoProgress::default();
        p.empty_below_high_watermark(1);
        p.caught_up();
        assert_eq!(
            p.empty_below_high_watermark(1),
            Verdict::Retry { attempt: 0 }
        );
        p.corrupt_data(5);
        p.progressed();
        assert!(p.is_clear());
        assert_eq!(
            p.empty_below_high_watermark(1),
            Verdict::Retry { attempt: 0 }
        );
        assert_eq!(
            p.empty_below_high_watermark(1),
            Verdict::GiveUp { answers: 2 }
        );
    }
}
