//! The orchestrator: groups in order, core agents as a DAG, the builder's blueprint,
//! dynamic waves, straight-chain continuation, autonomous and relay waves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::agent::backend::{AgentKind, Expects, TurnKind};
use crate::agent::event::Usage;
use crate::config::agents::GroupSpec;
use crate::config::resolve::MAX_RELAY_WAVES;
use crate::config::{Concise, GroupSettings, group_settings};
use crate::events::event::{AgentStatus, NoticeLevel, OrchEventKind, RunStatus, WaveKind};
use crate::orchestrator::agents::{
    AgentJob, AgentResult, BlueprintAsk, TurnPlan, run_agent, two_turns,
};
use crate::orchestrator::blueprint::Blueprint;
use crate::orchestrator::control::{AgentState, Stopped};
use crate::orchestrator::prompts::{self, PriorOutput, PromptContext};
use crate::orchestrator::scheduler::{DagScheduler, NodeOutcome, SchedAction, SchedInput};
use crate::orchestrator::turn::{AgentThread, Shared};

pub const AUTONOMOUS_ID: &str = "autonomous-orchestrator";

/// One agent's line in the final report and the `--metrics` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentReport {
    pub id: String,
    pub group: String,
    pub wave: u32,
    pub kind: AgentKind,
    pub status: AgentStatus,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub status: RunStatus,
    pub agents: Vec<AgentReport>,
    pub usage: Usage,
    /// Problems that failed a group without being an agent's failure (none yet).
    pub problems: Vec<String>,
}

/// Everything finished so far in one group, for prompts and context.
struct GroupState {
    name: String,
    settings: GroupSettings,
    outputs: HashMap<String, (String, String)>,
    threads: HashMap<String, AgentThread>,
    taken: HashSet<String>,
    report: Vec<AgentReport>,
}

impl GroupState {
    fn record(&mut self, results: &[AgentResult]) {
        for r in results {
            if let Some(answer) = &r.answer {
                self.outputs
                    .insert(r.id.clone(), (r.thread.role.clone(), answer.clone()));
            }
            self.threads.insert(r.id.clone(), r.thread.clone());
            self.report.push(AgentReport {
                id: r.id.clone(),
                group: self.name.clone(),
                wave: r.thread.wave,
                kind: r.thread.kind,
                status: r.status.clone(),
                usage: r.thread.usage,
            });
        }
    }
}

pub struct Orchestrator {
    shared: Arc<Shared>,
    taken: HashSet<String>,
}

impl Orchestrator {
    pub fn new(shared: Arc<Shared>) -> Self {
        Orchestrator {
            shared,
            taken: HashSet::new(),
        }
    }

