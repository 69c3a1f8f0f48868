//! An agent's life as data: one enum that the status reply, the interrupt summaries,
//! `launch ctl status` and the run report all read.
//!
//! Owns the states and their labels. Does not decide transitions (the run state does,
//! from what the dispatcher hears).

use serde::{Deserialize, Serialize};

use crate::agent::backend::AgentKind;
use crate::agent::event::Usage;
use crate::events::event::AgentStatus;

/// Where one agent is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentLifecycle {
    /// Known to the run, not started (waiting for its dependencies or a free slot).
    Queued,
    /// Started; its first turn has not begun.
    Starting,
    /// Its worktree is being made.
    SettingUp,
    /// Turn `turn` is running, try `attempt` of it.
    Running {
        turn: u32,
        attempt: u32,
    },
    /// Turn `turn` failed and will be tried again after a pause.
    Retrying {
        turn: u32,
        attempt: u32,
    },
    /// Waiting for a usage limit to reset, until `until_ms` (Unix milliseconds).
    Parked {
        turn: u32,
        until_ms: u64,
    },
    /// Waiting for the run to be resumed before its next turn.
    Paused,
    /// Its gates run (`run` counts the runs of its gates).
    Gating {
        run: u32,
    },
    /// A reviewer judges its work (`round` counts its reviews).
    Reviewing {
        round: u32,
        reviewer: String,
    },
    /// Its work is being committed and merged into the run branch.
    Merging,
    /// It cannot go on without the user: the run paused, and `ctl resume` lets it try
    /// again.
    NeedsYou {
        reason: String,
    },
    Succeeded,
    Failed {
        reason: String,
    },
    /// Never ran: `by` (a dependency, maybe indirect) did not succeed.
    Blocked {
        by: String,
    },
    Stopped,
}

impl AgentLifecycle {
    /// The state's name as `launch ctl status` shows it.
    pub fn label(&self) -> String {
        match self {
            AgentLifecycle::Queued => "queued".into(),
            AgentLifecycle::Starting => "starting".into(),
            AgentLifecycle::SettingUp => "setting up its worktree".into(),
            AgentLifecycle::Merging => "merging".into(),
            AgentLifecycle::Gating { run } => format!("gating (run {run})"),
            AgentLifecycle::Reviewing { round, reviewer } => {
                format!("in review by {reviewer} (round {round})")
            }
            AgentLifecycle::NeedsYou { reason } => format!("needs you: {reason}"),
            AgentLifecycle::Running { turn, attempt: 1 } => format!("running turn {turn}"),
            AgentLifecycle::Running { turn, attempt } => {
                format!("running turn {turn}, attempt {attempt}")
            }
            AgentLifecycle::Retrying { turn, attempt } => {
                format!("retrying turn {turn} (attempt {attempt})")
            }
            AgentLifecycle::Parked { turn, until_ms } => {
                format!("parked in turn {turn} until {}", clock(*until_ms))
            }
            AgentLifecycle::Paused => "paused".into(),
            AgentLifecycle::Succeeded => "succeeded".into(),
            AgentLifecycle::Failed { .. } => "failed".into(),
            AgentLifecycle::Blocked { by } => format!("blocked by {by}"),
            AgentLifecycle::Stopped => "stopped".into(),
        }
    }

    /// True once the agent will do nothing more.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            AgentLifecycle::Succeeded
                | AgentLifecycle::Failed { .. }
                | AgentLifecycle::Blocked { .. }
                | AgentLifecycle::Stopped
        )
    }

    /// True while its task runs (started and not finished).
    pub fn is_active(&self) -> bool {
        !self.is_finished() && *self != AgentLifecycle::Queued
    }

    pub fn from_status(status: &AgentStatus) -> Self {
        match status {
            AgentStatus::Succeeded => AgentLifecycle::Succeeded,
            AgentStatus::Failed { reason } => AgentLifecycle::Failed {
                reason: reason.clone(),
            },
            AgentStatus::Blocked { by } => AgentLifecycle::Blocked { by: by.clone() },
            AgentStatus::Stopped => AgentLifecycle::Stopped,
        }
    }
}

/// `HH:MM` (UTC) of a Unix time in milliseconds.
/// `HH:MM UTC` of a Unix-milliseconds time.
pub(crate) fn clock(ms: u64) -> String {
    let minutes = (ms / 60_000) % (24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// One agent as the run knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEntry {
    pub id: String,
    pub role: String,
    pub kind: AgentKind,
    pub group: String,
    pub wave: u32,
    pub depends_on: Vec<String>,
    pub lifecycle: AgentLifecycle,
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_turn_attempt_and_cause() {
        assert_eq!(
            AgentLifecycle::Running {
                turn: 2,
                attempt: 3
            }
            .label(),
            "running turn 2, attempt 3"
        );
        assert_eq!(
            AgentLifecycle::Running {
                turn: 1,
                attempt: 1
            }
            .label(),
            "running turn 1"
        );
        assert_eq!(
            AgentLifecycle::Blocked { by: "api".into() }.label(),
            "blocked by api"
        );
        assert_eq!(
            AgentLifecycle::Parked {
                turn: 1,
                until_ms: (13 * 60 + 5) * 60_000
            }
            .label(),
            "parked in turn 1 until 13:05 UTC"
        );
    }

    #[test]
    fn queued_and_finished_agents_are_not_active() {
        assert!(!AgentLifecycle::Queued.is_active());
        assert!(!AgentLifecycle::Stopped.is_active());
        assert!(AgentLifecycle::Paused.is_active());
        assert!(AgentLifecycle::Starting.is_active());
    }
}
