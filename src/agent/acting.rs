//! HTTP models that act: `anthropic`, `minimax` and `openai` agents that may change
//! files run their turns on an agent CLI pointed at the same endpoint, which reads,
//! edits and runs commands for them; text-only turns stay on the direct HTTP client,
//! which is faster.
//!
//! - `anthropic`, `minimax`: Claude Code (`claude`) with `ANTHROPIC_BASE_URL`, the
//!   backend's key as `ANTHROPIC_API_KEY` and its model (MiniMax's Anthropic-compatible
//!   API takes tools and streaming).
//! - `openai`: Codex (`codex`) with a `model_providers` entry for the base URL (its
//!   Responses API: Ollama, vLLM and llama.cpp serve one), the key as `OPENAI_API_KEY`
//!   when there is one.
//!
//! A turn acts when its agent may change files and it is not a blueprint or a
//! reviewer's verdict. The first acting turn of a conversation that began over HTTP
//! gets what was said so far as a transcript; later ones resume the CLI's session.

use std::ffi::OsString;
use std::sync::Arc;

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, Expects, TurnEvents, TurnRequest, TurnResult, transcript,
};
use crate::agent::claude::ClaudeBackend;
use crate::agent::codex::CodexBackend;
use crate::agent::permissions::Permissions;
use crate::agent::settings::{BackendSettings, CliSettings, HttpSettings};

pub struct ActingHttp {
    /// The direct HTTP client, for turns that only produce text.
    text: Arc<dyn Backend>,
    /// The agent CLI pointed at the same endpoint, for turns that act; or why it
    /// cannot run (said by each acting turn, so a squad whose agents only read still
    /// runs without it).
    act: Result<Arc<dyn Backend>, BackendError>,
}

/// Variables of the user's environment that would point the CLI elsewhere.
const CLAUDE_ENDPOINT_VARS: &[&str] = &[
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
];

impl ActingHttp {
    /// `anthropic` or `minimax` (`http`: its settings) acting through Claude Code.
    pub fn over_claude(
        name: &str,
        text: Arc<dyn Backend>,
        http: &HttpSettings,
        settings: &BackendSettings,
    ) -> Self {
        let mut cli = settings.claude.clone();
        cli.model = http.model.clone();
        cli.mini_model = http.mini_model.clone();
        let mut env: Vec<(OsString, OsString)> = vec![(
            "ANTHROPIC_BASE_URL".into(),
            http.base_url.trim_end_matches('/').into(),
        )];
        if let Some(key) = &http.api_key {
            env.push(("ANTHROPIC_API_KEY".into(), key.into()));
        }
        if let Some(model) = &http.model {
            // Claude Code's side requests (titles, summaries) go to the same endpoint,
            // which may know no other model.
            env.push(("ANTHROPIC_SMALL_FAST_MODEL".into(), model.into()));
            env.push(("ANTHROPIC_DEFAULT_HAIKU_MODEL".into(), model.into()));
        }
        let settings = endpoint_settings(settings, CLAUDE_ENDPOINT_VARS, cli, env, |s, cli| {
            s.claude = cli
        });
        let act = ClaudeBackend::new(&settings)
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|err| cli_missing(name, "claude", "@anthropic-ai/claude-code", err));
        ActingHttp { text, act }
    }

    /// `openai` acting through Codex.
    pub fn over_codex(text: Arc<dyn Backend>, settings: &BackendSettings) -> Self {
        let http = &settings.openai;
        let mut cli = settings.codex.clone();
        cli.model = http.model.clone();
        cli.mini_model = http.mini_model.clone();
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        if let Some(key) = &http.api_key {
            env.push(("OPENAI_API_KEY".into(), key.into()));
        }
        cli.extra_args.splice(
            0..0,
            codex_provider_args(
                "orch-openai",
                &http.base_url,
                http.api_key.as_ref().map(|_| "OPENAI_API_KEY"),
            ),
        );
        let settings = endpoint_settings(settings, &["OPENAI_API_KEY"], cli, env, |s, cli| {
            s.codex = cli
        });
        let act = CodexBackend::new(&settings)
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|err| cli_missing("openai", "codex", "@openai/codex", err));
        ActingHttp { text, act }
    }

    /// Whether `request` runs on the CLI.
    pub fn acts(request: &TurnRequest) -> bool {
        request.permissions != Permissions::ReadOnly
            && !matches!(request.expects, Expects::Blueprint | Expects::Verdict)
    }
}

