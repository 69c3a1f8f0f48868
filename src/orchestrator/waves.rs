//! One group's flow, decided without I/O: core agents as a DAG, the builder's
//! blueprint, dynamic waves, straight-chain continuation, autonomous and relay waves.
//!
//! Owns which wave comes next and the prompts of the agents it launches, built when
//! each agent starts (so a dependant quotes the final answers of what it depends on).
//! Does not run agents: it asks `RunState::launch`, which the dispatcher performs.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::agent::backend::{AgentKind, Expects, TurnKind};
use crate::agent::event::Usage;
use crate::cli::IsolationChoice;
use crate::config::agents::GroupSpec;
use crate::config::resolve::MAX_RELAY_WAVES;
use crate::config::{Concise, GroupSettings, group_settings};
use crate::events::event::{AgentStatus, NoticeLevel, OrchEventKind, WaveKind};
use crate::orchestrator::agents::{AgentJob, AgentResult, BlueprintAsk, TurnPlan};
use crate::orchestrator::blueprint::Blueprint;
use crate::orchestrator::jobs::{
    PendingJob, blueprint_jobs, core_jobs, feature_jobs, log_of, new_conversation, prompt_context,
    route_notes,
};
use crate::orchestrator::lifecycle::{AgentEntry, AgentLifecycle};
use crate::orchestrator::prompts;
use crate::orchestrator::scheduler::{DagScheduler, NodeOutcome, SchedAction, SchedInput};
use crate::orchestrator::state::{AgentReport, Effect, RunMode, RunState};
use crate::orchestrator::turn::Conversation;

pub const AUTONOMOUS_ID: &str = "autonomous-orchestrator";

/// What the group is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A wave of agents runs (core agents are wave 0).
    Wave,
    /// The builder is asked for continuation implementers.
    AskContinuation,
    /// The autonomous orchestrator plans the next wave.
    AskAutonomous,
    Done,
}

struct WaveRun {
    kind: WaveKind,
    scheduler: DagScheduler,
    pending: HashMap<String, PendingJob>,
    /// Results in finishing order (blocked agents included).
    results: Vec<AgentResult>,
    /// Agents whose worktree was asked for ahead of their start.
    staged: std::collections::HashSet<String>,
}

pub(crate) struct GroupRun {
    pub(super) spec: GroupSpec,
    pub(super) settings: GroupSettings,
    pub(super) outputs: HashMap<String, (String, String)>,
    pub(super) conversations: HashMap<String, Conversation>,
    pub(super) core_logs: Vec<(String, PathBuf)>,
    phase: Phase,
    pub(super) wave_number: u32,
    wave: Option<WaveRun>,
    /// The agent that wrote the first blueprint, and that blueprint.
    pub(super) builder: Option<(String, Blueprint)>,
    pub(super) autonomous_rounds: u32,
    /// Results of the last wave that ran (for the autonomous prompt and relay notes).
    pub(super) last: Vec<AgentResult>,
    /// The task's revision and text when the group's last wave was planned (the task
    /// file may change while it runs).
    planned_task: (u32, String),
}

