//! Parser for `claude -p --output-format stream-json --verbose`.
//!
//! Maps the init record, assistant content blocks (text, thinking, tool_use), tool
//! results and the final `result` record. Bash tool calls become `Command`s and
//! Edit/Write calls `FileChange`s. With `--include-partial-messages` the text arrives
//! twice (as `stream_event` deltas and again in the `assistant` record); the parser
//! shows it once. Usage comes from `result`, or the last per-message counts if the
//! stream was cut.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use time::OffsetDateTime;

use crate::agent::backend::TurnResult;
use crate::agent::classify::parse_reset_in_secs;
use crate::agent::event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
use crate::agent::stream::anthropic::{AnthropicEvents, UsageSource};
use crate::agent::stream::turn::{LineParser, TurnState, compact, json_line, str_at, u64_at};

#[derive(Debug)]
enum ToolKind {
    Command(String),
    FileChange(String, &'static str),
    Other(String, String),
}

#[derive(Debug)]
pub struct ClaudeParser {
    state: TurnState,
    partial: AnthropicEvents,
    /// Message ids whose text already streamed as `stream_event` deltas.
    streamed: HashSet<String>,
    current_stream_message: Option<String>,
    tools: HashMap<String, ToolKind>,
    /// Last usage seen per message id, used only if `result` never comes.
    message_usage: Vec<(String, Usage)>,
    now: OffsetDateTime,
}

impl ClaudeParser {
    pub fn new(now: OffsetDateTime) -> Self {
        ClaudeParser {
            state: TurnState::default(),
            partial: AnthropicEvents::new(UsageSource::Ignore),
            streamed: HashSet::new(),
            current_stream_message: None,
            tools: HashMap::new(),
            message_usage: Vec::new(),
            now,
        }
    }

    fn assistant(&mut self, message: &Value, out: &mut Vec<AgentEvent>) {
        let id = str_at(message, "id").unwrap_or_default().to_string();
        if let Some(usage) = message.get("usage") {
            let usage = anthropic_usage(usage);
            match self.message_usage.iter_mut().find(|(m, _)| *m == id) {
                Some((_, seen)) => *seen = usage,
                None => self.message_usage.push((id.clone(), usage)),
            }
        }
        let already_streamed = self.streamed.contains(&id);
        for block in message
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match str_at(block, "type").unwrap_or_default() {
                "text" if !already_streamed => self
                    .state
                    .message(str_at(block, "text").unwrap_or_default().to_string(), out),
                "thinking" if !already_streamed => self.state.reasoning(
                    str_at(block, "thinking").unwrap_or_default().to_string(),
                    out,
                ),
                "tool_use" => self.tool_use(block, out),
                _ => {}
            }
        }
    }

    fn tool_use(&mut self, block: &Value, out: &mut Vec<AgentEvent>) {
        let id = str_at(block, "id").unwrap_or_default().to_string();
        let name = str_at(block, "name").unwrap_or("tool");
        let input = block.get("input").unwrap_or(&Value::Null);
        let kind = match name {
            "Bash" => ToolKind::Command(str_at(input, "command").unwrap_or_default().to_string()),
            "Edit" | "MultiEdit" | "NotebookEdit" => {
                ToolKind::FileChange(file_path(input), "update")
            }
            "Write" => ToolKind::FileChange(file_path(input), "add"),
            _ => ToolKind::Other(name.to_string(), compact(input)),
        };
        match &kind {
            ToolKind::Command(command) => out.push(AgentEvent::Command {
                id: Some(id.clone()),
                command: command.clone(),
                status: ItemStatus::InProgress,
                exit_code: None,
                output: None,
            }),
            ToolKind::FileChange(..) => {}
            ToolKind::Other(name, arguments) => out.push(AgentEvent::ToolCall {
                id: Some(id.clone()),
                name: name.clone(),
                arguments: arguments.clone(),
                status: ItemStatus::InProgress,
                result: None,
            }),
        }
        self.tools.insert(id, kind);
    }

