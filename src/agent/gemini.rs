//! The `gemini` backend: `gemini -o stream-json` with the prompt on stdin (a piped
//! stdin makes the CLI headless and is read as the prompt), resumed with
//! `-r <session_id>`.
//!
//! Owns the command line; process handling lives in `process`, parsing in
//! `stream::gemini`.

use std::ffi::OsString;

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::cli_turn::CliCommand;
use crate::agent::event::AgentEvent;
use crate::agent::settings::BackendSettings;
use crate::agent::stream::GeminiParser;

pub struct GeminiBackend {
    command: CliCommand,
    /// Holds orch's system-defaults file while the backend lives (see `auth_defaults`).
    _defaults: Option<tempfile::TempDir>,
}

/// The variable the Gemini CLI reads its system-defaults settings file from: the
/// lowest layer of its settings, below the user's `~/.gemini/settings.json`.
const SYSTEM_DEFAULTS_VAR: &str = "GEMINI_CLI_SYSTEM_DEFAULTS_PATH";

impl GeminiBackend {
    /// Finds the `gemini` binary (`ORCH_GEMINI_BIN` or PATH).
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        let mut cli = settings.gemini.clone();
        let defaults = auth_defaults(settings)?;
        if let Some(dir) = &defaults {
            cli.extra_env.push((
                SYSTEM_DEFAULTS_VAR.into(),
                dir.path().join("system-defaults.json").into(),
            ));
        }
        Ok(GeminiBackend {
            command: CliCommand::resolve("gemini", "ORCH_GEMINI_BIN", &cli, settings)?,
            _defaults: defaults,
        })
    }

    /// The arguments for one turn (without the program; the prompt goes on stdin).
    pub fn args(&self, request: &TurnRequest) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-o".into(), "stream-json".into()];
        args.extend(permission_args(request).into_iter().map(OsString::from));
        if let Some(model) = self.command.model(request) {
            args.push("-m".into());
            args.push(model.into());
        }
        if let Some(session) = &request.resume {
            args.push("-r".into());
            args.push(session.into());
        }
        args.extend(self.command.cli.extra_args.iter().map(OsString::from));
        args
    }

    async fn run(
        &self,
        request: &TurnRequest,
        events: &TurnEvents,
    ) -> Result<TurnResult, BackendError> {
        let parser = GeminiParser::default();
        events
            .emit(AgentEvent::PermissionsSet {
                policy: request.permissions.as_str().into(),
                flags: permission_args(request).join(" "),
            })
            .await;
        Ok(self
            .command
            .run(request, self.args(request), parser, events)
            .await?
            .0)
    }
}

/// With `GEMINI_API_KEY` set, a headless run needs the auth type chosen in a settings
/// file: the CLI's guess from the environment is `gateway` as soon as
/// `GOOGLE_GEMINI_BASE_URL` is set, which its headless check refuses ("Invalid auth
/// method selected", exit 41). orch writes `selectedType: gemini-api-key` into a private
/// system-defaults file for its own children only: the user's `~/.gemini` is never
/// written, and its settings (another auth type, a login) still win over these defaults.
/// Nothing is written when the user points the CLI at system defaults of their own, or
/// when no base directory (`XDG_RUNTIME_DIR`, `HOME`, `TMPDIR`) is private enough for
/// the CLI to read a settings file from it; the directory is removed with the backend.
fn auth_defaults(settings: &BackendSettings) -> Result<Option<tempfile::TempDir>, BackendError> {
    let has_key = settings
        .env_var("GEMINI_API_KEY")
        .is_some_and(|key| !key.is_empty());
    let own_defaults = settings.env_var(SYSTEM_DEFAULTS_VAR).is_some()
        || settings
            .gemini
            .extra_env
            .iter()
            .any(|(k, _)| k == SYSTEM_DEFAULTS_VAR);
    if !has_key || own_defaults {
        return Ok(None);
    }
    // The CLI ignores a settings file if any directory above it is writable by group or
    // others (sticky /tmp included), so the file goes under the first secure base.
    let Some(base) = ["XDG_RUNTIME_DIR", "HOME", "TMPDIR"]
        .iter()
        .filter_map(|var| settings.env_var(var))
        .map(std::path::PathBuf::from)
        .find(|dir| dir.is_absolute() && is_private_chain(dir))
    else {
        return Ok(None);
    };
    let not_configured = |err: std::io::Error| BackendError::NotConfigured {
        backend: "gemini".into(),
        reason: format!(
            "failed to write the Gemini CLI's system-defaults file under {}: {err}",
            base.display()
        ),
    };
    let dir = tempfile::Builder::new()
        .prefix(".orch-gemini-")
        .tempdir_in(&base)
        .map_err(not_configured)?;
    std::fs::write(
        dir.path().join("system-defaults.json"),
        r#"{"security":{"auth":{"selectedType":"gemini-api-key"}}}"#,
    )
    .map_err(not_configured)?;
    Ok(Some(dir))
}

/// `dir` and every directory above it exist and are writable by their owner only.
fn is_private_chain(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o022 == 0)
    })
}

/// `--approval-mode` from the policy, and `--skip-trust`: a headless run cannot answer
/// the trust dialog, and an untrusted folder silently drops the approval mode to
/// `default`. The flag trusts the folder for this invocation only; nothing is written
/// to the user's `~/.gemini`.
fn permission_args(request: &TurnRequest) -> Vec<String> {
    vec![
        "--approval-mode".into(),
        request.permissions.gemini_approval_mode().into(),
        "--skip-trust".into(),
    ]
}

impl Backend for GeminiBackend {
    fn name(&self) -> &str {
        "gemini"
    }

    fn mini_model(&self) -> Option<String> {
        self.command.cli.mini_model.clone()
    }

    fn turn<'a>(
        &'a self,
        request: &'a TurnRequest,
        events: &'a TurnEvents,
    ) -> BoxFuture<'a, Result<TurnResult, BackendError>> {
        Box::pin(self.run(request, events))
    }
}
