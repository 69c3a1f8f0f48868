//! Runs one turn of an agent CLI: spawn, parse stdout as it streams, emit, finish.
//!
//! Shared by the codex, claude and gemini backends. Owns the order of events
//! (everything parsed, then `Finished`) and how a crash is described; the parser
//! decides everything else.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::backend::{BackendError, TurnEvents, TurnRequest, TurnResult};
use crate::agent::event::{AgentEvent, TurnOutcome};
use crate::agent::process::{AgentProcess, ProcessSpec, resolve_program};
use crate::agent::settings::{BackendSettings, CliSettings};
use crate::agent::stream::{LineFeed, LineParser};

/// What every agent-CLI backend keeps: the resolved binary, its settings, and how its
/// processes run (environment, kill grace, longest line).
pub struct CliCommand {
    pub program: PathBuf,
    pub cli: CliSettings,
    env: Vec<(OsString, OsString)>,
    kill_grace: Duration,
    max_line: usize,
}

impl CliCommand {
    /// Finds `name` (`cli.bin`, set from `env_hint`, or PATH) and keeps `cli`.
    pub fn resolve(
        name: &str,
        env_hint: &str,
        cli: &CliSettings,
        settings: &BackendSettings,
    ) -> Result<Self, BackendError> {
        let program = resolve_program(
            name,
            cli.bin.as_deref(),
            env_hint,
            settings.env_var("PATH").map(OsString::as_os_str),
        )?;
        let mut env = settings.env.clone();
        env.extend(cli.extra_env.iter().cloned());
        Ok(CliCommand {
            program,
            cli: cli.clone(),
            env,
            kill_grace: settings.kill_grace,
            max_line: settings.max_line_bytes,
        })
    }

    /// The model of a turn: the agent's own, else the configured default.
    pub fn model<'a>(&'a self, request: &'a TurnRequest) -> Option<&'a String> {
        request.model.as_ref().or(self.cli.model.as_ref())
    }

    /// Runs one turn with `args` in the request's directory; returns it and the parser.
    pub async fn run<P: LineParser>(
        &self,
        request: &TurnRequest,
        args: Vec<OsString>,
        parser: P,
        events: &TurnEvents,
    ) -> Result<(TurnResult, P), BackendError> {
        let spec = ProcessSpec {
            program: self.program.clone(),
            args,
            cwd: request.cwd.clone(),
            env: self.env.clone(),
            kill_grace: self.kill_grace,
        };
        run_cli_turn(&spec, parser, self.max_line, events).await
    }
}

/// Bytes read from an agent's stdout at a time. Every running agent holds one, so it
/// counts towards peak RSS with 32 agents; half a pipe's 64 KiB costs no throughput.
const READ_BUFFER: usize = 32 * 1024;

/// Runs the process to the end of its stdout and returns the turn and the parser.
pub async fn run_cli_turn<P: LineParser>(
    spec: &ProcessSpec,
    parser: P,
    max_line: usize,
    events: &TurnEvents,
) -> Result<(TurnResult, P), BackendError> {
    let mut process = AgentProcess::spawn(spec)?;
    let mut feed = LineFeed::new(parser, max_line);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::new();
    let mut read_error = None;
    loop {
        match process.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => feed.push(&buf[..n], &mut out),
            Err(err) => {
                read_error = Some(err);
                break;
            }
        }
        events.emit_all(out.drain(..)).await;
    }
    let program = process.program().to_string();
    let exit = process.wait().await;
    let mut result = feed.finish(&mut out);
    if let Some(err) = read_error {
        out.push(AgentEvent::Error {
            message: format!("failed to read the output of `{program}`: {err}"),
        });
    }
    match &mut result.outcome {
        TurnOutcome::Interrupted { message } => {
            *message = format!("{message} (`{program}` exited: {})", exit.describe());
        }
        TurnOutcome::Failed { .. } if !exit.success() && !exit.stderr_tail.trim().is_empty() => {
            out.push(AgentEvent::Error {
                message: format!("`{program}` exited: {}", exit.describe()),
            });
        }
        _ => {}
    }
    out.push(AgentEvent::Finished {
        outcome: result.outcome.clone(),
    });
    events.emit_all(out.drain(..)).await;
    Ok((result, feed.into_parser()))
}
