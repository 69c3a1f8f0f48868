//! The `codex` backend: `codex exec --json … -` for a new thread, `codex exec --json
//! resume <thread_id> -` for later turns on it; the prompt goes on stdin (`-`).
//!
//! Owns the command line and the thread-cumulative usage bookkeeping (Codex reports
//! usage for the whole thread; we emit per-turn deltas). Process handling lives in
//! `process`, parsing in `stream::codex`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Mutex;

use crate::agent::backend::{
    Backend, BackendError, BoxFuture, TurnEvents, TurnRequest, TurnResult,
};
use crate::agent::classify::local_now;
use crate::agent::cli_turn::CliCommand;
use crate::agent::codex_rollout;
use crate::agent::event::{AgentEvent, Usage};
use crate::agent::settings::BackendSettings;
use crate::agent::stream::CodexParser;

pub struct CodexBackend {
    command: CliCommand,
    /// Thread id → usage Codex last reported for it (cumulative).
    threads: Mutex<HashMap<String, Usage>>,
}

impl CodexBackend {
    /// Finds the `codex` binary (`ORCH_CODEX_BIN` or PATH) and keeps the settings.
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        Ok(CodexBackend {
            command: CliCommand::resolve("codex", "ORCH_CODEX_BIN", &settings.codex, settings)?,
            threads: Mutex::new(HashMap::new()),
        })
    }

    /// The arguments for one turn (without the program; the prompt goes on stdin).
    pub fn args(&self, request: &TurnRequest) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "exec".into(),
            "--json".into(),
            "--skip-git-repo-check".into(),
        ];
        if let Some(model) = self.command.model(request) {
            args.push("-m".into());
            args.push(model.into());
        }
        let sandbox = request.permissions.codex_sandbox();
        match &request.resume {
            None => {
                args.push("--sandbox".into());
                args.push(sandbox.into());
                args.extend(self.command.cli.extra_args.iter().map(OsString::from));
                args.push("--".into());
                args.push("-".into());
            }
            Some(thread_id) => {
                // `exec resume` has no --sandbox flag; the config override does the same.
                args.push("-c".into());
                args.push(format!("sandbox_mode=\"{sandbox}\"").into());
                args.extend(self.command.cli.extra_args.iter().map(OsString::from));
                args.push("resume".into());
                args.push("--".into());
                args.push(thread_id.into());
                args.push("-".into());
            }
        }
        args
    }

    /// Commands of this turn that Codex's session record holds and its stream did not
    /// show (see `codex_rollout`).
    fn commands_left_out(&self, thread_id: &str, seen: &[String]) -> Vec<AgentEvent> {
        let codex_home = match self.command.env_var("CODEX_HOME") {
            Some(home) => std::path::PathBuf::from(home),
            None => match self.command.env_var("HOME") {
                Some(home) => std::path::Path::new(home).join(".codex"),
                None => return Vec::new(),
            },
        };
        let Some(record) = codex_rollout::find_record(&codex_home, thread_id) else {
            return Vec::new();
        };
        match std::fs::read_to_string(&record) {
            Ok(text) => {
                codex_rollout::missing_commands(&codex_rollout::last_turn_commands(&text), seen)
            }
            Err(err) => {
                tracing::debug!(record = %record.display(), error = %err, "cannot read codex's session record");
                Vec::new()
            }
        }
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
        let now = local_now();
        let parser = CodexParser::new(self.usage_before(request), now);
        let sandbox = request.permissions.codex_sandbox();
        events
            .emit(AgentEvent::PermissionsSet {
                policy: request.permissions.as_str().into(),
                flags: if request.resume.is_some() {
                    format!("-c sandbox_mode=\"{sandbox}\"")
                } else {
                    format!("--sandbox {sandbox}")
                },
            })
            .await;
        let (result, parser) = self
            .command
            .run(request, self.args(request), parser, events)
            .await?;
        // A turn with more commands than the parser remembers gets no gap filling: it
        // could not tell which ones the stream showed.
        if let (Some(thread_id), Some(seen)) = (&result.thread_id, parser.commands_seen()) {
            for event in self.commands_left_out(thread_id, seen) {
                events.emit(event).await;
            }
        }
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

    fn seed_thread(&self, thread_id: &str, usage: Usage) {
        self.threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(thread_id.to_owned())
            .or_insert(usage);
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