    fn ctx(&self) -> PromptContext<'_> {
        PromptContext {
            task: &self.shared.config.prompt,
            project_root: &self.shared.config.paths.project_root,
            concise: self.shared.config.concise != Concise::Off,
        }
    }

    fn log_of(&self, id: &str) -> PathBuf {
        self.shared
            .config
            .run_paths()
            .agent_log(id)
            .unwrap_or_default()
    }

    fn prior<'a>(&self, state: &'a GroupState, ids: &[String]) -> Vec<PriorOutput<'a>> {
        ids.iter()
            .filter_map(|id| {
                let (role, text) = state.outputs.get(id)?;
                let (agent, _) = state.outputs.get_key_value(id)?;
                Some(PriorOutput {
                    agent,
                    role,
                    text,
                    log: self.log_of(id),
                })
            })
            .collect()
    }

    fn thread(
        &self,
        id: &str,
        role: &str,
        kind: AgentKind,
        wave: u32,
        backend: Option<&str>,
        tags: Vec<String>,
    ) -> AgentThread {
        AgentThread {
            id: id.to_owned(),
            role: role.to_owned(),
            kind,
            wave,
            backend: backend.unwrap_or(&self.shared.config.backend).to_owned(),
            model: None,
            fallback: Vec::new(),
            tags,
            resume: None,
            history: Vec::new(),
            turns: 0,
            usage: Usage::default(),
        }
    }

    pub async fn run(mut self) -> RunReport {
        let shared = self.shared.clone();
        let config = &shared.config;
        let bus = &shared.bus;
        bus.publish(OrchEventKind::RunStarted {
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
        })
        .await;
        let mut report = Vec::new();
        let mut stopped = false;
        for group in config.agents.groups.clone() {
            if self.shared.control.is_stopping() {
                stopped = true;
                break;
            }
            bus.publish(OrchEventKind::GroupStarted {
                group: group.name.clone(),
            })
            .await;
            let mut state = GroupState {
                name: group.name.clone(),
                settings: group_settings(&group, &config.cli_orchestration),
                outputs: HashMap::new(),
                threads: HashMap::new(),
                taken: HashSet::new(),
                report: Vec::new(),
            };
            let result = self.run_group(&group, &mut state).await;
            report.append(&mut state.report);
            if result.is_err() {
                stopped = true;
                break;
            }
        }
        let mut usage = Usage::default();
        report.iter().for_each(|a| usage.add(&a.usage));
        let failed: Vec<String> = report
            .iter()
            .filter(|a| {
                matches!(
                    a.status,
                    AgentStatus::Failed { .. } | AgentStatus::Blocked { .. }
                )
            })
            .map(|a| a.id.clone())
            .collect();
        let status = if stopped || self.shared.control.is_stopping() {
            RunStatus::Stopped
        } else if failed.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        // No pause summary may follow `run_finished`, the run's last event (see
        // `RunControl::summary_gate`).
        let mut ended = shared.control.summary_gate().await;
        if status == RunStatus::Stopped {
            // The stop's interrupt summary comes before `run_finished`, the run's last
            // event: readers take a run that ends with `run_paused` for a paused one.
            let logs = config.run_paths().logs_dir();
            let summary = shared
                .control
                .interrupt_summary(vec![format!("logs: {}", logs.display())]);
            bus.publish(OrchEventKind::RunPaused(Box::new(summary)))
                .await;
        }
        bus.publish(OrchEventKind::RunFinished {
            status,
            usage,
            failed,
        })
        .await;
        *ended = true;
        drop(ended);
        RunReport {
            status,
            agents: report,
            usage,
            problems: Vec::new(),
        }
    }

    async fn run_group(
        &mut self,
        group: &GroupSpec,
        state: &mut GroupState,
    ) -> Result<(), Stopped> {
        let config = &self.shared.config;
        let concise = config.concise;
        // Core agents.
        let mut jobs = Vec::new();
        for spec in &group.agents {
            let ancestors = ancestors(group, &spec.id);
            let blueprint_wanted = spec.blueprint && concise != Concise::NoWaves;
            let mut follow_up = prompts::core_follow_up(spec);
            if blueprint_wanted {
                follow_up.push_str(&prompts::blueprint_format(
                    state.settings.max_agents,
                    state.settings.parallel,
                ));
            }
            let mut thread = self.thread(
                &spec.id,
                &spec.role,
                AgentKind::Core,
                0,
                spec.backend.as_deref(),
                Vec::new(),
            );
            thread.model = spec.model.clone();
            thread.fallback = spec.fallback.clone();
            let last = if blueprint_wanted {
                Expects::Blueprint
            } else {
                Expects::Text
            };
            let follow_up = spec.follow_up_enabled.then_some(follow_up);
            let turns = if concise != Concise::Off && blueprint_wanted {
                // One turn that both thinks and answers with the blueprint.
                vec![TurnPlan {
                    kind: TurnKind::Plan,
                    prompt: String::new(),
                    expects: Expects::Blueprint,
                }]
            } else {
                two_turns(concise, String::new(), follow_up, last)
            };
            jobs.push((
                spec.id.clone(),
                spec.depends_on.clone(),
                ancestors,
                thread,
                turns,
                blueprint_wanted,
            ));
        }
        let ids: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
        self.taken.extend(ids.iter().cloned());
        state.taken.extend(ids.iter().cloned());
        let taken = self.taken.clone();
        let max_agents = state.settings.max_agents as usize;
        let core_results = self
            .run_wave(
                state,
                0,
                WaveKind::Core,
                jobs.into_iter()
                    .map(|(id, deps, ancestors, thread, turns, wants_bp)| {
                        let ask = wants_bp.then(|| BlueprintAsk {
                            max_agents,
                            taken: taken.clone(),
                            wave: 1,
                            tags: vec!["dynamic-blueprint"],
                        });
                        PendingJob {
                            id,
                            deps,
                            ancestors,
                            thread,
                            turns,
                            blueprint: ask,
                            plan_from_spec: true,
                            handoff: false,
                        }
                    })
                    .collect(),
                Some(group),
            )
            .await?;
        let Some(blueprint) = core_results.iter().find_map(|r| r.blueprint.clone()) else {
            return Ok(());
        };
        let builder = core_results
            .iter()
            .find(|r| r.blueprint.is_some())
            .map(|r| r.id.clone())
            .unwrap_or_default();
        if blueprint.agents.is_empty() {
            self.notice(
                NoticeLevel::Info,
                format!("`{builder}` defined no specialist agents: nothing more to run"),
            )
            .await;
            return Ok(());
        }
        if state.settings.parallel && blueprint.has_dependencies() {
            let chains: Vec<String> = blueprint
                .agents
                .iter()
                .filter(|a| !a.depends_on.is_empty())
                .map(|a| format!("{} after {}", a.id, a.depends_on.join(", ")))
                .collect();
            self.notice(
                NoticeLevel::Warning,
                format!("--parallel asked for independent specialists, but the first wave has dependency chains: {}", chains.join("; ")),
            )
            .await;
        }
        let core_logs: Vec<(String, PathBuf)> = group
            .agents
            .iter()
            .map(|a| (a.id.clone(), self.log_of(&a.id)))
            .collect();
        let mut wave = 1;
        let results = self
            .run_blueprint(
                state,
                &blueprint,
                wave,
                WaveKind::Dynamic,
                AgentKind::Dynamic,
                &core_logs,
                &HashMap::new(),
            )
            .await?;
        let mut last_results = results;

        if blueprint.is_straight_chain()
            && last_results
                .iter()
                .all(|r| r.status == AgentStatus::Succeeded)
            && concise == Concise::Off
        {
            wave += 1;
            if let Some(continuation) = self
                .ask_continuation(state, &builder, &blueprint, &core_logs, wave)
                .await?
            {
                if !continuation.agents.is_empty() {
                    last_results = self
                        .run_blueprint(
                            state,
                            &continuation,
                            wave,
                            WaveKind::Continuation,
                            AgentKind::Continuation,
                            &core_logs,
                            &HashMap::new(),
                        )
                        .await?;
                }
            }
        }

        if state.settings.autonomous {
            let limit = if state.settings.relay {
                state.settings.max_waves.min(MAX_RELAY_WAVES)
            } else {
                state.settings.max_waves
            };
            for _ in 0..limit {
                wave += 1;
                let Some(next) = self.ask_autonomous(state, &last_results, wave).await? else {
                    break;
                };
                if next.agents.is_empty() {
                    self.notice(
                        NoticeLevel::Info,
                        format!("`{AUTONOMOUS_ID}` planned no further wave: done"),
                    )
                    .await;
                    break;
                }
                let notes = if state.settings.relay {
                    route_notes(&last_results, &next, &state.settings.relay_graph)
                } else {
                    HashMap::new()
                };
                let (kind, agent_kind) = if state.settings.relay {
                    (WaveKind::Relay, AgentKind::Autonomous)
                } else {
                    (WaveKind::Autonomous, AgentKind::Autonomous)
                };
                last_results = self
                    .run_blueprint(state, &next, wave, kind, agent_kind, &core_logs, &notes)
                    .await?;
            }
        }
        Ok(())
    }

    async fn notice(&self, level: NoticeLevel, message: String) {
        self.shared
            .bus
            .publish(OrchEventKind::Notice { level, message })
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_blueprint(
        &mut self,
        state: &mut GroupState,
        blueprint: &Blueprint,
        wave: u32,
        kind: WaveKind,
        agent_kind: AgentKind,
        core_logs: &[(String, PathBuf)],
        notes: &HashMap<String, Vec<(String, String)>>,
    ) -> Result<Vec<AgentResult>, Stopped> {
        let relay = state.settings.relay
            && matches!(
                kind,
                WaveKind::Relay | WaveKind::Dynamic | WaveKind::Continuation
            );
        let tags: Vec<String> = match kind {
            WaveKind::Dynamic => vec!["builder-implementer".into()],
            WaveKind::Continuation => vec!["builder-implementer".into(), "continuation".into()],
            WaveKind::Autonomous => vec!["builder-implementer".into(), "autonomous".into()],
            WaveKind::Relay => vec![
                "builder-implementer".into(),
                "autonomous".into(),
                "relay".into(),
            ],
            WaveKind::Core => Vec::new(),
        };
        let mut jobs = Vec::new();
        for agent in &blueprint.agents {
            let my_notes = notes.get(&agent.id).cloned().unwrap_or_default();
            let plan = prompts::specialist_plan(
                &self.ctx(),
                &agent.id,
                &agent.role,
                &agent.prompt,
                core_logs,
                &self.prior(state, &agent.depends_on),
                &my_notes,
            );
            let follow_up = Some(prompts::specialist_follow_up(relay));
            let expects = if relay {
                Expects::HandoffNote
            } else {
                Expects::Text
            };
            let turns = two_turns(self.shared.config.concise, plan, follow_up, expects);
            let thread = self.thread(&agent.id, &agent.role, agent_kind, wave, None, tags.clone());
            jobs.push(PendingJob {
                id: agent.id.clone(),
                deps: agent.depends_on.clone(),
                ancestors: Vec::new(),
                thread,
                turns,
                blueprint: None,
                plan_from_spec: false,
                handoff: relay && state.settings.require_handoff_note,
            });
        }
        self.taken.extend(blueprint.ids());
        state.taken.extend(blueprint.ids());
        self.run_wave(state, wave, kind, jobs, None).await
    }

    async fn run_wave(
        &mut self,
        state: &mut GroupState,
        wave: u32,
        kind: WaveKind,
        mut jobs: Vec<PendingJob>,
        group: Option<&GroupSpec>,
    ) -> Result<Vec<AgentResult>, Stopped> {
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        self.shared.control.register(&ids);
        self.shared
            .bus
            .publish(OrchEventKind::WaveScheduled {
                wave,
                kind,
                agents: ids.clone(),
            })
            .await;
        let edges: Vec<(String, Vec<String>)> = jobs
            .iter()
            .map(|j| (j.id.clone(), j.deps.clone()))
            .collect();
        let mut scheduler = DagScheduler::new(&edges, state.settings.max_parallel as usize);
        let mut running: JoinSet<AgentResult> = JoinSet::new();
        let mut results: Vec<AgentResult> = Vec::new();
        let mut actions = scheduler.next(SchedInput::Start);
        let mut stopped = false;
        loop {
            for action in std::mem::take(&mut actions) {
                match action {
                    SchedAction::Launch(id) => {
                        if stopped || self.shared.control.wait_runnable().await.is_err() {
                            stopped = true;
                            continue;
                        }
                        let Some(pos) = jobs.iter().position(|j| j.id == id) else {
                            continue;
                        };
                        let mut job = jobs.remove(pos);
                        if job.plan_from_spec {
                            // Core agents' first prompt quotes what their ancestors concluded.
                            if let Some(spec) =
                                group.and_then(|g| g.agents.iter().find(|a| a.id == job.id))
                            {
                                let mut plan = prompts::core_plan(
                                    &self.ctx(),
                                    spec,
                                    &self.prior(state, &job.ancestors),
                                );
                                if let Some(first) = job.turns.first_mut() {
                                    if first.expects == Expects::Blueprint {
                                        plan.push_str(&prompts::blueprint_format(
                                            state.settings.max_agents,
                                            state.settings.parallel,
                                        ));
                                    }
                                    if first.prompt.is_empty() {
                                        first.prompt = plan;
                                    }
                                }
                            }
                        }
                        let agent_job = AgentJob {
                            thread: job.thread,
                            depends_on: job.deps,
                            turns: job.turns,
                            blueprint: job.blueprint,
                            require_handoff_note: job.handoff,
                        };
                        running.spawn(run_agent(self.shared.clone(), agent_job));
                    }
                    SchedAction::Block { id, by } => {
                        self.shared.control.set_state(&id, AgentState::Blocked);
                        let status = AgentStatus::Blocked { by };
                        self.shared
                            .bus
                            .publish(OrchEventKind::AgentFinished {
                                agent: id.clone(),
                                status: status.clone(),
                                usage: Usage::default(),
                            })
                            .await;
                        if let Some(job) = jobs.iter().find(|j| j.id == id) {
                            results.push(AgentResult {
                                id: id.clone(),
                                status,
                                answer: None,
                                thread: job.thread.clone(),
                                blueprint: None,
                                handoff_note: None,
                            });
                        }
                    }
                    SchedAction::Done => {}
                }
            }
            match running.join_next().await {
                Some(Ok(result)) => {
                    let outcome = if result.status == AgentStatus::Succeeded {
                        NodeOutcome::Succeeded
                    } else {
                        NodeOutcome::Failed
                    };
                    actions = scheduler.next(SchedInput::Finished {
                        id: result.id.clone(),
                        outcome,
                    });
                    state.record(std::slice::from_ref(&result));
                    results.push(result);
                }
                Some(Err(join_error)) => {
                    self.notice(
                        NoticeLevel::Error,
                        format!("an agent task ended abnormally: {join_error}"),
                    )
                    .await;
                }
                None => break,
            }
        }
        // Agents that never started because the run stopped.
        for job in jobs {
            if results.iter().any(|r| r.id == job.id) {
                continue;
            }
            self.shared.control.set_state(&job.id, AgentState::Stopped);
            if stopped {
                results.push(AgentResult {
                    id: job.id.clone(),
                    status: AgentStatus::Stopped,
                    answer: None,
                    thread: job.thread.clone(),
                    blueprint: None,
                    handoff_note: None,
                });
            }
        }
        let blocked: Vec<AgentResult> = results
            .iter()
            .filter(|r| matches!(r.status, AgentStatus::Blocked { .. }))
            .cloned()
            .collect();
        state.record(&blocked);
        if stopped || self.shared.control.is_stopping() {
            return Err(Stopped);
        }
        Ok(results)
    }

    async fn ask_continuation(
        &mut self,
        state: &mut GroupState,
        builder: &str,
        chain: &Blueprint,
        core_logs: &[(String, PathBuf)],
        wave: u32,
    ) -> Result<Option<Blueprint>, Stopped> {
        let Some(thread) = state.threads.get(builder).cloned() else {
            return Ok(None);
        };
        let mut thread = thread;
        let prompt = prompts::continuation(&chain.ids(), core_logs, 4);
        let taken = self.taken.clone();
        let job = AgentJob {
            thread: {
                thread.tags = vec!["continuation".into()];
                thread
            },
            depends_on: Vec::new(),
            turns: vec![TurnPlan {
                kind: TurnKind::FollowUp,
                prompt,
                expects: Expects::Blueprint,
            }],
            blueprint: Some(BlueprintAsk {
                max_agents: 4,
                taken,
                wave,
                tags: vec!["continuation"],
            }),
            require_handoff_note: false,
        };
        let result = run_agent(self.shared.clone(), job).await;
        self.finish_planner_turn(state, &result)
    }

    async fn ask_autonomous(
        &mut self,
        state: &mut GroupState,
        last: &[AgentResult],
        wave: u32,
    ) -> Result<Option<Blueprint>, Stopped> {
        let outputs_ids: Vec<String> = last.iter().map(|r| r.id.clone()).collect();
        let prompt = prompts::autonomous(
            &self.ctx(),
            wave - 1,
            &self.prior(state, &outputs_ids),
            state.settings.max_agents,
            state.settings.relay,
        );
        let thread = match state.threads.get(AUTONOMOUS_ID) {
            Some(thread) => {
                let mut t = thread.clone();
                t.wave = wave;
                t
            }
            None => self.thread(
                AUTONOMOUS_ID,
                "Autonomous orchestrator",
                AgentKind::AutonomousOrchestrator,
                wave,
                None,
                vec!["autonomous".into()],
            ),
        };
        self.taken.insert(AUTONOMOUS_ID.to_owned());
        let job = AgentJob {
            thread,
            depends_on: outputs_ids,
            turns: vec![TurnPlan {
                kind: TurnKind::Plan,
                prompt,
                expects: Expects::Blueprint,
            }],
            blueprint: Some(BlueprintAsk {
                max_agents: state.settings.max_agents as usize,
                taken: self.taken.clone(),
                wave,
                tags: vec!["autonomous"],
            }),
            require_handoff_note: false,
        };
        self.shared.control.register(&[AUTONOMOUS_ID.to_owned()]);
        let result = run_agent(self.shared.clone(), job).await;
        self.finish_planner_turn(state, &result)
    }

    fn finish_planner_turn(
        &self,
        state: &mut GroupState,
        result: &AgentResult,
    ) -> Result<Option<Blueprint>, Stopped> {
        state
            .threads
            .insert(result.id.clone(), result.thread.clone());
        if result.status == AgentStatus::Stopped {
            return Err(Stopped);
        }
        if let AgentStatus::Failed { .. } = result.status {
            state.report.push(AgentReport {
                id: result.id.clone(),
                group: state.name.clone(),
                wave: result.thread.wave,
                kind: result.thread.kind,
                status: result.status.clone(),
                usage: result.thread.usage,
            });
        }
        Ok(result.blueprint.clone())
    }
}

