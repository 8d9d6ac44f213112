//! The Steme broker (work in progress: see issue 4).
