//! The one error type of the multiplexer subsystem.

use std::path::PathBuf;

/// What can go wrong while writing layouts or driving Zellij and tmux.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("path `{}` is not valid UTF-8 and cannot go into a layout", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error(
        "session name `{}` is not usable: {reason}",
        name.escape_debug()
    )]
    BadSessionName { name: String, reason: String },
    #[error(
        "`{}` was not found: install {tool} or point {env} at its binary",
        program.display()
    )]
    ProgramNotFound {
        program: PathBuf,
        tool: &'static str,
        env: &'static str,
    },
    #[error("failed to run `{}`", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("zellij session `{session}` did not start within {waited:?} (tried 3 times)")]
    SessionDidNotStart {
        session: String,
        waited: std::time::Duration,
    },
    #[error("`{command}` did not finish within {waited:?} and was killed")]
    TimedOut {
        command: String,
        waited: std::time::Duration,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("failed to write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("zellij session `{session}` has no tab `{tab}` to add a pane to")]
    MissingTab { session: String, tab: String },
    #[error(
        "zellij session `{session}` has no attached client, so tab `{tab}` cannot be laid \
         out yet: add the pane again once a terminal is attached (`launch attach`)"
    )]
    NoClientForNewTab { session: String, tab: String },
    #[error(
        "stale zellij session `{session}` was still there after {waited:?}: remove it with `zellij delete-session --force {session}`"
    )]
    StaleSession {
        session: String,
        waited: std::time::Duration,
    },
    #[error("failed to parse the pane or tab list of zellij session `{session}`")]
    PaneList {
        session: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no agents to show: a session needs at least one agent pane")]
    NoAgents,
    #[error("the interrupt command is empty")]
    EmptyCommand,
}