struct PendingJob {
    id: String,
    deps: Vec<String>,
    ancestors: Vec<String>,
    thread: AgentThread,
    turns: Vec<TurnPlan>,
    blueprint: Option<BlueprintAsk>,
    /// The first prompt is built at launch from the agents config (core agents).
    plan_from_spec: bool,
    handoff: bool,
}

/// All agents `id` depends on, directly or not, in config order.
fn ancestors(group: &GroupSpec, id: &str) -> Vec<String> {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut stack = vec![id.to_owned()];
    while let Some(current) = stack.pop() {
        if let Some(spec) = group.agents.iter().find(|a| a.id == current) {
            for dep in &spec.depends_on {
                if wanted.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
    }
    group
        .agents
        .iter()
        .filter(|a| wanted.contains(&a.id))
        .map(|a| a.id.clone())
        .collect()
}

/// Handoff notes of the last wave, routed to next-wave agents along `graph`; an agent
/// with no graph entry hands its note to every agent of the next wave.
fn route_notes(
    last: &[AgentResult],
    next: &Blueprint,
    graph: &BTreeMap<String, Vec<String>>,
) -> HashMap<String, Vec<(String, String)>> {
    let mut routed: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for result in last {
        let Some(note) = &result.handoff_note else {
            continue;
        };
        let targets: Vec<String> = match graph.get(&result.id) {
            Some(to) => to
                .iter()
                .filter(|t| next.agents.iter().any(|a| &a.id == *t))
                .cloned()
                .collect(),
            None => next.ids(),
        };
        for target in targets {
            routed
                .entry(target)
                .or_default()
                .push((result.id.clone(), note.clone()));
        }
    }
    routed
}
