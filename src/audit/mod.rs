//! The append-only libSQL audit store: an AgentFS-compatible filesystem of turn files,
//! event logs and memory artifacts, beside our own hash-chained `runs`, `events` and
//! `files` tables.
//!
//! Writing: `AuditSink` (an event-bus sink) feeds one writer thread. Reading:
//! `AuditReader` and `verify`, used by `orch-audit`. The CLI glue is in `commands`.

pub mod anchor;
pub mod checkpoint;
pub mod commands;
pub mod error;
pub mod fs;
pub mod gate;
pub mod memory;
pub mod owner;
pub mod reader;
pub mod record;
pub mod render;
pub mod report;
pub mod resume;
pub mod schema;
pub mod show;
pub mod sink;
pub mod target;
pub mod verify;
pub mod version;
pub mod writer;

pub use error::AuditError;
pub use sink::AuditSink;
pub use target::AuditTarget;
pub use writer::{AuditOptions, RunMeta};
