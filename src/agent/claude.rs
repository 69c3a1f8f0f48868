//! The `claude` backend: `claude -p --input-format text --output-format stream-json
//! --verbose` with the prompt on stdin, resumed with `--resume=<session_id>`.
//!
//! Owns the command line; process handling lives in `process`, parsing in
//! `stream::claude`.

use std::ffi::OsString;

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::classify::local_now;
use crate::agent::cli_turn::CliCommand;
use crate::agent::event::AgentEvent;
use crate::agent::settings::BackendSettings;
use crate::agent::stream::ClaudeParser;

pub struct ClaudeBackend {
    command: CliCommand,
}

impl ClaudeBackend {
    /// Finds the `claude` binary (`ORCH_CLAUDE_BIN` or PATH).
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        Ok(ClaudeBackend {
            command: CliCommand::resolve("claude", "ORCH_CLAUDE_BIN", &settings.claude, settings)?,
        })
    }

    /// The arguments for one turn (without the program; the prompt goes on stdin).
    pub fn args(&self, request: &TurnRequest) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "-p".into(),
            "--input-format".into(),
            "text".into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
        ];
        if let Some(model) = self.command.model(request) {
            args.push("--model".into());
            args.push(model.into());
        }
        if let Some(session) = &request.resume {
            args.push(format!("--resume={session}").into());
        }
        args.extend(
            request
                .permissions
                .claude_args()
                .into_iter()
                .map(OsString::from),
        );
        args.extend(self.command.cli.extra_args.iter().map(OsString::from));
        args
    }

    async fn run(
        &self,
        request: &TurnRequest,
        events: &TurnEvents,
    ) -> Result<TurnResult, BackendError> {
        let parser = ClaudeParser::new(local_now());
        events
            .emit(AgentEvent::PermissionsSet {
                policy: request.permissions.as_str().into(),
                flags: request.permissions.claude_args().join(" "),
            })
            .await;
        Ok(self
            .command
            .run(request, self.args(request), parser, events)
            .await?
            .0)
    }
}

impl Backend for ClaudeBackend {
    fn name(&self) -> &str {
        "claude"
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
