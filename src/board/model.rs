//! What the status board shows: the run and one row per agent, as plain data.
//!
//! Filled live from the run's events (`Board::apply`, in the run's process) or, for a
//! finished or crashed run, from its audit store (`Board::from_report`). Owns no I/O and
//! no drawing (`render.rs`).

use serde::{Deserialize, Serialize};

use crate::agent::event::{AgentEvent, ItemStatus};
use crate::events::event::{AgentStatus, OrchEvent, OrchEventKind, RetryDecision};
use crate::events::wire::millis;
use crate::orchestrator::interrupts::{NEEDS_YOU, token_budget_set};
use crate::orchestrator::lifecycle::clock;
use crate::status::report_model::RunReport;

/// How a state reads at a glance (its colour on the board).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// Not started.
    #[default]
    Waiting,
    /// Working (a turn, a gate, a merge).
    Busy,
    /// Waiting on something outside it: a retry, a usage limit, a pause, a conflict.
    Held,
    Good,
    Bad,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardAgent {
    pub id: String,
    pub role: String,
    pub wave: u32,
    pub depends_on: Vec<String>,
    pub backend: String,
    pub model: Option<String>,
    /// `queued`, `running turn 2`, `retrying turn 1 (attempt 2)`, `parked until 16:05`,
    /// `gating`, `merging`, `succeeded`, `failed`, `blocked by api`, `stopped`…
    pub state: String,
    pub tone: Tone,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// What its priced turns cost, in micro-dollars.
    #[serde(default)]
    pub cost_micros: u64,
    /// What it is doing now, or did last: the running command, the last file changed.
    pub doing: String,
    pub files_changed: usize,
    /// Its branch, `read-only`, or `None` without a worktree.
    pub branch: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    pub session: String,
    pub backend: String,
    /// running, pausing, paused, stopping, succeeded, failed, stopped or crashed.
    pub state: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// The highest wave scheduled (0: the core agents).
    pub wave: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// What the priced turns cost, in micro-dollars.
    #[serde(default)]
    pub cost_micros: u64,
    pub max_tokens: Option<u64>,
    /// In the order the run first named them.
    pub agents: Vec<BoardAgent>,
    /// True when it comes from the running process, false when from the audit store.
    pub live: bool,
}

/// Longest `doing` text kept.
const MAX_DOING: usize = 200;

impl Board {
    pub fn new(session: &str, max_tokens: Option<u64>) -> Self {
        Board {
            session: session.to_owned(),
            state: "starting".into(),
            max_tokens,
            live: true,
            ..Board::default()
        }
    }

    /// The row of `id`, added (queued) when the run had not named it yet.
    fn agent(&mut self, id: &str) -> &mut BoardAgent {
        let index = match self.agents.iter().position(|a| a.id == id) {
            Some(index) => index,
            None => {
                self.agents.push(BoardAgent {
                    id: id.to_owned(),
                    state: "queued".into(),
                    ..BoardAgent::default()
                });
                self.agents.len() - 1
            }
        };
        &mut self.agents[index]
    }

