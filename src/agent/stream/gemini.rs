//! Parser for `gemini -p … -o stream-json`.
//!
//! Joins assistant `message` deltas into one `Message` (flushed when a tool call or
//! the result arrives), maps `tool_use`/`tool_result` pairs to commands, file changes
//! or tool calls, and reads usage from the final `result` record's stats.

use std::collections::HashMap;

use serde_json::Value;

use crate::agent::backend::TurnResult;
use crate::agent::classify::classify_error_type;
use crate::agent::event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
use crate::agent::stream::turn::{LineParser, TurnState, compact, json_line, str_at, u64_at};

#[derive(Debug)]
enum ToolKind {
    Command(String),
    FileChange(String, &'static str),
    Other(String, String),
}

#[derive(Debug, Default)]
pub struct GeminiParser {
    state: TurnState,
    text: String,
    tools: HashMap<String, ToolKind>,
}

impl GeminiParser {
    fn flush_text(&mut self, out: &mut Vec<AgentEvent>) {
        self.state.message(std::mem::take(&mut self.text), out);
    }

    fn tool_use(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        let id = str_at(value, "tool_id").unwrap_or_default().to_string();
        let name = str_at(value, "tool_name").unwrap_or("tool");
        let params = value.get("parameters").unwrap_or(&Value::Null);
        let path = || {
            str_at(params, "file_path")
                .or_else(|| str_at(params, "path"))
                .unwrap_or_default()
                .to_string()
        };
        let kind = match name {
            "run_shell_command" | "shell" => {
                ToolKind::Command(str_at(params, "command").unwrap_or_default().to_string())
            }
            "replace" | "edit" => ToolKind::FileChange(path(), "update"),
            "write_file" => ToolKind::FileChange(path(), "add"),
            _ => ToolKind::Other(name.to_string(), compact(params)),
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

    fn tool_result(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        let id = str_at(value, "tool_id").unwrap_or_default().to_string();
        let status = if str_at(value, "status") == Some("success") {
            ItemStatus::Completed
        } else {
            ItemStatus::Failed
        };
        let output = str_at(value, "output")
            .map(str::to_string)
            .or_else(|| {
                value
                    .get("error")
                    .map(|e| str_at(e, "message").map_or_else(|| compact(e), str::to_string))
            })
            .unwrap_or_default();
        let denied = value
            .get("error")
            .and_then(|e| str_at(e, "type"))
            .is_some_and(|ty| ty == "policy_violation");
        if denied {
            // The CLI's policy engine refused the call (approval mode, policy files).
            let (tool, detail) = match self.tools.get(&id) {
                Some(ToolKind::Command(command)) => ("run_shell_command".into(), command.clone()),
                Some(ToolKind::FileChange(path, _)) => ("edit".into(), path.clone()),
                Some(ToolKind::Other(name, arguments)) => (name.clone(), arguments.clone()),
                None => ("tool".to_string(), output.clone()),
            };
            out.push(AgentEvent::PermissionDenied { tool, detail });
        }
        match self.tools.remove(&id) {
            Some(ToolKind::Command(command)) => out.push(AgentEvent::Command {
                id: Some(id),
                command,
                status,
                exit_code: None,
                output: Some(output),
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
                result: Some(output),
            }),
            None => {}
        }
    }

    fn result(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        self.flush_text(out);
        if let Some(stats) = value.get("stats") {
            let cached = u64_at(stats, "cached");
            self.state.usage(
                Usage {
                    input_tokens: u64_at(stats, "input_tokens"),
                    cached_input_tokens: cached,
                    output_tokens: u64_at(stats, "output_tokens"),
                    reasoning_output_tokens: u64_at(stats, "thoughts_tokens"),
                },
                out,
            );
        }
        if str_at(value, "status") == Some("success") {
            self.state.finish_with(TurnOutcome::Completed);
            return;
        }
        let error = value.get("error").unwrap_or(&Value::Null);
        let ty = str_at(error, "type")
            .or_else(|| str_at(error, "code"))
            .unwrap_or("error");
        let message = format!(
            "{ty}: {}",
            str_at(error, "message").unwrap_or("gemini reported a failed turn")
        );
        let lower = message.to_ascii_lowercase();
        let class = classify_error_type(ty, None).unwrap_or_else(|| {
            if [
                "429",
                "resource_exhausted",
                "overloaded",
                "503",
                "unavailable",
            ]
            .iter()
            .any(|n| lower.contains(n))
            {
                FailureClass::Transient {
                    retry_after_secs: None,
                }
            } else {
                FailureClass::Terminal
            }
        });
        out.push(AgentEvent::Error {
            message: message.clone(),
        });
        self.state
            .finish_with(TurnOutcome::Failed { class, message });
    }
}

impl LineParser for GeminiParser {
    fn line(&mut self, line: &str, out: &mut Vec<AgentEvent>) {
        let Some(value) = json_line(line, out) else {
            return;
        };
        match str_at(&value, "type").unwrap_or_default() {
            "init" => self
                .state
                .started(str_at(&value, "session_id").map(str::to_string), out),
            "message" if str_at(&value, "role") == Some("assistant") => {
                let content = str_at(&value, "content").unwrap_or_default();
                if value.get("delta").and_then(Value::as_bool) == Some(true) {
                    self.text.push_str(content);
                } else {
                    self.flush_text(out);
                    self.state.message(content.to_string(), out);
                }
            }
            "tool_use" => {
                self.flush_text(out);
                self.tool_use(&value, out);
            }
            "tool_result" => self.tool_result(&value, out),
            "error" => {
                let message =
                    str_at(&value, "message").map_or_else(|| compact(&value), str::to_string);
                out.push(AgentEvent::Error { message });
            }
            "result" => self.result(&value, out),
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult {
        self.flush_text(out);
        self.state
            .result("gemini stopped before its `result` record")
    }
}

#[cfg(test)]
mod permission_tests {
    use super::*;

    #[test]
    fn a_tool_refused_by_the_policy_engine_is_a_denial() {
        let mut parser = GeminiParser::default();
        let mut out = Vec::new();
        parser.line(
            r#"{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{"command":"python3 -c 1"}}"#,
            &mut out,
        );
        parser.line(
            r#"{"type":"tool_result","tool_id":"t1","status":"error","error":{"type":"policy_violation","message":"Tool execution denied by policy."}}"#,
            &mut out,
        );
        parser.line(
            r#"{"type":"tool_use","tool_name":"read_file","tool_id":"t2","parameters":{"file_path":"a"}}"#,
            &mut out,
        );
        parser.line(
            r#"{"type":"tool_result","tool_id":"t2","status":"error","error":{"type":"file_not_found","message":"no such file"}}"#,
            &mut out,
        );
        let denials: Vec<&AgentEvent> = out
            .iter()
            .filter(|e| matches!(e, AgentEvent::PermissionDenied { .. }))
            .collect();
        assert_eq!(
            denials,
            [&AgentEvent::PermissionDenied {
                tool: "run_shell_command".into(),
                detail: "python3 -c 1".into()
            }]
        );
    }
}
