//! The `anthropic` and `minimax` backends: the Anthropic Messages API over SSE.
//!
//! MiniMax serves the same API under its own base URL and wants the key both as
//! `x-api-key` and as a Bearer token. Each turn resends the agent's conversation
//! (`TurnRequest::history` plus the new prompt). Tool calls the model emits are
//! reported, not executed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, ChatRole, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::event::AgentEvent;
use crate::agent::http::run_http_turn;
use crate::agent::settings::{BackendSettings, HttpSettings};
use crate::agent::stream::AnthropicParser;

/// The API version header every Messages request carries.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Which headers carry the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStyle {
    ApiKey,
    ApiKeyAndBearer,
}

pub struct AnthropicBackend {
    name: &'static str,
    http: HttpSettings,
    auth: AuthStyle,
    client: reqwest::Client,
    idle_timeout: Duration,
    max_line: usize,
}

impl AnthropicBackend {
    /// `--backend anthropic`.
    pub fn anthropic(settings: &BackendSettings) -> Result<Self, BackendError> {
        Self::new(
            "anthropic",
            &settings.anthropic,
            AuthStyle::ApiKey,
            settings,
            "ANTHROPIC_API_KEY",
        )
    }

    /// `--backend minimax`.
    pub fn minimax(settings: &BackendSettings) -> Result<Self, BackendError> {
        Self::new(
            "minimax",
            &settings.minimax,
            AuthStyle::ApiKeyAndBearer,
            settings,
            "ORCHESTRATED_CODEX_MINIMAX_API_KEY or ANTHROPIC_API_KEY",
        )
    }

    fn new(
        name: &'static str,
        http: &HttpSettings,
        auth: AuthStyle,
        settings: &BackendSettings,
        key_hint: &str,
    ) -> Result<Self, BackendError> {
        if http.api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
            return Err(BackendError::NotConfigured {
                backend: name.into(),
                reason: format!("no API key; set {key_hint}"),
            });
        }
        Ok(AnthropicBackend {
            name,
            http: http.clone(),
            auth,
            client: http_client(name)?,
            idle_timeout: settings.idle_timeout,
            max_line: settings.max_line_bytes,
        })
    }

    /// The JSON body for one turn: the agent's role as the system prompt, the
    /// conversation so far and the new prompt.
    pub fn body(&self, request: &TurnRequest, model: &str) -> Value {
        let mut messages: Vec<Value> = request
            .history
            .iter()
            .map(|m| json!({"role": role(m.role), "content": m.content}))
            .collect();
        messages.push(json!({"role": "user", "content": request.prompt}));
        json!({
            "model": model,
            "max_tokens": self.http.max_tokens,
            "stream": true,
            "system": request.system_prompt(),
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
                backend: self.name.into(),
                reason: "no model; set --model".into(),
            })?;
        let url = format!("{}/v1/messages", self.http.base_url.trim_end_matches('/'));
        let key = self.http.api_key.clone().unwrap_or_default();
        let mut builder = self
            .client
            .post(url)
            .header("x-api-key", &key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.body(request, model));
        if self.auth == AuthStyle::ApiKeyAndBearer {
            builder = builder.bearer_auth(&key);
        }
        events.emit(AgentEvent::Started { thread_id: None }).await;
        Ok(run_http_turn(
            builder,
            AnthropicParser::default(),
            self.max_line,
            self.idle_timeout,
            events,
        )
        .await)
    }
}

fn role(role: ChatRole) -> &'static str {
    match role {
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

/// One client per backend; connection setup is bounded, streams are not (idle timeout).
pub(crate) fn http_client(backend: &str) -> Result<reqwest::Client, BackendError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|err| BackendError::NotConfigured {
            backend: backend.into(),
            reason: format!("cannot build an HTTP client: {err}"),
        })
}

impl Backend for AnthropicBackend {
    fn name(&self) -> &str {
        self.name
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
