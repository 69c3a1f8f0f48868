//! Parser for OpenAI-compatible chat completions streams (Ollama, vLLM, llama.cpp).
//!
//! Joins `delta.content` into one `Message`, `delta.reasoning`/`reasoning_content`
//! into one `Reasoning`, and `delta.tool_calls` fragments into one `ToolCall` each,
//! flushed when a choice finishes. A `finish_reason` or `[DONE]` completes the turn.

use serde_json::Value;

use crate::agent::backend::TurnResult;
use crate::agent::classify::classify_error_type;
use crate::agent::event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
use crate::agent::stream::sse::SseEvent;
use crate::agent::stream::turn::{SseParser, TurnState, compact, str_at, u64_at};

#[derive(Debug, Default)]
struct PendingCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

#[derive(Debug, Default)]
pub struct OpenAiChatParser {
    state: TurnState,
    text: String,
    reasoning: String,
    calls: Vec<(u64, PendingCall)>,
}

impl OpenAiChatParser {
    fn flush(&mut self, out: &mut Vec<AgentEvent>) {
        self.state
            .reasoning(std::mem::take(&mut self.reasoning), out);
        self.state.message(std::mem::take(&mut self.text), out);
        for (_, call) in std::mem::take(&mut self.calls) {
            out.push(AgentEvent::ToolCall {
                id: call.id,
                name: call.name,
                arguments: call.arguments,
                status: ItemStatus::Completed,
                result: None,
            });
        }
    }

    fn chunk(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        if let Some(error) = value.get("error") {
            self.flush(out);
            let ty = str_at(error, "type")
                .or_else(|| str_at(error, "code"))
                .unwrap_or("error");
            let message = format!(
                "{ty}: {}",
                str_at(error, "message").map_or_else(|| compact(error), str::to_string)
            );
            let class = classify_error_type(ty, None).unwrap_or(FailureClass::Terminal);
            out.push(AgentEvent::Error {
                message: message.clone(),
            });
            self.state
                .finish_with(TurnOutcome::Failed { class, message });
            return;
        }
        for choice in value
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = str_at(delta, "content") {
                self.text.push_str(text);
            }
            if let Some(text) =
                str_at(delta, "reasoning").or_else(|| str_at(delta, "reasoning_content"))
            {
                self.reasoning.push_str(text);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = u64_at(call, "index");
                let pos = match self.calls.iter().position(|(i, _)| *i == index) {
                    Some(pos) => pos,
                    None => {
                        self.calls.push((index, PendingCall::default()));
                        self.calls.len() - 1
                    }
                };
                let pending = &mut self.calls[pos].1;
                if let Some(id) = str_at(call, "id") {
                    pending.id = Some(id.to_string());
                }
                let function = call.get("function").unwrap_or(&Value::Null);
                if let Some(name) = str_at(function, "name") {
                    pending.name.push_str(name);
                }
                if let Some(args) = str_at(function, "arguments") {
                    pending.arguments.push_str(args);
                }
            }
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                self.flush(out);
                self.state.finish_with(TurnOutcome::Completed);
            }
        }
        if let Some(usage) = value.get("usage").filter(|u| !u.is_null()) {
            let delta = Usage {
                input_tokens: u64_at(usage, "prompt_tokens"),
                cached_input_tokens: usage
                    .get("prompt_tokens_details")
                    .map_or(0, |d| u64_at(d, "cached_tokens")),
                output_tokens: u64_at(usage, "completion_tokens"),
                reasoning_output_tokens: usage
                    .get("completion_tokens_details")
                    .map_or(0, |d| u64_at(d, "reasoning_tokens")),
            };
            self.state.usage(delta, out);
        }
    }
}

impl SseParser for OpenAiChatParser {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<AgentEvent>) {
        if event.data.trim() == "[DONE]" {
            self.flush(out);
            self.state.finish_with(TurnOutcome::Completed);
            return;
        }
        if let Ok(value) = serde_json::from_str::<Value>(&event.data) {
            self.chunk(&value, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult {
        self.flush(out);
        self.state
            .result("the stream ended before a `finish_reason` or `[DONE]`")
    }
}
