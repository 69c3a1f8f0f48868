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

impl BackendSettings {
    /// These settings with backend `backend` reached at `base_url` with `key` (each
    /// `None`: as it was): the HTTP backends' own fields; for codex a model provider
    /// (`-c model_providers…`) whose key is in `ORCH_TIER_API_KEY`, or with a key alone
    /// `OPENAI_API_KEY` and `CODEX_API_KEY`; for claude `ANTHROPIC_BASE_URL` and
    /// `ANTHROPIC_API_KEY`; for gemini `GOOGLE_GEMINI_BASE_URL` and `GEMINI_API_KEY`.
    /// The variables are set in that CLI's environment only.
    pub fn with_endpoint(&self, backend: &str, base_url: Option<&str>, key: Option<&str>) -> Self {
        let mut settings = self.clone();
        let http = match backend {
            "anthropic" => Some(&mut settings.anthropic),
            "minimax" => Some(&mut settings.minimax),
            "openai" => Some(&mut settings.openai),
            _ => None,
        };
        if let Some(http) = http {
            if let Some(url) = base_url {
                http.base_url = url.to_owned();
            }
            // The run's own key is never sent to a tier's other base URL.
            if key.is_some() || base_url.is_some() {
                http.api_key = key.map(str::to_owned);
            }
            return settings;
        }
        if backend == "codex" {
            // Codex reads no base-URL variable: a model provider of its own, whose key
            // is in a variable of its own.
            let cli = &mut settings.codex;
            let key_var = match (base_url, key) {
                (Some(_), Some(_)) => &["ORCH_TIER_API_KEY"][..],
                (_, _) => &["OPENAI_API_KEY", "CODEX_API_KEY"][..],
            };
            if let Some(url) = base_url {
                let args = crate::agent::acting::codex_provider_args(
                    "orch-tier",
                    url,
                    key.map(|_| key_var[0]),
                );
                cli.extra_args.splice(0..0, args);
            }
            if let Some(key) = key {
                for var in key_var {
                    cli.extra_env.retain(|(k, _)| k != var);
                    cli.extra_env.push(((*var).into(), key.into()));
                }
            }
            return settings;
        }
        let (cli, url_vars, key_vars): (&mut CliSettings, &[&str], &[&str]) = match backend {
            "claude" => (
                &mut settings.claude,
                &["ANTHROPIC_BASE_URL"],
                &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"],
            ),
            "gemini" => (
                &mut settings.gemini,
                &["GOOGLE_GEMINI_BASE_URL"],
                &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            ),
            _ => return settings,
        };
        if base_url.is_some() || key.is_some() {
            // The run's own key is never sent to a tier's other base URL: the CLI's key
            // variables are the tier's, or none.
            settings
                .env
                .retain(|(k, _)| !key_vars.iter().any(|v| k == v));
            cli.extra_env
                .retain(|(k, _)| !key_vars.iter().any(|v| k == v));
        }
        for (vars, value) in [(url_vars, base_url), (&key_vars[..1], key)] {
            let Some(value) = value else { continue };
            for var in vars {
                cli.extra_env.retain(|(k, _)| k != var);
                cli.extra_env.push(((*var).into(), value.into()));
            }
        }
        settings
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn an_endpoint_reaches_each_backend_where_it_reads_it() {
        let base = BackendSettings::default();
        let openai = base.with_endpoint("openai", Some("http://127.0.0.1:9/v1"), Some("k-1"));
        assert_eq!(openai.openai.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(openai.openai.api_key.as_deref(), Some("k-1"));
        assert_eq!(openai.anthropic, base.anthropic);
        let codex = base.with_endpoint("codex", Some("http://127.0.0.1:9/v1/"), Some("k-2"));
        let env: Vec<(String, String)> = codex
            .codex
            .extra_env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        assert_eq!(env, [("ORCH_TIER_API_KEY".to_owned(), "k-2".to_owned())]);
        assert_eq!(
            codex.codex.extra_args,
            [
                "-c",
                "model_providers.orch-tier={ name = \"orch-tier\", base_url = \"http://127.0.0.1:9/v1\", wire_api = \"responses\", env_key = \"ORCH_TIER_API_KEY\" }",
                "-c",
                "model_provider=\"orch-tier\"",
            ]
        );
        assert!(
            codex.env.is_empty(),
            "the run's own environment is left alone"
        );
        let key_only = base.with_endpoint("codex", None, Some("k-4"));
        assert_eq!(key_only.codex.extra_env.len(), 2);
        assert!(key_only.codex.extra_args.is_empty());
        let gemini = base.with_endpoint("gemini", None, Some("k-3"));
        assert_eq!(gemini.gemini.extra_env.len(), 1);
        // Another base URL without a key of its own gets no key, not the run's.
        let run = BackendSettings {
            env: vec![
                ("ANTHROPIC_API_KEY".into(), "run-key".into()),
                ("PATH".into(), "/bin".into()),
            ],
            openai: HttpSettings {
                api_key: Some("run-key".into()),
                ..HttpSettings::default()
            },
            ..BackendSettings::default()
        };
        let claude = run.with_endpoint("claude", Some("http://127.0.0.1:9"), None);
        assert_eq!(claude.env, [("PATH".into(), "/bin".into())]);
        assert_eq!(
            claude.claude.extra_env,
            [("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into())]
        );
        let openai = run.with_endpoint("openai", Some("http://127.0.0.1:9/v1"), None);
        assert_eq!(openai.openai.api_key, None);
    }
}
