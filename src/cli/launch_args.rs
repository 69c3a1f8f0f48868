//! `launch` command-line arguments. Structs only; `config::resolve` gives them meaning.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "launch",
    version,
    about = "Turn one prompt into a squad of AI coding agents",
    long_about = "Turn one prompt into a squad of AI coding agents.\n\n\
        Runs planner → researcher → builder, then the specialist agents of the builder's \
        blueprint as a dependency graph, some in parallel. Each agent's log is in \
        .orch/runs/<session>/logs/ and, by default, in its own pane of a Zellij session \
        (--mux tmux: tmux windows; --mux none: progress on stderr only).\n\n\
        Keys in the session: Ctrl+S pauses the squad and shows the interrupt summary in \
        the timeline pane; Alt+S is Zellij's scroll/search; Ctrl+Q (tmux: Ctrl+B d) \
        leaves while the run goes on, and `launch attach` comes back. Ctrl+C with \
        --mux none, or `launch ctl pause`, pauses too; `launch ctl resume` continues.",
    args_conflicts_with_subcommands = true
)]
pub struct LaunchCli {
    #[command(subcommand)]
    pub command: Option<LaunchCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum LaunchCommand {
    /// Control a running squad through its control socket.
    Ctl(CtlArgs),
    /// Show a run's Zellij/tmux session again (rebuilt if it was closed).
    Attach(AttachArgs),
    /// List the runs of this repository with their state, and which can be resumed.
    Ls(LsArgs),
    /// Go on with a stopped, failed or crashed run, from its audit store.
    ///
    /// Turns that finished are not run again (their answers are given back); a turn
    /// that was cut off continues on its conversation (`codex exec resume`, `claude
    /// --resume`, `gemini -r`), told what it had done; agents' worktrees and branches
    /// are reused as they are. Same session, same hash chain. A run that succeeded is
    /// followed up with `launch continue` instead; a store whose chain does not verify
    /// is refused unless --force (the rows it reads are checked before it starts, the
    /// whole chain while its first agents start: nothing merges before that passed).
    /// Flags such as --mux, --max-tokens or --notify apply
    /// to the resumed run; the task, agents and backends are the stored run's.
    Resume(ResumeArgs),
    /// Start a new run that follows up a finished one.
    ///
    /// Its run branch starts at the earlier run's branch (orch/<session>), and its
    /// planner is told the earlier run's task, plan and final answers. Its backend and
    /// model are the earlier run's unless given.
    Continue(ContinueArgs),
    /// The status board of a run: its state and one row per agent.
    ///
    /// A running run answers live; a finished or crashed one is read from the audit
    /// store. With --watch, a terminal UI that redraws as the run changes: p pauses, r
    /// resumes, s stops (after a y), q quits the board (the run goes on).
    Status(StatusArgs),
    /// Merge a run's branch (orch/<session>) into your current branch.
    ///
    /// A fast-forward when possible, else a merge commit. Refuses, changing nothing, when
    /// your uncommitted changes would be overwritten or the merge would conflict.
    Merge(MergeArgs),
    /// Show what a run, or one of its agents, changed (stat and patch).
    Diff(DiffArgs),
    /// Remove the worktrees and orch branches of finished runs.
    ///
    /// Removes the agent worktrees (.orch/worktrees/<session>) and the branches
    /// orch/<session> and orch-agent/<session>/* of finished runs. A run with a worktree
    /// holding uncommitted changes, or an agent branch not merged into its run branch, is
    /// left alone and named, unless --force. A running run is never touched; logs and the
    /// audit store stay.
    Clean(CleanArgs),
    /// Run the orchestrator of a prepared run directory (spawned by `launch` itself).
    #[command(hide = true)]
    Orchestrate(OrchestrateArgs),
    /// Stop the agents of an orchestrator that went away (spawned by `launch` itself).
    #[command(name = "__watchdog", hide = true)]
    Watchdog(WatchdogArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum NotifyWay {
    /// A bell and an OSC 9/777 notification through the attached terminal.
    Terminal,
    /// `notify-send`.
    Desktop,
    /// Neither.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum MuxChoice {
    /// One Zellij session with one pane per agent.
    Zellij,
    /// One tmux session (private socket) with one pane per agent.
    Tmux,
    /// No panes: run in the foreground with progress on stderr.
    None,
}

/// Where agents work (see `--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationChoice {
    /// One git worktree and branch per agent; work reaches you through `launch merge`.
    Worktree,
    /// Every agent in the project's own working tree.
    Shared,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// The task for the squad.
    #[arg(short, long, value_name = "TEXT")]
    pub prompt: Option<String>,

    /// Take the task from this file (Markdown or text), and keep watching it: when it
    /// changes during the run, the turns in flight finish, prompts built from then on
    /// carry the new text, and the next wave is planned with the old and the new text
    /// (each revision, its SHA-256 and diff, is in the timeline and the store).
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub task_file: Option<PathBuf>,

    /// Work through a features backlog (agent-orchestrator's features.json: an array of
    /// {id, category, name, description, steps, status}, or {"features": [...]}). Every
    /// feature not yet `passed` becomes an agent in its own worktree, on tracks by
    /// category (`tracks` in orch.kdl; else one per parallel slot), checked by its gates
    /// and a reviewer against its steps; each ends `passed` or `failed` with its
    /// attempts, written into the file on the run branch. --prompt adds to each
    /// feature's assignment.
    #[arg(long, value_name = "FILE")]
    pub features: Option<PathBuf>,

    /// Agent runtime: codex, claude, gemini, anthropic, minimax, openai, demo
    /// [env: ORCHESTRATED_CODEX_BACKEND] [default: codex]
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,

    /// Model for every agent that does not set its own.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Use the backend's cheapest model for every turn.
    #[arg(long)]
    pub mini: bool,

    /// What agents may do without asking: read-only, edit (files), act (edit files and
    /// run commands). Default: planners read-only, every other agent act. An agent's or
    /// backend's `permissions` in orch.kdl wins over this flag.
    #[arg(long, value_name = "POLICY", value_parser = parse_permissions)]
    pub permissions: Option<crate::agent::Permissions>,

    /// A shell command that decides whether an agent's work is done (repeatable). It runs
    /// in the worktree of every agent that may change files, after its final turn; a
    /// failure gets a fix turn, up to 3 runs, then the agent fails. orch.kdl adds more:
    /// `gate "cargo test" timeout-s=600 max-attempts=3`, at the top or in an agent.
    #[arg(long = "gate", value_name = "CMD")]
    pub gates: Vec<String>,

    /// A token budget for the run (input and output tokens of every agent). At 80 % the
    /// timeline warns; at 100 % the run pauses as Ctrl+S does, the budget named in the
    /// interrupt summary; `launch ctl resume --max-tokens N` continues with a larger one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,

    /// A cost budget for the run, in US dollars, from each model's price (built in for
    /// common models; `price "<model>" input=… output=…` in orch.kdl, dollars per million
    /// tokens). Turns on a model without a price count tokens only. At 80 % the timeline
    /// warns; at 100 % the run pauses; `launch ctl resume --max-cost USD` continues.
    #[arg(long, value_name = "USD", value_parser = parse_dollars)]
    pub max_cost: Option<u64>,

    /// A command told when the run needs you (a spent budget, an agent it cannot get
    /// past), nears a budget (80 %), finishes or fails: it runs with `sh -c` and gets one
    /// JSON object on stdin (`event`, `run`, `reason`, `agent`, `failed`, `summary`); it
    /// may take up to 10 s.
    #[arg(long, value_name = "CMD")]
    pub notify_command: Option<String>,

    /// How the run tells you it needs you, finished or failed: `terminal` (a bell and a
    /// desktop notification, OSC 9 or 777, through the terminal the run's Zellij or tmux
    /// client is attached to), `desktop` (`notify-send`, when installed), or `none`.
    #[arg(
        long,
        value_name = "WAYS",
        value_enum,
        value_delimiter = ',',
        default_value = "terminal,desktop"
    )]
    pub notify: Vec<NotifyWay>,

