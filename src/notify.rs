//! `--notify-command`: tells the user's own program when the run needs them, finishes
//! or fails, instead of leaving them to watch the panes.
//!
//! A sink on the run's events. For a pause the run made by itself (a spent budget: the
//! run needs the user), and for the run's end, it starts `sh -c COMMAND` (the command is
//! one argument) with one JSON object on stdin: `{"event": "needs_you" | "finished" |
//! "failed", "run", "reason", "agent", "summary", "failed"}`. The command runs beside
//! the run, never in its way: a thread waits for it, at most `LIMIT`, then kills its
//! process group; the end of the run waits for those threads, so nothing is left behind.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::events::Sink;
use crate::events::event::{OrchEvent, OrchEventKind, RunStatus};

/// How long a notify command may run.
const LIMIT: Duration = Duration::from_secs(10);

pub struct NotifySink {
    command: String,
    session: String,
    summary: PathBuf,
    running: Vec<JoinHandle<()>>,
}

impl NotifySink {
    pub fn new(command: String, session: String, summary: PathBuf) -> Self {
        NotifySink {
            command,
            session,
            summary,
            running: Vec::new(),
        }
    }

    /// The payload for `event`, if it is one the user is told about.
    fn payload(&self, event: &OrchEvent) -> Option<serde_json::Value> {
        let (name, reason, failed) = match &event.kind {
            // A pause the run made by itself, not one the user asked for.
            OrchEventKind::RunPaused(summary) if summary.requested_by.starts_with("budget:") => {
                ("needs_you", summary.requested_by.clone(), Vec::new())
            }
            OrchEventKind::RunFinished { status, failed, .. } => match status {
                RunStatus::Succeeded => ("finished", "the run succeeded".to_owned(), Vec::new()),
                other => (
                    "failed",
                    format!("the run ended {}", other.as_str()),
                    failed.clone(),
                ),
            },
            _ => return None,
        };
        Some(json!({
            "event": name,
            "run": self.session,
            "reason": reason,
            "agent": failed.first(),
            "failed": failed,
            "summary": self.summary,
        }))
    }

    fn start(&mut self, payload: serde_json::Value) {
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                tracing::warn!(error = %err, "failed to start the --notify-command");
                return;
            }
        };
        let handle = std::thread::Builder::new()
            .name("orch-notify".into())
            .spawn(move || {
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(format!("{payload}\n").as_bytes());
                }
                let started = Instant::now();
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if started.elapsed() >= LIMIT => {
                            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                            let _ =
                                nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        match handle {
            Ok(handle) => self.running.push(handle),
            Err(err) => tracing::warn!(error = %err, "failed to wait for the --notify-command"),
        }
    }
}

impl Sink for NotifySink {
    fn name(&self) -> &'static str {
        "notify"
    }

    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
        if let Some(payload) = self.payload(event) {
            self.start(payload);
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        for handle in self.running.drain(..) {
            let _ = handle.join();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::event::Usage;
    use crate::events::event::InterruptSummary;

    fn sink() -> NotifySink {
        NotifySink::new(
            "true".into(),
            "run-x".into(),
            PathBuf::from("/r/interrupt.log"),
        )
    }

    #[test]
    fn payloads_for_a_budget_pause_a_success_and_a_failure_only() {
        let summary = |by: &str| InterruptSummary {
            session: "run-x".into(),
            number: 1,
            requested_by: by.into(),
            finished: Vec::new(),
            failed: Vec::new(),
            in_flight: Vec::new(),
            pending: Vec::new(),
            started: vec![],
            usage: Usage::default(),
            next_steps: Vec::new(),
        };
        let s = sink();
        let budget = OrchEvent::now(OrchEventKind::RunPaused(Box::new(summary(
            "budget: --max-tokens 5 reached (9 of 5 tokens)",
        ))));
        let payload = s.payload(&budget).unwrap();
        assert_eq!(payload["event"], "needs_you");
        assert_eq!(payload["run"], "run-x");
        assert_eq!(payload["summary"], "/r/interrupt.log");
        let by_user = OrchEvent::now(OrchEventKind::RunPaused(Box::new(summary("ctrl-s"))));
        assert!(s.payload(&by_user).is_none());
        let failed = OrchEvent::now(OrchEventKind::RunFinished {
            status: RunStatus::Failed,
            usage: Usage::default(),
            failed: vec!["api".into()],
        });
        let payload = s.payload(&failed).unwrap();
        assert_eq!(payload["event"], "failed");
        assert_eq!(payload["agent"], "api");
        let ok = OrchEvent::now(OrchEventKind::RunFinished {
            status: RunStatus::Succeeded,
            usage: Usage::default(),
            failed: Vec::new(),
        });
        assert_eq!(s.payload(&ok).unwrap()["event"], "finished");
    }
}
