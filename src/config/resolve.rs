//! Turns `launch` arguments, environment variables and the agents config file into
//! one resolved `Config`. This is the only place that reads environment variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::backend::AgentKind;
use crate::agent::demo::DemoScenario;
use crate::agent::id::is_valid_agent_id;
use crate::agent::permissions::Permissions;
use crate::audit::AuditTarget;
use crate::cli::{IsolationChoice, MuxChoice, NotifyWay, RunArgs};
use crate::config::agents::{
    AgentSpec, AgentsConfig, GateSpec, GroupSpec, OrchestrationSettings, RelaySettings, ReviewSpec,
    SpecProblem,
};
use crate::config::defaults::default_agents;
use crate::config::error::{ConfigError, line_column};
use crate::config::json_file::parse_json;
use crate::config::kdl_file::parse_kdl;
use crate::paths::{RunPaths, default_audit_path, find_repo_root, new_session_name};
use crate::workspace::BaseChoice;

/// Environment variables, captured once (tests pass their own).
pub type Env = BTreeMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

pub const DEFAULT_BACKEND: &str = "codex";
pub const DEFAULT_MAX_WAVES: u32 = 3;
pub const DEFAULT_MAX_AGENTS: u32 = 4;
pub const DEFAULT_MAX_PARALLEL: u32 = 4;
/// Relay cascades stop after this many waves whatever `max_waves` says.
pub const MAX_RELAY_WAVES: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Concise {
    Off,
    /// One turn per agent, one sentence, no dynamic waves.
    NoWaves,
    /// One turn per agent, one sentence, waves still run.
    Full,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub prompt: String,
    /// `--task-file`: where `prompt` came from, watched while the run goes on.
    #[serde(default)]
    pub task_file: Option<PathBuf>,
    /// How often the task file had changed when this run (a resumed one) started: the
    /// next revision is numbered after it.
    #[serde(default)]
    pub task_revision: u32,
    /// `--features`: the backlog as the run started with it (its fixed contract: later
    /// edits of the file do not change what this run does or checks).
    #[serde(default)]
    pub features: Option<crate::config::features::Backlog>,
    pub paths: RunPathsConfig,
    /// Where agents work; `worktree` starts from `base`.
    pub isolation: IsolationChoice,
    pub base: BaseChoice,
    pub backend: String,
    pub model: Option<String>,
    pub mini: bool,
    /// `--permissions`: the policy of every agent that its agent or backend config does
    /// not set; `None` keeps the kind's default (planners read-only, others act).
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// `--gate`: commands every agent that may change files must pass.
    #[serde(default)]
    pub cli_gates: Vec<String>,
    /// `--max-tokens`: the run pauses once it has used this many tokens.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// `--max-cost`, in micro-dollars.
    #[serde(default)]
    pub max_cost_micros: Option<u64>,
    /// `--notify-command`: told (JSON on stdin) when the run needs the user, finishes
    /// or fails.
    #[serde(default)]
    pub notify_command: Option<String>,
    /// `--notify`: a bell and OSC notification through the user's terminal.
    #[serde(default)]
    pub notify_terminal: bool,
    /// `--notify`: `notify-send`.
    #[serde(default)]
    pub notify_desktop: bool,
    /// The terminal `launch` ran in, told of what needs the user (its multiplexer client
    /// draws there); `None` without one.
    #[serde(default)]
    pub notify_tty: Option<PathBuf>,
    pub minimax_model: Option<String>,
    pub base_url: Option<String>,
    pub mux: MuxChoice,
    pub agents: AgentsConfig,
    pub cli_orchestration: OrchestrationSettings,
    pub concise: Concise,
    pub metrics: bool,
    pub debug_prompt: bool,
    pub stream: bool,
    /// The audit store (`None`: `--no-audit`). A remote target's token is filled in from
    /// the environment when the run opens it.
    pub audit: Option<AuditTarget>,
    /// Plain-file mirror of memory artifacts (`--memory-dir`, `CODEX_MEMORY_DIR`).
    pub memory_dir: Option<PathBuf>,
    pub demo: DemoScenario,
    /// The multiplexer binaries (`ORCH_ZELLIJ_BIN`, `ORCH_TMUX_BIN`, else PATH).
    pub mux_programs: MuxPrograms,
    /// `launch resume`: this run continues its session from the audit store (finished
    /// turns are replayed, cut-off ones continue; see `orchestrator::replay`).
    #[serde(default)]
    pub resume: bool,
    /// `launch resume --force`: a resumed run whose audit store does not verify goes on
    /// (and says so) instead of stopping.
    #[serde(default)]
    pub resume_forced: bool,
    /// `launch continue`: the finished run this one follows up.
    #[serde(default)]
    pub parent: Option<ParentRun>,
}

