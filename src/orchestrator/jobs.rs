//! The jobs a group launches: core agents from the agents config, specialists from a
//! blueprint, and the first prompt of each, built when the agent starts. Pure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use crate::agent::backend::{AgentKind, Expects, TurnKind};
use crate::agent::event::Usage;
use crate::config::agents::GroupSpec;
use crate::config::{Concise, GroupSettings};
use crate::events::event::WaveKind;
use crate::orchestrator::agents::{AgentJob, AgentResult, BlueprintAsk, TurnPlan, two_turns};
use crate::orchestrator::blueprint::Blueprint;
use crate::orchestrator::prompts::{self, PriorOutput, PromptContext};
use crate::orchestrator::state::RunState;
use crate::orchestrator::turn::Conversation;
use crate::orchestrator::waves::GroupRun;

/// How an agent's first prompt is made when it starts.
#[derive(Clone, Debug)]
pub(super) enum Plan {
    /// A core agent: from the agents config, quoting its ancestors.
    Core { ancestors: Vec<String> },
    /// A specialist: from its blueprint entry, quoting what it depends on.
    Specialist {
        prompt: String,
        notes: Vec<(String, String)>,
    },
}

#[derive(Clone, Debug)]
pub(super) struct PendingJob {
    pub(super) deps: Vec<String>,
    pub(super) conversation: Conversation,
    pub(super) turns: Vec<TurnPlan>,
    pub(super) blueprint: Option<BlueprintAsk>,
    pub(super) plan: Plan,
    pub(super) handoff: bool,
    /// Its lane in the wave's scheduler (a features track): one of a lane at a time.
    pub(super) lane: Option<usize>,
}

/// The jobs of a group's core agents (wave 0).
pub(super) fn core_jobs(
    state: &RunState,
    group: &GroupSpec,
    settings: &GroupSettings,
) -> Vec<(String, PendingJob)> {
    let concise = state.config.concise;
    let mut jobs = Vec::new();
    for spec in group.agents.clone() {
        let blueprint_wanted = spec.blueprint && concise != Concise::NoWaves;
        let mut follow_up = prompts::core_follow_up(&spec);
        if blueprint_wanted {
            follow_up.push_str(&prompts::blueprint_format(
                settings.max_agents,
                settings.parallel,
            ));
            follow_up.push_str(prompts::tier_note(group.tiers.routing));
        }
        let mut conversation = new_conversation(
            state,
            &spec.id,
            &spec.role,
            AgentKind::Core,
            0,
            spec.backend.as_deref(),
            Vec::new(),
        );
        conversation.model = spec.model.clone();
        if !spec.fallback.is_empty() {
            conversation.fallback = spec.fallback.clone();
        }
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
        let blueprint = blueprint_wanted.then(|| BlueprintAsk {
            max_agents: settings.max_agents as usize,
            taken: HashSet::new(),
            wave: 1,
            tags: vec!["dynamic-blueprint"],
        });
        jobs.push((
            spec.id.clone(),
            PendingJob {
                deps: spec.depends_on.clone(),
                conversation,
                turns,
                blueprint,
                plan: Plan::Core {
                    ancestors: ancestors(group, &spec.id),
                },
                handoff: false,
                lane: None,
            },
        ));
    }
    jobs
}