    /// Whether the board changed in a way worth drawing again.
    pub fn apply(&mut self, event: &OrchEvent) -> bool {
        let at = millis(event.at);
        match &event.kind {
            OrchEventKind::RunStarted {
                session, backend, ..
            } => {
                self.session = session.clone();
                self.backend = backend.clone();
                self.started_ms = at;
                self.state = "running".into();
            }
            OrchEventKind::WaveScheduled { wave, agents, .. } => {
                self.wave = self.wave.max(*wave);
                for id in agents {
                    let row = self.agent(id);
                    if row.started_ms.is_none() {
                        row.wave = *wave;
                    }
                }
            }
            OrchEventKind::BlueprintAccepted { wave, agents, .. } => {
                for summary in agents {
                    let row = self.agent(&summary.id);
                    if row.started_ms.is_none() {
                        row.role = summary.role.clone();
                        row.wave = *wave;
                        row.depends_on = summary.depends_on.clone();
                    }
                }
            }
            OrchEventKind::AgentStarted {
                agent,
                role,
                wave,
                depends_on,
                ..
            } => {
                let row = self.agent(agent);
                row.role = role.clone();
                row.wave = *wave;
                row.depends_on = depends_on.clone();
                row.started_ms = Some(at);
                row.finished_ms = None;
                row.state = "starting".into();
                row.tone = Tone::Busy;
            }
            OrchEventKind::WorktreeReady { agent, branch, .. } => {
                self.agent(agent).branch =
                    Some(branch.clone().unwrap_or_else(|| "read-only".to_owned()));
            }
            OrchEventKind::TurnStarted {
                agent,
                turn,
                attempt,
                backend,
                model,
                purpose,
                ..
            } => {
                let row = self.agent(agent);
                row.backend = backend.clone();
                row.model = model.clone();
                let why = purpose
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                row.state = if *attempt > 1 {
                    format!("running turn {turn}, attempt {attempt}{why}")
                } else {
                    format!("running turn {turn}{why}")
                };
                row.tone = Tone::Busy;
            }
            OrchEventKind::Agent { agent, event, .. } => {
                let doing = match event {
                    AgentEvent::Command {
                        command, status, ..
                    } => match status {
                        ItemStatus::InProgress => format!("$ {command}"),
                        ItemStatus::Completed => format!("ran $ {command}"),
                        _ => format!("failed $ {command}"),
                    },
                    AgentEvent::FileChange { path, change, .. } => {
                        format!("{} {path}", past(change))
                    }
                    AgentEvent::ToolCall { name, .. } => format!("tool {name}"),
                    _ => return false,
                };
                self.agent(agent).doing = clip(&doing);
            }
            OrchEventKind::TurnRetrying {
                agent,
                turn,
                decision,
                ..
            } => {
                let row = self.agent(agent);
                match decision {
                    RetryDecision::Retry { attempt, .. } => {
                        row.state = format!("retrying turn {turn} (attempt {attempt})");
                        row.tone = Tone::Held;
                    }
                    RetryDecision::Park { delay_ms } => {
                        row.state = format!("parked until {}", clock(at + delay_ms));
                        row.tone = Tone::Held;
                    }
                    RetryDecision::Fallback { to } => {
                        row.state = format!("moving to {to}");
                        row.tone = Tone::Held;
                    }
                    RetryDecision::GiveUp => return false,
                }
            }
            OrchEventKind::TurnFinished(record) => {
                let row = self.agent(&record.agent);
                if row.finished_ms.is_none() {
                    row.state = format!("turn {} done", record.turn);
                }
                row.tokens_in += record.usage.input_tokens;
                row.tokens_out += record.usage.output_tokens;
                let cost = record.cost_usd.map_or(0, |usd| (usd * 1e6).round() as u64);
                row.cost_micros += cost;
                self.cost_micros += cost;
                self.tokens_in += record.usage.input_tokens;
                self.tokens_out += record.usage.output_tokens;
            }
            OrchEventKind::GateFinished {
                agent,
                command,
                attempt,
                passed,
                ..
            } => {
                let row = self.agent(agent);
                row.state = format!("gating (run {attempt})");
                row.tone = if *passed { Tone::Busy } else { Tone::Held };
                let verdict = if *passed { "passed" } else { "failed" };
                row.doing = clip(&format!("gate {verdict}: {command}"));
            }
            OrchEventKind::ReviewFinished {
                agent,
                reviewer,
                round,
                passed,
                points,
                ..
            } => {
                let row = self.agent(agent);
                row.state = format!("reviewed (round {round})");
                row.tone = if *passed { Tone::Busy } else { Tone::Held };
                let failed = points.iter().filter(|p| !p.pass).count();
                row.doing = clip(&if *passed {
                    format!("{reviewer} passed it")
                } else {
                    format!("{reviewer} failed {failed} point(s)")
                });
            }
            OrchEventKind::FeatureUpdated {
                agent,
                feature,
                status,
                attempts,
                ..
            } => {
                let row = self.agent(agent);
                row.doing = clip(&format!(
                    "feature {feature}: {} (attempt {attempts})",
                    status.as_str()
                ));
            }
            OrchEventKind::ChangesCommitted(changes) => {
                let row = self.agent(&changes.agent);
                row.files_changed = changes.files.len();
                row.state = "merging".into();
                row.tone = Tone::Busy;
            }
            OrchEventKind::AgentMerged {
                agent, run_branch, ..
            } => {
                self.agent(agent).doing = clip(&format!("merged into {run_branch}"));
            }
            OrchEventKind::MergeConflict {
                agent,
                paths,
                resolving,
                ..
            } => {
                let row = self.agent(agent);
                row.state = if *resolving {
                    "resolving a conflict".into()
                } else {
                    "conflict".into()
                };
                row.tone = Tone::Held;
                row.doing = clip(&format!("conflict in {}", paths.join(", ")));
            }
            OrchEventKind::AgentFinished { agent, status, .. } => {
                let row = self.agent(agent);
                row.finished_ms = Some(at);
                (row.state, row.tone) = finished(status);
            }
            OrchEventKind::PauseRequested { source } => {
                self.state = "pausing".into();
                if let Some(rest) = source.strip_prefix(NEEDS_YOU) {
                    self.state = "needs you".into();
                    let (agent, reason) = rest.split_once(": ").unwrap_or((rest, ""));
                    let row = self.agent(agent);
                    row.state = "needs you".into();
                    row.tone = Tone::Bad;
                    row.doing = clip(reason);
                } else if source.starts_with("budget:") {
                    self.state = "needs you (budget)".into();
                }
            }
            OrchEventKind::RunPaused(summary) => {
                self.state = if summary.requested_by.starts_with(NEEDS_YOU) {
                    "needs you".into()
                } else if summary.requested_by.starts_with("budget:") {
                    "needs you (budget)".into()
                } else {
                    "paused".into()
                };
                // Turns in flight have ended: nobody works until the run resumes.
                for row in &mut self.agents {
                    if row.tone == Tone::Busy {
                        row.state = "paused".into();
                        row.tone = Tone::Held;
                    }
                }
            }
            OrchEventKind::RunResumed => {
                self.state = "running".into();
                for row in &mut self.agents {
                    if row.state == "paused" || row.state == "needs you" {
                        row.state = "resumed".into();
                        row.tone = Tone::Busy;
                    }
                }
            }
            OrchEventKind::StopRequested { .. } => self.state = "stopping".into(),
            OrchEventKind::RunFinished { status, usage, .. } => {
                self.state = status.as_str().to_owned();
                self.finished_ms = Some(at);
                self.tokens_in = usage.input_tokens;
                self.tokens_out = usage.output_tokens;
                self.live = false;
            }
            // `ctl resume --max-tokens N` raised the budget the header measures against.
            OrchEventKind::Notice { message, .. } => match token_budget_set(message) {
                Some(limit) => self.max_tokens = Some(limit),
                None => return false,
            },
            OrchEventKind::GroupStarted { .. }
            | OrchEventKind::BlueprintRejected { .. }
            | OrchEventKind::TaskRevised { .. } => {
                return false;
            }
        }
        true
    }