impl GroupRun {
    /// Starts the group's core agents.
    pub(crate) fn start(state: &mut RunState, spec: GroupSpec, fx: &mut Vec<Effect>) -> Self {
        let settings = group_settings(&spec, &state.config.cli_orchestration);
        let core_logs = spec
            .agents
            .iter()
            .map(|a| (a.id.clone(), log_of(state, &a.id)))
            .collect();
        let mut group = GroupRun {
            spec,
            settings,
            outputs: HashMap::new(),
            conversations: HashMap::new(),
            core_logs,
            phase: Phase::Wave,
            wave_number: 0,
            wave: None,
            builder: None,
            autonomous_rounds: 0,
            last: Vec::new(),
            planned_task: (state.task_revision, state.task.clone()),
        };
        if let Some(backlog) = state.config.features.clone() {
            // The backlog is the plan: its features run as the first wave, no core agents.
            group.core_logs.clear();
            let others: Vec<&str> = state
                .config
                .agents
                .groups
                .iter()
                .skip(1)
                .map(|g| g.name.as_str())
                .collect();
            if !others.is_empty() {
                fx.push(notice(
                    NoticeLevel::Warning,
                    format!(
                        "--features runs the backlog in group `{}` (its gates, reviewers and tiers); group(s) {} do not run",
                        group.spec.name,
                        others.join(", ")
                    ),
                ));
            }
            fx.push(notice(
                NoticeLevel::Info,
                format!(
                    "{} feature(s) to do of {} on {} track(s): {}",
                    backlog.open().count(),
                    backlog.features.len(),
                    backlog.tracks.len(),
                    backlog.tracks.join(", ")
                ),
            ));
            let jobs = feature_jobs(state, &backlog);
            group.start_wave(state, 1, WaveKind::Features, jobs, fx);
            return group;
        }
        let jobs = core_jobs(state, &group.spec, &group.settings);
        group.start_wave(state, 0, WaveKind::Core, jobs, fx);
        group
    }

    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub(crate) fn conversation(&self, id: &str) -> Option<&Conversation> {
        self.wave
            .as_ref()
            .and_then(|w| w.pending.get(id).map(|j| &j.conversation))
            .or_else(|| self.conversations.get(id))
    }

    fn start_wave(
        &mut self,
        state: &mut RunState,
        number: u32,
        kind: WaveKind,
        jobs: Vec<(String, PendingJob)>,
        fx: &mut Vec<Effect>,
    ) {
        let ids: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
        state.taken.extend(ids.iter().cloned());
        for (id, job) in &jobs {
            state.register(AgentEntry {
                id: id.clone(),
                role: job.conversation.role.clone(),
                kind: job.conversation.kind,
                group: self.spec.name.clone(),
                wave: number,
                depends_on: job.deps.clone(),
                lifecycle: AgentLifecycle::Queued,
                usage: Usage::default(),
            });
        }
        fx.push(Effect::Publish(OrchEventKind::WaveScheduled {
            wave: number,
            kind,
            agents: ids,
        }));
        let edges: Vec<(String, Vec<String>)> = jobs
            .iter()
            .map(|(id, j)| (id.clone(), j.deps.clone()))
            .collect();
        let lanes: Vec<Option<usize>> = jobs.iter().map(|(_, j)| j.lane).collect();
        self.wave_number = number;
        self.phase = Phase::Wave;
        self.wave = Some(WaveRun {
            kind,
            scheduler: DagScheduler::new(&edges, self.scheduler_width(kind)).with_lanes(&lanes),
            pending: jobs.into_iter().collect(),
            results: Vec::new(),
            staged: Default::default(),
        });
        self.schedule(state, SchedInput::Start, fx);
    }

    /// Feeds the wave's scheduler and performs its launches and blocks.
    fn schedule(&mut self, state: &mut RunState, input: SchedInput, fx: &mut Vec<Effect>) {
        let Some(wave) = &mut self.wave else { return };
        let actions = wave.scheduler.next(input);
        let mut done = false;
        for action in actions {
            match action {
                SchedAction::Launch(id) => {
                    let Some(job) = self.wave.as_mut().and_then(|w| w.pending.remove(&id)) else {
                        continue;
                    };
                    let job = self.agent_job(state, job);
                    state.launch(job, fx);
                }
                SchedAction::Block { id, by } => {
                    if self.wave.as_mut().is_some_and(|w| w.staged.remove(&id)) {
                        fx.push(Effect::Unstage(id.clone()));
                    }
                    let status = AgentStatus::Blocked { by: by.clone() };
                    state.register_blocked(&id, &by);
                    fx.push(state.finished_event(&id, &status));
                    let Some(wave) = &mut self.wave else { continue };
                    if let Some(job) = wave.pending.remove(&id) {
                        let result = AgentResult::lost(&id, status, Some(&job.conversation));
                        self.record(state, &result);
                        if let Some(wave) = &mut self.wave {
                            wave.results.push(result);
                        }
                    }
                }
                SchedAction::Done => done = true,
            }
        }
        if done {
            self.wave_done(state, fx);
        } else {
            self.stage_upcoming(state, fx);
        }
    }