/// The jobs of a blueprint's agents, as wave `number` of kind `kind`.
pub(super) fn blueprint_jobs(
    state: &RunState,
    settings: &GroupSettings,
    blueprint: &Blueprint,
    (number, kind): (u32, WaveKind),
    notes: &HashMap<String, Vec<(String, String)>>,
) -> Vec<(String, PendingJob)> {
    let relay = settings.relay
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
        WaveKind::Core | WaveKind::Features => Vec::new(),
    };
    let agent_kind = match kind {
        WaveKind::Continuation => AgentKind::Continuation,
        WaveKind::Autonomous | WaveKind::Relay => AgentKind::Autonomous,
        _ => AgentKind::Dynamic,
    };
    let expects = if relay {
        Expects::HandoffNote
    } else {
        Expects::Text
    };
    blueprint
        .agents
        .iter()
        .map(|agent| {
            let turns = two_turns(
                state.config.concise,
                String::new(),
                Some(prompts::specialist_follow_up(relay)),
                expects,
            );
            let mut conversation = new_conversation(
                state,
                &agent.id,
                &agent.role,
                agent_kind,
                number,
                None,
                tags.clone(),
            );
            if let Some(group) = group_spec(state) {
                place_on_tier(
                    &mut conversation,
                    &group.tiers,
                    agent.fast,
                    &state.config.backend,
                );
            }
            let job = PendingJob {
                deps: agent.depends_on.clone(),
                conversation,
                turns,
                blueprint: None,
                plan: Plan::Specialist {
                    prompt: agent.prompt.clone(),
                    notes: notes.get(&agent.id).cloned().unwrap_or_default(),
                },
                handoff: relay && settings.require_handoff_note,
                lane: None,
            };
            (agent.id.clone(), job)
        })
        .collect()
}

/// The jobs of `--features`: one agent per feature still to do, in file order, on the
/// lane of its track. Its assignment is the feature's name, description and steps, and
/// the user's prompt when one was given.
pub(super) fn feature_jobs(
    state: &RunState,
    backlog: &crate::config::features::Backlog,
) -> Vec<(String, PendingJob)> {
    backlog
        .open()
        .map(|feature| {
            let turns = two_turns(
                state.config.concise,
                String::new(),
                Some(prompts::specialist_follow_up(false)),
                Expects::Text,
            );
            let role = if feature.name.trim().is_empty() {
                format!("Feature {}", feature.id)
            } else {
                feature.name.trim().to_owned()
            };
            let mut conversation = new_conversation(
                state,
                &feature.agent,
                &role,
                AgentKind::Dynamic,
                1,
                None,
                vec!["feature".into(), format!("track:{}", feature.track)],
            );
            if let Some(group) = group_spec(state) {
                place_on_tier(&mut conversation, &group.tiers, None, &state.config.backend);
            }
            let job = PendingJob {
                deps: Vec::new(),
                conversation,
                turns,
                blueprint: None,
                plan: Plan::Specialist {
                    prompt: feature.assignment(),
                    notes: Vec::new(),
                },
                handoff: false,
                lane: backlog.tracks.iter().position(|t| *t == feature.track),
            };
            (feature.agent.clone(), job)
        })
        .collect()
}

impl GroupRun {
    /// The job of an agent that starts now: its first prompt quotes what finished.
    pub(super) fn agent_job(&self, state: &RunState, job: PendingJob) -> AgentJob {
        let PendingJob {
            deps,
            conversation,
            mut turns,
            blueprint,
            plan,
            handoff,
            lane: _,
        } = job;
        let ctx = prompt_context(state);
        let first = match &plan {
            Plan::Core { ancestors } => {
                let spec = self.spec.agents.iter().find(|a| a.id == conversation.id);
                spec.map(|spec| {
                    let mut text = prompts::core_plan(&ctx, spec, &self.prior(state, ancestors));
                    if turns
                        .first()
                        .is_some_and(|t| t.expects == Expects::Blueprint)
                    {
                        text.push_str(&prompts::blueprint_format(
                            self.settings.max_agents,
                            self.settings.parallel,
                        ));
                        text.push_str(prompts::tier_note(self.spec.tiers.routing));
                    }
                    text
                })
            }
            Plan::Specialist { prompt, notes } => Some(prompts::specialist_plan(
                &ctx,
                &conversation.id,
                &conversation.role,
                prompt,
                &self.core_logs,
                &self.prior(state, &deps),
                notes,
            )),
        };
        if let (Some(text), Some(turn)) = (first, turns.first_mut()) {
            if turn.prompt.is_empty() {
                turn.prompt = text;
            }
        }
        let blueprint = blueprint.map(|mut ask| {
            ask.taken = state.taken.clone();
            ask
        });
        AgentJob {
            conversation,
            depends_on: deps,
            turns,
            blueprint,
            require_handoff_note: handoff,
        }
    }