    /// Model for `--backend minimax` [default: MiniMax-M2.1].
    #[arg(long, value_name = "MODEL")]
    pub minimax_model: Option<String>,

    /// Base URL of an HTTP backend (OpenAI-compatible or Anthropic API).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Where agents' panes go [default: zellij; ORCH_ZELLIJ_BIN/ORCH_TMUX_BIN name the binary].
    #[arg(long, value_enum, value_name = "MUX")]
    pub mux: Option<MuxChoice>,

    /// Agents config (KDL, or the seed's JSON) [env: ORCHESTRATED_CODEX_AGENTS_CONFIG]
    /// [default: orch.kdl in the project root, else the built-in squad].
    #[arg(long, value_name = "FILE")]
    pub agents_config: Option<PathBuf>,

    /// Run only these groups of the agents config, in file order.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub groups: Vec<String>,

    /// After the builder's wave, let an autonomous orchestrator plan further waves.
    #[arg(long)]
    pub autonomous: bool,

    /// Pass handoff notes from wave to wave (implies --autonomous).
    #[arg(long)]
    pub relay: bool,

    /// Ask the builder for independent specialists only.
    #[arg(long)]
    pub parallel: bool,

    /// Waves the autonomous orchestrator may launch [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_waves: Option<u32>,

    /// Agents one blueprint may define [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_agents: Option<u32>,

