//! `launch ctl …` and `launch ls`: talk to runs of this repository.

use std::path::Path;

use crate::cli::{CtlArgs, CtlCommand, LsArgs};
use crate::config::resolve::project_root;
use crate::control::client::send_to_run;
use crate::control::{ControlCommand, ControlResponse};
use crate::launcher::error::LaunchError;
use crate::launcher::run_claim::{
    CRASHED, RunLiveness, clear_crashed_runs, final_status, liveness,
};
use crate::paths::{RunPaths, list_sessions};

fn newest_live_session(root: &Path) -> Option<String> {
    list_sessions(root)
        .into_iter()
        .find(|s| matches!(liveness(&RunPaths::new(root, s)), RunLiveness::Live(_)))
}

pub fn ctl(args: &CtlArgs, cwd: &Path) -> Result<ControlResponse, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let session = match &args.session {
        Some(s) => s.clone(),
        None => newest_live_session(&root).ok_or_else(|| LaunchError::NoRun {
            root: root.display().to_string(),
        })?,
    };
    let paths = RunPaths::new(&root, &session);
    let (command, source) = match args.command {
        CtlCommand::Pause => (ControlCommand::Pause, "ctl"),
        CtlCommand::Resume => (ControlCommand::Resume, "ctl"),
        CtlCommand::Status => (ControlCommand::Status, "ctl"),
        CtlCommand::Stop => (ControlCommand::Stop, "ctl"),
        CtlCommand::Interrupt => (ControlCommand::Pause, "ctrl-s"),
    };
    let budgets = [
        (
            "--max-tokens",
            args.max_tokens.map(ControlCommand::MaxTokens),
        ),
        ("--max-cost", args.max_cost.map(ControlCommand::MaxCost)),
    ];
    for (flag, set) in budgets {
        let Some(set) = set else { continue };
        if args.command != CtlCommand::Resume {
            return Err(LaunchError::Config(crate::config::ConfigError::Invalid(
                format!("{flag} goes with `launch ctl resume`"),
            )));
        }
        let answer = send_to_run(&paths, set, source)?;
        if !answer.ok {
            return Ok(answer);
        }
    }
    Ok(send_to_run(&paths, command, source)?)
}

pub fn print_response(args: &CtlArgs, response: &ControlResponse) {
    if args.json {
        println!("{}", serde_json::to_string(response).unwrap_or_default());
        return;
    }
    if let Some(status) = &response.status {
        println!("mode: {:?}", status.mode);
        for agent in &status.agents {
            println!(
                "  {:<28} wave {:<2} {}",
                agent.id,
                agent.wave,
                agent.lifecycle.label()
            );
        }
        println!(
            "tokens: {} in / {} out",
            status.usage.input_tokens, status.usage.output_tokens
        );
    } else {
        println!("{}", response.message);
    }
}

#[derive(serde::Serialize)]
pub struct RunListing {
    pub session: String,
    pub state: String,
    /// `launch resume` can go on with it.
    pub resumable: bool,
    /// Why it can or cannot be resumed (or followed up).
    pub note: String,
}

/// Whether `launch resume` can go on with a run in `state`, and what to tell the user.
fn resumability(session: &str, state: &str, stored: Option<bool>) -> (bool, String) {
    match (state, stored) {
        ("succeeded", _) => (
            false,
            format!("finished; `launch continue {session} --prompt …` follows it up"),
        ),
        ("stopped" | "failed" | "crashed", Some(true)) => {
            (true, format!("`launch resume {session}` goes on with it"))
        }
        ("stopped" | "failed" | "crashed", Some(false)) => (
            false,
            "cannot be resumed: the audit store has no config for it".into(),
        ),
        ("stopped" | "failed" | "crashed", None) => (
            false,
            "cannot be resumed: it is not in this repository's audit store (--no-audit or another --audit-path)".into(),
        ),
        _ => (false, "still going".into()),
    }
}

/// For each session: `Some(has config)` if the default audit store has it.
fn stored_configs(root: &Path, sessions: &[String]) -> Vec<Option<bool>> {
    let path = crate::paths::default_audit_path(root);
    if !path.exists() {
        return vec![None; sessions.len()];
    }
    let target = crate::audit::AuditTarget::Local(path);
    super::runtime().block_on(async {
        let Ok(reader) = crate::audit::reader::AuditReader::open(&target).await else {
            return vec![None; sessions.len()];
        };
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            out.push(
                crate::audit::resume::stored_run(&reader, session)
                    .await
                    .ok()
                    .map(|stored| stored.config.is_some()),
            );
        }
        out
    })
}

/// The runs of the repository, newest first. Clears crashed runs first (their stale
/// socket and pid file; see `run_claim`), which then show as `crashed`.
pub fn ls(args: &LsArgs, cwd: &Path) -> Result<Vec<RunListing>, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    clear_crashed_runs(&root);
    let mut runs = Vec::new();
    for session in list_sessions(&root) {
        let paths = RunPaths::new(&root, &session);
        let state = match (final_status(&paths), liveness(&paths)) {
            (Some(status), _) => status,
            (None, RunLiveness::Live(_)) => {
                match send_to_run(&paths, ControlCommand::Status, "ls") {
                    Ok(answer) => format!("{:?}", answer.mode).to_lowercase(),
                    Err(_) => "starting".into(),
                }
            }
            // Its owner died after the clean-up above looked.
            (None, RunLiveness::Gone(_)) => CRASHED.into(),
            (None, RunLiveness::NoOwner) => "ended without a status".into(),
        };
        runs.push((session, state));
    }
    let wanted: Vec<String> = runs
        .iter()
        .filter(|(_, state)| matches!(state.as_str(), "stopped" | "failed" | "crashed"))
        .map(|(session, _)| session.clone())
        .collect();
    let stored = stored_configs(&root, &wanted);
    Ok(runs
        .into_iter()
        .map(|(session, state)| {
            let found = wanted
                .iter()
                .position(|s| *s == session)
                .and_then(|i| stored[i]);
            let (resumable, note) = resumability(&session, &state, found);
            RunListing {
                session,
                state,
                resumable,
                note,
            }
        })
        .collect())
}
