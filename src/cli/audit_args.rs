//! Arguments of `orch-audit` (clap derive). No logic: `audit::commands::resolve`
//! turns these plus the environment into an `AuditConfig`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Inspect the append-only audit store of orch runs: runs, agents, turns, events,
/// memory artifacts and the AgentFS files; verify that nothing was changed.
///
/// Exit codes: 0 success; 1 `verify` found a problem; 2 bad arguments; 3 the store
/// could not be opened or read (or is not an orch store, or a newer one), or the report
/// could not be written; 4 no such run or path; 5 `events --follow` found the run crashed; 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "orch-audit", version, max_term_width = 100)]
pub struct AuditArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print JSON (one document, or JSON lines for streams) on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The audit database file [env: AGENTFS_PATH] [default: <project-root>/.orch/audit.db].
    #[arg(
        long,
        global = true,
        visible_alias = "agentfs-path",
        value_name = "FILE"
    )]
    pub audit_path: Option<PathBuf>,

    /// A libSQL server instead of a file (http://, https:// or libsql://); the token
    /// comes from ORCH_AUDIT_TOKEN.
    #[arg(long, global = true, value_name = "URL")]
    pub audit_url: Option<String>,

    /// The project whose `.orch/audit.db` to read [default: the git repository root
    /// above the current directory, else the current directory].
    #[arg(long, global = true, value_name = "DIR")]
    pub project_root: Option<PathBuf>,

    /// Read and write memory artifacts in this directory instead of the store's
    /// `/memory/artifacts` [env: CODEX_MEMORY_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    pub memory_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List runs, newest first: session, start, status, agents, tokens.
    Runs {
        /// Show at most this many runs.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One run: its waves, and per agent its turns, outcomes, durations and tokens.
    Show {
        /// Session name, such as run-20261122-101010-abcd (see `orch-audit runs`).
        session: String,
    },
    /// The finished turns of a run.
    Turns {
        /// Session name (see `orch-audit runs`).
        session: String,
        /// Only this agent's turns.
        #[arg(long)]
        agent: Option<String>,
        /// Only plan or only follow-up turns.
        #[arg(long = "type", value_enum)]
        turn_type: Option<TurnTypeArg>,
        /// Show at most this many turns.
        #[arg(long)]
        limit: Option<usize>,
        /// Include full prompts and responses.
        #[arg(long)]
        content: bool,
    },
    /// The events of a run, in order.
    Events {
        /// Session name (see `orch-audit runs`).
        session: String,
        /// Only this agent's events.
        #[arg(long)]
        agent: Option<String>,
        /// Event kind, such as message, command, turn_finished.
        #[arg(long)]
        kind: Option<String>,
        /// Only events at or after this time: RFC 3339, or an age such as 30s, 10m, 2h, 1d.
        #[arg(long)]
        since: Option<String>,
        /// Show at most this many events, the first ones (with --follow: stop after them).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Keep printing new events while the run writes, until it finishes (exit 0) or
        /// is found crashed, its orchestrator gone (exit 5); Ctrl+C stops.
        #[arg(long)]
        follow: bool,
    },
    /// Write one self-contained HTML page about a run: a timeline of agents and turns
    /// (waves, retries, parks, pauses, merges), dependencies, tokens, each agent's final
    /// answer and its changes. Opens offline, prints, runs no script.
    Report {
        /// Session name (see `orch-audit runs`).
        session: String,
        /// Where to write the page (`-` for stdout) [default: ./<session>.html].
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Recompute the hash chains and AgentFS invariants; exit 1 naming the first bad row.
    Verify {
        /// Only this run (the AgentFS invariants are always checked); default: every run.
        session: Option<String>,
    },
    /// Write every event of a run to stdout.
    Export {
        /// Session name (see `orch-audit runs`).
        session: String,
        /// Output format: one JSON object per event and line.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// List an AgentFS directory, such as /runs/<session>/agents.
    Ls {
        /// An absolute AgentFS path.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print what the agents of a run changed: each agent's patch as the run stored it
    /// (`changes.patch`), after its commits and stat.
    Diff {
        /// The run.
        session: String,
        /// Only this agent.
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
    },
    /// Print an AgentFS file.
    Cat {
        /// An absolute AgentFS path, such as /runs/<session>/agents/planner/001-plan.json.
        path: String,
    },
    /// Memory artifacts: one per agent turn, plus condensed summaries.
    #[command(subcommand)]
    Memory(MemoryCommand),
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// List memory artifacts, newest first.
    Inspect {
        /// Only this agent's artifacts.
        #[arg(long)]
        agent: Option<String>,
        /// Only plan, follow-up or summary artifacts.
        #[arg(long = "type", value_enum)]
        artifact_type: Option<ArtifactTypeArg>,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Include full prompts and responses.
        #[arg(long)]
        content: bool,
    },
    /// Append summaries of older artifacts (grouped by agent and type); deletes nothing.
    Condense {
        /// Only artifacts older than this many days.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// Only groups with at least this many artifacts.
        #[arg(long, default_value_t = 3)]
        min_group_size: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TurnTypeArg {
    Plan,
    FollowUp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArtifactTypeArg {
    Plan,
    FollowUp,
    Summary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}
