//! What the foreground terminal shows while a run goes on: an indicatif spinner, or
//! with `--stream` every event as a line, or plain lifecycle lines when stderr is not a
//! terminal (CI, servers). Always on stderr.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::events::event::{AgentStatus, NoticeLevel, OrchEvent, OrchEventKind};
use crate::events::render::{agent_line, clock, interrupt_text, one_line, timeline_line};
use crate::events::sink::Sink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A spinner with a one-line status (interactive terminal).
    Spinner,
    /// Every event as a line (`--stream`).
    Stream,
    /// Lifecycle lines only (stderr is not a terminal).
    Plain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptDebug {
    Off,
    /// Print the size of every prompt before it is sent (`--debug-prompt`).
    Sizes,
}

pub struct ProgressSink {
    mode: ProgressMode,
    prompt_debug: PromptDebug,
    bar: Option<ProgressBar>,
    running: BTreeSet<String>,
    finished: usize,
    failed: usize,
    tokens: u64,
}

impl ProgressSink {
    pub fn new(mode: ProgressMode, prompt_debug: PromptDebug) -> Self {
        let bar = (mode == ProgressMode::Spinner).then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        ProgressSink {
            mode,
            prompt_debug,
            bar,
            running: BTreeSet::new(),
            finished: 0,
            failed: 0,
            tokens: 0,
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    fn status(&self) -> String {
        let running: Vec<&str> = self.running.iter().map(String::as_str).collect();
        format!(
            "running: {} · finished {} · failed {} · {} tokens",
            if running.is_empty() {
                "-".into()
            } else {
                running.join(", ")
            },
            self.finished,
            self.failed,
            self.tokens
        )
    }
}

impl Sink for ProgressSink {
    fn name(&self) -> &'static str {
        "progress"
    }

    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
        match &event.kind {
            OrchEventKind::AgentStarted { agent, .. } => {
                self.running.insert(agent.clone());
            }
            OrchEventKind::AgentFinished { agent, status, .. } => {
                self.running.remove(agent);
                match status {
                    AgentStatus::Succeeded => self.finished += 1,
                    _ => self.failed += 1,
                }
            }
            OrchEventKind::TurnFinished(record) => self.tokens += record.usage.total(),
            OrchEventKind::TurnStarted {
                agent,
                turn,
                kind,
                prompt,
                ..
            } if self.prompt_debug == PromptDebug::Sizes => {
                self.println(&format!(
                    "prompt {agent} turn {turn} ({}): {} chars, {} bytes, {} lines",
                    kind.as_str(),
                    prompt.chars,
                    prompt.bytes,
                    prompt.lines
                ));
            }
            _ => {}
        }
        match self.mode {
            ProgressMode::Stream => {
                if let Some((agent, body)) = agent_line(event) {
                    self.println(&format!("{} [{agent}] {body}", clock(event.at)));
                } else if let Some(line) = timeline_line(event) {
                    self.println(&format!("{} {line}", clock(event.at)));
                }
            }
            ProgressMode::Plain => {
                let lifecycle = matches!(
                    event.kind,
                    OrchEventKind::RunStarted { .. }
                        | OrchEventKind::WaveScheduled { .. }
                        | OrchEventKind::AgentStarted { .. }
                        | OrchEventKind::AgentFinished { .. }
                        | OrchEventKind::BlueprintAccepted { .. }
                        | OrchEventKind::BlueprintRejected { .. }
                        | OrchEventKind::TurnRetrying { .. }
                        | OrchEventKind::Notice { .. }
                        | OrchEventKind::PauseRequested { .. }
                        | OrchEventKind::RunResumed
                        | OrchEventKind::StopRequested { .. }
                );
                if lifecycle && let Some(line) = timeline_line(event) {
                    self.println(&format!("{} {line}", clock(event.at)));
                }
                if let OrchEventKind::RunPaused(summary) = &event.kind {
                    self.println(&interrupt_text(summary));
                }
            }
            ProgressMode::Spinner => {
                match &event.kind {
                    OrchEventKind::Notice { level, message } if *level != NoticeLevel::Info => {
                        let label = if *level == NoticeLevel::Error {
                            "error"
                        } else {
                            "warning"
                        };
                        self.println(&format!("{label}: {}", one_line(message, 2000)));
                    }
                    OrchEventKind::BlueprintRejected { .. }
                    | OrchEventKind::TurnRetrying { .. } => {
                        if let Some(line) = timeline_line(event) {
                            self.println(&line);
                        }
                    }
                    OrchEventKind::RunPaused(summary) => self.println(&interrupt_text(summary)),
                    _ => {}
                }
                if let Some(bar) = &self.bar {
                    bar.set_message(self.status());
                }
            }
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
}
