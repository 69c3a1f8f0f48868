//! The run as a pure state machine: `RunState::handle(input) -> Vec<Effect>`.
//!
//! Owns every decision of a run: which agents launch, which are blocked, pause, resume
//! and stop, when an interrupt summary is written, which turn may start, the next wave
//! (see `waves`) and the end of the run. Performs no I/O and reads no clock: the
//! dispatcher feeds it inputs and performs the effects it returns, in order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::agent::backend::AgentKind;
use crate::agent::event::Usage;
use crate::config::Config;
use crate::control::protocol::{ControlCommand, ControlResponse};
use crate::control::signals::SignalAction;
use crate::events::event::{AgentStatus, OrchEventKind, RunStatus};
use crate::orchestrator::agents::{AgentJob, AgentResult};
use crate::orchestrator::lifecycle::{AgentEntry, AgentLifecycle};
use crate::orchestrator::waves::GroupRun;

/// Longest task-file diff kept in a `task_revised` event (the new text is whole).
const MAX_TASK_DIFF: usize = 16 * 1024;

/// What the dispatcher hears.
#[derive(Debug)]
pub(crate) enum Input {
    Start,
    /// A control request (socket); `id` pairs it with its reply.
    Control {
        id: u64,
        command: ControlCommand,
        source: String,
    },
    /// A signal, already turned into pause or stop (the signal thread exits itself on
    /// the third).
    Signal {
        action: SignalAction,
        source: String,
    },
    /// An agent asks to start a turn (try `attempt` of turn `turn`); `review`: a
    /// reviewer's turn on its work.
    TurnWanted {
        agent: String,
        turn: u32,
        attempt: u32,
        review: bool,
    },
    /// The turn granted to `agent` ended.
    TurnEnded {
        agent: String,
        /// The model tier it ran on, if its group names tiers.
        tier: Option<String>,
        usage: Usage,
        /// Micro-dollars; `None` when the turn's model has no price.
        cost: Option<u64>,
    },
    /// An agent between turns: retrying or parked.
    Progress {
        agent: String,
        lifecycle: AgentLifecycle,
    },
    /// An agent cannot go on without the user (see `RunLink::needs_you`).
    NeedsYou {
        agent: String,
        reason: String,
    },
    /// An agent's task returned.
    AgentEnded(Box<AgentResult>),
    /// An agent's task panicked or was lost.
    AgentPanicked {
        agent: String,
        message: String,
    },
    /// Something the run relies on broke: a sink could not write (disk full…), or a
    /// resumed run's audit store does not verify. The run starts nothing more, stops
    /// its turns and fails; `source` names the cause in the stop request.
    Failure {
        message: String,
        source: &'static str,
    },
    /// The task file has this text now (`--task-file`; the watcher sends it once the
    /// file has been still for a moment).
    TaskRevised {
        text: String,
    },
}

/// What the dispatcher does, in order.
#[derive(Debug)]
pub(crate) enum Effect {
    Publish(OrchEventKind),
    Reply {
        id: u64,
        response: ControlResponse,
    },
    /// A line for the user on stderr (answers to signals).
    Say(String),
    Launch(Box<AgentJob>),
    /// Make the worktree of `agent`, which may change files, ahead of its start.
    Stage(String),
    /// `agent` will never start: remove the worktree made ahead for it.
    Unstage(String),
    /// `agent` may start its turn.
    Grant(String),
    /// `agent` may not start its turn: the run is stopping.
    Deny(String),
    /// End every running turn: TERM, grace, KILL, reap.
    StopAgents,
    /// The run has ended; `RunState::report` has the result.
    Finish,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    Running,
    Paused,
    Stopping,
    Finished,
}

/// One agent's line in the final report and the `--metrics` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentReport {
    pub id: String,
    pub group: String,
    pub wave: u32,
    pub kind: AgentKind,
    pub status: AgentStatus,
    pub usage: Usage,
    /// Micro-dollars; `None` when one of its turns ran on a model without a price.
    pub cost_micros: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub status: RunStatus,
    pub agents: Vec<AgentReport>,
    pub usage: Usage,
    /// What the priced turns cost, in micro-dollars.
    pub cost_micros: u64,
    /// Problems that failed the run without being an agent's failure (a sink that
    /// could not write).
    pub problems: Vec<String>,
    /// Tokens and cost per model tier (`tier` in `orch.kdl`), strong first.
    pub tiers: Vec<(String, Usage, Option<u64>)>,
}