/// The earlier run a `launch continue` run builds on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRun {
    pub session: String,
    /// Its task, plan and final answers, quoted to the planner.
    pub context: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuxPrograms {
    pub zellij: PathBuf,
    pub tmux: PathBuf,
}

impl MuxPrograms {
    pub fn from_env(env: &Env) -> Self {
        let program = |var: &str, name: &str| {
            env.get(var)
                .filter(|value| !value.is_empty())
                .map_or_else(|| PathBuf::from(name), PathBuf::from)
        };
        MuxPrograms {
            zellij: program("ORCH_ZELLIJ_BIN", "zellij"),
            tmux: program("ORCH_TMUX_BIN", "tmux"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPathsConfig {
    pub project_root: PathBuf,
    pub session: String,
}

impl Config {
    pub fn run_paths(&self) -> RunPaths {
        RunPaths::new(&self.paths.project_root, &self.paths.session)
    }

    /// The permission policy of an agent's turn on `backend`: the agent's own setting,
    /// else its backend's, else `--permissions`, else the file's top-level setting, else
    /// the default of its kind. Core agents are found by id in any group.
    pub fn permissions_for(&self, agent: &str, kind: AgentKind, backend: &str) -> Permissions {
        let file = &self.agents.permissions;
        let own = self.configured(agent, kind).and_then(|a| a.permissions);
        own.or_else(|| file.backends.get(backend).copied())
            .or(self.permissions)
            .or(file.all)
            .unwrap_or_else(|| Permissions::default_for(kind))
    }

    /// A core agent's spec in `orch.kdl` (found by id in any group); other kinds have
    /// none.
    fn configured(&self, agent: &str, kind: AgentKind) -> Option<&AgentSpec> {
        match kind {
            AgentKind::Core => self
                .agents
                .groups
                .iter()
                .flat_map(|g| &g.agents)
                .find(|a| a.id == agent),
            _ => None,
        }
    }

    /// The gates an agent must pass: `--gate`, the file's top-level gates, then its own
    /// (a configured agent's); none for an agent that may not change files.
    pub fn gates_for(
        &self,
        agent: &str,
        kind: AgentKind,
        backend: &str,
        group: &str,
    ) -> Vec<GateSpec> {
        if self.permissions_for(agent, kind, backend) == Permissions::ReadOnly {
            return Vec::new();
        }
        let own = self
            .configured(agent, kind)
            .map(|a| a.gates.clone())
            .unwrap_or_default();
        let group = self
            .group(group)
            .map(|g| g.gates.clone())
            .unwrap_or_default();
        self.cli_gates
            .iter()
            .map(|command| GateSpec::new(command))
            .chain(self.agents.gates.iter().cloned())
            .chain(group)
            .chain(own)
            .collect()
    }

    /// The review steps of an agent's work, in order: its own (a configured agent's),
    /// else its group's, else the file's; none for an agent that may not change files.
    pub fn reviews_for(
        &self,
        agent: &str,
        kind: AgentKind,
        backend: &str,
        group: &str,
    ) -> Vec<ReviewSpec> {
        if self.permissions_for(agent, kind, backend) == Permissions::ReadOnly {
            return Vec::new();
        }
        let own = self.configured(agent, kind).map(|a| &a.reviews);
        let group = self.group(group).map(|g| &g.reviews);
        [own, group, Some(&self.agents.reviews)]
            .into_iter()
            .flatten()
            .find(|reviews| !reviews.is_empty())
            .cloned()
            .unwrap_or_default()
    }

    /// The tokens one agent may use: its own `max-tokens`, else its group's.
    pub fn agent_max_tokens(&self, agent: &str, kind: AgentKind, group: &str) -> Option<u64> {
        self.configured(agent, kind)
            .and_then(|a| a.max_tokens)
            .or_else(|| self.group(group).and_then(|g| g.max_tokens))
    }

    fn group(&self, name: &str) -> Option<&GroupSpec> {
        self.agents.groups.iter().find(|g| g.name == name)
    }
}

/// Orchestration settings of one group after group > CLI > default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    pub autonomous: bool,
    pub parallel: bool,
    pub max_waves: u32,
    pub max_agents: u32,
    pub max_parallel: u32,
    pub relay: bool,
    pub require_handoff_note: bool,
    pub relay_graph: BTreeMap<String, Vec<String>>,
}

pub fn group_settings(group: &GroupSpec, cli: &OrchestrationSettings) -> GroupSettings {
    let g = &group.orchestration;
    let relay = g.relay.enabled.or(cli.relay.enabled).unwrap_or(false);
    GroupSettings {
        autonomous: relay || g.autonomous.or(cli.autonomous).unwrap_or(false),
        parallel: g.parallel.or(cli.parallel).unwrap_or(false),
        max_waves: g.max_waves.or(cli.max_waves).unwrap_or(DEFAULT_MAX_WAVES),
        max_agents: g
            .max_agents
            .or(cli.max_agents)
            .unwrap_or(DEFAULT_MAX_AGENTS),
        max_parallel: g
            .max_parallel
            .or(cli.max_parallel)
            .unwrap_or(DEFAULT_MAX_PARALLEL),
        relay,
        require_handoff_note: g.relay.require_handoff_note.unwrap_or(true),
        relay_graph: g.relay.graph.clone(),
    }
}

/// Finds the project root: the flag, else the git root above `cwd`, else `cwd`.
pub fn project_root(flag: Option<&Path>, cwd: &Path) -> Result<PathBuf, ConfigError> {
    let root = match flag {
        Some(path) => cwd.join(path),
        None => find_repo_root(cwd).ok_or_else(|| ConfigError::NotARepository {
            cwd: cwd.to_path_buf(),
        })?,
    };
    if !root.is_dir() {
        return Err(ConfigError::ProjectRoot { path: root });
    }
    Ok(std::fs::canonicalize(&root).unwrap_or(root))
}

/// The backlog of `--features FILE`: its features, those still to do on tracks. Refused
/// when it cannot be read or holds nothing still to do.
fn load_backlog(
    file: &Path,
    root: &Path,
    agents: &AgentsConfig,
    args: &RunArgs,
) -> Result<crate::config::features::Backlog, ConfigError> {
    use crate::config::features::{self, MAX_FEATURES_FILE};
    let invalid =
        |why: String| ConfigError::Invalid(format!("features file {}: {why}", file.display()));
    let text = read_text_file(file, "features file", MAX_FEATURES_FILE)?;
    let mut list = features::parse(&text).map_err(invalid)?;
    if list.is_empty() {
        return Err(invalid("it holds no feature".into()));
    }
    if !list.iter().any(|f| f.is_open()) {
        return Err(invalid(format!(
            "all {} feature(s) have passed: nothing to do (set a feature's status to \"open\" to do it again)",
            list.len()
        )));
    }
    let slots = agents.groups.first().map_or(DEFAULT_MAX_PARALLEL, |group| {
        group_settings(
            group,
            &OrchestrationSettings {
                max_parallel: args.max_parallel,
                ..OrchestrationSettings::default()
            },
        )
        .max_parallel
    });
    let tracks = features::assign_tracks(&mut list, &agents.tracks, slots);
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let repo_path = crate::workspace::repo_root(root)
        .ok()
        .and_then(|repo| std::fs::canonicalize(&repo).ok())
        .and_then(|repo| file.strip_prefix(repo).ok().map(Path::to_path_buf))
        .and_then(|rel| {
            rel.components()
                .map(|c| c.as_os_str().to_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .map(|parts| parts.join("/"));
    Ok(crate::config::features::Backlog {
        file,
        repo_path,
        text,
        features: list,
        tracks,
    })
}

/// Largest task file read (`--task-file`).
pub const MAX_TASK_FILE: u64 = 1 << 20;

/// The text of a task file: UTF-8, at most `MAX_TASK_FILE` bytes.
pub fn read_task_file(path: &Path) -> Result<String, ConfigError> {
    read_text_file(path, "task file", MAX_TASK_FILE)
}

/// A file read whole as UTF-8 text, at most `max` bytes; errors name it as `what`.
fn read_text_file(path: &Path, what: &str, max: u64) -> Result<String, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("{what} {}: {why}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|err| invalid(err.to_string()))?
        .len();
    if len > max {
        return Err(invalid(format!(
            "{len} bytes; a {what} holds at most {max}"
        )));
    }
    let bytes = std::fs::read(path).map_err(|err| invalid(err.to_string()))?;
    String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))
}

pub fn resolve(args: &RunArgs, env: &Env, cwd: &Path) -> Result<Config, ConfigError> {
    let task_file = args.task_file.as_ref().map(|file| cwd.join(file));
    let features_file = args.features.as_ref().map(|file| cwd.join(file));
    let prompt = match (&task_file, &features_file, &args.prompt) {
        (Some(file), _, _) => read_task_file(file)?,
        (None, Some(file), None) => format!(
            "Implement the features still to do of the backlog {}.",
            file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            )
        ),
        (None, _, prompt) => prompt.clone().unwrap_or_default(),
    };
    if prompt.trim().is_empty() {
        return Err(ConfigError::Invalid(match &task_file {
            Some(file) => format!("the task file {} is empty", file.display()),
            None => "a task is needed: pass --prompt \"...\" or --task-file FILE".into(),
        }));
    }
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let session = match args
        .session
        .clone()
        .or_else(|| env.get("AGENTFS_SESSION").cloned())
    {
        Some(name) if is_valid_agent_id(&name) => name,
        Some(name) => {
            return Err(ConfigError::Invalid(format!(
                "session name `{}` is not allowed: use lowercase letters, digits, `-` and `_` (at most 64)",
                name.escape_debug()
            )));
        }
        None => new_session_name(),
    };
    let backend = args
        .backend
        .clone()
        .or_else(|| env.get("ORCHESTRATED_CODEX_BACKEND").cloned())
        .unwrap_or_else(|| DEFAULT_BACKEND.to_owned())
        .to_ascii_lowercase();

    let mut agents = load_agents(args.agents_config.as_deref(), env, &root, cwd)?;
    if !args.groups.is_empty() {
        let known: Vec<String> = agents.groups.iter().map(|g| g.name.clone()).collect();
        for wanted in &args.groups {
            if !known.contains(wanted) {
                return Err(ConfigError::Invalid(format!(
                    "--groups names `{wanted}`, but the agents config has only: {}",
                    known.join(", ")
                )));
            }
        }
        agents.groups.retain(|g| args.groups.contains(&g.name));
    }

    for (var, tier, group) in agents.tier_key_vars() {
        if env.get(var).is_none_or(|v| v.trim().is_empty()) {
            return Err(ConfigError::Invalid(format!(
                "tier `{tier}` of group `{group}` takes its key from the environment variable {var} (key-env), which is not set"
            )));
        }
    }
    let features = match &features_file {
        Some(file) => Some(load_backlog(file, &root, &agents, args)?),
        None => None,
    };

    let audit = audit_target(args, env, cwd, &root);
    let demo_spec = args
        .demo_scenario
        .clone()
        .or_else(|| env.get("ORCH_DEMO_SCENARIO").cloned());
    let demo = DemoScenario::parse(demo_spec.as_deref().unwrap_or(""))
        .map_err(|e| ConfigError::Invalid(format!("invalid demo scenario: {e}")))?;

    let isolation = match args.isolation {
        Some(choice) => choice,
        None => match crate::workspace::repo_root(&root) {
            Ok(_) => IsolationChoice::Worktree,
            Err(crate::workspace::WorkspaceError::NotARepository { .. }) => {
                return Err(ConfigError::Invalid(format!(
                    "`{}` is not in a git repository, so agents cannot each get a worktree: run `git init` and commit there, or pass --isolation shared to let every agent work in that directory",
                    root.display()
                )));
            }
            Err(err) => {
                return Err(ConfigError::Invalid(format!(
                    "agents work in git worktrees, but git could not be asked about `{}`: {err} (install git, or pass --isolation shared)",
                    root.display()
                )));
            }
        },
    };
    if isolation == IsolationChoice::Shared && (args.base.is_some() || args.include_uncommitted) {
        return Err(ConfigError::Invalid(
            "--base and --include-uncommitted choose where worktrees start: they need --isolation worktree".into(),
        ));
    }
    let base = match (&args.base, args.include_uncommitted) {
        (Some(reference), _) => BaseChoice::Ref {
            reference: reference.clone(),
        },
        (None, true) => BaseChoice::Snapshot,
        (None, false) => BaseChoice::Head,
    };

    Ok(Config {
        prompt,
        task_file,
        task_revision: 0,
        features,
        paths: RunPathsConfig {
            project_root: root,
            session,
        },
        isolation,
        base,
        backend,
        model: args.model.clone(),
        mini: args.mini,
        permissions: args.permissions,
        cli_gates: args.gates.clone(),
        max_tokens: args.max_tokens,
        max_cost_micros: args.max_cost,
        notify_command: args.notify_command.clone(),
        notify_terminal: args.notify.contains(&NotifyWay::Terminal)
            && !args.notify.contains(&NotifyWay::None),
        notify_desktop: args.notify.contains(&NotifyWay::Desktop)
            && !args.notify.contains(&NotifyWay::None),
        notify_tty: own_terminal(),
        minimax_model: args.minimax_model.clone(),
        base_url: args.base_url.clone(),
        mux: args.mux.unwrap_or(MuxChoice::Zellij),
        agents,
        cli_orchestration: OrchestrationSettings {
            autonomous: args.autonomous.then_some(true),
            parallel: args.parallel.then_some(true),
            max_waves: args.max_waves,
            max_agents: args.max_agents,
            max_parallel: args.max_parallel,
            relay: RelaySettings {
                enabled: args.relay.then_some(true),
                ..RelaySettings::default()
            },
        },
        concise: if args.concise_full {
            Concise::Full
        } else if args.concise {
            Concise::NoWaves
        } else {
            Concise::Off
        },
        metrics: args.metrics,
        debug_prompt: args.debug_prompt,
        stream: args.stream,
        audit,
        memory_dir: args
            .memory_dir
            .clone()
            .or_else(|| env.get("CODEX_MEMORY_DIR").cloned())
            .map(|dir| cwd.join(dir)),
        demo,
        mux_programs: MuxPrograms::from_env(env),
        resume: false,
        resume_forced: false,
        parent: None,
    })
}

/// The audit store of the flags (`None`: `--no-audit`); a remote target's token is
/// filled in from the environment when it is opened.
pub fn audit_target(args: &RunArgs, env: &Env, cwd: &Path, root: &Path) -> Option<AuditTarget> {
    if args.no_audit {
        None
    } else if let Some(url) = &args.audit_url {
        Some(AuditTarget::Remote {
            url: url.clone(),
            token: String::new(),
        })
    } else {
        let path = args
            .audit_path
            .clone()
            .or_else(|| env.get("AGENTFS_PATH").map(PathBuf::from))
            .map(|p| cwd.join(p))
            .unwrap_or_else(|| default_audit_path(root));
        Some(AuditTarget::Local(path))
    }
}

/// Reads the agents config: flag, env, `orch.kdl`, `agents.out.json`, else built-in.
pub fn load_agents(
    flag: Option<&Path>,
    env: &Env,
    root: &Path,
    cwd: &Path,
) -> Result<AgentsConfig, ConfigError> {
    let explicit = flag.map(|p| cwd.join(p)).or_else(|| {
        env.get("ORCHESTRATED_CODEX_AGENTS_CONFIG")
            .map(|p| cwd.join(p))
    });
    let path = match explicit {
        Some(path) => path,
        None => match ["orch.kdl", "agents.out.json"]
            .iter()
            .map(|n| root.join(n))
            .find(|p| p.is_file())
        {
            Some(found) => found,
            None => return default_agents(),
        },
    };
    read_agents_file(&path)
}

/// Reads and checks an agents file: `orch.kdl`, or the JSON of `agents.out.json`.
pub fn read_agents_file(path: &Path) -> Result<AgentsConfig, ConfigError> {
    let path = path.to_path_buf();
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let config = parse_json(&text, &path)?;
        config.validate().map_err(|p| ConfigError::InFile {
            path: path.clone(),
            message: p.message,
        })?;
        Ok(config)
    } else {
        let (config, locations) = parse_kdl(&text, &path)?;
        config.validate().map_err(|problem: SpecProblem| {
            let offset = locations
                .groups
                .get(problem.group)
                .map(|(group_offset, agents)| {
                    problem
                        .agent
                        .and_then(|a| agents.get(a).copied())
                        .unwrap_or(*group_offset)
                });
            match offset {
                Some(offset) => {
                    let (line, column) = line_column(&text, offset);
                    ConfigError::At {
                        path: path.clone(),
                        line,
                        column,
                        message: problem.message,
                    }
                }
                None => ConfigError::InFile {
                    path: path.clone(),
                    message: problem.message,
                },
            }
        })?;
        Ok(config)
    }
}

/// Settings of the real backends, from the config and environment. Kept out of
/// `Config` because it holds API keys, which must never be written to disk.
pub fn backend_settings(config: &Config, env: &Env) -> crate::agent::BackendSettings {
    let mut settings = crate::agent::BackendSettings {
        env: env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        ..Default::default()
    };
    let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
    settings.codex.bin = get("ORCH_CODEX_BIN").map(PathBuf::from);
    settings.claude.bin = get("ORCH_CLAUDE_BIN").map(PathBuf::from);
    settings.gemini.bin = get("ORCH_GEMINI_BIN").map(PathBuf::from);
    for cli in [
        &mut settings.codex,
        &mut settings.claude,
        &mut settings.gemini,
    ] {
        if config.model.is_some() {
            cli.model = config.model.clone();
        }
    }
    settings.anthropic.api_key = get("ANTHROPIC_API_KEY");
    if let Some(url) = &config.base_url {
        settings.anthropic.base_url = url.clone();
        settings.openai.base_url = url.clone();
    }
    if config.model.is_some() {
        settings.anthropic.model = config.model.clone();
        settings.openai.model = config.model.clone();
    }
    settings.minimax.api_key =
        get("ORCHESTRATED_CODEX_MINIMAX_API_KEY").or_else(|| get("ANTHROPIC_API_KEY"));
    if let Some(url) = get("ORCHESTRATED_CODEX_MINIMAX_BASE_URL") {
        settings.minimax.base_url = url;
    }
    if let Some(model) = &config.minimax_model {
        settings.minimax.model = Some(model.clone());
    }
    settings.openai.api_key = get("OPENAI_API_KEY");
    let process = &config.agents.process;
    if let Some(ms) = process.kill_grace_ms {
        settings.kill_grace = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = process.idle_timeout_ms {
        settings.cli_idle_timeout = std::time::Duration::from_millis(ms);
    }
    settings
}

/// The terminal this process runs in (its standard input's, else its standard error's),
/// as a path another process can open.
pub(crate) fn own_terminal() -> Option<PathBuf> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        std::fs::read_link("/proc/self/fd/0").ok()
    } else if std::io::stderr().is_terminal() {
        std::fs::read_link("/proc/self/fd/2").ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_resolve_agent_then_backend_then_flag_then_file_then_kind() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("orch.kdl"),
            r#"
permissions "edit"
backend "gemini" { permissions "act" }
agent "planner" { plan-prompt "p"; permissions "act" }
agent "builder" { plan-prompt "b" }
"#,
        )
        .unwrap();
        let args = RunArgs {
            prompt: Some("task".into()),
            project_root: Some(root.path().to_path_buf()),
            isolation: Some(IsolationChoice::Shared),
            ..RunArgs::default()
        };
        let mut config = resolve(&args, &Env::new(), root.path()).unwrap();
        let of = |c: &Config, agent: &str, kind: AgentKind, backend: &str| {
            c.permissions_for(agent, kind, backend)
        };
        assert_eq!(
            of(&config, "planner", AgentKind::Core, "codex"),
            Permissions::Act
        );
        assert_eq!(
            of(&config, "builder", AgentKind::Core, "gemini"),
            Permissions::Act
        );
        assert_eq!(
            of(&config, "builder", AgentKind::Core, "codex"),
            Permissions::Edit
        );
        config.permissions = Some(Permissions::ReadOnly);
        assert_eq!(
            of(&config, "api", AgentKind::Dynamic, "codex"),
            Permissions::ReadOnly
        );
        config.permissions = None;
        config.agents.permissions.all = None;
        assert_eq!(
            of(&config, "builder", AgentKind::Core, "codex"),
            Permissions::ReadOnly
        );
        assert_eq!(
            of(&config, "api", AgentKind::Dynamic, "codex"),
            Permissions::Act
        );
        // A dynamic agent that shares a core agent's id does not inherit its setting.
        assert_eq!(
            of(&config, "planner", AgentKind::Dynamic, "claude"),
            Permissions::Act
        );
    }
}