    /// The board of a run as its audit store recorded it.
    pub fn from_report(report: &RunReport) -> Self {
        let agents = report
            .agents
            .iter()
            .map(|agent| {
                let started = agent.turns.iter().map(|t| t.started_at_ms).min();
                let finished = agent.turns.iter().map(|t| t.finished_at_ms).max();
                let (state, tone) = match agent.status.as_str() {
                    "succeeded" => ("succeeded".to_owned(), Tone::Good),
                    "failed" => ("failed".to_owned(), Tone::Bad),
                    "blocked" => (format!("blocked by {}", agent.status_detail), Tone::Bad),
                    "stopped" => ("stopped".to_owned(), Tone::Held),
                    // Never finished: the run ended (or crashed) under it.
                    _ if started.is_some() => ("cut off".to_owned(), Tone::Bad),
                    _ => ("queued".to_owned(), Tone::Waiting),
                };
                BoardAgent {
                    id: agent.id.clone(),
                    role: agent.role.clone(),
                    wave: u32::try_from(agent.wave).unwrap_or_default(),
                    depends_on: agent.depends_on.clone(),
                    backend: agent.backend.clone(),
                    model: (!agent.model.is_empty()).then(|| agent.model.clone()),
                    state,
                    tone,
                    started_ms: started.and_then(|ms| u64::try_from(ms).ok()),
                    finished_ms: finished.and_then(|ms| u64::try_from(ms).ok()),
                    tokens_in: agent.input_tokens,
                    tokens_out: agent.output_tokens,
                    cost_micros: agent.cost_usd.map_or(0, |usd| (usd * 1e6).round() as u64),
                    doing: agent
                        .merges
                        .last()
                        .map(|mark| match mark.kind.as_str() {
                            "agent_merged" => "merged into the run branch".to_owned(),
                            other => other.replace('_', " "),
                        })
                        .unwrap_or_default(),
                    files_changed: agent
                        .patch
                        .as_ref()
                        .map_or(0, |patch| patch.text.matches("diff --git ").count()),
                    branch: agent.branch.clone(),
                }
            })
            .collect::<Vec<_>>();
        Board {
            session: report.session.clone(),
            backend: report.backend.clone(),
            state: report.status.clone(),
            started_ms: u64::try_from(report.started_at_ms).unwrap_or_default(),
            finished_ms: report.finished_at_ms.and_then(|ms| u64::try_from(ms).ok()),
            wave: report
                .waves
                .iter()
                .map(|w| u32::try_from(w.wave).unwrap_or_default())
                .max()
                .unwrap_or_default(),
            tokens_in: agents.iter().map(|a| a.tokens_in).sum(),
            tokens_out: agents.iter().map(|a| a.tokens_out).sum(),
            cost_micros: agents.iter().map(|a| a.cost_micros).sum(),
            max_tokens: None,
            agents,
            live: false,
        }
    }

