//! The on-disk log of one partition (work in progress: see issue 3).