/// What `launch ctl status` shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    pub mode: RunMode,
    pub agents: Vec<AgentEntry>,
    pub in_turn: Vec<String>,
    pub usage: Usage,
    pub pauses: u32,
}

/// The pause (or stop) whose summary is pending or written.
#[derive(Debug, Default)]
pub(super) struct Pause {
    pub(super) number: u32,
    pub(super) source: String,
    pub(super) in_flight: Vec<String>,
    pub(super) summary_written: bool,
}

pub(crate) struct RunState {
    pub(crate) config: Arc<Config>,
    pub(super) mode: RunMode,
    pub(crate) agents: Vec<AgentEntry>,
    /// Agents granted a turn that has not ended.
    pub(super) in_turn: BTreeSet<String>,
    /// Agents waiting for a turn while paused.
    pub(super) waiting: Vec<String>,
    /// Agents waiting for the user (`needs-you`), answered on resume or stop.
    pub(super) needing_you: Vec<String>,
    /// Jobs decided while paused, launched on resume.
    pub(super) held: Vec<AgentJob>,
    pub(super) pauses: u32,
    pub(super) pause: Option<Pause>,
    pub(crate) taken: HashSet<String>,
    pub(crate) report: Vec<AgentReport>,
    pub(super) problems: Vec<String>,
    pub(super) usage: Usage,
    pub(super) group_index: usize,
    pub(crate) group: Option<GroupRun>,
    pub(super) started: bool,
    /// A stop was asked for (by the user, or by a failed write).
    pub(super) stopped: bool,
    /// The run's token budget (`--max-tokens`, raised by `ctl resume --max-tokens`).
    pub(super) max_tokens: Option<u64>,
    /// The 80 % warning of the current budget was given.
    pub(super) budget_warned: bool,
    /// The run's cost budget in micro-dollars (`--max-cost`, raised by `ctl resume
    /// --max-cost`).
    pub(super) max_cost: Option<u64>,
    /// The 80 % warning of the current cost budget was given.
    pub(super) cost_warned: bool,
    /// What the priced turns cost so far, in micro-dollars.
    pub(super) cost_micros: u64,
    /// Agents' own token budgets as resumes raised them (agent id → tokens).
    pub(super) agent_limits: HashMap<String, u64>,
    /// Agents whose 80 % warning of their current budget was given.
    pub(super) agent_warned: HashSet<String>,
    /// Tokens and cost (micro-dollars; `None` once a turn had no price) per model tier.
    pub(super) tiers: std::collections::BTreeMap<String, (Usage, Option<u64>)>,
    /// The task as it stands: the prompt, or the task file's latest text.
    pub(crate) task: String,
    /// How often the task file changed (0: the text the run started with).
    pub(crate) task_revision: u32,
}

impl RunState {
    pub fn new(config: Arc<Config>) -> Self {
        RunState {
            task: config.prompt.clone(),
            task_revision: config.task_revision,
            tiers: std::collections::BTreeMap::new(),
            max_tokens: config.max_tokens,
            max_cost: config.max_cost_micros,
            cost_warned: false,
            cost_micros: 0,
            agent_limits: HashMap::new(),
            agent_warned: HashSet::new(),
            config,
            mode: RunMode::Running,
            agents: Vec::new(),
            in_turn: BTreeSet::new(),
            waiting: Vec::new(),
            needing_you: Vec::new(),
            held: Vec::new(),
            pauses: 0,
            pause: None,
            taken: HashSet::new(),
            report: Vec::new(),
            problems: Vec::new(),
            usage: Usage::default(),
            group_index: 0,
            group: None,
            started: false,
            stopped: false,
            budget_warned: false,
        }
    }

