//! Running a resolved `Config` in this process: the headless `--mux none` mode, and
//! the body of the detached orchestrator the multiplexer modes start.

use std::io::IsTerminal;
use std::sync::Arc;

use crate::agent::backend::{Backend, BackendError};
use crate::agent::build_backend;
use crate::agent::demo::DemoBackend;
use crate::audit::{AuditOptions, AuditSink, RunMeta};
use crate::config::resolve::backend_settings;
use crate::config::{AuditTarget, Config, Env};
use crate::control::signals::{SignalAction, watch_signals};
use crate::control::socket_dir::{self, socket_path_for};
use crate::control::{ControlCommand, ControlHandler, ControlServer};
use crate::events::AgentStatus;
use crate::events::log_sink::LogSink;
use crate::events::progress::{ProgressMode, ProgressSink, PromptDebug};
use crate::events::{Sink, SinkThread};
use crate::launcher::error::LaunchError;
use crate::launcher::run_claim::RunClaim;
use crate::orchestrator::retry::RetryPolicy;
use crate::orchestrator::{BackendSet, Orchestrator, RunControl, RunReport, Shared};
use crate::redact::Redactor;

/// Makes backends by name: the built-in demo, or a real one from `build_backend`.
pub fn backend_factory(
    config: &Config,
    env: &Env,
) -> impl Fn(&str) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync + 'static {
    let demo = config.demo.clone();
    let settings = backend_settings(config, env);
    move |name: &str| -> Result<Arc<dyn Backend>, BackendError> {
        match name {
            "demo" => Ok(Arc::new(DemoBackend::new(demo.clone()))),
            other => build_backend(other, &settings),
        }
    }
}

fn run_dir_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::RunDir {
        path: path.display().to_string(),
        source,
    }
}

/// Writes the run directory: logs/ and config.json, the latter redacted like every
/// other file of the run (the prompt and agent prompts may hold secrets).
pub fn prepare_run_dir(config: &Config, redactor: &Redactor) -> Result<(), LaunchError> {
    let paths = config.run_paths();
    std::fs::create_dir_all(paths.logs_dir()).map_err(run_dir_error(&paths.run_dir))?;
    let mut value = serde_json::to_value(config).unwrap_or_default();
    redactor.redact_json(&mut value);
    let json = serde_json::to_string_pretty(&value).unwrap_or_default();
    std::fs::write(paths.config_file(), json).map_err(run_dir_error(&paths.run_dir))?;
    Ok(())
}

