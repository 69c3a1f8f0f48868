//! Runs one turn of an agent CLI: spawn with the prompt on stdin, parse stdout as it
//! streams, emit, end the process group, finish.
//!
//! Shared by the codex, claude and gemini backends. Owns the order of events
//! (everything parsed, then `Finished`), the turn's stop (the user's `StopSignal`) and
//! idle limit, and how a crash or a failed exit is described; the parser decides
//! everything else.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::backend::{
    BackendError, STOPPED_BY_USER, StopSignal, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::event::{AgentEvent, FailureClass, TurnOutcome};
use crate::agent::process::{AgentProcess, ProcessSpec, resolve_program};
use crate::agent::settings::{BackendSettings, CliSettings};
use crate::agent::stream::{LineFeed, LineParser};
use crate::events::event::NoticeLevel;

/// What every agent-CLI backend keeps: the resolved binary, its settings, and how its
/// processes run (environment, kill grace, idle limit, longest line).
pub struct CliCommand {
    pub program: PathBuf,
    pub cli: CliSettings,
    env: Vec<(OsString, OsString)>,
    kill_grace: Duration,
    idle_limit: Duration,
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
            idle_limit: settings.cli_idle_timeout,
            max_line: settings.max_line_bytes,
        })
    }

    /// A variable of the agent's environment.
    pub fn env_var(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The model of a turn: the agent's own, else the configured default.
    pub fn model<'a>(&'a self, request: &'a TurnRequest) -> Option<&'a String> {
        request.model.as_ref().or(self.cli.model.as_ref())
    }

    /// Runs one turn with `args` in the request's directory, the prompt on stdin;
    /// returns it and the parser.
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
        let turn = CliTurn {
            input: request.prompt.clone().into_bytes(),
            max_line: self.max_line,
            idle_limit: self.idle_limit,
            stop: request.stop.clone(),
        };
        let denied_before = events.denials();
        let (mut result, parser) = run_cli_turn(&spec, turn, parser, events).await?;
        let denied = events.denials().saturating_sub(denied_before);
        if denied > 0 {
            // Not a plain success: the agent wanted to do something the policy forbids.
            events
                .notice(
                    NoticeLevel::Warning,
                    format!(
                        "agent `{}` turn {}: {denied} tool call(s) denied under `{}` permissions; the turn went on without them (see `denied` in its log; `--permissions act` or a `permissions` setting in orch.kdl allows more)",
                        request.agent, request.turn, request.permissions
                    ),
                )
                .await;
        }
        if result.thread_id.is_none() && !result.outcome.is_success() {
            // A stopped or crashed resumed turn still belongs to its thread.
            result.thread_id = request.resume.clone();
        }
        Ok((result, parser))
    }
}

/// Bytes read from an agent's stdout at a time. Every running agent holds one, so it
/// counts towards peak RSS with 32 agents; half a pipe's 64 KiB costs no throughput.
const READ_BUFFER: usize = 32 * 1024;

/// What a turn gives its process beyond the command line.
pub struct CliTurn {
    /// Written to the process's stdin, which is then closed.
    pub input: Vec<u8>,
    pub max_line: usize,
    /// A process silent (stdout and stderr) this long is ended.
    pub idle_limit: Duration,
    pub stop: StopSignal,
}

/// Why the reading loop ended.
enum End {
    /// The process closed stdout and exited.
    Exited,
    Stopped,
    Idle,
}

/// One wake-up of the reading loop.
enum Step {
    Stop,
    Read(std::io::Result<usize>),
    Exited,
    Tick,
}

/// Runs the process to its end and returns the turn and the parser.
pub async fn run_cli_turn<P: LineParser>(
    spec: &ProcessSpec,
    turn: CliTurn,
    parser: P,
    events: &TurnEvents,
) -> Result<(TurnResult, P), BackendError> {
    let CliTurn {
        input,
        max_line,
        idle_limit,
        mut stop,
    } = turn;
    let mut process = AgentProcess::spawn(spec, Some(input))?;
    let mut feed = LineFeed::new(parser, max_line);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::new();
    let mut read_error = None;
    let mut stdout_open = true;
    let end = loop {
        let idle_left = idle_limit.saturating_sub(process.idle_for());
        let step = if stdout_open {
            tokio::select! {
                biased;
                _ = stop.stopped() => Step::Stop,
                read = process.read(&mut buf) => Step::Read(read),
                _ = tokio::time::sleep(idle_left) => Step::Tick,
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.stopped() => Step::Stop,
                _ = process.wait_exit() => Step::Exited,
                _ = tokio::time::sleep(idle_left) => Step::Tick,
            }
        };
        match step {
            Step::Stop => break End::Stopped,
            Step::Exited => break End::Exited,
            // Stderr may have spoken since the timer was set.
            Step::Tick if process.idle_for() >= idle_limit => break End::Idle,
            Step::Tick => {}
            Step::Read(Ok(0)) => stdout_open = false,
            Step::Read(Ok(n)) => feed.push(&buf[..n], &mut out),
            Step::Read(Err(err)) => {
                read_error = Some(err);
                stdout_open = false;
            }
        }
        events.emit_all(out.drain(..)).await;
    };
    let program = process.program().to_string();
    let exit = process.end().await;
    let mut result = feed.finish(&mut out);
    if let Some(err) = read_error {
        out.push(AgentEvent::Error {
            message: format!("failed to read the output of `{program}`: {err}"),
        });
    }
    let name = program_name(&program);
    match end {
        End::Stopped => {
            result.outcome = TurnOutcome::Interrupted {
                message: STOPPED_BY_USER.into(),
            };
        }
        End::Idle => {
            result.outcome = TurnOutcome::Failed {
                class: FailureClass::Transient {
                    retry_after_secs: None,
                },
                message: format!(
                    "no output from `{name}` for {}; the turn was ended",
                    seconds(idle_limit)
                ),
            };
        }
        End::Exited => {}
    }
    match &mut result.outcome {
        TurnOutcome::Interrupted { message } if !matches!(end, End::Stopped) => {
            *message = format!("{message} (`{program}` exited: {})", exit.describe());
        }
        TurnOutcome::Failed { .. } if !exit.success() && !exit.stderr_tail.trim().is_empty() => {
            out.push(AgentEvent::Error {
                message: format!("`{program}` exited: {}", exit.describe()),
            });
        }
        TurnOutcome::Completed if !exit.success() => {
            // The answer stands, but a failed exit after it is worth a look.
            out.push(AgentEvent::Error {
                message: format!(
                    "`{name}` reported the turn completed, then exited: {}",
                    exit.describe()
                ),
            });
        }
        _ => {}
    }
    if exit.killed && matches!(end, End::Exited) {
        out.push(AgentEvent::Error {
            message: format!(
                "processes `{name}` left behind ignored SIGTERM and were killed after {}",
                seconds(spec.kill_grace)
            ),
        });
    }
    out.push(AgentEvent::Finished {
        outcome: result.outcome.clone(),
    });
    events.emit_all(out.drain(..)).await;
    Ok((result, feed.into_parser()))
}

/// The file name of a program path, as users call it (`codex`).
fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// "1200 s", "0.25 s".
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}