    pub fn mode(&self) -> RunMode {
        self.mode
    }

    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.mode == RunMode::Finished {
            if let Input::Control { id, .. } = input {
                fx.push(self.reply(id, false, "the run has finished".into()));
            }
            return fx;
        }
        match input {
            Input::Start => self.start(&mut fx),
            Input::Control {
                id,
                command,
                source,
            } => self.control(id, command, &source, &mut fx),
            Input::Signal { action, source } => self.signal(action, &source, &mut fx),
            Input::TurnWanted {
                agent,
                turn,
                attempt,
                review,
            } => self.turn_wanted(agent, turn, attempt, review, &mut fx),
            Input::TurnEnded {
                agent,
                tier,
                usage,
                cost,
            } => {
                self.in_turn.remove(&agent);
                self.usage.add(&usage);
                if let Some(tier) = tier {
                    let entry = self
                        .tiers
                        .entry(tier)
                        .or_insert((Usage::default(), Some(0)));
                    entry.0.add(&usage);
                    entry.1 = entry.1.zip(cost).map(|(a, b)| a + b);
                }
                self.cost_micros += cost.unwrap_or(0);
                if let Some(entry) = self.entry_mut(&agent) {
                    entry.usage.add(&usage);
                }
                self.check_budget(&mut fx);
                self.maybe_write_pause_summary(&mut fx);
            }
            Input::Progress { agent, lifecycle } => self.set_lifecycle(&agent, lifecycle),
            Input::NeedsYou { agent, reason } => self.needs_you(agent, reason, &mut fx),
            Input::AgentEnded(result) => {
                self.in_turn.remove(&result.id);
                self.set_lifecycle(&result.id, AgentLifecycle::from_status(&result.status));
                self.agent_ended(*result, &mut fx);
            }
            Input::AgentPanicked { agent, message } => {
                // Its turn will never report its end: free it, so a pause can complete.
                self.in_turn.remove(&agent);
                self.waiting.retain(|a| a != &agent);
                self.needing_you.retain(|a| a != &agent);
                let reason = format!("the agent's task ended abnormally: {message}");
                let status = AgentStatus::Failed { reason };
                fx.push(self.finished_event(&agent, &status));
                self.set_lifecycle(&agent, AgentLifecycle::from_status(&status));
                let result = self.lost_result(&agent, status);
                self.agent_ended(result, &mut fx);
                self.maybe_write_pause_summary(&mut fx);
            }
            Input::TaskRevised { text } => self.task_revised(text, &mut fx),
            Input::Failure { message, source } => {
                if !self.problems.contains(&message) {
                    self.problems.push(message.clone());
                }
                if self.mode != RunMode::Stopping {
                    self.begin_stop(source, &mut fx);
                }
            }
        }
        self.maybe_finish(&mut fx);
        fx
    }

    /// The task file changed: the new text is the task of every prompt built from now
    /// on (the turns in flight finish on the old one), and the next wave is planned with
    /// it (`GroupRun::after_dynamic`).
    fn task_revised(&mut self, text: String, fx: &mut Vec<Effect>) {
        if text == self.task {
            return;
        }
        self.task_revision += 1;
        let mut diff = similar::TextDiff::from_lines(&self.task, &text)
            .unified_diff()
            .context_radius(2)
            .header("task (before)", "task (now)")
            .to_string();
        if diff.len() > MAX_TASK_DIFF {
            let cut = (0..=MAX_TASK_DIFF)
                .rev()
                .find(|&i| diff.is_char_boundary(i))
                .unwrap_or(0);
            diff.truncate(cut);
            diff.push_str("\n[… diff truncated; the event has the whole text]\n");
        }
        let sha256 = crate::audit::schema::sha256_hex(text.as_bytes());
        fx.push(Effect::Publish(OrchEventKind::TaskRevised {
            revision: self.task_revision,
            sha256,
            diff,
            text: text.clone(),
        }));
        self.task = text;
    }

    pub(super) fn start(&mut self, fx: &mut Vec<Effect>) {
        if self.started {
            return;
        }
        self.started = true;
        let config = &self.config;
        fx.push(Effect::Publish(OrchEventKind::RunStarted {
            session: config.paths.session.clone(),
            prompt: config.prompt.clone(),
            backend: config.backend.clone(),
            project_root: config.paths.project_root.clone(),
            groups: config
                .agents
                .groups
                .iter()
                .map(|g| g.name.clone())
                .collect(),
            config: serde_json::to_value(config.as_ref()).ok().map(Box::new),
            resumed: config.resume,
            parent: config.parent.as_ref().map(|p| p.session.clone()),
        }));
        self.next_group(fx);
    }

    /// Starts the next group, or leaves none when all have run.
    pub(crate) fn next_group(&mut self, fx: &mut Vec<Effect>) {
        self.group = None;
        if self.mode == RunMode::Stopping {
            return;
        }
        // `--features` runs its backlog once, in the first group.
        if self.config.features.is_some() && self.group_index > 0 {
            return;
        }
        let Some(spec) = self.config.agents.groups.get(self.group_index).cloned() else {
            return;
        };
        self.group_index += 1;
        fx.push(Effect::Publish(OrchEventKind::GroupStarted {
            group: spec.name.clone(),
        }));
        let group = GroupRun::start(self, spec, fx);
        self.settle_group(group, fx);
    }

    // ---- turns and agents --------------------------------------------------------

    pub(super) fn turn_wanted(
        &mut self,
        agent: String,
        turn: u32,
        attempt: u32,
        review: bool,
        fx: &mut Vec<Effect>,
    ) {
        match self.mode {
            RunMode::Running => {
                // Under review, the reviewer's turn is the review, not a turn of its own.
                let reviewed = review
                    && self
                        .entry(&agent)
                        .is_some_and(|e| matches!(e.lifecycle, AgentLifecycle::Reviewing { .. }));
                if !reviewed {
                    self.set_lifecycle(&agent, AgentLifecycle::Running { turn, attempt });
                }
                self.in_turn.insert(agent.clone());
                fx.push(Effect::Grant(agent));
            }
            RunMode::Paused => {
                self.set_lifecycle(&agent, AgentLifecycle::Paused);
                if !self.waiting.contains(&agent) {
                    self.waiting.push(agent);
                }
            }
            RunMode::Stopping | RunMode::Finished => fx.push(Effect::Deny(agent)),
        }
    }

    /// Launches `job` now, or on resume while paused; never while stopping.
    pub(crate) fn launch(&mut self, job: AgentJob, fx: &mut Vec<Effect>) {
        match self.mode {
            RunMode::Running => {
                self.set_lifecycle(&job.conversation.id, AgentLifecycle::Starting);
                fx.push(Effect::Launch(Box::new(job)));
            }
            RunMode::Paused => self.held.push(job),
            RunMode::Stopping | RunMode::Finished => {
                self.report_never_started(&job.conversation.id, job.conversation.wave)
            }
        }
    }

    pub(super) fn report_never_started(&mut self, id: &str, wave: u32) {
        self.set_lifecycle(id, AgentLifecycle::Stopped);
        let entry = self.entry(id).cloned();
        self.report.push(AgentReport {
            id: id.to_owned(),
            group: entry.as_ref().map(|e| e.group.clone()).unwrap_or_default(),
            wave,
            kind: entry.map(|e| e.kind).unwrap_or(AgentKind::Dynamic),
            status: AgentStatus::Stopped,
            usage: Usage::default(),
            cost_micros: Some(0),
        });
    }

    /// Adds an agent to the table (or refreshes it when it runs again).
    pub(crate) fn register(&mut self, entry: AgentEntry) {
        match self.agents.iter_mut().find(|e| e.id == entry.id) {
            Some(existing) => {
                existing.wave = entry.wave;
                existing.lifecycle = entry.lifecycle;
            }
            None => self.agents.push(entry),
        }
    }

    pub(crate) fn register_blocked(&mut self, id: &str, by: &str) {
        self.set_lifecycle(id, AgentLifecycle::Blocked { by: by.to_owned() });
    }

    pub(crate) fn entry(&self, id: &str) -> Option<&AgentEntry> {
        self.agents.iter().find(|e| e.id == id)
    }

    pub(super) fn entry_mut(&mut self, id: &str) -> Option<&mut AgentEntry> {
        self.agents.iter_mut().find(|e| e.id == id)
    }

    pub(super) fn set_lifecycle(&mut self, id: &str, lifecycle: AgentLifecycle) {
        if let Some(entry) = self.entry_mut(id) {
            entry.lifecycle = lifecycle;
        }
    }

    /// `agent_finished` for an agent that never reported its own end.
    pub(crate) fn finished_event(&self, id: &str, status: &AgentStatus) -> Effect {
        let entry = self.entry(id);
        Effect::Publish(OrchEventKind::AgentFinished {
            agent: id.to_owned(),
            role: entry.map(|e| e.role.clone()).unwrap_or_default(),
            kind: entry.map(|e| e.kind).unwrap_or(AgentKind::Dynamic),
            wave: entry.map(|e| e.wave).unwrap_or(0),
            status: status.clone(),
            usage: entry.map(|e| e.usage).unwrap_or_default(),
        })
    }

    pub(super) fn agent_ended(&mut self, result: AgentResult, fx: &mut Vec<Effect>) {
        let Some(mut group) = self.group.take() else {
            return;
        };
        group.agent_ended(self, result, fx);
        self.settle_group(group, fx);
    }

    /// Keeps `group` while it has work left, else moves on to the next group.
    pub(super) fn settle_group(&mut self, group: GroupRun, fx: &mut Vec<Effect>) {
        if group.is_done() && self.mode != RunMode::Stopping {
            self.next_group(fx);
        } else if !group.is_done() {
            self.group = Some(group);
        }
    }

    /// The end of the run: every group done (or stopping) and no agent task left.
    pub(super) fn maybe_finish(&mut self, fx: &mut Vec<Effect>) {
        if self.mode == RunMode::Finished || !self.started {
            return;
        }
        let active = self.agents.iter().any(|e| e.lifecycle.is_active());
        if active {
            return;
        }
        let stopping = self.mode == RunMode::Stopping;
        if !stopping && self.group.is_some() {
            return;
        }
        if stopping {
            // The stop's summary comes before `run_finished`, the run's last event.
            let logs = self.config.run_paths().logs_dir();
            let summary = self.summary(vec![format!("logs: {}", logs.display())]);
            fx.push(Effect::Publish(OrchEventKind::RunPaused(Box::new(summary))));
        }
        let report = self.report();
        let failed = report
            .agents
            .iter()
            .filter(|a| {
                matches!(
                    a.status,
                    AgentStatus::Failed { .. } | AgentStatus::Blocked { .. }
                )
            })
            .map(|a| a.id.clone())
            .collect();
        fx.push(Effect::Publish(OrchEventKind::RunFinished {
            status: report.status,
            usage: report.usage,
            failed,
        }));
        self.mode = RunMode::Finished;
        fx.push(Effect::Finish);
    }

    pub fn report(&self) -> RunReport {
        let mut usage = Usage::default();
        self.report.iter().for_each(|a| usage.add(&a.usage));
        let failed = self.report.iter().any(|a| {
            matches!(
                a.status,
                AgentStatus::Failed { .. } | AgentStatus::Blocked { .. }
            )
        });
        let status = if !self.problems.is_empty() {
            RunStatus::Failed
        } else if self.stopped {
            RunStatus::Stopped
        } else if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        RunReport {
            status,
            agents: self.report.clone(),
            usage,
            cost_micros: self.cost_micros,
            problems: self.problems.clone(),
            tiers: self
                .tiers
                .iter()
                .rev()
                .map(|(tier, (usage, cost))| (tier.clone(), *usage, *cost))
                .collect(),
        }
    }

    pub fn status(&self) -> StatusReport {
        StatusReport {
            mode: self.mode,
            agents: self.agents.clone(),
            in_turn: self.in_turn.iter().cloned().collect(),
            usage: self.usage,
            pauses: self.pauses,
        }
    }

    /// The result of an agent whose task was lost, from what the run knows of it.
    pub(super) fn lost_result(&self, id: &str, status: AgentStatus) -> AgentResult {
        AgentResult::lost(
            id,
            status,
            self.group.as_ref().and_then(|g| g.conversation(id)),
        )
    }
}
