//! Everything the real backends need to run, resolved once by the config layer.
//!
//! Backends never read environment variables; the lead's config code fills this from
//! flags, env vars and the agents config file (each field says which). Owns defaults;
//! does not own validation of user input beyond what a backend needs to start.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Codex's `--mini` model: the "fast and affordable" entry of the model catalog bundled
/// with the pinned Codex 0.169 (`gpt-5.1-codex-mini` is not in it: Codex then warns
/// "Model metadata … not found" on every turn and stops offering `apply_patch`).
pub const CODEX_MINI_MODEL: &str = "gpt-6-luna";

/// Default of `BackendSettings::cli_idle_timeout`.
pub const DEFAULT_CLI_IDLE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Settings of one agent CLI (codex, claude, gemini).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CliSettings {
    /// Explicit binary path. Codex: env `ORCH_CODEX_BIN`; claude: `ORCH_CLAUDE_BIN`;
    /// gemini: `ORCH_GEMINI_BIN`. `None` → looked up on `PATH` from `BackendSettings::env`.
    pub bin: Option<PathBuf>,
    /// Default model (`-m`). Flag `--model`; per-agent `model` overrides it per turn
    /// through `TurnRequest::model`. `None` → the CLI's own default.
    pub model: Option<String>,
    /// Cheapest model, used under `--mini`. Config `backends.<name>.mini_model`.
    pub mini_model: Option<String>,
    /// Extra arguments, last on the command line (config `backends.<name>.args`).
    pub extra_args: Vec<String>,
    /// Extra environment for this CLI only (config `backends.<name>.env`), added after
    /// `BackendSettings::env`.
    pub extra_env: Vec<(OsString, OsString)>,
}

/// Settings of one HTTP API backend (anthropic, minimax, openai).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// Base URL without the endpoint path, e.g. `https://api.anthropic.com` (the backend
    /// appends `/v1/messages`) or `http://127.0.0.1:11434/v1` (appends
    /// `/chat/completions`).
    pub base_url: String,
    /// API key; `None` sends no auth header (fine for local servers).
    pub api_key: Option<String>,
    /// Default model; per-agent `model` overrides it per turn.
    pub model: Option<String>,
    /// Cheapest model, used under `--mini`.
    pub mini_model: Option<String>,
    /// `max_tokens` for each request.
    pub max_tokens: u32,
}

/// Everything `registry::build_backend` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSettings {
    /// The complete environment of every agent CLI child (the child starts from an
    /// empty environment). The lead passes the launcher's own environment (or a
    /// scrubbed copy); its `PATH` is also where binaries are looked up.
    pub env: Vec<(OsString, OsString)>,
    /// `codex` (the default backend). Env `ORCH_CODEX_BIN`, flags `--model`, `--mini`
    /// (`CODEX_MINI_MODEL`).
    pub codex: CliSettings,
    /// `claude`. Its permission flags come from each turn's `Permissions`.
    pub claude: CliSettings,
    /// `gemini`. Its approval mode comes from each turn's `Permissions`.
    pub gemini: CliSettings,
    /// `anthropic`: base URL `https://api.anthropic.com`, key from `ANTHROPIC_API_KEY`.
    pub anthropic: HttpSettings,
    /// `minimax`: base URL from `ORCHESTRATED_CODEX_MINIMAX_BASE_URL` (default
    /// `https://api.minimax.io/anthropic`), key from `ORCHESTRATED_CODEX_MINIMAX_API_KEY`
    /// or else `ANTHROPIC_API_KEY`, model from `--minimax-model` (default `MiniMax-M2.1`).
    pub minimax: HttpSettings,
    /// `openai`: flags `--base-url` (default Ollama's `http://127.0.0.1:11434/v1`),
    /// `--model` (required), key from `OPENAI_API_KEY` if set.
    pub openai: HttpSettings,
    /// How long a stopped agent's process group gets between SIGTERM and SIGKILL.
    /// Config `process { kill-grace-ms … }`; default 5 s.
    pub kill_grace: Duration,
    /// A stream silent for this long is cut (HTTP backends).
    pub idle_timeout: Duration,
    /// An agent CLI that writes nothing (stdout or stderr) for this long is ended and
    /// its turn classed transient. Config `process { idle-timeout-ms … }`; default
    /// 20 min.
    pub cli_idle_timeout: Duration,
    /// Longest single line accepted from an agent; a longer line is cut to its first
    /// bytes and a marker (a raw line), and the stream goes on.
    pub max_line_bytes: usize,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            env: Vec::new(),
            codex: CliSettings {
                mini_model: Some(CODEX_MINI_MODEL.into()),
                ..CliSettings::default()
            },
            claude: CliSettings {
                mini_model: Some("haiku".into()),
                ..CliSettings::default()
            },
            gemini: CliSettings {
                mini_model: Some("gemini-2.5-flash".into()),
                ..CliSettings::default()
            },
            anthropic: HttpSettings {
                base_url: "https://api.anthropic.com".into(),
                api_key: None,
                model: Some("claude-sonnet-4-5".into()),
                mini_model: Some("claude-haiku-4-5".into()),
                max_tokens: 16_000,
            },
            minimax: HttpSettings {
                base_url: "https://api.minimax.io/anthropic".into(),
                api_key: None,
                model: Some("MiniMax-M2.1".into()),
                mini_model: Some("MiniMax-M2.1".into()),
                max_tokens: 16_000,
            },
            openai: HttpSettings {
                base_url: "http://127.0.0.1:11434/v1".into(),
                api_key: None,
                model: None,
                mini_model: None,
                max_tokens: 8_192,
            },
            kill_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            cli_idle_timeout: DEFAULT_CLI_IDLE_TIMEOUT,
            max_line_bytes: crate::agent::stream::DEFAULT_MAX_LINE,
        }
    }
}

impl BackendSettings {
    /// The value of `name` in the children's environment.
    pub fn env_var(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}
