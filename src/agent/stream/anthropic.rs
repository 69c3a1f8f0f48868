//! Parser for the Anthropic Messages API stream (also MiniMax's Anthropic endpoint,
//! and the `stream_event` records of Claude Code).
//!
//! Joins content-block deltas into one `Message`, `Reasoning` or `ToolCall` per block,
//! turns `message_start`/`message_delta` usage into deltas, and classifies an `error`
//! event by its error type. Tool calls are reported, never executed.

use serde_json::Value;

use crate::agent::backend::TurnResult;
use crate::agent::classify::classify_error_type;
use crate::agent::event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
use crate::agent::stream::sse::SseEvent;
use crate::agent::stream::turn::{SseParser, TurnState, compact, str_at, u64_at};

/// Whether usage in the stream counts (Claude Code reports the turn total separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageSource {
    Stream,
    Ignore,
}

#[derive(Debug)]
enum Block {
    Text(String),
    Thinking(String),
    ToolUse {
        id: Option<String>,
        name: String,
        input: Value,
        json: String,
    },
    Other,
}

/// The Anthropic event state machine, fed one decoded JSON event at a time.
#[derive(Debug)]
pub struct AnthropicEvents {
    usage_source: UsageSource,
    blocks: Vec<(u64, Block)>,
    texts: Vec<String>,
    /// Usage of the current message as reported so far (cumulative within a message).
    message_usage: Usage,
    /// Part of `message_usage` already emitted.
    emitted: Usage,
    stop_reason: Option<String>,
    pub(crate) saw_stop: bool,
}

impl AnthropicEvents {
    pub fn new(usage_source: UsageSource) -> Self {
        AnthropicEvents {
            usage_source,
            blocks: Vec::new(),
            texts: Vec::new(),
            message_usage: Usage::default(),
            emitted: Usage::default(),
            stop_reason: None,
            saw_stop: false,
        }
    }

    /// The text blocks of the message(s) so far, joined.
    pub fn text(&self) -> String {
        self.texts.join("\n\n")
    }

