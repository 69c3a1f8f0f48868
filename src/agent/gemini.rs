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
        Ok(self
            .command
            .run(request, self.args(request), parser, events)
            .await?
            .0)
    }
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