/// The settings for the CLI: the user's environment without `drop`, then `env`.
fn endpoint_settings(
    settings: &BackendSettings,
    drop: &[&str],
    mut cli: CliSettings,
    env: Vec<(OsString, OsString)>,
    set: impl FnOnce(&mut BackendSettings, CliSettings),
) -> BackendSettings {
    let mut settings = settings.clone();
    settings
        .env
        .retain(|(key, _)| !drop.iter().any(|d| key == d));
    cli.extra_env
        .retain(|(key, _)| !drop.iter().any(|d| key == d));
    cli.extra_env.extend(env);
    set(&mut settings, cli);
    settings
}

fn cli_missing(backend: &str, cli: &str, package: &str, err: BackendError) -> BackendError {
    BackendError::NotConfigured {
        backend: backend.into(),
        reason: format!(
            "its agents that change files run on the `{cli}` CLI pointed at its endpoint ({err}); install it (npm {package}), or give those agents `permissions \"read-only\"`"
        ),
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
/// Codex's arguments that point it at `base_url` through a model provider called
/// `name` (Codex reads no base-URL variable), whose key is in variable `key_var`.
pub(crate) fn codex_provider_args(
    name: &str,
    base_url: &str,
    key_var: Option<&str>,
) -> [String; 4] {
    let mut provider = format!(
        "{{ name = {}, base_url = {}, wire_api = \"responses\"",
        toml_string(name),
        toml_string(base_url.trim_end_matches('/'))
    );
    if let Some(var) = key_var {
        provider.push_str(&format!(", env_key = {}", toml_string(var)));
    }
    provider.push_str(" }");
    [
        "-c".to_owned(),
        format!("model_providers.{name}={provider}"),
        "-c".to_owned(),
        format!("model_provider={}", toml_string(name)),
    ]
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

impl Backend for ActingHttp {
    fn cannot_act(&self) -> Option<String> {
        self.act.as_ref().err().map(ToString::to_string)
    }

    fn name(&self) -> &str {
        self.text.name()
    }

    fn mini_model(&self) -> Option<String> {
        self.text.mini_model()
    }

    fn turn<'a>(
        &'a self,
        request: &'a TurnRequest,
        events: &'a TurnEvents,
    ) -> BoxFuture<'a, Result<TurnResult, BackendError>> {
        Box::pin(async move {
            if !Self::acts(request) {
                return self.text.turn(request, events).await;
            }
            let act = match &self.act {
                Ok(act) => act,
                Err(BackendError::NotConfigured { backend, reason }) => {
                    return Err(BackendError::NotConfigured {
                        backend: backend.clone(),
                        reason: reason.clone(),
                    });
                }
                Err(other) => {
                    return Err(BackendError::NotConfigured {
                        backend: self.text.name().to_owned(),
                        reason: other.to_string(),
                    });
                }
            };
            if request.resume.is_none() && !request.history.is_empty() {
                let mut request = request.clone();
                request.prompt = format!(
                    "{}{}",
                    transcript(
                        &request.history,
                        "(What was said so far in this conversation:)"
                    ),
                    request.prompt
                );
                return act.turn(&request, events).await;
            }
            act.turn(request, events).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_becomes_a_toml_string_whatever_it_holds() {
        assert_eq!(
            toml_string("http://127.0.0.1:11434/v1"),
            "\"http://127.0.0.1:11434/v1\""
        );
        assert_eq!(
            toml_string("http://x/\"a\"\\b"),
            "\"http://x/\\\"a\\\"\\\\b\""
        );
    }
}