    fn tool_result(&mut self, block: &Value, out: &mut Vec<AgentEvent>) {
        let id = str_at(block, "tool_use_id").unwrap_or_default().to_string();
        let failed = block
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let status = if failed {
            ItemStatus::Failed
        } else {
            ItemStatus::Completed
        };
        let content = match block.get("content") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| str_at(p, "text"))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(other) => compact(other),
            None => String::new(),
        };
        match self.tools.remove(&id) {
            Some(ToolKind::Command(command)) => out.push(AgentEvent::Command {
                id: Some(id),
                command,
                status,
                exit_code: None,
                output: Some(content),
            }),
            Some(ToolKind::FileChange(path, change)) => out.push(AgentEvent::FileChange {
                path,
                change: change.to_string(),
                status,
            }),
            Some(ToolKind::Other(name, arguments)) => out.push(AgentEvent::ToolCall {
                id: Some(id),
                name,
                arguments,
                status,
                result: Some(content),
            }),
            None => {}
        }
    }

    fn result(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        if let Some(usage) = value.get("usage") {
            self.state.usage(anthropic_usage(usage), out);
        }
        for denial in value
            .get("permission_denials")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(denied(denial));
        }
        if let Some(text) = str_at(value, "result") {
            if !text.trim().is_empty()
                && value.get("is_error").and_then(Value::as_bool) != Some(true)
            {
                self.state.response = text.to_string();
            }
        }
        let subtype = str_at(value, "subtype").unwrap_or("success");
        let is_error = value
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if subtype == "success" && !is_error {
            self.state.finish_with(TurnOutcome::Completed);
            return;
        }
        let mut details: Vec<String> = value
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(compact)
            .collect();
        if is_error && let Some(text) = str_at(value, "result") {
            details.push(text.to_string());
        }
        let detail = details.join("; ");
        let message = if detail.is_empty() {
            format!("claude ended with `{subtype}`")
        } else {
            format!("{subtype}: {detail}")
        };
        let class = self.classify(subtype, &detail);
        if let FailureClass::UsageLimit { resets_in_secs } = class {
            out.push(AgentEvent::RateLimit {
                message: message.clone(),
                retry_after_secs: resets_in_secs,
                resets_at: None,
            });
        }
        out.push(AgentEvent::Error {
            message: message.clone(),
        });
        self.state
            .finish_with(TurnOutcome::Failed { class, message });
    }

    /// Classifies a failed result record (structured channel only).
    fn classify(&self, subtype: &str, detail: &str) -> FailureClass {
        let lower = detail.to_ascii_lowercase();
        if subtype == "error_max_turns" || subtype.contains("budget") {
            return FailureClass::Terminal;
        }
        if lower.contains("usage limit") || lower.contains("limit reached|") {
            return FailureClass::UsageLimit {
                resets_in_secs: parse_reset_in_secs(detail, self.now),
            };
        }
        if [
            "overloaded",
            "rate_limit",
            "rate limit",
            "429",
            "529",
            "500",
            "502",
            "503",
            "timeout",
            "connection",
        ]
        .iter()
        .any(|n| lower.contains(n))
        {
            return FailureClass::Transient {
                retry_after_secs: None,
            };
        }
        FailureClass::Terminal
    }
}

/// One entry of the result's `permission_denials` (`{tool_name, tool_use_id,
/// tool_input}`): the tool and what it was asked to do (a Bash command, a file path).
fn denied(denial: &Value) -> AgentEvent {
    let tool = str_at(denial, "tool_name").unwrap_or("tool").to_string();
    let input = denial.get("tool_input").unwrap_or(&Value::Null);
    let detail = match str_at(input, "command") {
        Some(command) => command.to_string(),
        None if input.get("file_path").is_some() => file_path(input),
        None => compact(input),
    };
    AgentEvent::PermissionDenied { tool, detail }
}

