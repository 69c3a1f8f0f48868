//! Agent and group definitions, as read from an agents config file or the defaults.
//!
//! Owns validation of what a config file may say (ids, dependencies, cycles). Does not
//! own parsing (see `kdl_file`, `json_file`) or flag resolution (see `resolve`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::agent::id::agent_id_problem;
use crate::agent::permissions::Permissions;
use crate::orchestrator::scheduler::find_cycle;

/// One agent of the config: a core agent that runs before the blueprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub id: String,
    pub role: String,
    pub plan_prompt: String,
    pub follow_up_prompt: String,
    pub follow_up_schema: Option<serde_json::Value>,
    pub rules: Vec<String>,
    pub follow_up_enabled: bool,
    pub depends_on: Vec<String>,
    /// This agent's follow-up answer is the blueprint of dynamic agents.
    pub blueprint: bool,
    pub backend: Option<String>,
    pub model: Option<String>,
    /// Backends to try, in order, when a turn fails terminally.
    pub fallback: Vec<String>,
    /// What this agent may do without asking; `None` leaves the backend's, the flag's
    /// or the kind's default in force.
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// This agent's own gates (besides the file's and `--gate`).
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// This agent's own review steps; they replace its group's and the file's.
    #[serde(default)]
    pub reviews: Vec<ReviewSpec>,
    /// Tokens this agent may use (input and output); at its limit the run pauses and
    /// asks.
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// A shell command that decides whether an agent's work is done: run in its worktree
/// after its final turn; a failure gets a fix turn, up to `max_attempts` runs in all.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateSpec {
    pub command: String,
    pub timeout_s: u64,
    pub max_attempts: u32,
}

impl GateSpec {
    pub const DEFAULT_TIMEOUT_S: u64 = 600;
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

    pub fn new(command: &str) -> Self {
        GateSpec {
            command: command.to_owned(),
            timeout_s: Self::DEFAULT_TIMEOUT_S,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// A review step: after an agent's gates pass, a read-only turn on `backend` and
/// `model` (another CLI or model than the agent's, typically) judges its task and its
/// diff and answers a verdict; a failed verdict goes back to the agent as a fix turn,
/// up to `max_rounds` reviews.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReviewSpec {
    /// The reviewer's name: a `reviewer` node's, or its backend's.
    pub name: String,
    /// `None`: the reviewed agent's backend.
    pub backend: Option<String>,
    pub model: Option<String>,
    /// What this reviewer looks for, besides the task.
    pub instructions: String,
    pub max_rounds: u32,
}

impl ReviewSpec {
    pub const DEFAULT_MAX_ROUNDS: u32 = 3;
}

impl AgentSpec {
    pub fn new(id: &str, role: &str) -> Self {
        AgentSpec {
            id: id.to_owned(),
            role: role.to_owned(),
            plan_prompt: String::new(),
            follow_up_prompt: String::new(),
            follow_up_schema: None,
            rules: Vec::new(),
            follow_up_enabled: true,
            depends_on: Vec::new(),
            blueprint: false,
            backend: None,
            model: None,
            fallback: Vec::new(),
            permissions: None,
            gates: Vec::new(),
            reviews: Vec::new(),
            max_tokens: None,
        }
    }
}

/// Orchestration settings of a group; `None` leaves the CLI flag or default in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestrationSettings {
    pub autonomous: Option<bool>,
    pub parallel: Option<bool>,
    pub max_waves: Option<u32>,
    pub max_agents: Option<u32>,
    pub max_parallel: Option<u32>,
    pub relay: RelaySettings,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySettings {
    pub enabled: Option<bool>,
    pub require_handoff_note: Option<bool>,
    /// Agent id → the agents of the next wave that receive its handoff note.
    pub graph: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub name: String,
    pub agents: Vec<AgentSpec>,
    pub orchestration: OrchestrationSettings,
    /// Backends to try, in order, for every agent of the group without a `fallback` of
    /// its own: configured, dynamic, continuation and autonomous agents alike.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Gates of every agent of the group that may change files.
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// Review steps of the group's agents without their own; they replace the file's.
    #[serde(default)]
    pub reviews: Vec<ReviewSpec>,
    /// Tokens each agent of the group may use (unless it sets its own).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The strong and fast model tiers of its blueprint agents, and how they are picked.
    #[serde(default)]
    pub tiers: Tiers,
}

/// Which model tier a blueprint agent works on (`routing` in `orch.kdl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Every blueprint agent on the strong tier.
    #[default]
    StrongOnly,
    /// The builder marks each agent's tier (`"tier": "fast"`); strong when it does not.
    Auto,
    /// The fast tier first; an agent whose gate or reviewer fails moves to the strong
    /// tier, on a new conversation told of the failure.
    FastFirst,
    /// Every blueprint agent on the fast tier.
    FastOnly,
}

impl Routing {
    pub const NAMES: [&'static str; 4] = ["strong-only", "auto", "fast-first", "fast-only"];

    pub fn parse(name: &str) -> Option<Routing> {
        match name {
            "strong-only" => Some(Routing::StrongOnly),
            "auto" => Some(Routing::Auto),
            "fast-first" => Some(Routing::FastFirst),
            "fast-only" => Some(Routing::FastOnly),
            _ => None,
        }
    }
}

/// A model tier: its backend and model (`None`: the run's), and where that backend is
/// reached: a base URL and the environment variable that holds its key (`None`: the
/// backend's own). The key itself is never in the config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub backend: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub key_env: Option<String>,
}

impl Tier {
    /// Its turns need a backend of their own (another base URL or key).
    pub fn has_endpoint(&self) -> bool {
        self.base_url.is_some() || self.key_env.is_some()
    }
}

/// A group's model tiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiers {
    pub strong: Tier,
    pub fast: Tier,
    pub routing: Routing,
}