pub async fn run_in_foreground(
    config: Config,
    env: &Env,
    interactive: bool,
) -> Result<RunReport, LaunchError> {
    let backends = BackendSet::new(backend_factory(&config, env));
    // Fail before anything starts when the run's own backend cannot work at all.
    backends.get(&config.backend)?;
    let paths = config.run_paths();
    // Before anything of the run is written: a live or crashed session is refused. The
    // orchestrator of a Zellij/tmux run takes over its launcher's claim.
    let claim = if interactive {
        RunClaim::take(&paths)?
    } else {
        RunClaim::adopt(&paths)?
    };
    let redactor = Arc::new(Redactor::from_env(
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ));
    prepare_run_dir(&config, &redactor)?;
    if interactive {
        eprintln!(
            "run {}: logs in {}",
            config.paths.session,
            paths.logs_dir().display()
        );
    }
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(
        LogSink::create(paths.clone()).map_err(run_dir_error(&paths.run_dir))?,
    )];
    if interactive {
        let mode = if config.stream {
            ProgressMode::Stream
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Spinner
        } else {
            ProgressMode::Plain
        };
        let debug = if config.debug_prompt {
            PromptDebug::Sizes
        } else {
            PromptDebug::Off
        };
        sinks.push(Box::new(ProgressSink::new(mode, debug)));
    }
    if let Some(panes) = crate::launcher::panes::PaneSink::start(&config) {
        sinks.push(Box::new(panes));
    }
    let audit_target = match &config.audit {
        AuditTarget::Off => None,
        AuditTarget::Local(path) => Some(crate::audit::AuditTarget::Local(path.clone())),
        AuditTarget::Remote(url) => Some(crate::audit::AuditTarget::Remote {
            url: url.clone(),
            token: env.get("ORCH_AUDIT_TOKEN").cloned().unwrap_or_default(),
        }),
    };
    if let Some(target) = audit_target {
        let meta = RunMeta {
            session: config.paths.session.clone(),
            started_at_ms: crate::events::wire::millis(std::time::SystemTime::now()),
            prompt: config.prompt.clone(),
            backend: config.backend.clone(),
            project_root: config.paths.project_root.display().to_string(),
        };
        let options = AuditOptions {
            memory_dir: config.memory_dir.clone(),
        };
        sinks.push(Box::new(AuditSink::open_with(
            target, meta, &redactor, options,
        )?));
    }
    let (bus, sink_thread) = SinkThread::spawn(sinks, redactor.clone());
    if let Some(live) = crate::launcher::panes::live_session(&config) {
        // The timeline pane opens with the keys of the session.
        bus.publish(crate::events::OrchEventKind::Notice {
            level: crate::events::event::NoticeLevel::Info,
            message: live.key_help().to_owned(),
        })
        .await;
    }

    let control = Arc::new(RunControl::new(&config.paths.session));
    let handler = ControlHandler {
        control: control.clone(),
        bus: bus.clone(),
        session: config.paths.session.clone(),
        interrupt_log: paths.interrupt_log().display().to_string(),
    };
    let socket = socket_path_for(
        env.get("XDG_RUNTIME_DIR").map(String::as_str),
        &paths.project_root,
        &paths.session,
    )
    .map_err(crate::control::ControlError::from)?;
    let server = ControlServer::start(&socket, handler.clone())?;
    socket_dir::record(&paths, &socket).map_err(run_dir_error(&paths.run_dir))?;
    let signal_task = match watch_signals() {
        Ok(mut rx) => {
            let handler = handler.clone();
            let session = config.paths.session.clone();
            Some(tokio::spawn(async move {
                while let Some((sig, action)) = rx.recv().await {
                    let source = format!("{sig:?}").to_uppercase();
                    match action {
                        SignalAction::Pause => {
                            let answer = handler
                                .handle(ControlCommand::Pause, &format!("SIG{source}"))
                                .await;
                            eprintln!(
                                "{}\npaused: `launch ctl resume --session {session}` continues; Ctrl+C again stops the run",
                                answer.message
                            );
                        }
                        SignalAction::Stop => {
                            let answer = handler
                                .handle(ControlCommand::Stop, &format!("SIG{source}"))
                                .await;
                            eprintln!("{} (Ctrl+C once more exits at once)", answer.message);
                        }
                        SignalAction::Exit => {
                            handler.bus.flush().await;
                            std::process::exit(130);
                        }
                    }
                }
            }))
        }
        Err(err) => {
            tracing::warn!(error = %err, "signals are not handled; use `launch ctl` to pause or stop");
            None
        }
    };

    let policy = RetryPolicy::with_settings(&config.agents.retry);
    let shared = Arc::new(Shared {
        backends,
        config,
        bus: bus.clone(),
        control: control.clone(),
        policy,
    });
    let mut report = Orchestrator::new(shared).run().await;
    // The caller prints failure reasons (backend error text) on the terminal.
    for agent in &mut report.agents {
        if let AgentStatus::Failed { reason } = &mut agent.status {
            redactor.redact_in_place(reason);
        }
    }
    report
        .problems
        .iter_mut()
        .for_each(|p| redactor.redact_in_place(p));
    if let Some(task) = signal_task {
        task.abort();
    }
    server.shutdown();
    let state = serde_json::json!({ "status": report.status.as_str(), "usage": report.usage });
    let _ = std::fs::write(paths.state_file(), state.to_string());
    claim.release();
    sink_thread.finish().await;
    Ok(report)
}
