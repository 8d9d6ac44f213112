//! Runnable example programs live in `examples/` (added with the client, issue 4).
