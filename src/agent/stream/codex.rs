//! Parser for `codex exec --json` (JSONL thread events).
//!
//! Maps thread/turn/item records to `AgentEvent`s. Codex reports usage cumulative for
//! the whole thread, so the parser is given the thread's count before this turn and
//! emits the difference. Only `turn.failed` decides a failure; `error` records are
//! shown but may be retries Codex recovers from.

use serde_json::Value;
use time::OffsetDateTime;

use crate::agent::backend::TurnResult;
use crate::agent::classify::classify_codex_error;
use crate::agent::event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
use crate::agent::stream::turn::{LineParser, TurnState, compact, json_line, str_at, u64_at};

#[derive(Debug)]
pub struct CodexParser {
    state: TurnState,
    /// Thread-cumulative usage before this turn.
    usage_before: Usage,
    /// Thread-cumulative usage at the end of this turn, once known.
    usage_after: Option<Usage>,
    now: OffsetDateTime,
    /// The command lines of the turn's completed `command_execution` items, letters and
    /// digits only; `None` once they passed `SEEN_LIMIT` bytes.
    commands: Option<Vec<String>>,
    commands_bytes: usize,
}

/// How many bytes of completed command lines a turn remembers (about 500 commands):
/// enough for any real turn, and memory stays flat for a stream of millions.
const SEEN_LIMIT: usize = 64 * 1024;

impl CodexParser {
    /// `usage_before`: what `turn.completed` reported at the end of the previous turn on
    /// this thread (zero for a new thread). `now` anchors "try again at 4:05 PM".
    pub fn new(usage_before: Usage, now: OffsetDateTime) -> Self {
        CodexParser {
            state: TurnState::default(),
            usage_before,
            usage_after: None,
            now,
            commands: Some(Vec::new()),
            commands_bytes: 0,
        }
    }

    /// The thread-cumulative usage to remember for the next turn on this thread.
    pub fn cumulative_usage(&self) -> Option<Usage> {
        self.usage_after
    }

    /// The command lines (letters and digits only) of the `command_execution` items the
    /// stream completed; `None` when there were too many to remember.
    pub fn commands_seen(&self) -> Option<&[String]> {
        self.commands.as_deref()
    }

    fn remember_command(&mut self, command: &str) {
        let Some(commands) = &mut self.commands else {
            return;
        };
        let command = crate::agent::codex_rollout::normalized(command);
        self.commands_bytes += command.len() + std::mem::size_of::<String>();
        if self.commands_bytes > SEEN_LIMIT {
            self.commands = None;
        } else {
            commands.push(command);
        }
    }

    fn item(&mut self, phase: Phase, item: &Value, out: &mut Vec<AgentEvent>) {
        let id = str_at(item, "id").map(str::to_string);
        match str_at(item, "type").unwrap_or_default() {
            "agent_message" if phase == Phase::Completed => {
                self.state
                    .message(str_at(item, "text").unwrap_or_default().to_string(), out);
            }
            "reasoning" if phase == Phase::Completed => {
                self.state
                    .reasoning(str_at(item, "text").unwrap_or_default().to_string(), out);
            }
            "command_execution" if phase != Phase::Updated => {
                let status = item_status(item, phase);
                let command = str_at(item, "command").unwrap_or_default().to_string();
                if phase == Phase::Completed {
                    self.remember_command(&command);
                }
                out.push(AgentEvent::Command {
                    id,
                    command,
                    status,
                    exit_code: item
                        .get("exit_code")
                        .and_then(Value::as_i64)
                        .map(|c| c as i32),
                    output: (status != ItemStatus::InProgress).then(|| {
                        str_at(item, "aggregated_output")
                            .unwrap_or_default()
                            .to_string()
                    }),
                });
            }
            "file_change" if phase == Phase::Completed => {
                let status = item_status(item, phase);
                for change in item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.push(AgentEvent::FileChange {
                        path: str_at(change, "path").unwrap_or_default().to_string(),
                        change: str_at(change, "kind").unwrap_or("update").to_string(),
                        status,
                    });
                }
            }
            "mcp_tool_call" if phase != Phase::Updated => {
                let status = item_status(item, phase);
                let name = format!(
                    "{}.{}",
                    str_at(item, "server").unwrap_or("mcp"),
                    str_at(item, "tool").unwrap_or("tool")
                );
                let result = match (item.get("error"), item.get("result")) {
                    (Some(err), _) if !err.is_null() => {
                        Some(str_at(err, "message").map_or_else(|| compact(err), str::to_string))
                    }
                    (_, Some(result)) if !result.is_null() => Some(mcp_result_text(result)),
                    _ => None,
                };
                out.push(AgentEvent::ToolCall {
                    id,
                    name,
                    arguments: item.get("arguments").map(compact).unwrap_or_default(),
                    status,
                    result,
                });
            }
            "web_search" => out.push(AgentEvent::ToolCall {
                id,
                name: "web_search".into(),
                arguments: str_at(item, "query").unwrap_or_default().to_string(),
                status: item_status(item, phase),
                result: None,
            }),
            "todo_list" => {
                let items = item
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                let list: Vec<String> = items
                    .map(|todo| {
                        let done = todo
                            .get("completed")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        format!(
                            "[{}] {}",
                            if done { "x" } else { " " },
                            str_at(todo, "text").unwrap_or_default()
                        )
                    })
                    .collect();
                out.push(AgentEvent::ToolCall {
                    id,
                    name: "todo_list".into(),
                    arguments: list.join("; "),
                    status: if phase == Phase::Completed {
                        ItemStatus::Completed
                    } else {
                        ItemStatus::InProgress
                    },
                    result: None,
                });
            }
            "error" => out.push(AgentEvent::Error {
                message: str_at(item, "message").unwrap_or_default().to_string(),
            }),
            _ => {}
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Started,
    Updated,
    Completed,
}

fn item_status(item: &Value, phase: Phase) -> ItemStatus {
    match str_at(item, "status") {
        Some("failed") | Some("declined") => ItemStatus::Failed,
        Some("completed") => ItemStatus::Completed,
        Some("in_progress") => ItemStatus::InProgress,
        _ if phase == Phase::Completed => ItemStatus::Completed,
        _ => ItemStatus::InProgress,
    }
}

fn mcp_result_text(result: &Value) -> String {
    let texts: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| str_at(block, "text"))
        .collect();
    if texts.is_empty() {
        compact(result)
    } else {
        texts.join("\n")
    }
}