    /// Agents running at the same time [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_parallel: Option<u32>,

    /// Single-turn agents that answer in one sentence; no dynamic waves.
    #[arg(long, conflicts_with = "concise_full")]
    pub concise: bool,

    /// Like --concise, but the builder's blueprint still runs.
    #[arg(long)]
    pub concise_full: bool,

    /// Print a token table per agent, wave and run at the end.
    #[arg(long)]
    pub metrics: bool,

    /// Print the size (chars, bytes, lines) of every prompt before it is sent.
    #[arg(long)]
    pub debug_prompt: bool,

    /// Print every agent event live on stderr instead of a spinner.
    #[arg(long)]
    pub stream: bool,

    /// Repository the agents work in [default: the git root above the current directory].
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,

    /// Where agents work: `worktree` (each its own git worktree and branch, merged into
    /// the run branch `orch/<session>`) or `shared` (all in the project's own tree)
    /// [default: worktree in a git repository; elsewhere shared must be asked for].
    #[arg(long, value_enum, value_name = "MODE")]
    pub isolation: Option<IsolationChoice>,

    /// Commit the run starts from [default: HEAD].
    #[arg(long, value_name = "REF", conflicts_with = "include_uncommitted")]
    pub base: Option<String>,

    /// Start from a snapshot of the working tree (uncommitted and untracked files
    /// included); the tree, index and stash are left as they are.
    #[arg(long)]
    pub include_uncommitted: bool,

    /// Name of this run [env: AGENTFS_SESSION] [default: run-YYYYMMDD-HHMMSS-xxxx].
    #[arg(long, alias = "agentfs-session", value_name = "NAME")]
    pub session: Option<String>,

    /// Audit store file [env: AGENTFS_PATH] [default: .orch/audit.db].
    #[arg(long, alias = "agentfs-path", value_name = "FILE")]
    pub audit_path: Option<PathBuf>,

    /// Write the audit store to a libSQL server (http, https, libsql) [token: env ORCH_AUDIT_TOKEN].
    #[arg(long, value_name = "URL", conflicts_with = "audit_path")]
    pub audit_url: Option<String>,

    /// Do not write the audit store.
    #[arg(long)]
    pub no_audit: bool,

