//! State every stream parser keeps while a turn streams, and the parser traits.
//!
//! Owns how parsed pieces become a `TurnResult`: the last complete message is the
//! response, usage is the sum of the deltas emitted, and a stream without its final
//! event is `Interrupted`. Does not know any wire format.

use serde_json::Value;

use crate::agent::backend::TurnResult;
use crate::agent::event::{AgentEvent, TurnOutcome, Usage};
use crate::agent::stream::sse::SseEvent;

/// A parser for line-delimited JSON (the agent CLIs).
pub trait LineParser: Send {
    /// Parses one line; appends the events it yields. Unknown lines are skipped.
    fn line(&mut self, line: &str, out: &mut Vec<AgentEvent>);
    /// Ends the stream: flushes pending text and decides the outcome.
    fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult;
}

/// A parser for a Server-Sent Events API.
pub trait SseParser: Send {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<AgentEvent>);
    fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult;
}

/// What a parser has learned so far.
#[derive(Debug, Default)]
pub struct TurnState {
    pub thread_id: Option<String>,
    /// The last complete assistant message.
    pub response: String,
    /// Sum of the usage deltas emitted.
    pub usage: Usage,
    /// Set by the stream's final event.
    pub outcome: Option<TurnOutcome>,
}

impl TurnState {
    /// Emits `Started` once per new thread id.
    pub fn started(&mut self, thread_id: Option<String>, out: &mut Vec<AgentEvent>) {
        if thread_id.is_some() && thread_id == self.thread_id {
            return;
        }
        if thread_id.is_some() {
            self.thread_id = thread_id.clone();
        }
        out.push(AgentEvent::Started { thread_id });
    }

    /// Emits a complete message and remembers it as the response.
    pub fn message(&mut self, text: String, out: &mut Vec<AgentEvent>) {
        if text.trim().is_empty() {
            return;
        }
        self.response = text.clone();
        out.push(AgentEvent::Message { text });
    }

    pub fn reasoning(&mut self, text: String, out: &mut Vec<AgentEvent>) {
        if !text.trim().is_empty() {
            out.push(AgentEvent::Reasoning { text });
        }
    }

    /// Emits a usage delta (skips empty ones).
    pub fn usage(&mut self, delta: Usage, out: &mut Vec<AgentEvent>) {
        if !delta.is_zero() {
            self.usage.add(&delta);
            out.push(AgentEvent::Usage(delta));
        }
    }

    /// Records the outcome unless one is already known (the first final event wins).
    pub fn finish_with(&mut self, outcome: TurnOutcome) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
    }

    /// The result of the turn; `missing_final` describes a stream cut before its end.
    pub fn result(&mut self, missing_final: &str) -> TurnResult {
        TurnResult {
            thread_id: self.thread_id.clone(),
            response: self.response.clone(),
            usage: self.usage,
            outcome: self
                .outcome
                .clone()
                .unwrap_or_else(|| TurnOutcome::Interrupted {
                    message: missing_final.to_string(),
                }),
        }
    }
}

/// Longest raw (non-JSON) line kept as text; the rest is cut with a marker.
pub const MAX_RAW_LINE: usize = 4 * 1024;

/// Parses one line of a JSONL stream. A line that is not JSON (a warning the CLI
/// printed on stdout, say) is not dropped: it becomes a `RawLine` event, bounded to
/// `MAX_RAW_LINE` bytes. Blank lines are skipped.
pub fn json_line(line: &str, out: &mut Vec<AgentEvent>) -> Option<Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(value) => Some(value),
        Err(_) if line.trim().is_empty() => None,
        Err(_) => {
            out.push(AgentEvent::RawLine {
                text: bounded(line, MAX_RAW_LINE),
            });
            None
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with a marker saying
/// how long it was.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &text[..end], text.len())
}

/// `value[key]` as a string, if it is one.
pub fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// `value[key]` as a u64 (0 when absent or not a number).
pub fn u64_at(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Renders a JSON value as compact text (strings unquoted).
pub fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