    /// With worktrees, the agents that start next get theirs made now, while the
    /// agents they wait for work (at most as many as may run at once are ahead).
    fn stage_upcoming(&mut self, state: &RunState, fx: &mut Vec<Effect>) {
        if state.config.isolation != IsolationChoice::Worktree || state.mode != RunMode::Running {
            return;
        }
        let width = self.settings.max_parallel.max(1) as usize;
        let Some(wave) = &mut self.wave else { return };
        let ahead = wave
            .staged
            .iter()
            .filter(|id| wave.pending.contains_key(*id))
            .count();
        let mut room = width.saturating_sub(ahead);
        for id in wave.scheduler.upcoming() {
            if room == 0 {
                break;
            }
            let Some(job) = wave.pending.get(id) else {
                continue;
            };
            let c = &job.conversation;
            let writes = state.config.permissions_for(&c.id, c.kind, &c.backend)
                != crate::agent::permissions::Permissions::ReadOnly;
            if writes && wave.staged.insert(id.to_owned()) {
                fx.push(Effect::Stage(id.to_owned()));
                room -= 1;
            }
        }
    }

    fn record(&mut self, state: &mut RunState, result: &AgentResult) {
        if let Some(answer) = &result.answer {
            self.outputs.insert(
                result.id.clone(),
                (result.conversation.role.clone(), answer.clone()),
            );
        }
        self.conversations
            .insert(result.id.clone(), result.conversation.clone());
        state.report.push(AgentReport {
            id: result.id.clone(),
            group: self.spec.name.clone(),
            wave: result.conversation.wave,
            kind: result.conversation.kind,
            status: result.status.clone(),
            usage: result.conversation.usage,
            cost_micros: result.conversation.cost_micros,
        });
    }

    /// An agent's task returned: a wave member, or a planner turn.
    pub(crate) fn agent_ended(
        &mut self,
        state: &mut RunState,
        result: AgentResult,
        fx: &mut Vec<Effect>,
    ) {
        match self.phase {
            Phase::Wave => {
                let outcome = if result.status == AgentStatus::Succeeded {
                    NodeOutcome::Succeeded
                } else {
                    NodeOutcome::Failed
                };
                let id = result.id.clone();
                self.record(state, &result);
                if let Some(wave) = &mut self.wave {
                    wave.results.push(result);
                }
                if state.mode() == RunMode::Stopping {
                    // Nothing more starts, and what never ran is stopped, not blocked.
                    return;
                }
                self.schedule(state, SchedInput::Finished { id, outcome }, fx);
            }
            Phase::AskContinuation | Phase::AskAutonomous => {
                let asked = self.phase;
                self.conversations
                    .insert(result.id.clone(), result.conversation.clone());
                if let AgentStatus::Failed { .. } = result.status {
                    state.report.push(AgentReport {
                        id: result.id.clone(),
                        group: self.spec.name.clone(),
                        wave: result.conversation.wave,
                        kind: result.conversation.kind,
                        status: result.status.clone(),
                        usage: result.conversation.usage,
                        cost_micros: result.conversation.cost_micros,
                    });
                }
                if state.mode() == RunMode::Stopping || result.status == AgentStatus::Stopped {
                    self.phase = Phase::Done;
                    return;
                }
                match (asked, result.blueprint) {
                    (Phase::AskContinuation, Some(next)) if !next.agents.is_empty() => {
                        let number = self.wave_number + 1;
                        self.run_blueprint(
                            state,
                            &next,
                            number,
                            WaveKind::Continuation,
                            &HashMap::new(),
                            fx,
                        );
                    }
                    (Phase::AskContinuation, _) => self.after_dynamic(state, fx),
                    (_, Some(next)) if !next.agents.is_empty() => {
                        let notes = if self.settings.relay {
                            route_notes(&self.last, &next, &self.settings.relay_graph)
                        } else {
                            HashMap::new()
                        };
                        let kind = if self.settings.relay {
                            WaveKind::Relay
                        } else {
                            WaveKind::Autonomous
                        };
                        let number = self.wave_number + 1;
                        self.run_blueprint(state, &next, number, kind, &notes, fx);
                    }
                    (_, Some(_)) => {
                        fx.push(notice(
                            NoticeLevel::Info,
                            format!("`{AUTONOMOUS_ID}` planned no further wave: done"),
                        ));
                        self.phase = Phase::Done;
                    }
                    (_, None) => self.phase = Phase::Done,
                }
            }
            Phase::Done => {}
        }
    }