    /// Also write each memory artifact as a plain file in this directory
    /// [env: CODEX_MEMORY_DIR] (the audit store keeps them under /memory/artifacts either way).
    #[arg(long, value_name = "DIR")]
    pub memory_dir: Option<String>,

    /// Go on with this stopped, failed or crashed run (the same as `launch resume`).
    #[arg(long, value_name = "SESSION", conflicts_with = "prompt")]
    pub resume: Option<String>,

    /// With --resume: resume even though the audit store's hash chain does not verify.
    #[arg(long)]
    pub force: bool,

    /// Make the demo backend misbehave, for tests: comma-separated items such as
    /// `delay=MS`, `events=N`, `gap=MS`, `blueprint=cycle`, `blueprint=bad-json-once`,
    /// `crash=AGENT`, `huge=AGENT`, `fail=AGENT:transient`, `waves=N`
    /// [env: ORCH_DEMO_SCENARIO].
    #[arg(long, value_name = "SPEC")]
    pub demo_scenario: Option<String>,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    #[arg(value_enum)]
    pub command: CtlCommand,
    /// The run to control [default: the newest run of this repository].
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    /// The repository of the run [default: the git root above the current directory].
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// With `resume`: the run's new token budget (a run paused by `--max-tokens`
    /// resumes only with a larger one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,
    /// With `resume`: the run's new cost budget in US dollars (a run paused by
    /// `--max-cost` resumes only with a larger one).
    #[arg(long, value_name = "USD", value_parser = parse_dollars)]
    pub max_cost: Option<u64>,
}

/// `2.50` (US dollars) as micro-dollars; more than zero, at most a million dollars.
fn parse_dollars(text: &str) -> Result<u64, String> {
    let amount: f64 = text
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("`{text}` is not an amount of dollars (such as 2.50)"))?;
    if !(amount > 0.0 && amount <= 1e6) {
        return Err(format!(
            "`{text}`: give an amount above 0 and at most 1000000"
        ));
    }
    Ok((amount * 1e6).round() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CtlCommand {
    /// Let running turns finish, start nothing new, write the interrupt summary.
    Pause,
    /// Continue a paused run.
    Resume,
    /// Show what runs, what finished and what is pending.
    Status,
    /// Stop the run: end running turns and write the interrupt summary.
    Stop,
    /// What the Ctrl+S keybind runs: pause, and show where the summary is.
    Interrupt,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The run to show [default: the newest Zellij/tmux run of this repository].
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    /// The repository of the run [default: the git root above the current directory].
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run [default: the newest run of this repository].
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    /// Keep the board on screen and redraw it as the run changes.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
    /// Print the board's model as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to go on with (`launch ls` marks which can be resumed).
    #[arg(value_name = "SESSION")]
    pub run_name: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ContinueArgs {
    /// The finished run to follow up.
    #[arg(value_name = "SESSION")]
    pub parent: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct OrchestrateArgs {
    /// The run directory (the resolved config comes as JSON on stdin).
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct WatchdogArgs {
    /// Time between SIGTERM and SIGKILL to the agents' process groups.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub grace_ms: u64,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The run to merge.
    pub session: String,
    /// The repository [default: the git root above the current directory].
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The run to show.
    pub session: String,
    /// Show only this agent's changes (from its base to its branch).
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Print the stat only, without the patch.
    #[arg(long)]
    pub stat: bool,
    /// The repository [default: the git root above the current directory].
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Clean this run.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub session: Option<String>,
    /// Clean every finished run of this repository.
    #[arg(long)]
    pub all: bool,
    /// Also remove worktrees with uncommitted changes and unmerged agent branches.
    #[arg(long)]
    pub force: bool,
    /// The repository [default: the git root above the current directory].
    #[arg(long, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
}

fn parse_permissions(text: &str) -> Result<crate::agent::Permissions, String> {
    text.parse()
}
