//! `launch` with `--mux zellij|tmux`, and `launch attach`.
//!
//! Owns the order of a multiplexer run: check the multiplexer and the backend, clear a
//! stale session of the same name, write the run directory (config, `panes.json`, the
//! Zellij layout and private config dir), start the orchestrator detached (its own
//! session and process group, output in `orchestrator.log`), wait until its control
//! socket answers, create the session in the background (Zellij: retried when a session
//! of the same name was killed just before), then attach the user's terminal to it.
//! Without a terminal `launch` says how to attach instead. Quitting or detaching the
//! multiplexer never stops the run.
//!
//! Does not drive the agents (the orchestrator does, see `foreground`) and does not add
//! panes mid-run (see `panes`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::cli::AttachArgs;
use crate::config::resolve::project_root;
use crate::config::{Config, Env};
use crate::control::ControlCommand;
use crate::control::client::send_to_run;
use crate::launcher::error::{LaunchError, exit};
use crate::launcher::foreground::{backend_factory, prepare_run_dir};
use crate::launcher::panes::{PaneRecord, live_session};
use crate::launcher::run_claim::RunClaim;
use crate::mux::{LiveSession, Stale, interrupt_argv};
use crate::paths::{RunPaths, list_sessions};

/// How long the detached orchestrator may take to open its control socket.
const READY_WAIT: Duration = Duration::from_secs(30);

/// Runs `config` in Zellij or tmux (see the module docs).
pub fn run_in_mux(config: Config, env: &Env) -> Result<ExitCode, LaunchError> {
    let live = live_session(&config).ok_or(LaunchError::NoPanes {
        session: config.paths.session.clone(),
    })?;
    live.check_installed()?;
    // The run's own backend must work at all before anything starts (e.g. `codex`).
    backend_factory(&config, env)(&config.backend)?;
    let paths = config.run_paths();
    let session = config.paths.session.clone();
    // Refuses a live or crashed session before anything of it is touched; the
    // orchestrator takes the claim over once it starts.
    let _claim = if config.resume {
        RunClaim::take_for_resume(&paths)?
    } else {
        RunClaim::take(&paths)?
    };
    if let Some(stale) = live.remove_stale()? {
        let state = match stale {
            Stale::Running => "running",
            Stale::Exited => "exited",
        };
        eprintln!(
            "note: replaced a stale {} session named `{}` ({state}, left by an earlier run)",
            live.kind(),
            live.session()
        );
    }
    let redactor = crate::launcher::foreground::run_redactor(&config, env);
    crate::launcher::prepare_private_run_dir(&config)?;
    prepare_run_dir(&config, &redactor)?;
    let record = PaneRecord::initial(&config);
    write_record(&record, &paths)?;
    // Panes open before their agents start: an empty log keeps `tail -F` quiet.
    for log in record
        .agents
        .iter()
        .map(|agent| agent.log.clone())
        .chain([paths.timeline_log(), paths.timeline_text()])
    {
        crate::private_fs::open_append(&log).map_err(|source| LaunchError::RunDir {
            path: log.display().to_string(),
            source,
        })?;
    }
    let interrupt = interrupt_argv(&launch_binary()?, &session, &paths.project_root)?;
    let plan = record.plan(&paths);
    live.write_files(&plan, &paths.project_root, &interrupt)?;

    let mut orchestrator = spawn_orchestrator(&paths, &config)?;
    wait_until_ready(&mut orchestrator, &paths)?;
    eprintln!(
        "run {session}: {} session `{}`, logs in {}\n  {}",
        live.kind(),
        live.session(),
        paths.logs_dir().display(),
        live.key_help()
    );
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    live.create_in_background(&plan, &paths.project_root, &interrupt)?;
    if !terminal {
        eprintln!(
            "no terminal here: the session runs in the background; `launch attach --session {session}` shows it, `launch ctl status --session {session}` reports progress"
        );
        return Ok(ExitCode::from(exit::SUCCESS));
    }
    show(&live)?;
    Ok(after_terminal(&paths))
}

/// `launch attach`: shows a run's session again, rebuilding it (with every agent pane
/// known so far) when it is gone, or lacks panes and no orchestrator will add them.
pub fn attach(args: &AttachArgs, cwd: &Path) -> Result<ExitCode, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let session = match &args.session {
        Some(session) => session.clone(),
        None => list_sessions(&root)
            .into_iter()
            .find(|s| {
                read_run_config(&RunPaths::new(&root, s).run_dir)
                    .is_ok_and(|config| live_session(&config).is_some())
            })
            .ok_or_else(|| LaunchError::NoRun {
                root: root.display().to_string(),
            })?,
    };
    let paths = RunPaths::new(&root, &session);
    let config = read_run_config(&paths.run_dir)?;
    let live = live_session(&config).ok_or(LaunchError::NoPanes {
        session: session.clone(),
    })?;
    live.check_installed()?;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(LaunchError::NeedsTerminal { session });
    }
    let mut record =
        PaneRecord::read(&paths.panes_file()).unwrap_or_else(|_| PaneRecord::initial(&config));
    let plan = record.plan(&paths);
    let alive = orchestrator_answers(&paths);
    let usable = live.is_running()?
        && (alive
            || live
                .panes()
                .is_ok_and(|panes| plan.missing_agent_panes(&panes).is_empty()));
    if usable {
        show(&live)?;
        return Ok(after_terminal(&paths));
    }
    live.remove_stale()?;
    record.layout_slots = record.agents.len();
    write_record(&record, &paths)?;
    let interrupt = interrupt_argv(&launch_binary()?, &session, &paths.project_root)?;
    live.write_files(&plan, &paths.project_root, &interrupt)?;
    live.create_in_background(&plan, &paths.project_root, &interrupt)?;
    show(&live)?;
    Ok(after_terminal(&paths))
}