    pub(super) fn prior<'a>(&'a self, state: &RunState, ids: &[String]) -> Vec<PriorOutput<'a>> {
        ids.iter()
            .filter_map(|id| {
                let (agent, (role, text)) = self.outputs.get_key_value(id)?;
                Some(PriorOutput {
                    agent,
                    role,
                    text,
                    log: log_of(state, id),
                })
            })
            .collect()
    }
}

pub(super) fn prompt_context(state: &RunState) -> PromptContext<'_> {
    PromptContext {
        task: &state.task,
        project_root: &state.config.paths.project_root,
        concise: state.config.concise != Concise::Off,
        earlier: state.config.parent.as_ref().map(|p| p.context.as_str()),
    }
}

pub(super) fn log_of(state: &RunState, id: &str) -> PathBuf {
    state.config.run_paths().agent_log(id).unwrap_or_default()
}

pub(super) fn new_conversation(
    state: &RunState,
    id: &str,
    role: &str,
    kind: AgentKind,
    wave: u32,
    backend: Option<&str>,
    tags: Vec<String>,
) -> Conversation {
    Conversation {
        id: id.to_owned(),
        role: role.to_owned(),
        kind,
        group: group_spec(state)
            .map(|g| g.name.clone())
            .unwrap_or_default(),
        wave,
        backend: backend.unwrap_or(&state.config.backend).to_owned(),
        model: None,
        // The group's chain; a configured agent's own replaces it.
        fallback: group_spec(state)
            .map(|g| g.fallback.clone())
            .unwrap_or_default(),
        tags,
        resume: None,
        history: Vec::new(),
        turns: 0,
        usage: Usage::default(),
        cost_micros: Some(0),
        worktree: None,
        permissions: None,
        failures: 0,
        fixes: 0,
    }
}

/// Puts a blueprint agent on its model tier by the group's `routing` (the builder's
/// mark under `auto`), tagged `tier:fast` or `tier:strong`. Nothing when the group
/// names no tiers.
fn place_on_tier(
    conversation: &mut Conversation,
    tiers: &crate::config::agents::Tiers,
    marked_fast: Option<bool>,
    run_backend: &str,
) {
    use crate::config::agents::Routing;
    if *tiers == crate::config::agents::Tiers::default() {
        return;
    }
    let fast = match tiers.routing {
        Routing::StrongOnly => false,
        Routing::FastOnly | Routing::FastFirst => true,
        Routing::Auto => marked_fast.unwrap_or(false),
    };
    set_tier(conversation, tiers, fast, run_backend);
}

/// Moves a conversation onto a tier: its backend (the run's when the tier names none)
/// and model, and the `tier:` tag its turns are counted under.
pub(crate) fn set_tier(
    conversation: &mut Conversation,
    tiers: &crate::config::agents::Tiers,
    fast: bool,
    run_backend: &str,
) {
    let tier = tiers.get(fast);
    conversation.backend = tier
        .backend
        .clone()
        .unwrap_or_else(|| run_backend.to_owned());
    conversation.model = tier.model.clone();
    conversation.tags.retain(|t| !t.starts_with("tier:"));
    conversation
        .tags
        .push(if fast { "tier:fast" } else { "tier:strong" }.into());
}

/// The spec of the group running now.
fn group_spec(state: &RunState) -> Option<&GroupSpec> {
    state
        .group_index
        .checked_sub(1)
        .and_then(|i| state.config.agents.groups.get(i))
}

/// All agents `id` depends on, directly or not, in config order.
pub(super) fn ancestors(group: &GroupSpec, id: &str) -> Vec<String> {
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
pub(super) fn route_notes(
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
