//! Builds a backend by the name users type after `--backend`.
//!
//! Owns the list of real backends; the orchestrator adds `demo` in front of it.

use std::sync::Arc;

use crate::agent::acting::ActingHttp;
use crate::agent::anthropic::AnthropicBackend;
use crate::agent::backend::{Backend, BackendError};
use crate::agent::claude::ClaudeBackend;
use crate::agent::codex::CodexBackend;
use crate::agent::gemini::GeminiBackend;
use crate::agent::openai::OpenAiBackend;
use crate::agent::settings::BackendSettings;

/// Names `build_backend` knows, in the order `--help` should list them.
pub const BACKEND_NAMES: &[&str] = &[
    "codex",
    "claude",
    "gemini",
    "anthropic",
    "minimax",
    "openai",
];

/// Builds the backend called `name`. Fails early (missing binary, missing key or
/// model) so a run never starts with a backend that cannot work.
pub fn build_backend(
    name: &str,
    settings: &BackendSettings,
) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(match name {
        "codex" => Arc::new(CodexBackend::new(settings)?),
        "claude" => Arc::new(ClaudeBackend::new(settings)?),
        "gemini" => Arc::new(GeminiBackend::new(settings)?),
        "anthropic" => Arc::new(ActingHttp::over_claude(
            "anthropic",
            Arc::new(AnthropicBackend::anthropic(settings)?),
            &settings.anthropic,
            settings,
        )),
        "minimax" => Arc::new(ActingHttp::over_claude(
            "minimax",
            Arc::new(AnthropicBackend::minimax(settings)?),
            &settings.minimax,
            settings,
        )),
        "openai" => Arc::new(ActingHttp::over_codex(
            Arc::new(OpenAiBackend::new(settings)?),
            settings,
        )),
        other => {
            return Err(BackendError::NotConfigured {
                backend: other.to_string(),
                reason: format!(
                    "unknown backend; choose one of {}",
                    BACKEND_NAMES.join(", ")
                ),
            });
        }
    })
}
