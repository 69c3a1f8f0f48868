//! Domain events of a run: everything the orchestrator and its agents did, in order.
//!
//! These are owned, cloneable values (tier 2). Sinks render them; `wire` turns them
//! into the versioned, persisted form. Nothing here performs I/O.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::agent::backend::{AgentKind, TurnKind};
use crate::agent::event::{AgentEvent, FailureClass, TurnOutcome, Usage};

/// One event with the time it happened.
#[derive(Clone, Debug, PartialEq)]
pub struct OrchEvent {
    pub at: SystemTime,
    pub kind: OrchEventKind,
}

impl OrchEvent {
    pub fn now(kind: OrchEventKind) -> Self {
        OrchEvent {
            at: SystemTime::now(),
            kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OrchEventKind {
    RunStarted {
        session: String,
        prompt: String,
        backend: String,
        project_root: PathBuf,
        groups: Vec<String>,
        /// The resolved config, redacted: what `launch resume` starts the run again
        /// from. Stored, not shown.
        config: Option<Box<serde_json::Value>>,
        /// This start continues the session after a stop or crash (`launch resume`).
        resumed: bool,
        /// The finished run this one follows up (`launch continue`).
        parent: Option<String>,
    },
    GroupStarted {
        group: String,
    },
    WaveScheduled {
        wave: u32,
        kind: WaveKind,
        agents: Vec<String>,
    },
    AgentStarted {
        agent: String,
        role: String,
        kind: AgentKind,
        wave: u32,
        depends_on: Vec<String>,
    },
    TurnStarted {
        agent: String,
        turn: u32,
        /// 1 for the first try of the turn, 2 for its first retry…
        attempt: u32,
        kind: TurnKind,
        backend: String,
        model: Option<String>,
        prompt: PromptStats,
        /// Why the turn is taken, when not as planned: `reviewer critic`, `gate fix`,
        /// `review fix`, `merge resolve`, `repair`.
        purpose: Option<String>,
    },
    /// Something an agent streamed during a turn.
    Agent {
        agent: String,
        turn: u32,
        event: AgentEvent,
    },
    /// A failed attempt and what the runner decided to do about it.
    TurnRetrying {
        agent: String,
        turn: u32,
        class: FailureClass,
        decision: RetryDecision,
        message: String,
    },
    TurnFinished(Box<TurnRecord>),
    AgentFinished {
        agent: String,
        role: String,
        kind: AgentKind,
        wave: u32,
        status: AgentStatus,
        usage: Usage,
    },
    /// An agent's worktree is ready (created, or reused on resume).
    WorktreeReady {
        agent: String,
        path: PathBuf,
        /// `None` for a read-only worktree (core agents).
        branch: Option<String>,
        base: String,
    },
    /// orch committed what the agent changed; the patch goes to the audit store.
    ChangesCommitted(Box<AgentChanges>),
    /// The agent's work is on the run branch, which now ends at `tip`.
    AgentMerged {
        agent: String,
        run_branch: String,
        tip: String,
        commits: usize,
        fast_forward: bool,
    },
    /// A gate ran in an agent's worktree (`attempt` counts its runs for this agent).
    GateFinished {
        agent: String,
        command: String,
        attempt: u32,
        passed: bool,
        /// `None` when it was killed (timeout) or ended by a signal.
        exit_code: Option<i32>,
        timed_out: bool,
        duration_ms: u64,
        /// The end of its output (stdout and stderr), bounded.
        output_tail: String,
    },
    /// A reviewer judged an agent's work (`round` counts its reviews of this agent).
    ReviewFinished {
        agent: String,
        reviewer: String,
        backend: String,
        model: Option<String>,
        round: u32,
        passed: bool,
        /// The verdict's points, in its order.
        points: Vec<ReviewPoint>,
    },
    /// A feature of `--features` changed status: `verifying` when its checks start,
    /// `passed` or `failed` when its agent ends (`attempts`: of every run, this one's
    /// included; `reason`: why it failed).
    FeatureUpdated {
        feature: String,
        agent: String,
        track: String,
        status: crate::config::features::FeatureStatus,
        attempts: u32,
        reason: Option<String>,
    },
    /// The agent's work conflicts with the run branch in `paths`.
    MergeConflict {
        agent: String,
        paths: Vec<String>,
        other_side: String,
        /// Whether a resolve turn comes next (false: the agent fails).
        resolving: bool,
    },
    BlueprintAccepted {
        source: String,
        wave: u32,
        agents: Vec<BlueprintAgentSummary>,
    },
    BlueprintRejected {
        source: String,
        attempt: u32,
        error: String,
    },
    Notice {
        level: NoticeLevel,
        message: String,
    },
    PauseRequested {
        source: String,
    },
    RunPaused(Box<InterruptSummary>),
    RunResumed,
    StopRequested {
        source: String,
    },
    /// The task file (`--task-file`) changed while the run went on: revision `revision`
    /// (the first text is revision 0, in `run_started`), its SHA-256, a unified diff
    /// from the text before, and the whole new text.
    TaskRevised {
        revision: u32,
        sha256: String,
        diff: String,
        text: String,
    },
    RunFinished {
        status: RunStatus,
        usage: Usage,
        failed: Vec<String>,
    },
}

/// One point of a reviewer's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPoint {
    pub point: String,
    pub pass: bool,
    #[serde(default)]
    pub note: String,
}

/// What an agent changed in its worktree: its commits since its base and the patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentChanges {
    pub agent: String,
    pub branch: String,
    pub base: String,
    pub head: String,
    pub commits: Vec<crate::workspace::CommitSummary>,
    pub files: Vec<crate::workspace::ChangedFile>,
    pub diffstat: String,
    /// `git diff --binary base head`; stored as `changes.patch`, not in the event row.
    #[serde(skip)]
    pub patch: String,
}

/// Size of a prompt, shown by `--debug-prompt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptStats {
    pub chars: usize,
    pub bytes: usize,
    pub lines: usize,
}

