//! orch: one prompt in, a squad of AI coding agents out.
//!
//! The library behind the `launch` and `orch-audit` binaries. Subsystems:
//! - `config`: agents config files (KDL, seed JSON) and the resolved run `Config`.
//! - `orchestrator`: groups, core agents, blueprints, waves, pause and resume.
//! - `agent`: the `Backend` trait, the normalized event model, and each backend.
//! - `events`: the event bus and its sinks (logs, timeline, progress).
//! - `audit`: the append-only libSQL audit store.
//! - `control`: the control socket, `launch ctl`, and signal handling.
//! - `mux`: Zellij and tmux layouts and clients.
//! - `status`: the HTML run report, rendered from plain data.
//! - `workspace`: the run branch, a git worktree per agent, commits and the merge queue.

pub mod agent;
pub mod alloc;
pub mod audit;
pub mod board;
pub mod cli;
pub mod config;
pub mod control;
pub mod events;
pub mod launcher;
pub mod liveness;
pub mod mux;
pub mod notify;
pub mod orchestrator;
pub mod paths;
pub mod private_fs;
pub mod redact;
pub mod status;
pub mod workspace;