    /// Every agent of the current wave succeeded, failed or was blocked.
    fn wave_done(&mut self, state: &mut RunState, fx: &mut Vec<Effect>) {
        let Some(wave) = self.wave.take() else { return };
        if state.mode() == RunMode::Stopping {
            self.phase = Phase::Done;
            return;
        }
        let kind = wave.kind;
        self.last = wave.results;
        match kind {
            WaveKind::Core => self.after_core(state, fx),
            WaveKind::Dynamic => self.after_first_wave(state, fx),
            WaveKind::Continuation => self.after_dynamic(state, fx),
            WaveKind::Autonomous | WaveKind::Relay => {
                self.autonomous_rounds += 1;
                self.after_dynamic(state, fx);
            }
            WaveKind::Features => self.phase = Phase::Done,
        }
    }

    /// How many agents of a wave may run at once: the group's `max-parallel`, or for
    /// the features wave one per track (the tracks are the parallelism the user chose).
    fn scheduler_width(&self, kind: WaveKind) -> usize {
        match kind {
            WaveKind::Features => usize::MAX,
            _ => self.settings.max_parallel as usize,
        }
    }

    fn after_core(&mut self, state: &mut RunState, fx: &mut Vec<Effect>) {
        let found = self
            .last
            .iter()
            .find_map(|r| r.blueprint.clone().map(|b| (r.id.clone(), b)));
        let Some((builder, blueprint)) = found else {
            self.phase = Phase::Done;
            return;
        };
        if blueprint.agents.is_empty() {
            fx.push(notice(
                NoticeLevel::Info,
                format!("`{builder}` defined no specialist agents: nothing more to run"),
            ));
            self.phase = Phase::Done;
            return;
        }
        if self.settings.parallel && blueprint.has_dependencies() {
            let chains: Vec<String> = blueprint
                .agents
                .iter()
                .filter(|a| !a.depends_on.is_empty())
                .map(|a| format!("{} after {}", a.id, a.depends_on.join(", ")))
                .collect();
            fx.push(notice(
                NoticeLevel::Warning,
                format!(
                    "--parallel asked for independent specialists, but the first wave has dependency chains: {}",
                    chains.join("; ")
                ),
            ));
        }
        self.builder = Some((builder, blueprint.clone()));
        self.run_blueprint(state, &blueprint, 1, WaveKind::Dynamic, &HashMap::new(), fx);
    }

    /// After the first blueprint's wave: a straight chain that succeeded gets
    /// continuation implementers from the builder.
    fn after_first_wave(&mut self, state: &mut RunState, fx: &mut Vec<Effect>) {
        let chain = self.builder.clone().filter(|(_, blueprint)| {
            blueprint.is_straight_chain()
                && self.last.iter().all(|r| r.status == AgentStatus::Succeeded)
                && state.config.concise == Concise::Off
        });
        let Some((builder, blueprint)) = chain else {
            self.after_dynamic(state, fx);
            return;
        };
        let Some(mut conversation) = self.conversations.get(&builder).cloned() else {
            self.after_dynamic(state, fx);
            return;
        };
        conversation.tags = vec!["continuation".into()];
        let job = AgentJob {
            conversation,
            depends_on: Vec::new(),
            turns: vec![TurnPlan {
                kind: TurnKind::FollowUp,
                prompt: prompts::continuation(&blueprint.ids(), &self.core_logs, 4)
                    + prompts::tier_note(self.spec.tiers.routing),
                expects: Expects::Blueprint,
            }],
            blueprint: Some(BlueprintAsk {
                max_agents: 4,
                taken: state.taken.clone(),
                wave: self.wave_number + 1,
                tags: vec!["continuation"],
            }),
            require_handoff_note: false,
        };
        self.phase = Phase::AskContinuation;
        state.launch(job, fx);
    }