impl PromptStats {
    pub fn of(text: &str) -> Self {
        PromptStats {
            chars: text.chars().count(),
            bytes: text.len(),
            lines: text.lines().count(),
        }
    }
}

/// The full record of one finished turn (what the audit store keeps as a turn file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub agent: String,
    pub role: String,
    pub agent_kind: AgentKind,
    pub wave: u32,
    pub turn: u32,
    /// Which try of the turn this record is (retries keep the turn number).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    pub kind: TurnKind,
    pub prompt: String,
    pub response: String,
    pub usage: Usage,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub backend: String,
    pub model: Option<String>,
    pub thread_id: Option<String>,
    pub outcome: TurnOutcome,
    pub tags: Vec<String>,
    /// What the turn cost (US dollars), when its model has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

fn first_attempt() -> u32 {
    1
}

impl TurnRecord {
    pub fn duration_ms(&self) -> u64 {
        self.finished_at_ms.saturating_sub(self.started_at_ms)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveKind {
    Core,
    Dynamic,
    Continuation,
    Autonomous,
    Relay,
    /// The features of `--features`, on their tracks.
    Features,
}

impl WaveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveKind::Core => "core",
            WaveKind::Dynamic => "dynamic",
            WaveKind::Continuation => "continuation",
            WaveKind::Autonomous => "autonomous",
            WaveKind::Relay => "relay",
            WaveKind::Features => "features",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AgentStatus {
    Succeeded,
    Failed {
        reason: String,
    },
    /// Never ran because a dependency failed.
    Blocked {
        by: String,
    },
    /// Stopped by the user before it finished.
    Stopped,
}

impl AgentStatus {
    pub fn label(&self) -> &'static str {
        match self {
            AgentStatus::Succeeded => "succeeded",
            AgentStatus::Failed { .. } => "failed",
            AgentStatus::Blocked { .. } => "blocked",
            AgentStatus::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RetryDecision {
    /// Wait and try the same backend again.
    Retry { attempt: u32, delay_ms: u64 },
    /// Park until the usage limit resets; does not count as an attempt.
    Park { delay_ms: u64 },
    /// Hand the turn to the next backend of the agent's fallback chain.
    Fallback { to: String },
    /// Give up: the turn fails.
    GiveUp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueprintAgentSummary {
    pub id: String,
    pub role: String,
    pub depends_on: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeLevel {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Stopped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Stopped => "stopped",
        }
    }
}

/// What the squad had done when a pause took effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptSummary {
    pub session: String,
    /// 1-based count of pauses in this run.
    pub number: u32,
    pub requested_by: String,
    pub finished: Vec<String>,
    pub failed: Vec<String>,
    /// Agents that had a turn running when the pause was requested (those turns finished).
    pub in_flight: Vec<String>,
    /// Agents known to the run that have not started yet.
    pub pending: Vec<String>,
    /// Agents that had started but had no turn running (setting up, between turns,
    /// gating, merging): they go on when the run resumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
    pub usage: Usage,
    pub next_steps: Vec<String>,
}
