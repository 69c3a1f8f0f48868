//! The `codex` backend: `codex exec --json` for a new thread, `codex exec --json
//! resume <thread_id>` for later turns on it.
//!
//! Owns the command line and the thread-cumulative usage bookkeeping (Codex reports
//! usage for the whole thread; we emit per-turn deltas). Process handling lives in
//! `process`, parsing in `stream::codex`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::classify::local_now;
use crate::agent::cli_turn::run_cli_turn;
use crate::agent::event::Usage;
use crate::agent::process::{ProcessSpec, resolve_program};
use crate::agent::settings::{BackendSettings, CliSettings};
use crate::agent::stream::CodexParser;

pub struct CodexBackend {
    program: PathBuf,
    cli: CliSettings,
    sandbox: String,
    env: Vec<(OsString, OsString)>,
    kill_grace: Duration,
    max_line: usize,
    /// Thread id → usage Codex last reported for it (cumulative).
    threads: Mutex<HashMap<String, Usage>>,
}

impl CodexBackend {
    /// Finds the `codex` binary (`ORCH_CODEX_BIN` or PATH) and keeps the settings.
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        let program = resolve_program(
            "codex",
            settings.codex.bin.as_deref(),
            "ORCH_CODEX_BIN",
            settings.env_var("PATH").map(OsString::as_os_str),
        )?;
        let mut env = settings.env.clone();
        env.extend(settings.codex.extra_env.iter().cloned());
        Ok(CodexBackend {
            program,
            cli: settings.codex.clone(),
            sandbox: settings.codex_sandbox.clone(),
            env,
            kill_grace: settings.kill_grace,
            max_line: settings.max_line_bytes,
            threads: Mutex::new(HashMap::new()),
        })
    }

    /// The arguments for one turn (without the program).
    pub fn args(&self, request: &TurnRequest) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "exec".into(),
            "--json".into(),
            "--skip-git-repo-check".into(),
        ];
        if let Some(model) = request.model.as_ref().or(self.cli.model.as_ref()) {
            args.push("-m".into());
            args.push(model.into());
        }
        match &request.resume {
            None => {
                if !self.sandbox.is_empty() {
                    args.push("--sandbox".into());
                    args.push(self.sandbox.clone().into());
                }
                args.extend(self.cli.extra_args.iter().map(OsString::from));
                args.push("--".into());
            }
            Some(thread_id) => {
                // `exec resume` has no --sandbox flag; the config override does the same.
                if !self.sandbox.is_empty() {
                    args.push("-c".into());
                    args.push(format!("sandbox_mode=\"{}\"", self.sandbox).into());
                }
                args.extend(self.cli.extra_args.iter().map(OsString::from));
                args.push("resume".into());
                args.push("--".into());
                args.push(thread_id.into());
            }
        }
        args.push(request.prompt.clone().into());
        args
    }

    fn usage_before(&self, request: &TurnRequest) -> Usage {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        request
            .resume
            .as_ref()
            .and_then(|id| threads.get(id).copied())
            .unwrap_or_default()
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
        let now = local_now();
        let parser = CodexParser::new(self.usage_before(request), now);
        let (result, parser) = run_cli_turn(&spec, parser, self.max_line, events).await?;
        if let (Some(thread_id), Some(total)) = (&result.thread_id, parser.cumulative_usage()) {
            let mut threads = self
                .threads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            threads.insert(thread_id.clone(), total);
        }
        Ok(result)
    }
}

impl Backend for CodexBackend {
    fn name(&self) -> &str {
        "codex"
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
