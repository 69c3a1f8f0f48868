//! The `launch` binary's logic: run a squad, control it, list runs.

pub mod ctl;
pub mod error;
pub mod foreground;
pub mod metrics;
pub mod mux_run;
pub mod panes;
pub mod resume;
pub mod run_claim;
pub mod watch;
pub mod workspace_cmds;

use std::process::ExitCode;

use crate::cli::{LaunchCli, LaunchCommand, MuxChoice};
use crate::config::{Config, process_env, resolve};
use crate::events::event::RunStatus;
use crate::launcher::error::{LaunchError, exit, report_error};

pub(crate) fn runtime() -> tokio::runtime::Runtime {
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
        Some(LaunchCommand::Status(args)) => crate::board::app::status(&args, &cwd),
        Some(LaunchCommand::Ls(args)) => ctl::ls(&args, &cwd).map(|runs| {
            if args.json {
                println!("{}", serde_json::to_string(&runs).unwrap_or_default());
            } else if runs.is_empty() {
                println!("no runs yet in this repository");
            } else {
                for run in runs {
                    println!("{:<28} {:<10} {}", run.session, run.state, run.note);
                }
            }
            ExitCode::from(exit::SUCCESS)
        }),
        Some(LaunchCommand::Merge(args)) => workspace_cmds::merge(&args, &cwd),
        Some(LaunchCommand::Diff(args)) => workspace_cmds::diff(&args, &cwd),
        Some(LaunchCommand::Clean(args)) => workspace_cmds::clean_runs(&args, &cwd),
        Some(LaunchCommand::Orchestrate(args)) => orchestrate(&args.run_dir, &env),
        Some(LaunchCommand::Watchdog(args)) => Ok(ExitCode::from(crate::agent::watchdog::run(
            std::time::Duration::from_millis(args.grace_ms),
        ))),
        Some(LaunchCommand::Resume(args)) => {
            resume::resume_config(&args.run_name, &args.run, &env, &cwd)
                .and_then(|config| run(config, &env))
        }
        Some(LaunchCommand::Continue(args)) => {
            resume::continue_config(&args.parent, args.run, &env, &cwd)
                .and_then(|config| run(config, &env))
        }
        None => match &cli.run.resume {
            Some(session) => resume::resume_config(session, &cli.run, &env, &cwd)
                .and_then(|config| run(config, &env)),
            None => resolve(&cli.run, &env, &cwd)
                .map_err(LaunchError::from)
                .and_then(|config| run(config, &env)),
        },
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
            let mut causes = failed.clone();
            causes.extend(
                report
                    .problems
                    .iter()
                    .map(|p| format!("the run cannot write its record: {p}")),
            );
            eprintln!(
                "error: run {session} failed: {}; logs in {}",
                causes.join(", "),
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

/// Creates the run's directories private (and `.orch/` ignored by git), and its
/// `config.json` empty and 0600, so the redacted config written into it stays 0600.
pub(crate) fn prepare_private_run_dir(config: &Config) -> Result<(), LaunchError> {
    let paths = config.run_paths();
    let run_dir_err = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| LaunchError::RunDir { path, source }
    };
    crate::private_fs::prepare_run_dirs(&paths).map_err(run_dir_err(&paths.run_dir))?;
    crate::private_fs::touch(&paths.config_file()).map_err(run_dir_err(&paths.config_file()))
}

fn run(config: Config, env: &crate::config::Env) -> Result<ExitCode, LaunchError> {
    if config.mux != MuxChoice::None {
        return mux_run::run_in_mux(config, env);
    }
    // As `run_in_foreground` does first: a backend that cannot work leaves no run dir.
    foreground::backend_factory(&config, env)(&config.backend)?;
    prepare_private_run_dir(&config)?;
    let session = config.paths.session.clone();
    let logs = config.run_paths().logs_dir();
    let metrics = config.metrics;
    install_watchdog(&config);
    let report = runtime().block_on(foreground::run_in_foreground(config, env, true))?;
    Ok(finish(metrics, &report, &session, &logs))
}

/// Starts this orchestrator's agent watchdog (`launch __watchdog`), so that no agent
/// process outlives it, even killed with SIGKILL. Its grace is the configured kill
/// grace, at most 5 s, so every agent is gone 10 s after the orchestrator.
fn install_watchdog(config: &Config) {
    let grace_ms = config
        .agents
        .process
        .kill_grace_ms
        .unwrap_or(5000)
        .min(5000);
    // /proc/self/exe runs this very binary, even if its file was replaced since.
    let program = std::path::Path::new("/proc/self/exe");
    if let Err(err) =
        crate::agent::watchdog::install(program, std::time::Duration::from_millis(grace_ms))
    {
        tracing::warn!(error = %err, "failed to start the agent watchdog; agents may outlive a killed orchestrator");
    }
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
    prepare_private_run_dir(&config)?;
    let session = config.paths.session.clone();
    let logs = config.run_paths().logs_dir();
    let metrics = config.metrics;
    install_watchdog(&config);
    let report = runtime().block_on(foreground::run_in_foreground(config, env, false))?;
    Ok(finish(metrics, &report, &session, &logs))
}
