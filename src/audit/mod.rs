//! The append-only libSQL audit store (see issue: audit store).
