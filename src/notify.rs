//! Tells the user when the run needs them, finishes or fails, instead of leaving them
//! to watch the panes.
//!
//! A sink on the run's events. For a pause the run made by itself (a spent budget, an
//! agent it cannot get past: `needs-you`), and for the run's end, it
//! - rings the bell and sends an OSC 9 (or, for VTE terminals and foot, OSC 777)
//!   desktop notification to the terminal `launch` ran in, and to every terminal a
//!   client of the run's tmux server is attached to (`--notify terminal`);
//! - runs `notify-send` when it is installed (`--notify desktop`);
//! - starts `sh -c COMMAND` (`--notify-command`; the command is one argument) with one
//!   JSON object on stdin: `{"event": "needs_you" | "budget_warning" | "finished" |
//!   "failed", "run", "reason", "agent", "summary", "failed"}` (`budget_warning`: 80 %
//!   of a budget is used).
//!
//! All of it runs beside the run, never in its way: a thread does it, waits at most
//! `LIMIT` for each program, then kills its process group; the end of the run waits for
//! those threads, so nothing is left behind.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::events::Sink;
use crate::events::event::{NoticeLevel, OrchEvent, OrchEventKind, RunStatus};
use crate::orchestrator::interrupts::NEEDS_YOU;

/// How long a notify command may run.
const LIMIT: Duration = Duration::from_secs(10);

/// Where the run's notifications go.
#[derive(Clone, Debug, Default)]
pub struct Channels {
    /// `--notify-command`.
    pub command: Option<String>,
    /// Terminals told with a bell and an OSC notification.
    pub ttys: Vec<PathBuf>,
    /// The run's private tmux server (its program and `-L` socket): the terminals its
    /// clients are attached to are told too.
    pub tmux: Option<(PathBuf, String)>,
    /// `notify-send`.
    pub desktop: bool,
}

impl Channels {
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.ttys.is_empty() && self.tmux.is_none() && !self.desktop
    }
}

pub struct NotifySink {
    channels: Channels,
    session: String,
    summary: PathBuf,
    running: Vec<JoinHandle<()>>,
}

impl NotifySink {
    pub fn new(channels: Channels, session: String, summary: PathBuf) -> Self {
        NotifySink {
            channels,
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
            OrchEventKind::RunPaused(summary) if summary.requested_by.starts_with(NEEDS_YOU) => {
                needs_you(&summary.requested_by[NEEDS_YOU.len()..])
            }
            // Another agent that needs the user while the run is paused already.
            OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message,
            } if message.starts_with("needs you: ") => needs_you(&message["needs you: ".len()..]),
            // 80 % of a budget: a warning, before the pause at 100 %.
            OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message,
            } if message.starts_with("80 % of ") => ("budget_warning", message.clone(), Vec::new()),
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
            "failed": if name == "needs_you" { Vec::new() } else { failed },
            "summary": self.summary,
        }))
    }

    /// Tells every channel of `payload`, on a thread of its own.
    fn start(&mut self, payload: serde_json::Value) {
        let channels = self.channels.clone();
        let handle = std::thread::Builder::new()
            .name("orch-notify".into())
            .spawn(move || {
                let (title, body) = words(&payload);
                if !channels.ttys.is_empty() || channels.tmux.is_some() {
                    let mut ttys = channels.ttys.clone();
                    if let Some((bin, socket)) = &channels.tmux {
                        for tty in tmux_client_ttys(bin, socket) {
                            if !ttys.contains(&tty) {
                                ttys.push(tty);
                            }
                        }
                    }
                    let sequence = terminal_sequence(&title, &body, osc_777());
                    for tty in ttys {
                        tell_terminal(&tty, &sequence);
                    }
                }
                if channels.desktop && on_path("notify-send") {
                    let mut cmd = Command::new("notify-send");
                    cmd.args(["--app-name=orch", "--", &title, &body]);
                    run_bounded(cmd, None, "notify-send");
                }
                if let Some(command) = &channels.command {
                    let mut cmd = Command::new("sh");
                    cmd.arg("-c").arg(command);
                    run_bounded(cmd, Some(format!("{payload}\n")), "--notify-command");
                }
            });
        match handle {
            Ok(handle) => self.running.push(handle),
            Err(err) => tracing::warn!(error = %err, "failed to start a notification"),
        }
    }
}

/// A needs-you payload's parts from `<agent>: <reason>`.
fn needs_you(text: &str) -> (&'static str, String, Vec<String>) {
    match text.split_once(": ") {
        Some((agent, reason)) if !agent.is_empty() => {
            ("needs_you", reason.to_owned(), vec![agent.to_owned()])
        }
        _ => ("needs_you", text.to_owned(), Vec::new()),
    }
}

/// A notification's title and text, from its payload.
fn words(payload: &serde_json::Value) -> (String, String) {
    let text = |key: &str| payload[key].as_str().unwrap_or_default().to_owned();
    let (run, reason, agent) = (text("run"), text("reason"), text("agent"));
    let title = match payload["event"].as_str() {
        Some("needs_you") => format!("orch: {run} needs you"),
        Some("budget_warning") => format!("orch: {run} is near its budget"),
        Some("finished") => format!("orch: {run} finished"),
        _ => format!("orch: {run} failed"),
    };
    let body = match (payload["event"].as_str(), agent.is_empty()) {
        (Some("needs_you"), false) => format!("{agent}: {reason}"),
        (Some("failed"), false) => format!("{reason}; failed: {agent}"),
        _ => reason,
    };
    (title, body)
}