    pub fn event(&mut self, state: &mut TurnState, value: &Value, out: &mut Vec<AgentEvent>) {
        match str_at(value, "type").unwrap_or_default() {
            "message_start" => {
                let message = value.get("message").unwrap_or(&Value::Null);
                self.message_usage = Usage::default();
                self.emitted = Usage::default();
                if let Some(usage) = message.get("usage") {
                    self.merge_usage(usage);
                }
                self.emit_usage(state, out);
            }
            "content_block_start" => {
                let index = u64_at(value, "index");
                let block = value.get("content_block").unwrap_or(&Value::Null);
                let block = match str_at(block, "type").unwrap_or_default() {
                    "text" => Block::Text(str_at(block, "text").unwrap_or_default().to_string()),
                    "thinking" => {
                        Block::Thinking(str_at(block, "thinking").unwrap_or_default().to_string())
                    }
                    "tool_use" | "server_tool_use" => Block::ToolUse {
                        id: str_at(block, "id").map(str::to_string),
                        name: str_at(block, "name").unwrap_or("tool").to_string(),
                        input: block.get("input").cloned().unwrap_or(Value::Null),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let index = u64_at(value, "index");
                let delta = value.get("delta").unwrap_or(&Value::Null);
                let Some((_, block)) = self.blocks.iter_mut().find(|(i, _)| *i == index) else {
                    return;
                };
                match (block, str_at(delta, "type").unwrap_or_default()) {
                    (Block::Text(text), "text_delta") => {
                        text.push_str(str_at(delta, "text").unwrap_or_default())
                    }
                    (Block::Thinking(text), "thinking_delta") => {
                        text.push_str(str_at(delta, "thinking").unwrap_or_default())
                    }
                    (Block::ToolUse { json, .. }, "input_json_delta") => {
                        json.push_str(str_at(delta, "partial_json").unwrap_or_default())
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = u64_at(value, "index");
                if let Some(pos) = self.blocks.iter().position(|(i, _)| *i == index) {
                    let (_, block) = self.blocks.remove(pos);
                    self.close_block(state, block, out);
                }
            }
            "message_delta" => {
                if let Some(reason) = value.get("delta").and_then(|d| str_at(d, "stop_reason")) {
                    self.stop_reason = Some(reason.to_string());
                }
                if let Some(usage) = value.get("usage") {
                    self.merge_usage(usage);
                }
                self.emit_usage(state, out);
            }
            "message_stop" => {
                self.flush_blocks(state, out);
                self.saw_stop = true;
                state.finish_with(TurnOutcome::Completed);
            }
            "error" => {
                self.flush_blocks(state, out);
                let error = value.get("error").unwrap_or(&Value::Null);
                let ty = str_at(error, "type").unwrap_or("error");
                let message = format!(
                    "{ty}: {}",
                    str_at(error, "message").unwrap_or("the API reported an error")
                );
                let class = classify_error_type(ty, None).unwrap_or(FailureClass::Transient {
                    retry_after_secs: None,
                });
                out.push(AgentEvent::Error {
                    message: message.clone(),
                });
                state.finish_with(TurnOutcome::Failed { class, message });
            }
            _ => {}
        }
    }

    /// Emits whatever blocks are still open (a cut stream keeps its partial text).
    pub fn flush_blocks(&mut self, state: &mut TurnState, out: &mut Vec<AgentEvent>) {
        for (_, block) in std::mem::take(&mut self.blocks) {
            self.close_block(state, block, out);
        }
    }

    fn close_block(&mut self, state: &mut TurnState, block: Block, out: &mut Vec<AgentEvent>) {
        match block {
            Block::Text(text) => {
                if !text.trim().is_empty() {
                    self.texts.push(text.clone());
                }
                state.message(text, out);
            }
            Block::Thinking(text) => state.reasoning(text, out),
            Block::ToolUse {
                id,
                name,
                input,
                json,
            } => {
                let arguments = if json.trim().is_empty() {
                    compact(&input)
                } else {
                    json
                };
                out.push(AgentEvent::ToolCall {
                    id,
                    name,
                    arguments,
                    status: ItemStatus::Completed,
                    result: None,
                });
            }
            Block::Other => {}
        }
    }

    fn merge_usage(&mut self, usage: &Value) {
        let fresh = u64_at(usage, "input_tokens");
        let created = u64_at(usage, "cache_creation_input_tokens");
        let read = u64_at(usage, "cache_read_input_tokens");
        if usage.get("input_tokens").is_some() || created > 0 || read > 0 {
            self.message_usage.input_tokens = fresh + created + read;
            self.message_usage.cached_input_tokens = read;
        }
        if usage.get("output_tokens").is_some() {
            self.message_usage.output_tokens = u64_at(usage, "output_tokens");
        }
    }

    fn emit_usage(&mut self, state: &mut TurnState, out: &mut Vec<AgentEvent>) {
        if self.usage_source == UsageSource::Ignore {
            return;
        }
        let delta = self.message_usage.since(&self.emitted);
        self.emitted = self.message_usage;
        state.usage(delta, out);
    }
}

/// The Messages API SSE parser.
#[derive(Debug)]
pub struct AnthropicParser {
    state: TurnState,
    events: AnthropicEvents,
}

impl Default for AnthropicParser {
    fn default() -> Self {
        AnthropicParser {
            state: TurnState::default(),
            events: AnthropicEvents::new(UsageSource::Stream),
        }
    }
}

impl SseParser for AnthropicParser {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<AgentEvent>) {
        if let Ok(value) = serde_json::from_str::<Value>(&event.data) {
            self.events.event(&mut self.state, &value, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult {
        self.events.flush_blocks(&mut self.state, out);
        let mut result = self.state.result("the stream ended before `message_stop`");
        result.response = self.events.text();
        result
    }
}