fn codex_usage(value: &Value) -> Usage {
    Usage {
        input_tokens: u64_at(value, "input_tokens"),
        cached_input_tokens: u64_at(value, "cached_input_tokens"),
        output_tokens: u64_at(value, "output_tokens"),
        reasoning_output_tokens: u64_at(value, "reasoning_output_tokens"),
    }
}

impl LineParser for CodexParser {
    fn line(&mut self, line: &str, out: &mut Vec<AgentEvent>) {
        let Some(value) = json_line(line, out) else {
            return;
        };
        match str_at(&value, "type").unwrap_or_default() {
            "thread.started" => self
                .state
                .started(str_at(&value, "thread_id").map(str::to_string), out),
            "item.started" | "item.updated" | "item.completed" => {
                let phase = match str_at(&value, "type") {
                    Some("item.started") => Phase::Started,
                    Some("item.updated") => Phase::Updated,
                    _ => Phase::Completed,
                };
                if let Some(item) = value.get("item") {
                    self.item(phase, item, out);
                }
            }
            "turn.completed" => {
                let total = value.get("usage").map(codex_usage).unwrap_or_default();
                self.state.usage(total.since(&self.usage_before), out);
                self.usage_after = Some(total);
                self.state.finish_with(TurnOutcome::Completed);
            }
            "turn.failed" => {
                let message = value
                    .get("error")
                    .and_then(|e| str_at(e, "message"))
                    .unwrap_or("codex reported a failed turn")
                    .to_string();
                let class = classify_codex_error(&message, self.now);
                if let FailureClass::UsageLimit { resets_in_secs } = class {
                    out.push(AgentEvent::RateLimit {
                        message: message.clone(),
                        retry_after_secs: resets_in_secs,
                        resets_at: resets_in_secs.map(|secs| {
                            (self.now + time::Duration::seconds(secs as i64))
                                .format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default()
                        }),
                    });
                }
                self.state
                    .finish_with(TurnOutcome::Failed { class, message });
            }
            "error" => {
                let message = str_at(&value, "message").unwrap_or_default().to_string();
                out.push(AgentEvent::Error { message });
            }
            _ => {}
        }
    }

    fn finish(&mut self, _out: &mut Vec<AgentEvent>) -> TurnResult {
        self.state
            .result("codex stopped before `turn.completed` or `turn.failed`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(parser: &mut CodexParser, id: usize, command: &str) {
        let line = serde_json::json!({
            "type": "item.completed",
            "item": {"id": format!("item_{id}"), "type": "command_execution",
                     "command": command, "exit_code": 0, "status": "completed"}
        });
        parser.line(&line.to_string(), &mut Vec::new());
    }

    #[test]
    fn completed_commands_are_remembered_until_the_limit_then_forgotten() {
        let mut parser = CodexParser::new(Usage::default(), OffsetDateTime::UNIX_EPOCH);
        completed(&mut parser, 0, "/bin/bash -lc 'cargo test'");
        assert_eq!(
            parser.commands_seen(),
            Some(&["binbashlccargotest".to_owned()][..])
        );
        let long = "x".repeat(1000);
        for id in 1..=SEEN_LIMIT / 1000 {
            completed(&mut parser, id, &long);
        }
        assert_eq!(
            parser.commands_seen(),
            None,
            "a flood of commands is not kept"
        );
    }
}