/// A bell, then a desktop notification: OSC 777 (`notify;title;body`) or OSC 9
/// (`title: body`). Control characters and `;` in the words are left out, so nothing in
/// them can end the sequence early or start another.
fn terminal_sequence(title: &str, body: &str, osc_777: bool) -> Vec<u8> {
    let clean = |text: &str, semicolons: bool| -> String {
        text.chars()
            .filter(|c| !c.is_control() && (semicolons || *c != ';'))
            .take(200)
            .collect()
    };
    let mut out = b"\x07".to_vec();
    if osc_777 {
        out.extend_from_slice(
            format!(
                "\x1b]777;notify;{};{}\x07",
                clean(title, false),
                clean(body, false)
            )
            .as_bytes(),
        );
    } else {
        out.extend_from_slice(
            format!("\x1b]9;{}: {}\x07", clean(title, true), clean(body, true)).as_bytes(),
        );
    }
    out
}

/// VTE terminals (GNOME Terminal, Tilix…) and foot show OSC 777; most others OSC 9.
fn osc_777() -> bool {
    std::env::var_os("VTE_VERSION").is_some()
        || std::env::var("TERM").is_ok_and(|t| t.starts_with("foot"))
}

/// Writes `sequence` to the terminal at `tty`, never waiting on it.
fn tell_terminal(tty: &std::path::Path, sequence: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(tty);
    match opened {
        Ok(mut file) => {
            if let Err(err) = file.write_all(sequence) {
                tracing::debug!(error = %err, tty = %tty.display(), "failed to notify a terminal");
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, tty = %tty.display(), "failed to open a terminal")
        }
    }
}

/// The terminals the clients of the run's tmux server are attached to.
fn tmux_client_ttys(bin: &std::path::Path, socket: &str) -> Vec<PathBuf> {
    let mut cmd = Command::new(bin);
    cmd.args(["-L", socket, "list-clients", "-F", "#{client_tty}"]);
    match cmd.stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("/dev/"))
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Runs `cmd` in its own process group with `input` on stdin, at most `LIMIT`.
fn run_bounded(mut cmd: Command, input: Option<String>, what: &str) {
    let spawned = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(error = %err, "failed to start {what}");
            return;
        }
    };
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let _ = stdin.write_all(input.as_bytes());
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if started.elapsed() >= LIMIT => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
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

    /// The run paused, asked for by `by`.
    fn paused(by: &str) -> OrchEvent {
        OrchEvent::now(OrchEventKind::RunPaused(Box::new(InterruptSummary {
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
        })))
    }

    fn sink() -> NotifySink {
        NotifySink::new(
            Channels {
                command: Some("true".into()),
                ..Channels::default()
            },
            "run-x".into(),
            PathBuf::from("/r/interrupt.log"),
        )
    }

    #[test]
    fn the_terminal_gets_a_bell_and_one_osc_notification_it_cannot_be_tricked_by() {
        let nasty = "x\x07\x1b]52;c;evil\x07; y\nz";
        let osc9 = terminal_sequence("orch: run needs you", nasty, false);
        let text = String::from_utf8(osc9).unwrap();
        assert_eq!(text, "\x07\x1b]9;orch: run needs you: x]52;c;evil; yz\x07");
        let osc777 = terminal_sequence("orch: a;b", "c;d", true);
        assert_eq!(
            String::from_utf8(osc777).unwrap(),
            "\x07\x1b]777;notify;orch: ab;cd\x07"
        );
        // Written to the terminal's path as is (here a file stands in for a tty).
        let dir = tempfile::tempdir().unwrap();
        let tty = dir.path().join("tty");
        std::fs::write(&tty, b"").unwrap();
        tell_terminal(&tty, b"\x07bell");
        assert_eq!(std::fs::read(&tty).unwrap(), b"\x07bell");
        // A terminal that is gone is not an error of the run.
        tell_terminal(&dir.path().join("gone"), b"\x07");
    }

    #[test]
    fn words_name_the_run_the_agent_and_the_reason() {
        let s = sink();
        let payload = s
            .payload(&paused(
                "needs-you: api: reviewer `critic` still fails its work",
            ))
            .unwrap();
        assert_eq!(payload["event"], "needs_you");
        assert_eq!(payload["agent"], "api");
        let (title, body) = words(&payload);
        assert_eq!(title, "orch: run-x needs you");
        assert_eq!(body, "api: reviewer `critic` still fails its work");
        // A second agent that needs the user while the run is paused already.
        let second = OrchEvent::now(OrchEventKind::Notice {
            level: NoticeLevel::Warning,
            message: "needs you: docs: gate `make` still fails".into(),
        });
        let payload = s.payload(&second).unwrap();
        assert_eq!(payload["agent"], "docs");
        assert_eq!(payload["reason"], "gate `make` still fails");
        let warning = OrchEvent::now(OrchEventKind::Notice {
            level: NoticeLevel::Warning,
            message: "80 % of the token budget used (80 of 100 tokens)".into(),
        });
        let payload = s.payload(&warning).unwrap();
        assert_eq!(payload["event"], "budget_warning");
        assert_eq!(words(&payload).0, "orch: run-x is near its budget");
    }

    #[test]
    fn payloads_for_a_budget_pause_a_success_and_a_failure_only() {
        let s = sink();
        let budget = paused("budget: --max-tokens 5 reached (9 of 5 tokens)");
        let payload = s.payload(&budget).unwrap();
        assert_eq!(payload["event"], "needs_you");
        assert_eq!(payload["run"], "run-x");
        assert_eq!(payload["summary"], "/r/interrupt.log");
        let by_user = paused("ctrl-s");
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