    /// Takes what the audit store says of the run's end into a board followed live:
    /// the run's and each agent's state, times and tokens; the live details (branch,
    /// files, what it did last) stay.
    pub fn settle(&mut self, stored: &Board) {
        self.state = stored.state.clone();
        self.finished_ms = stored.finished_ms;
        self.tokens_in = stored.tokens_in;
        self.tokens_out = stored.tokens_out;
        self.cost_micros = stored.cost_micros;
        for agent in &stored.agents {
            let row = self.agent(&agent.id);
            row.state = agent.state.clone();
            row.tone = agent.tone;
            row.finished_ms = agent.finished_ms.or(row.finished_ms);
            row.tokens_in = agent.tokens_in;
            row.tokens_out = agent.tokens_out;
            row.cost_micros = agent.cost_micros;
        }
        self.live = false;
    }

    /// Whether any agent is working (the board then shows elapsed time ticking).
    pub fn is_active(&self) -> bool {
        self.live && self.agents.iter().any(|a| a.tone == Tone::Busy)
    }

    /// How deep `agent` sits in the dependency graph (0: depends on nothing shown).
    pub fn depth(&self, agent: &BoardAgent) -> usize {
        let mut depth = 0;
        let mut frontier: Vec<&str> = agent.depends_on.iter().map(String::as_str).collect();
        // Bounded: a graph is at most as deep as it has agents.
        while !frontier.is_empty() && depth < self.agents.len() {
            depth += 1;
            frontier = frontier
                .iter()
                .filter_map(|id| self.agents.iter().find(|a| a.id == *id))
                .flat_map(|a| a.depends_on.iter().map(String::as_str))
                .collect();
        }
        depth
    }
}

fn finished(status: &AgentStatus) -> (String, Tone) {
    match status {
        AgentStatus::Succeeded => ("succeeded".into(), Tone::Good),
        AgentStatus::Failed { .. } => ("failed".into(), Tone::Bad),
        AgentStatus::Blocked { by } => (format!("blocked by {by}"), Tone::Bad),
        AgentStatus::Stopped => ("stopped".into(), Tone::Held),
    }
}

fn past(change: &str) -> &'static str {
    match change {
        "add" | "added" | "create" => "added",
        "delete" | "deleted" | "remove" => "deleted",
        _ => "edited",
    }
}

