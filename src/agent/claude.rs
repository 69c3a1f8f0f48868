//! The `claude` backend: `claude -p … --output-format stream-json --verbose`, resumed
//! with `--resume=<session_id>`.
//!
//! Owns the command line; process handling lives in `process`, parsing in
//! `stream::claude`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::classify::local_now;
use crate::agent::cli_turn::run_cli_turn;
use crate::agent::process::{ProcessSpec, resolve_program};
use crate::agent::settings::{BackendSettings, CliSettings};
use crate::agent::stream::ClaudeParser;

pub struct ClaudeBackend {
    program: PathBuf,
    cli: CliSettings,
    env: Vec<(OsString, OsString)>,
    kill_grace: Duration,
    max_line: usize,
}

impl ClaudeBackend {
    /// Finds the `claude` binary (`ORCH_CLAUDE_BIN` or PATH).
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        let program = resolve_program(
            "claude",
            settings.claude.bin.as_deref(),
            "ORCH_CLAUDE_BIN",
            settings.env_var("PATH").map(OsString::as_os_str),
        )?;
        let mut env = settings.env.clone();
        env.extend(settings.claude.extra_env.iter().cloned());
        Ok(ClaudeBackend {
            program,
            cli: settings.claude.clone(),
            env,
            kill_grace: settings.kill_grace,
            max_line: settings.max_line_bytes,
        })
    }

    /// The arguments for one turn (without the program).
    pub fn args(&self, request: &TurnRequest) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "-p".into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
        ];
        if let Some(model) = request.model.as_ref().or(self.cli.model.as_ref()) {
            args.push("--model".into());
            args.push(model.into());
        }
        if let Some(session) = &request.resume {
            args.push(format!("--resume={session}").into());
        }
        args.extend(self.cli.extra_args.iter().map(OsString::from));
        args.push("--".into());
        args.push(request.prompt.clone().into());
        args
    }

    async fn run(
        &self,
        request: &TurnRequest,
        events: &TurnEvents,
    ) -> Result<TurnResult, BackendError> {
        let spec = ProcessSpec {
            program: self.program.clone(),
            args: self.args(request),
            cwd: request.cwd.clone(),
            env: self.env.clone(),
            kill_grace: self.kill_grace,
        };
        let parser = ClaudeParser::new(local_now());
        Ok(run_cli_turn(&spec, parser, self.max_line, events).await?.0)
    }
}

impl Backend for ClaudeBackend {
    fn name(&self) -> &str {
        "claude"
    }

    fn mini_model(&self) -> Option<String> {
        self.cli.mini_model.clone()
    }

    fn turn<'a>(
        &'a self,
        request: &'a TurnRequest,
        events: &'a TurnEvents,
    ) -> BoxFuture<'a, Result<TurnResult, BackendError>> {
        Box::pin(self.run(request, events))
    }
}