impl Tiers {
    /// The tier named `fast` or `strong`.
    pub fn get(&self, fast: bool) -> &Tier {
        if fast { &self.fast } else { &self.strong }
    }

    /// The tier called `name` (`fast` or `strong`).
    pub fn named(&self, name: &str) -> Option<&Tier> {
        match name {
            "fast" => Some(&self.fast),
            "strong" => Some(&self.strong),
            _ => None,
        }
    }
}

/// The name a backend of a tier with its own endpoint is built under: the backend's,
/// the tier's and the group's (`BackendSet` keeps one per name).
pub fn tier_backend_key(backend: &str, tier: &str, group: &str) -> String {
    format!("{backend}@{tier}@{group}")
}

/// The parts of a `tier_backend_key`: (backend, tier, group).
pub fn split_tier_backend_key(key: &str) -> Option<(&str, &str, &str)> {
    let (backend, rest) = key.split_once('@')?;
    let (tier, group) = rest.split_once('@')?;
    Some((backend, tier, group))
}

impl GroupSpec {
    pub fn new(name: &str) -> Self {
        GroupSpec {
            name: name.to_owned(),
            agents: Vec::new(),
            orchestration: OrchestrationSettings::default(),
            fallback: Vec::new(),
            gates: Vec::new(),
            reviews: Vec::new(),
            max_tokens: None,
            tiers: Tiers::default(),
        }
    }
}

/// Where the agents config came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigSource {
    BuiltIn,
    File(PathBuf),
}

/// How failed turns are retried and parked (a top-level `retry` node); `None` keeps
/// the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Tries of one backend for a transient failure, the first included.
    pub max_tries: Option<u32>,
    /// First backoff delay; it doubles with each try (with jitter).
    pub base_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    /// Times one turn may be parked for a usage limit.
    pub max_parks: Option<u32>,
    /// Longest park, whatever reset time the backend names.
    pub max_park_ms: Option<u64>,
    /// Park time when the backend names no reset time.
    pub default_park_ms: Option<u64>,
    /// Failed attempts of one agent, in a row, after which the run pauses and asks the
    /// user (`needs-you`); `None`: never.
    #[serde(default)]
    pub needs_you_after: Option<u32>,
}

/// How agent processes are stopped and watched (a top-level `process` node); `None`
/// keeps the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSettings {
    /// Time a stopped agent's process group gets between SIGTERM and SIGKILL (5 s).
    pub kill_grace_ms: Option<u64>,
    /// An agent CLI silent this long (no stdout, no stderr) is ended (20 min).
    pub idle_timeout_ms: Option<u64>,
}

/// How each agent's worktree is set up (a top-level `worktree` node).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeSettings {
    /// Files copied from the project into each new worktree (`.env`…); gitignored
    /// files listed in `.worktreeinclude` are copied too.
    pub copy: Vec<String>,
    /// Directories linked to the project's own (`node_modules`…).
    pub link: Vec<String>,
    /// Shell commands run in each new worktree, in order; a failure fails the agent.
    pub setup: Vec<String>,
    /// Time each set-up command may take (default 300 s).
    pub setup_timeout_ms: Option<u64>,
}

