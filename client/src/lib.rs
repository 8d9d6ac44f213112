//! The Steme client library (work in progress: see issue 4).