    /// After a builder wave: the autonomous orchestrator plans another, up to the limit.
    fn after_dynamic(&mut self, state: &mut RunState, fx: &mut Vec<Effect>) {
        let limit = if self.settings.relay {
            self.settings.max_waves.min(MAX_RELAY_WAVES)
        } else {
            self.settings.max_waves
        };
        // A task file that changed since the last plan gets a wave planned for it, in
        // an autonomous run or not.
        let revised = state.task_revision > self.planned_task.0;
        if (!self.settings.autonomous && !revised) || self.autonomous_rounds >= limit {
            if revised {
                fx.push(notice(
                    NoticeLevel::Warning,
                    format!(
                        "the task file changed, but group `{}` has run its {limit} autonomous wave(s) (--max-waves): no wave is planned for the new text",
                        self.spec.name
                    ),
                ));
            }
            self.phase = Phase::Done;
            return;
        }
        let wave = self.wave_number + 1;
        let ids: Vec<String> = self.last.iter().map(|r| r.id.clone()).collect();
        let mut prompt = prompts::autonomous(
            &prompt_context(state),
            wave - 1,
            &self.prior(state, &ids),
            self.settings.max_agents,
            self.settings.relay,
            revised.then_some(self.planned_task.1.as_str()),
        );
        prompt.push_str(prompts::tier_note(self.spec.tiers.routing));
        self.planned_task = (state.task_revision, state.task.clone());
        let conversation = match self.conversations.get(AUTONOMOUS_ID) {
            Some(existing) => {
                let mut c = existing.clone();
                c.wave = wave;
                c
            }
            None => new_conversation(
                state,
                AUTONOMOUS_ID,
                "Autonomous orchestrator",
                AgentKind::AutonomousOrchestrator,
                wave,
                None,
                vec!["autonomous".into()],
            ),
        };
        state.taken.insert(AUTONOMOUS_ID.to_owned());
        state.register(AgentEntry {
            id: AUTONOMOUS_ID.to_owned(),
            role: conversation.role.clone(),
            kind: AgentKind::AutonomousOrchestrator,
            group: self.spec.name.clone(),
            wave,
            depends_on: ids.clone(),
            lifecycle: AgentLifecycle::Queued,
            usage: Usage::default(),
        });
        let job = AgentJob {
            conversation,
            depends_on: ids,
            turns: vec![TurnPlan {
                kind: TurnKind::Plan,
                prompt,
                expects: Expects::Blueprint,
            }],
            blueprint: Some(BlueprintAsk {
                max_agents: self.settings.max_agents as usize,
                taken: state.taken.clone(),
                wave,
                tags: vec!["autonomous"],
            }),
            require_handoff_note: false,
        };
        self.phase = Phase::AskAutonomous;
        state.launch(job, fx);
    }

    fn run_blueprint(
        &mut self,
        state: &mut RunState,
        blueprint: &Blueprint,
        number: u32,
        kind: WaveKind,
        notes: &HashMap<String, Vec<(String, String)>>,
        fx: &mut Vec<Effect>,
    ) {
        let jobs = blueprint_jobs(state, &self.settings, blueprint, (number, kind), notes);
        self.start_wave(state, number, kind, jobs, fx);
    }
}

fn notice(level: NoticeLevel, message: String) -> Effect {
    Effect::Publish(OrchEventKind::Notice { level, message })
}