/// Permission policies of the config file (a top-level `permissions` node and
/// `backend "<name>" { permissions … }` nodes); `None` keeps the flag or the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionSettings {
    /// For every agent of the file.
    pub all: Option<Permissions>,
    /// Backend name → the policy of every agent on that backend.
    pub backends: BTreeMap<String, Permissions>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentsConfig {
    pub source: ConfigSource,
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub process: ProcessSettings,
    #[serde(default)]
    pub worktree: WorktreeSettings,
    pub permissions: PermissionSettings,
    /// Top-level `gate` nodes: every agent that may change files runs them.
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// Top-level `review` nodes: the review steps of every agent that may change files,
    /// unless its group or itself names others.
    #[serde(default)]
    pub reviews: Vec<ReviewSpec>,
    /// `price` nodes, before the built-in prices.
    #[serde(default)]
    pub prices: crate::config::prices::PriceTable,
    /// `tracks { track "core" categories="api" "db" }`: how `--features` runs the
    /// backlog's categories (empty: one track per parallel slot).
    #[serde(default)]
    pub tracks: Vec<crate::config::features::TrackSpec>,
}

/// A problem with the meaning of a config (not its syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    pub message: String,
    /// Index of the group and agent the problem is about, to find its location.
    pub group: usize,
    pub agent: Option<usize>,
}

impl AgentsConfig {
    /// Every tier's `key-env` variable, with its tier and group: (variable, tier, group).
    pub fn tier_key_vars(&self) -> Vec<(&str, &'static str, &str)> {
        let mut vars = Vec::new();
        for group in &self.groups {
            for (name, tier) in [("strong", &group.tiers.strong), ("fast", &group.tiers.fast)] {
                if let Some(var) = &tier.key_env {
                    vars.push((var.as_str(), name, group.name.as_str()));
                }
            }
        }
        vars
    }

    /// Checks ids, dependencies and cycles; returns the first problem found.
    pub fn validate(&self) -> Result<(), SpecProblem> {
        if self.groups.is_empty() {
            return Err(SpecProblem {
                message: "the config defines no group and no agent".into(),
                group: 0,
                agent: None,
            });
        }
        let mut group_names = HashSet::new();
        for (g, group) in self.groups.iter().enumerate() {
            let problem = |message: String, agent: Option<usize>| SpecProblem {
                message,
                group: g,
                agent,
            };
            if !group_names.insert(group.name.as_str()) {
                return Err(problem(
                    format!("group `{}` is defined twice", group.name),
                    None,
                ));
            }
            if group.agents.is_empty() {
                return Err(problem(
                    format!("group `{}` has no agents", group.name),
                    None,
                ));
            }
            let mut ids = HashSet::new();
            for (a, agent) in group.agents.iter().enumerate() {
                if let Some(message) = agent_id_problem(&agent.id) {
                    return Err(problem(message, Some(a)));
                }
                if !ids.insert(agent.id.as_str()) {
                    return Err(problem(
                        format!(
                            "agent `{}` is defined twice in group `{}`",
                            agent.id, group.name
                        ),
                        Some(a),
                    ));
                }
                if agent.plan_prompt.trim().is_empty() {
                    return Err(problem(
                        format!("agent `{}` has no plan prompt", agent.id),
                        Some(a),
                    ));
                }
                if agent.follow_up_enabled && agent.follow_up_prompt.trim().is_empty() {
                    return Err(problem(
                        format!(
                            "agent `{}` has follow-up enabled but no follow-up prompt",
                            agent.id
                        ),
                        Some(a),
                    ));
                }
            }
            for (a, agent) in group.agents.iter().enumerate() {
                for dep in &agent.depends_on {
                    if !ids.contains(dep.as_str()) {
                        return Err(problem(
                            format!(
                                "agent `{}` depends on `{dep}`, which is not an agent of group `{}`",
                                agent.id, group.name
                            ),
                            Some(a),
                        ));
                    }
                }
            }
            let edges: Vec<(String, Vec<String>)> = group
                .agents
                .iter()
                .map(|a| (a.id.clone(), a.depends_on.clone()))
                .collect();
            if let Some(cycle) = find_cycle(&edges) {
                return Err(problem(
                    format!(
                        "agents of group `{}` depend on each other in a cycle: {}",
                        group.name,
                        cycle.join(" → ")
                    ),
                    None,
                ));
            }
            if group.agents.iter().filter(|a| a.blueprint).count() > 1 {
                return Err(problem(
                    format!("group `{}` has more than one blueprint agent", group.name),
                    None,
                ));
            }
        }
        Ok(())
    }
}