fn file_path(input: &Value) -> String {
    str_at(input, "file_path")
        .or_else(|| str_at(input, "notebook_path"))
        .unwrap_or_default()
        .to_string()
}

/// Anthropic usage → ours: input counts every prompt token, cache reads are `cached`.
pub fn anthropic_usage(usage: &Value) -> Usage {
    let read = u64_at(usage, "cache_read_input_tokens");
    Usage {
        input_tokens: u64_at(usage, "input_tokens")
            + u64_at(usage, "cache_creation_input_tokens")
            + read,
        cached_input_tokens: read,
        output_tokens: u64_at(usage, "output_tokens"),
        reasoning_output_tokens: 0,
    }
}

impl LineParser for ClaudeParser {
    fn line(&mut self, line: &str, out: &mut Vec<AgentEvent>) {
        let Some(value) = json_line(line, out) else {
            return;
        };
        if let Some(session) = str_at(&value, "session_id") {
            if self.state.thread_id.as_deref() != Some(session) {
                self.state.started(Some(session.to_string()), out);
            }
        }
        match str_at(&value, "type").unwrap_or_default() {
            "assistant" => {
                if let Some(message) = value.get("message") {
                    self.assistant(message, out);
                }
            }
            "user" => {
                let content = value
                    .get("message")
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_array);
                for block in content.into_iter().flatten() {
                    if str_at(block, "type") == Some("tool_result") {
                        self.tool_result(block, out);
                    }
                }
            }
            "stream_event" => {
                let Some(event) = value.get("event") else {
                    return;
                };
                if str_at(event, "type") == Some("message_start") {
                    let id = event
                        .get("message")
                        .and_then(|m| str_at(m, "id"))
                        .map(str::to_string);
                    self.current_stream_message = id;
                }
                if str_at(event, "type") == Some("content_block_delta") {
                    if let Some(id) = &self.current_stream_message {
                        self.streamed.insert(id.clone());
                    }
                }
                // A partial stream never decides the turn; only `result` does.
                let outcome = self.state.outcome.take();
                self.partial.event(&mut self.state, event, out);
                self.state.outcome = outcome;
            }
            "result" => self.result(&value, out),
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult {
        self.partial.flush_blocks(&mut self.state, out);
        if self.state.outcome.is_none() && self.state.usage.is_zero() {
            let mut total = Usage::default();
            for (_, usage) in &self.message_usage {
                total.add(usage);
            }
            self.state.usage(total, out);
        }
        self.state
            .result("claude stopped before its `result` record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denials_become_events_and_the_turn_still_completes() {
        let mut parser = ClaudeParser::new(OffsetDateTime::UNIX_EPOCH);
        let mut out = Vec::new();
        parser.line(
            r#"{"type":"result","subtype":"success","is_error":false,"result":"could not run it","permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_1","tool_input":{"command":"python3 -c 'open(\"x\",\"w\")'","description":"write"}},{"tool_name":"Write","tool_use_id":"toolu_2","tool_input":{"file_path":"/r/a.txt","content":"a"}},{"tool_name":"WebFetch","tool_use_id":"toolu_3","tool_input":{"url":"https://example.com"}}],"usage":{"input_tokens":3,"output_tokens":2}}"#,
            &mut out,
        );
        let denials: Vec<&AgentEvent> = out
            .iter()
            .filter(|e| matches!(e, AgentEvent::PermissionDenied { .. }))
            .collect();
        assert_eq!(
            denials,
            [
                &AgentEvent::PermissionDenied {
                    tool: "Bash".into(),
                    detail: r#"python3 -c 'open("x","w")'"#.into()
                },
                &AgentEvent::PermissionDenied {
                    tool: "Write".into(),
                    detail: "/r/a.txt".into()
                },
                &AgentEvent::PermissionDenied {
                    tool: "WebFetch".into(),
                    detail: r#"{"url":"https://example.com"}"#.into()
                },
            ]
        );
        let result = parser.finish(&mut out);
        assert_eq!(result.outcome, TurnOutcome::Completed);
    }
}
