//! The `launch` binary's logic: run a squad, control it, list runs.

pub mod ctl;
pub mod error;
pub mod foreground;
pub mod metrics;
pub mod mux_run;
pub mod panes;
pub mod run_claim;

use std::process::ExitCode;

use crate::cli::{LaunchCli, LaunchCommand, MuxChoice};
use crate::config::{Config, process_env, resolve};
use crate::events::event::RunStatus;
use crate::launcher::error::{LaunchError, exit, report_error};

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            std::process::exit(exit::RUN_FAILED.into());
        }
    }
}

pub fn main(cli: LaunchCli) -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let env = process_env();
    let result = match cli.command {
        Some(LaunchCommand::Ctl(args)) => ctl::ctl(&args, &cwd).map(|response| {
            ctl::print_response(&args, &response);
            ExitCode::from(if response.ok {
                exit::SUCCESS
            } else {
                exit::RUN_FAILED
            })
        }),
        Some(LaunchCommand::Attach(args)) => mux_run::attach(&args, &cwd),
        Some(LaunchCommand::Ls(args)) => ctl::ls(&args, &cwd).map(|runs| {
            if args.json {
                println!("{}", serde_json::to_string(&runs).unwrap_or_default());
            } else if runs.is_empty() {
                println!("no runs yet in this repository");
            } else {
                for run in runs {
                    println!("{:<28} {}", run.session, run.state);
                }
            }
            ExitCode::from(exit::SUCCESS)
        }),
        Some(LaunchCommand::Orchestrate(args)) => orchestrate(&args.run_dir, &env),
        None => resolve(&cli.run, &env, &cwd)
            .map_err(LaunchError::from)
            .and_then(|config| run(config, &env)),
    };
    result.unwrap_or_else(|err| report_error(&err))
}

fn finish(
    config_metrics: bool,
    report: &crate::orchestrator::RunReport,
    session: &str,
    logs: &std::path::Path,
) -> ExitCode {
    if config_metrics {
        eprint!("{}", metrics::metrics_table(report));
    }
    let failed: Vec<String> = report
        .agents
        .iter()
        .filter(|a| !matches!(a.status, crate::events::AgentStatus::Succeeded))
        .map(|a| format!("{} ({})", a.id, a.status.label()))
        .collect();
    match report.status {
        RunStatus::Succeeded => {
            eprintln!(
                "run {session} succeeded: {} agents; logs in {}",
                report.agents.len(),
                logs.display()
            );
            ExitCode::from(exit::SUCCESS)
        }
        RunStatus::Failed => {
            eprintln!(
                "error: run {session} failed: {}; logs in {}",
                failed.join(", "),
                logs.display()
            );
            for agent in &report.agents {
                if let crate::events::AgentStatus::Failed { reason } = &agent.status {
                    eprintln!("  {}: {reason}", agent.id);
                }
            }
            ExitCode::from(exit::RUN_FAILED)
        }
        RunStatus::Stopped => {
            eprintln!("run {session} stopped; logs in {}", logs.display());
            ExitCode::from(exit::STOPPED)
        }
    }
}

fn run(config: Config, env: &crate::config::Env) -> Result<ExitCode, LaunchError> {
    if config.mux != MuxChoice::None {
        return mux_run::run_in_mux(config, env);
    }
    let session = config.paths.session.clone();
    let logs = config.run_paths().logs_dir();
    let metrics = config.metrics;
    let report = runtime().block_on(foreground::run_in_foreground(config, env, true))?;
    Ok(finish(metrics, &report, &session, &logs))
}

/// Runs the orchestrator the launcher spawned for a Zellij/tmux run. Its resolved config
/// comes as JSON on stdin, not from `<run dir>/config.json`, which is redacted: a secret
/// in the prompt must reach the agents as it was typed.
fn orchestrate(
    run_dir: &std::path::Path,
    env: &crate::config::Env,
) -> Result<ExitCode, LaunchError> {
    let bad = |message: String| LaunchError::BadRunDir {
        path: run_dir.display().to_string(),
        message,
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| bad(format!("failed to read the run config from stdin: {e}")))?;
    let config: Config = serde_json::from_str(&text)
        .map_err(|e| bad(format!("the run config on stdin is not valid: {e}")))?;
    if config.run_paths().run_dir != run_dir {
        return Err(bad(format!(
            "the run config on stdin is for `{}`",
            config.run_paths().run_dir.display()
        )));
    }
    let session = config.paths.session.clone();
    let logs = config.run_paths().logs_dir();
    let metrics = config.metrics;
    let report = runtime().block_on(foreground::run_in_foreground(config, env, false))?;
    Ok(finish(metrics, &report, &session, &logs))
}
