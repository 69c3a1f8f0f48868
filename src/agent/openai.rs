//! The `openai` backend: OpenAI-compatible chat completions over SSE (Ollama, vLLM,
//! llama.cpp server, or OpenAI itself).
//!
//! Each turn resends the conversation. Asks for a final usage chunk
//! (`stream_options.include_usage`). Tool calls are reported, not executed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::anthropic::http_client;
use crate::agent::backend::{
    Backend, BackendError, BoxFuture, ChatRole, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::event::AgentEvent;
use crate::agent::http::run_http_turn;
use crate::agent::settings::{BackendSettings, HttpSettings};
use crate::agent::stream::OpenAiChatParser;

pub struct OpenAiBackend {
    http: HttpSettings,
    client: reqwest::Client,
    idle_timeout: Duration,
    max_line: usize,
}

impl OpenAiBackend {
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        if settings.openai.model.is_none() {
            return Err(BackendError::NotConfigured {
                backend: "openai".into(),
                reason:
                    "no model; pass --model (for example `--model qwen2.5-coder:7b` for Ollama)"
                        .into(),
            });
        }
        Ok(OpenAiBackend {
            http: settings.openai.clone(),
            client: http_client("openai")?,
            idle_timeout: settings.idle_timeout,
            max_line: settings.max_line_bytes,
        })
    }

    /// The JSON body for one turn: the agent's role as a system message, the
    /// conversation so far and the new prompt.
    pub fn body(&self, request: &TurnRequest, model: &str) -> Value {
        let system = json!({"role": "system", "content": request.system_prompt()});
        let mut messages: Vec<Value> = std::iter::once(system)
            .chain(request.history.iter().map(|m| {
                let role = match m.role {
                    ChatRole::User => "user",
                    ChatRole::Assistant => "assistant",
                };
                json!({"role": role, "content": m.content})
            }))
            .collect();
        messages.push(json!({"role": "user", "content": request.prompt}));
        json!({
            "model": model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": self.http.max_tokens,
            "messages": messages,
        })
    }

    async fn run(
        &self,
        request: &TurnRequest,
        events: &TurnEvents,
    ) -> Result<TurnResult, BackendError> {
        let model = request
            .model
            .as_ref()
            .or(self.http.model.as_ref())
            .ok_or_else(|| BackendError::NotConfigured {
                backend: "openai".into(),
                reason: "no model; pass --model".into(),
            })?;
        let url = format!(
            "{}/chat/completions",
            self.http.base_url.trim_end_matches('/')
        );
        let mut builder = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.body(request, model));
        if let Some(key) = self
            .http
            .api_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
        {
            builder = builder.bearer_auth(key);
        }
        events.emit(AgentEvent::Started { thread_id: None }).await;
        Ok(run_http_turn(
            builder,
            OpenAiChatParser::default(),
            self.max_line,
            self.idle_timeout,
            events,
        )
        .await)
    }
}

impl Backend for OpenAiBackend {
    fn name(&self) -> &str {
        "openai"
    }

    fn mini_model(&self) -> Option<String> {
        self.http.mini_model.clone()
    }

    fn turn<'a>(
        &'a self,
        request: &'a TurnRequest,
        events: &'a TurnEvents,
    ) -> BoxFuture<'a, Result<TurnResult, BackendError>> {
        Box::pin(crate::agent::backend::until_stopped(
            request,
            events,
            self.run(request, events),
        ))
    }
}
