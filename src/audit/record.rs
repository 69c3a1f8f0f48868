//! The documents the writer stores as files: turn files, memory artifacts and
//! interrupt summaries, plus the paths they live at. Pure functions, no I/O.

use serde_json::{Value, json};

use crate::events::event::{InterruptSummary, TurnRecord};

/// `/runs/<session>/agents/<agent>/<NNN>-<plan|follow-up>.json`.
pub fn turn_path(session: &str, record: &TurnRecord) -> String {
    format!(
        "/runs/{session}/agents/{}/{:03}-{}.json",
        record.agent,
        record.turn,
        record.kind.as_str()
    )
}

/// `/runs/<session>/interrupt-<n>.json`.
/// `/runs/<session>/agents/<agent>/changes.patch` and `changes.json`: what the agent
/// changed in its worktree (the patch, and its commits, files and stat).
pub fn changes_paths(session: &str, agent: &str) -> (String, String) {
    let dir = format!("/runs/{session}/agents/{agent}");
    (
        format!("{dir}/changes.patch"),
        format!("{dir}/changes.json"),
    )
}

pub fn interrupt_path(session: &str, summary: &InterruptSummary) -> String {
    format!("/runs/{session}/interrupt-{}.json", summary.number)
}

pub const ARTIFACTS_DIR: &str = "/memory/artifacts";

/// `/memory/artifacts/<timestamp>__<slug>.json`; the timestamp sorts by time.
pub fn artifact_path(session: &str, record: &TurnRecord) -> String {
    format!(
        "{ARTIFACTS_DIR}/{}__{}-{}-{:03}-{}.json",
        artifact_stamp(record.finished_at_ms),
        session,
        record.agent,
        record.turn,
        record.kind.as_str()
    )
}

/// `20261122T102530123Z` for a time in milliseconds.
pub fn artifact_stamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            ms % 1000
        ),
        Err(_) => format!("{ms}"),
    }
}

pub fn turn_document(session: &str, record: &TurnRecord) -> Value {
    json!({
        "session": session,
        "agent": record.agent,
        "role": record.role,
        "agent_kind": record.agent_kind,
        "wave": record.wave,
        "turn": record.turn,
        "type": record.kind.as_str(),
        "backend": record.backend,
        "model": record.model,
        "thread_id": record.thread_id,
        "prompt": record.prompt,
        "response": record.response,
        "usage": record.usage,
        "started_at_ms": record.started_at_ms,
        "finished_at_ms": record.finished_at_ms,
        "duration_ms": record.duration_ms(),
        "outcome": record.outcome,
        "tags": record.tags,
    })
}

pub fn artifact_document(session: &str, record: &TurnRecord) -> Value {
    json!({
        "kind": "turn",
        "created_at_ms": record.finished_at_ms,
        "session": session,
        "agent": record.agent,
        "role": record.role,
        "type": record.kind.as_str(),
        "tags": record.tags,
        "prompt": record.prompt,
        "response": record.response,
        "usage": record.usage,
    })
}

pub fn interrupt_document(summary: &InterruptSummary) -> Value {
    serde_json::to_value(summary).unwrap_or(Value::Null)
}

/// Pretty JSON with a final newline; the exact bytes stored and hashed.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The `tool_calls` row of a finished turn, so AgentFS timelines show the run.
pub struct ToolCallRow {
    pub name: String,
    pub parameters: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub status: &'static str,
    pub started_at: i64,
    pub completed_at: i64,
    pub duration_ms: i64,
}

pub fn tool_call_row(session: &str, record: &TurnRecord, path: &str) -> ToolCallRow {
    let parameters = json!({
        "session": session,
        "agent": record.agent,
        "role": record.role,
        "turn": record.turn,
        "type": record.kind.as_str(),
        "backend": record.backend,
        "model": record.model,
        "thread_id": record.thread_id,
        "path": path,
    });
    let (result, error, status) = match &record.outcome {
        crate::agent::event::TurnOutcome::Completed => (
            Some(json!({"outcome": "completed", "usage": record.usage, "response_bytes": record.response.len()}).to_string()),
            None,
            "success",
        ),
        crate::agent::event::TurnOutcome::Failed { message, .. }
        | crate::agent::event::TurnOutcome::Interrupted { message } => (None, Some(message.clone()), "error"),
    };
    ToolCallRow {
        name: format!("turn:{}:{}", record.agent, record.kind.as_str()),
        parameters: parameters.to_string(),
        result,
        error,
        status,
        started_at: (record.started_at_ms / 1000) as i64,
        completed_at: (record.finished_at_ms / 1000) as i64,
        duration_ms: record.duration_ms() as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_stamps_sort_by_time() {
        assert_eq!(artifact_stamp(1_700_000_000_123), "20231114T221320123Z");
        assert!(artifact_stamp(1_700_000_000_123) < artifact_stamp(1_700_000_001_000));
    }
}
