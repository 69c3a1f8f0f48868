//! Failures of the `launch` binary and their exit codes.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::control::ControlError;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Backend(#[from] crate::agent::BackendError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("failed to prepare the run directory `{path}`")]
    RunDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Mux(#[from] crate::mux::MuxError),
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    #[error("failed to write to stdout")]
    Output {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "session `{session}` is taken: its run is still going (orchestrator pid {pid}); `launch ctl status --session {session}` reports on it, `launch attach --session {session}` shows a Zellij/tmux run; start a new run without --session or with another name"
    )]
    SessionTaken { session: String, pid: u32 },
    #[error(
        "run {session} crashed earlier (its orchestrator is gone); its logs stay in {logs} and `orch-audit show {session}` has what it recorded: `launch resume {session}` goes on with it, or start a new run without --session or with another name"
    )]
    SessionCrashed { session: String, logs: String },
    #[error("run {session} cannot be resumed: {reason}")]
    CannotResume { session: String, reason: String },
    #[error(
        "run {session} has no panes (it ran with --mux none): follow it with `orch-audit events {session} --follow`"
    )]
    NoPanes { session: String },
    #[error("`launch attach` needs a terminal to show run {session} in")]
    NeedsTerminal { session: String },
    #[error("failed to find the path of the running `launch` binary")]
    OwnBinary {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start the orchestrator")]
    Orchestrator {
        #[source]
        source: std::io::Error,
    },
    #[error("the orchestrator exited ({status}) before the run started:\n{output}")]
    OrchestratorExited { status: String, output: String },
    #[error("the orchestrator did not answer within {waited:?}; see {log}")]
    OrchestratorSilent {
        waited: std::time::Duration,
        log: String,
    },
    #[error("failed to run {mux} in this terminal")]
    Terminal {
        mux: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{message}")]
    Board { message: String },
    #[error("no run found in {root}: start one with `launch --prompt ...`")]
    NoRun { root: String },
    #[error("failed to read run directory `{path}`: {message}")]
    BadRunDir { path: String, message: String },
}

/// Documented exit codes of `launch`.
pub mod exit {
    /// The run finished and every agent succeeded.
    pub const SUCCESS: u8 = 0;
    /// The run finished, but an agent failed or was blocked (or a ctl request failed).
    pub const RUN_FAILED: u8 = 1;
    /// Bad flags, config file, or environment: nothing ran.
    pub const USAGE: u8 = 2;
    /// The run was stopped (SIGINT/SIGTERM, `launch ctl stop`).
    pub const STOPPED: u8 = 130;
}

pub fn report_error(err: &LaunchError) -> ExitCode {
    let mut message = format!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::from(match err {
        LaunchError::Config(_)
        | LaunchError::Backend(_)
        | LaunchError::SessionTaken { .. }
        | LaunchError::SessionCrashed { .. }
        | LaunchError::CannotResume { .. }
        | LaunchError::NoPanes { .. }
        | LaunchError::NeedsTerminal { .. }
        | LaunchError::Mux(
            crate::mux::MuxError::ProgramNotFound { .. }
            | crate::mux::MuxError::BadSessionName { .. },
        )
        | LaunchError::Workspace(
            crate::workspace::WorkspaceError::NotARepository { .. }
            | crate::workspace::WorkspaceError::BadName { .. }
            | crate::workspace::WorkspaceError::NoRunBranch { .. }
            | crate::workspace::WorkspaceError::NoWorkspace { .. }
            | crate::workspace::WorkspaceError::NoAgentBranch { .. }
            | crate::workspace::WorkspaceError::NoWorktree { .. }
            | crate::workspace::WorkspaceError::NothingToClean { .. },
        ) => exit::USAGE,
        _ => exit::RUN_FAILED,
    })
}
