//! End-to-end tests with real broker processes (added with the broker, issue 4).