/// Reads the resolved config a run was started with (`<run dir>/config.json`).
pub fn read_run_config(run_dir: &Path) -> Result<Config, LaunchError> {
    let path = run_dir.join("config.json");
    let bad = |message: String| LaunchError::BadRunDir {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// Runs the multiplexer in the user's terminal until it exits or detaches.
/// A failed attach right after the session was created (Zellij: "No session with the
/// name … found" while it still starts) is tried again, this many times in all.
const ATTACH_TRIES: u32 = 3;

fn show(live: &LiveSession) -> Result<(), LaunchError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let started = Instant::now();
        let status = live
            .terminal_command()
            .status()
            .map_err(|source| LaunchError::Terminal {
                mux: live.kind(),
                source,
            })?;
        if status.success() {
            return Ok(());
        }
        let quick = started.elapsed() < Duration::from_secs(2);
        if quick && tries < ATTACH_TRIES && live.is_running().unwrap_or(false) {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        eprintln!("note: {} exited with {status}", live.kind());
        return Ok(());
    }
}

/// What the user sees once the multiplexer is gone: the outcome, or how to come back.
fn after_terminal(paths: &RunPaths) -> ExitCode {
    let session = &paths.session;
    let status = std::fs::read_to_string(paths.state_file())
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|state| state.get("status")?.as_str().map(str::to_owned));
    match status.as_deref() {
        Some("succeeded") => {
            eprintln!(
                "run {session} succeeded; logs in {}",
                paths.logs_dir().display()
            );
            ExitCode::from(exit::SUCCESS)
        }
        Some("stopped") => {
            eprintln!(
                "run {session} stopped; logs in {}",
                paths.logs_dir().display()
            );
            ExitCode::from(exit::STOPPED)
        }
        Some(other) => {
            eprintln!(
                "error: run {session} {other}; see {} and {}",
                paths.timeline_log().display(),
                paths.orchestrator_log().display()
            );
            ExitCode::from(exit::RUN_FAILED)
        }
        None if orchestrator_answers(paths) => {
            eprintln!(
                "run {session} goes on in the background: `launch attach --session {session}` shows it again, `launch ctl status --session {session}` reports progress"
            );
            ExitCode::from(exit::SUCCESS)
        }
        None => {
            eprintln!(
                "error: the orchestrator of run {session} ended without a status; see {}",
                paths.orchestrator_log().display()
            );
            ExitCode::from(exit::RUN_FAILED)
        }
    }
}

fn write_record(record: &PaneRecord, paths: &RunPaths) -> Result<(), LaunchError> {
    record
        .write(&paths.panes_file())
        .map_err(|source| LaunchError::RunDir {
            path: paths.panes_file().display().to_string(),
            source,
        })
}

/// Whether a live orchestrator answers on the run's control socket.
fn orchestrator_answers(paths: &RunPaths) -> bool {
    send_to_run(paths, ControlCommand::Status, "launch").is_ok()
}

/// The absolute path of this `launch` binary (what Ctrl+S runs).
fn launch_binary() -> Result<PathBuf, LaunchError> {
    std::env::current_exe().map_err(|source| LaunchError::OwnBinary { source })
}

/// `launch orchestrate --run-dir D` in a new session (no controlling terminal, its own
/// process group), the resolved config (unredacted: it never touches a file) on its
/// stdin, output appended to `orchestrator.log`.
fn spawn_orchestrator(paths: &RunPaths, config: &Config) -> Result<Child, LaunchError> {
    use std::os::unix::process::CommandExt;
    let log_path = paths.orchestrator_log();
    let run_dir_err = |source| LaunchError::RunDir {
        path: log_path.display().to_string(),
        source,
    };
    let log = crate::private_fs::open_append(&log_path).map_err(run_dir_err)?;
    let mut command = Command::new(launch_binary()?);
    command
        .arg("orchestrate")
        .arg("--run-dir")
        .arg(&paths.run_dir)
        .current_dir(&paths.project_root)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().map_err(run_dir_err)?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .map_err(|source| LaunchError::Orchestrator { source })?;
    let json = serde_json::to_vec(config).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as the child's own error ("not valid") in its log.
        let _ = std::io::Write::write_all(&mut stdin, &json);
    }
    Ok(child)
}

/// Waits until the orchestrator's control socket answers; if it exits first, its
/// output is the error.
fn wait_until_ready(child: &mut Child, paths: &RunPaths) -> Result<(), LaunchError> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            if paths.state_file().exists() {
                return Ok(()); // a run short enough to end before we looked
            }
            let output = std::fs::read_to_string(paths.orchestrator_log()).unwrap_or_default();
            return Err(LaunchError::OrchestratorExited {
                status: status.to_string(),
                output: output.trim().to_owned(),
            });
        }
        if orchestrator_answers(paths) {
            return Ok(());
        }
        if start.elapsed() > READY_WAIT {
            return Err(LaunchError::OrchestratorSilent {
                waited: READY_WAIT,
                log: paths.orchestrator_log().display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
