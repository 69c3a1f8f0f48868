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
        runs.push(RunListing { session, state });
    }
    Ok(runs)
}
