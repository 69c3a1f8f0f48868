//! `launch ctl …` and `launch ls`: talk to runs of this repository.

use std::path::Path;

use crate::cli::{CtlArgs, CtlCommand, LsArgs};
use crate::config::resolve::project_root;
use crate::control::client::send;
use crate::control::{ControlCommand, ControlResponse};
use crate::launcher::error::LaunchError;
use crate::paths::{RunPaths, list_sessions};

fn newest_live_session(root: &Path) -> Option<String> {
    list_sessions(root)
        .into_iter()
        .find(|s| RunPaths::new(root, s).control_socket().exists())
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
    Ok(send(&paths.control_socket(), command, source)?)
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

pub fn ls(args: &LsArgs, cwd: &Path) -> Result<Vec<RunListing>, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let mut runs = Vec::new();
    for session in list_sessions(&root) {
        let paths = RunPaths::new(&root, &session);
        let state = match std::fs::read_to_string(paths.state_file()) {
            Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "unknown".into()),
            Err(_) => match send(&paths.control_socket(), ControlCommand::Status, "ls") {
                Ok(answer) => format!("{:?}", answer.mode).to_lowercase(),
                Err(_) => "ended without a status (crashed or killed)".into(),
            },
        };
        runs.push(RunListing { session, state });
    }
    Ok(runs)
}
