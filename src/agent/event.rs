//! The normalized event model every backend speaks.
//!
//! Owns `AgentEvent` (what one agent turn streams), `Usage`, and the outcome and
//! failure classes of a turn. Parsers for each backend convert their wire format into
//! these; nothing here knows about logs, panes or the audit store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One thing an agent did or said during a turn, normalized across backends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The backend opened (or resumed) a thread/session.
    Started { thread_id: Option<String> },
    /// A complete assistant message (deltas are joined before this is emitted).
    Message { text: String },
    /// Reasoning or thinking text the backend chose to show.
    Reasoning { text: String },
    /// A shell command the agent ran (or is running).
    Command {
        id: Option<String>,
        command: String,
        status: ItemStatus,
        exit_code: Option<i32>,
        output: Option<String>,
    },
    /// A file the agent added, changed or removed.
    FileChange {
        path: String,
        change: String,
        status: ItemStatus,
    },
    /// A tool call (MCP, web search, function call, todo list update...).
    ToolCall {
        id: Option<String>,
        name: String,
        arguments: String,
        status: ItemStatus,
        result: Option<String>,
    },
    /// The permission policy this turn runs under, and the CLI flags that carry it.
    PermissionsSet { policy: String, flags: String },
    /// The CLI refused a tool call the agent made because the policy does not allow it.
    PermissionDenied { tool: String, detail: String },
    /// Tokens spent by this turn so far (a delta, never thread-cumulative).
    Usage(Usage),
    /// The backend reported a rate limit or usage limit.
    RateLimit {
        message: String,
        retry_after_secs: Option<u64>,
        resets_at: Option<String>,
    },
    /// An error the backend reported on a structured channel.
    Error { message: String },
    /// A line of the agent's output that is not an event of its format (a warning the
    /// CLI printed, a cut line), kept as text and bounded in length.
    RawLine { text: String },
    /// The turn ended.
    Finished { outcome: TurnOutcome },
}

impl AgentEvent {
    /// Short snake_case name of the variant, as used in logs and the audit store.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentEvent::Started { .. } => "started",
            AgentEvent::Message { .. } => "message",
            AgentEvent::Reasoning { .. } => "reasoning",
            AgentEvent::Command { .. } => "command",
            AgentEvent::FileChange { .. } => "file_change",
            AgentEvent::ToolCall { .. } => "tool_call",
            AgentEvent::PermissionsSet { .. } => "permissions_set",
            AgentEvent::PermissionDenied { .. } => "permission_denied",
            AgentEvent::Usage(_) => "usage",
            AgentEvent::RateLimit { .. } => "rate_limit",
            AgentEvent::Error { .. } => "error",
            AgentEvent::RawLine { .. } => "raw_line",
            AgentEvent::Finished { .. } => "finished",
        }
    }
}

/// Progress of an item (command, file change, tool call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    Completed,
    Failed,
}

/// Token counts. Always a delta for one turn unless stated otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_output_tokens += other.reasoning_output_tokens;
    }

    /// `self - earlier`, saturating: turns a thread-cumulative count into a delta.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_sub(earlier.cached_input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            reasoning_output_tokens: self
                .reasoning_output_tokens
                .saturating_sub(earlier.reasoning_output_tokens),
        }
    }

    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// How a turn ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TurnOutcome {
    Completed,
    Failed {
        class: FailureClass,
        message: String,
    },
    /// The stream ended without a final event: the agent crashed or was killed.
    Interrupted {
        message: String,
    },
}

impl TurnOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, TurnOutcome::Completed)
    }

    pub fn label(&self) -> &'static str {
        match self {
            TurnOutcome::Completed => "completed",
            TurnOutcome::Failed { .. } => "failed",
            TurnOutcome::Interrupted { .. } => "interrupted",
        }
    }
}

/// Why a turn failed, decided from structured channels only (never assistant text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureClass {
    /// The account hit its usage limit: park until the reset time; not an attempt.
    UsageLimit { resets_in_secs: Option<u64> },
    /// 429 with retry-after, 5xx, overloaded, network: back off and retry.
    Transient { retry_after_secs: Option<u64> },
    /// Auth, bad request, quota or spend cap, max turns: fail or fall back.
    Terminal,
}

impl FailureClass {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FailureClass::UsageLimit { resets_in_secs } => resets_in_secs.map(Duration::from_secs),
            FailureClass::Transient { retry_after_secs } => {
                retry_after_secs.map(Duration::from_secs)
            }
            FailureClass::Terminal => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            FailureClass::UsageLimit { .. } => "usage_limit",
            FailureClass::Transient { .. } => "transient",
            FailureClass::Terminal => "terminal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_since_turns_cumulative_counts_into_deltas() {
        let first = Usage {
            input_tokens: 100,
            cached_input_tokens: 10,
            output_tokens: 5,
            reasoning_output_tokens: 0,
        };
        let second = Usage {
            input_tokens: 250,
            cached_input_tokens: 40,
            output_tokens: 9,
            reasoning_output_tokens: 3,
        };
        assert_eq!(
            second.since(&first),
            Usage {
                input_tokens: 150,
                cached_input_tokens: 30,
                output_tokens: 4,
                reasoning_output_tokens: 3
            }
        );
        // A thread that was reset (cumulative went down) never yields negative usage.
        assert_eq!(first.since(&second), Usage::default());
    }

    #[test]
    fn agent_event_wire_form_is_tagged_snake_case() {
        let ev = AgentEvent::FileChange {
            path: "src/a.rs".into(),
            change: "update".into(),
            status: ItemStatus::Completed,
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"type":"file_change","path":"src/a.rs","change":"update","status":"completed"}"#
        );
        assert_eq!(serde_json::from_str::<AgentEvent>(&json).unwrap(), ev);
    }
}
