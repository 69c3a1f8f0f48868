//! Runs one turn of an agent CLI: spawn, parse stdout as it streams, emit, finish.
//!
//! Shared by the codex, claude and gemini backends. Owns the order of events
//! (everything parsed, then `Finished`) and how a crash is described; the parser
//! decides everything else.

use crate::agent::backend::{BackendError, TurnEvents, TurnResult};
use crate::agent::event::{AgentEvent, TurnOutcome};
use crate::agent::process::{AgentProcess, ProcessSpec};
use crate::agent::stream::{LineFeed, LineParser};

/// Runs the process to the end of its stdout and returns the turn and the parser.
pub async fn run_cli_turn<P: LineParser>(
    spec: &ProcessSpec,
    parser: P,
    max_line: usize,
    events: &TurnEvents,
) -> Result<(TurnResult, P), BackendError> {
    let mut process = AgentProcess::spawn(spec)?;
    let mut feed = LineFeed::new(parser, max_line);
    let mut buf = vec![0u8; 64 * 1024];
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
        for event in out.drain(..) {
            events.emit(event).await;
        }
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
    for event in out.drain(..) {
        events.emit(event).await;
    }
    Ok((result, feed.into_parser()))
}
