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
}

impl GeminiBackend {
    /// Finds the `gemini` binary (`ORCH_GEMINI_BIN` or PATH).
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        Ok(GeminiBackend {
            command: CliCommand::resolve("gemini", "ORCH_GEMINI_BIN", &settings.gemini, settings)?,
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