/// One line, control characters out, at most [`MAX_DOING`] chars.
fn clip(text: &str) -> String {
    crate::control::protocol::clean_text(text.lines().next().unwrap_or_default(), MAX_DOING)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::agent::backend::{AgentKind, TurnKind};
    use crate::agent::event::{TurnOutcome, Usage};
    use crate::events::event::{PromptStats, RunStatus, TurnRecord, WaveKind};
    use crate::workspace::ChangedFile;

    const T0: u64 = 1_796_000_000_000;

    fn at(ms: u64, kind: OrchEventKind) -> OrchEvent {
        OrchEvent {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(T0 + ms),
            kind,
        }
    }

    fn started(agent: &str, wave: u32, deps: &[&str]) -> OrchEventKind {
        OrchEventKind::AgentStarted {
            agent: agent.into(),
            role: format!("{agent} role"),
            kind: AgentKind::Dynamic,
            wave,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn turn(agent: &str, turn: u32, attempt: u32) -> OrchEventKind {
        OrchEventKind::TurnStarted {
            agent: agent.into(),
            turn,
            attempt,
            kind: TurnKind::Plan,
            backend: "codex".into(),
            model: Some("gpt-5".into()),
            prompt: PromptStats::default(),
            purpose: None,
        }
    }

    fn finished_turn(agent: &str, input: u64, output: u64) -> OrchEventKind {
        OrchEventKind::TurnFinished(Box::new(TurnRecord {
            agent: agent.into(),
            role: String::new(),
            agent_kind: AgentKind::Dynamic,
            wave: 1,
            turn: 1,
            attempt: 1,
            kind: TurnKind::Plan,
            prompt: String::new(),
            response: String::new(),
            usage: Usage {
                input_tokens: input,
                output_tokens: output,
                ..Usage::default()
            },
            started_at_ms: 0,
            finished_at_ms: 0,
            backend: "codex".into(),
            model: None,
            thread_id: None,
            outcome: TurnOutcome::Completed,
            tags: Vec::new(),
            cost_usd: None,
        }))
    }

    /// A run in the middle of its blueprint wave: one agent merged, one running a
    /// command, one retrying, one blocked, one queued.
    pub(crate) fn mid_run() -> Board {
        let mut board = Board::new("run-20261203-101010-ab12", Some(50_000));
        let events = [
            at(
                0,
                OrchEventKind::RunStarted {
                    session: "run-20261203-101010-ab12".into(),
                    prompt: "Ship the MVP".into(),
                    backend: "codex".into(),
                    project_root: "/repo".into(),
                    groups: vec!["default".into()],
                    config: None,
                    resumed: false,
                    parent: None,
                },
            ),
            at(
                10,
                OrchEventKind::WaveScheduled {
                    wave: 1,
                    kind: WaveKind::Dynamic,
                    agents: vec![
                        "api".into(),
                        "ui".into(),
                        "tests".into(),
                        "docs".into(),
                        "deploy".into(),
                    ],
                },
            ),
            at(20, started("api", 1, &[])),
            at(
                25,
                OrchEventKind::WorktreeReady {
                    agent: "api".into(),
                    path: "/repo/.orch/worktrees/r/api".into(),
                    branch: Some("orch-agent/run-20261203-101010-ab12/api".into()),
                    base: "abc".into(),
                },
            ),
            at(30, turn("api", 1, 1)),
            at(
                40,
                OrchEventKind::Agent {
                    agent: "api".into(),
                    turn: 1,
                    event: AgentEvent::FileChange {
                        path: "src/api.rs".into(),
                        change: "update".into(),
                        status: ItemStatus::Completed,
                    },
                },
            ),
            at(4_000, finished_turn("api", 12_000, 3_400)),
            at(
                4_100,
                OrchEventKind::ChangesCommitted(Box::new(crate::events::event::AgentChanges {
                    agent: "api".into(),
                    branch: "orch-agent/run-20261203-101010-ab12/api".into(),
                    base: "abc".into(),
                    head: "def".into(),
                    commits: Vec::new(),
                    files: vec![
                        ChangedFile {
                            status: "M".into(),
                            path: "src/api.rs".into(),
                        },
                        ChangedFile {
                            status: "A".into(),
                            path: "src/api_test.rs".into(),
                        },
                    ],
                    diffstat: String::new(),
                    patch: String::new(),
                })),
            ),
            at(
                4_200,
                OrchEventKind::AgentMerged {
                    agent: "api".into(),
                    run_branch: "orch/run-20261203-101010-ab12".into(),
                    tip: "def".into(),
                    commits: 1,
                    fast_forward: true,
                },
            ),
            at(
                4_300,
                OrchEventKind::AgentFinished {
                    agent: "api".into(),
                    role: "api role".into(),
                    kind: AgentKind::Dynamic,
                    wave: 1,
                    status: AgentStatus::Succeeded,
                    usage: Usage::default(),
                },
            ),
            at(20, started("ui", 1, &[])),
            at(30, turn("ui", 1, 1)),
            at(
                5_000,
                OrchEventKind::Agent {
                    agent: "ui".into(),
                    turn: 1,
                    event: AgentEvent::Command {
                        id: None,
                        command: "npm test -- --watch=false\nsecond line".into(),
                        status: ItemStatus::InProgress,
                        exit_code: None,
                        output: None,
                    },
                },
            ),
            at(4_400, started("tests", 1, &["api", "ui"])),
            at(4_500, turn("tests", 1, 1)),
            at(
                6_000,
                OrchEventKind::TurnRetrying {
                    agent: "tests".into(),
                    turn: 1,
                    class: crate::agent::event::FailureClass::Transient {
                        retry_after_secs: None,
                    },
                    decision: RetryDecision::Retry {
                        attempt: 2,
                        delay_ms: 2_000,
                    },
                    message: "overloaded".into(),
                },
            ),
            at(
                6_100,
                OrchEventKind::AgentFinished {
                    agent: "deploy".into(),
                    role: "deploy role".into(),
                    kind: AgentKind::Dynamic,
                    wave: 1,
                    status: AgentStatus::Blocked { by: "docs".into() },
                    usage: Usage::default(),
                },
            ),
        ];
        for event in &events {
            board.apply(event);
        }
        board
            .agents
            .iter_mut()
            .find(|a| a.id == "docs")
            .unwrap()
            .depends_on = vec!["api".into()];
        board
    }

    #[test]
    fn events_move_each_agent_through_its_states() {
        let board = mid_run();
        let row = |id: &str| board.agents.iter().find(|a| a.id == id).unwrap();
        assert_eq!(board.state, "running");
        assert_eq!(board.wave, 1);
        assert_eq!((board.tokens_in, board.tokens_out), (12_000, 3_400));
        let api = row("api");
        assert_eq!((api.state.as_str(), api.tone), ("succeeded", Tone::Good));
        assert_eq!(api.files_changed, 2);
        assert_eq!(api.doing, "merged into orch/run-20261203-101010-ab12");
        assert_eq!(api.finished_ms, Some(T0 + 4_300));
        let ui = row("ui");
        assert_eq!((ui.state.as_str(), ui.tone), ("running turn 1", Tone::Busy));
        assert_eq!(ui.doing, "$ npm test -- --watch=false", "one line only");
        assert_eq!(ui.model.as_deref(), Some("gpt-5"));
        let tests = row("tests");
        assert_eq!(tests.state, "retrying turn 1 (attempt 2)");
        assert_eq!(tests.tone, Tone::Held);
        assert_eq!(board.depth(tests), 1);
        assert_eq!(row("docs").state, "queued");
        assert_eq!(row("deploy").state, "blocked by docs");
        assert!(board.is_active());
    }

    #[test]
    fn pauses_and_the_end_of_the_run_show_in_its_state() {
        let mut board = mid_run();
        board.apply(&at(
            7_000,
            OrchEventKind::PauseRequested {
                source: "ctl".into(),
            },
        ));
        assert_eq!(board.state, "pausing");
        board.apply(&at(
            7_400,
            OrchEventKind::Notice {
                level: crate::events::event::NoticeLevel::Info,
                message: "token budget set to 90000 by ctl (20000 used)".into(),
            },
        ));
        assert_eq!(board.max_tokens, Some(90_000));
        board.apply(&at(7_500, OrchEventKind::RunResumed));
        assert_eq!(board.state, "running");
        board.apply(&at(
            9_000,
            OrchEventKind::RunFinished {
                status: RunStatus::Failed,
                usage: Usage {
                    input_tokens: 20_000,
                    output_tokens: 5_000,
                    ..Usage::default()
                },
                failed: vec!["tests".into()],
            },
        ));
        assert_eq!(board.state, "failed");
        assert_eq!(board.finished_ms, Some(T0 + 9_000));
        assert_eq!((board.tokens_in, board.tokens_out), (20_000, 5_000));
        assert!(!board.live && !board.is_active());
    }

    #[test]
    fn streamed_text_does_not_change_the_board() {
        let mut board = mid_run();
        let before = board.clone();
        let changed = board.apply(&at(
            8_000,
            OrchEventKind::Agent {
                agent: "ui".into(),
                turn: 1,
                event: AgentEvent::Message {
                    text: "thinking".into(),
                },
            },
        ));
        assert!(!changed);
        assert_eq!(board, before);
    }
}
