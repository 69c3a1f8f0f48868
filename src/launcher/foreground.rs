//! Running a resolved `Config` in this process: the headless `--mux none` mode, and
//! the body of the detached orchestrator the multiplexer modes start.

use std::io::IsTerminal;
use std::sync::Arc;

use crate::agent::backend::{Backend, BackendError};
use crate::agent::build_backend;
use crate::agent::demo::DemoBackend;
use crate::audit::AuditTarget;
use crate::audit::{AuditOptions, AuditSink, RunMeta};
use crate::cli::IsolationChoice;
use crate::config::resolve::backend_settings;
use crate::config::{Config, Env};
use crate::control::signals::watch_signals;
use crate::control::socket_dir::{self, socket_path_for};
use crate::control::{ControlHandler, ControlServer};
use crate::events::AgentStatus;
use crate::events::event::NoticeLevel;
use crate::events::log_sink::LogSink;
use crate::events::progress::{ProgressMode, ProgressSink, PromptDebug};
use crate::events::{Sink, SinkThread};
use crate::launcher::error::LaunchError;
use crate::launcher::run_claim::RunClaim;
use crate::orchestrator::{
    BackendSet, Isolation, RetryPolicy, RunContext, RunLink, RunReport, dispatch,
};
use crate::redact::Redactor;
use crate::workspace::{BaseChoice, Workspace, WorktreeSetup};

/// Makes backends by name: the built-in demo, or a real one from `build_backend`.
pub fn backend_factory(
    config: &Config,
    env: &Env,
) -> impl Fn(&str) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync + 'static {
    let demo = config.demo.clone();
    let settings = backend_settings(config, env);
    let groups = config.agents.groups.clone();
    let env = env.clone();
    move |name: &str| -> Result<Arc<dyn Backend>, BackendError> {
        // A tier with its own base URL or key has a backend of its own.
        if let Some((backend, tier, group)) = crate::config::agents::split_tier_backend_key(name) {
            let tier = groups
                .iter()
                .find(|g| g.name == group)
                .and_then(|g| g.tiers.named(tier))
                .ok_or_else(|| BackendError::NotConfigured {
                    backend: backend.to_owned(),
                    reason: format!("no tier `{tier}` in group `{group}`"),
                })?;
            let key = tier.key_env.as_ref().and_then(|var| env.get(var));
            let settings =
                settings.with_endpoint(backend, tier.base_url.as_deref(), key.map(String::as_str));
            return match backend {
                "demo" => Ok(Arc::new(DemoBackend::new(demo.clone()))),
                other => build_backend(other, &settings),
            };
        }
        match name {
            "demo" => Ok(Arc::new(DemoBackend::new(demo.clone()))),
            other => build_backend(other, &settings),
        }
    }
}

/// Where `--notify` and `--notify-command` send what needs the user.
fn notify_channels(config: &Config) -> crate::notify::Channels {
    let terminal = config.notify_terminal;
    crate::notify::Channels {
        command: config.notify_command.clone(),
        ttys: config
            .notify_tty
            .clone()
            .filter(|_| terminal)
            .into_iter()
            .collect(),
        tmux: (terminal && config.mux == crate::cli::MuxChoice::Tmux).then(|| {
            (
                config.mux_programs.tmux.clone(),
                crate::mux::tmux_socket(&crate::mux::mux_session_name(&config.paths.session)),
            )
        }),
        desktop: config.notify_desktop,
    }
}

fn run_dir_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::RunDir {
        path: path.display().to_string(),
        source,
    }
}

/// The run's redactor: every secret-looking environment variable, and the variables the
/// tiers take their keys from (`key-env`), whatever their names.
pub fn run_redactor(config: &Config, env: &Env) -> Redactor {
    let mut redactor = Redactor::from_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (var, _, _) in config.agents.tier_key_vars() {
        if let Some(value) = env.get(var) {
            redactor.add_secret(var, value.trim());
        }
    }
    redactor
}

/// Writes the run directory: logs/ and config.json, the latter redacted like every
/// other file of the run (the prompt and agent prompts may hold secrets).
pub fn prepare_run_dir(config: &Config, redactor: &Redactor) -> Result<(), LaunchError> {
    let paths = config.run_paths();
    crate::private_fs::create_dir_all(&paths.logs_dir()).map_err(run_dir_error(&paths.run_dir))?;
    let mut value = serde_json::to_value(config).unwrap_or_default();
    redactor.redact_json(&mut value);
    let json = serde_json::to_string_pretty(&value).unwrap_or_default();
    crate::private_fs::write(&paths.config_file(), json.as_bytes())
        .map_err(run_dir_error(&paths.run_dir))?;
    Ok(())
}

pub async fn run_in_foreground(
    config: Config,
    env: &Env,
    interactive: bool,
) -> Result<RunReport, LaunchError> {
    let backends = BackendSet::new(backend_factory(&config, env));
    // Fail before anything starts when the run's own backend, or a tier's with its own
    // endpoint, cannot work at all.
    let own = backends.get(&config.backend)?;
    // Its agents that may change files need a CLI it lacks: said now, not after the
    // planning turns (agents that only read still run).
    let cannot_act = own.cannot_act().filter(|_| {
        config.permissions_for(
            "",
            crate::agent::backend::AgentKind::Dynamic,
            &config.backend,
        ) != crate::agent::permissions::Permissions::ReadOnly
    });
    for group in &config.agents.groups {
        for name in ["strong", "fast"] {
            if let Some(tier) = group.tiers.named(name).filter(|t| t.has_endpoint()) {
                let backend = tier.backend.as_deref().unwrap_or(&config.backend);
                backends.get(&crate::config::agents::tier_backend_key(
                    backend,
                    name,
                    &group.name,
                ))?;
            }
        }
    }
    let paths = config.run_paths();
    // Before anything of the run is written: a live or crashed session is refused. The
    // orchestrator of a Zellij/tmux run takes over its launcher's claim.
    let claim = if interactive && config.resume {
        RunClaim::take_for_resume(&paths)?
    } else if interactive {
        RunClaim::take(&paths)?
    } else {
        RunClaim::adopt(&paths)?
    };
    let redactor = Arc::new(run_redactor(&config, env));
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
    let (board_sink, board) =
        crate::board::BoardSink::new(&config.paths.session, config.max_tokens);
    sinks.push(Box::new(board_sink));
    if let Some(panes) = crate::launcher::panes::PaneSink::start(&config) {
        sinks.push(Box::new(panes));
    }
    let channels = notify_channels(&config);
    if !channels.is_empty() {
        sinks.push(Box::new(crate::notify::NotifySink::new(
            channels,
            config.paths.session.clone(),
            paths.interrupt_log(),
        )));
    }
    let audit_target = config.audit.clone().map(|target| match target {
        AuditTarget::Remote { url, .. } => AuditTarget::Remote {
            url,
            token: env.get("ORCH_AUDIT_TOKEN").cloned().unwrap_or_default(),
        },
        local => local,
    });
    // A resumed run reads its stored session before it writes anything more to it, and
    // checks its whole chain alongside (`launch resume` checked the rows it reads).
    // `launch resume` in this process read it already, and keeps its reader open to
    // the end of the run (see `resume::Preloaded`).
    let (preloaded, keep_reader) = config
        .resume
        .then(|| crate::launcher::resume::take_preloaded(&config.paths.session))
        .flatten()
        .map(|p| (p.replay, p.reader))
        .unzip();
    let (replay, store_check) = match (&audit_target, config.resume) {
        (Some(target), true) => (
            Some(match preloaded {
                Some(replay) => replay,
                None => load_replay(target, &config.paths.session).await?,
            }),
            Some(check_store_alongside(
                target.clone(),
                config.paths.session.clone(),
            )),
        ),
        _ => (None, None),
    };
    let mut audit_shared = None;
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
            reserve_dir: Some(paths.run_dir.clone()),
            anchor_repo: Some(config.paths.project_root.clone()),
        };
        let sink = AuditSink::open_with(target, meta, &redactor, options)?;
        audit_shared = Some(sink.shared());
        sinks.push(Box::new(sink));
    }
    let (bus, sink_thread) = SinkThread::spawn(sinks, redactor.clone());
    let failures = sink_thread.failures();
    if let Some(live) = crate::launcher::panes::live_session(&config) {
        // The timeline pane opens with the keys of the session.
        bus.publish(crate::events::OrchEventKind::Notice {
            level: crate::events::event::NoticeLevel::Info,
            message: live.key_help().to_owned(),
        })
        .await;
    }

    let (link, inbox) = RunLink::new();
    let socket = socket_path_for(
        env.get("XDG_RUNTIME_DIR").map(String::as_str),
        &paths.project_root,
        &paths.session,
    )
    .map_err(crate::control::ControlError::from)?;
    let server =
        ControlServer::start(&socket, ControlHandler::new(link.clone()).with_board(board))?;
    socket_dir::record(&paths, &socket).map_err(run_dir_error(&paths.run_dir))?;
    if let Err(err) = watch_signals(link.clone()) {
        tracing::warn!(error = %err, "signals are not handled; use `launch ctl` to pause or stop");
    }
    // A sink that cannot write stops the run from starting more work (the dispatcher
    // decides); what fails after the run ended is caught below.
    let mut watched = failures.clone();
    let failure_link = link.clone();
    let failure_task = tokio::spawn(async move {
        if watched.wait_for(Option::is_some).await.is_ok() {
            let failure = watched.borrow().clone();
            if let Some(failure) = failure {
                failure_link.sink_failed(failure.to_string());
            }
        }
    });
    let policy = RetryPolicy::with_settings(&config.agents.retry);
    let isolation = match prepare_workspace(&config) {
        Ok((isolation, mut notes)) => {
            if let Some(reason) = &cannot_act {
                notes.push((
                    NoticeLevel::Warning,
                    format!("{reason}; until then every agent that may change files will fail"),
                ));
            }
            // The progress line shows notices on stderr; the timeline keeps them.
            for (level, message) in notes {
                bus.publish(crate::events::OrchEventKind::Notice { level, message })
                    .await;
            }
            isolation
        }
        Err(err) => {
            failure_task.abort();
            server.shutdown();
            claim.release();
            sink_thread.finish().await;
            return Err(err);
        }
    };
    if let Some(replay) = &replay {
        let (done, cut) = replay.counts();
        bus.publish(crate::events::OrchEventKind::Notice {
            level: NoticeLevel::Info,
            message: format!(
                "resuming run {}: {done} finished turn(s) are given back, not run again; {cut} cut-off turn(s) continue on their conversation",
                config.paths.session
            ),
        })
        .await;
    }
    // A resumed run goes on from the task file's last stored revision; an edit made
    // while it was not running is the next one (the watch reads the file at once).
    let mut config = config;
    if let Some((revision, text)) = replay.as_ref().and_then(|r| r.task()) {
        config.prompt = text.clone();
        config.task_revision = *revision;
    }
    let forced = config.resume_forced;
    let session_name = config.paths.session.clone();
    let task_file = config
        .task_file
        .clone()
        .map(|file| (file, config.prompt.clone()));
    let features_file = config.features.clone();
    let agents_file = match &config.agents.source {
        crate::config::agents::ConfigSource::File(path) => {
            Some((path.clone(), config.agents.clone()))
        }
        crate::config::agents::ConfigSource::BuiltIn => None,
    };
    let mut ctx = RunContext::new(
        Arc::new(config),
        bus.clone(),
        link,
        backends,
        policy,
        isolation,
    );
    ctx.replay = replay;
    // A chain that does not verify stops the run, unless `--force` (then it is said).
    ctx.store_check = store_check.clone().filter(|_| !forced);
    let check_task = store_check.clone().map(|check| {
        let (link, bus) = (ctx.link.clone(), bus.clone());
        tokio::spawn(async move {
            // Watches without hurrying it: the check begins with the first turn.
            if let Err(problem) = check.settled().await {
                let message =
                    format!("the audit store this run resumed from does not verify: {problem}");
                if forced {
                    bus.publish(crate::events::OrchEventKind::Notice {
                        level: NoticeLevel::Warning,
                        message: format!("{message} (going on: --force)"),
                    })
                    .await;
                } else {
                    link.store_broken(message);
                }
            }
        })
    });
    let mut watches = Vec::new();
    if let Some((file, text)) = task_file {
        watches.push(tokio::spawn(crate::launcher::watch::task_file(
            file,
            text,
            ctx.link.clone(),
            bus.clone(),
        )));
    }
    if let Some(backlog) = features_file {
        watches.push(tokio::spawn(crate::launcher::watch::features_file(
            backlog,
            bus.clone(),
        )));
    }
    if let Some((file, started)) = agents_file {
        watches.push(tokio::spawn(crate::launcher::watch::agents_file(
            file,
            started,
            bus.clone(),
        )));
    }
    let ctx = Arc::new(ctx);
    let mut report = dispatch(ctx.clone(), inbox).await;
    if let Some(isolation) = &ctx.isolation {
        for problem in isolation.discard_staged().await {
            bus.publish(crate::events::OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message: problem,
            })
            .await;
        }
    }
    drop(ctx);
    failure_task.abort();
    for watch in watches {
        watch.abort();
    }
    let broken = match (&store_check, forced) {
        (Some(check), false) => check.verdict().await.err(),
        _ => None,
    };
    if let Some(task) = check_task {
        let _ = task.await;
    }
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
    server.shutdown();
    let state = serde_json::json!({ "status": report.status.as_str(), "usage": report.usage });
    let _ = crate::private_fs::write(&paths.state_file(), state.to_string().as_bytes());
    claim.release();
    sink_thread.finish().await;
    drop(keep_reader);
    if fail_on_sink_failure(&mut report, &failures) {
        let state = serde_json::json!({ "status": report.status.as_str(), "usage": report.usage, "problems": report.problems });
        let _ = crate::private_fs::write(&paths.state_file(), state.to_string().as_bytes());
    }
    if let Some(line) = audit_shared.and_then(|shared| shared.anchor()) {
        eprintln!("{line}");
    }
    if let Some(problem) = broken {
        return Err(LaunchError::CannotResume {
            reason: format!(
                "its audit store does not verify ({problem}); the resumed run was stopped and merged nothing; `orch-audit verify {session_name}` shows why; --force resumes all the same"
            ),
            session: session_name,
        });
    }
    Ok(report)
}

/// Checks a resumed run's whole stored chain on a thread of its own while the run goes
/// on; a million events take about a second. It begins once the first turn is under
/// way (`StoreCheck::begin`), and runs as batch work at nice 10 (as the audit writer
/// does): the run's start, which the user waits for, goes first, and the check still
/// gets any core nobody else wants.
fn check_store_alongside(
    target: AuditTarget,
    session: String,
) -> crate::orchestrator::replay::StoreCheck {
    let (verdict, check) = crate::orchestrator::replay::StoreCheck::new();
    let handle = tokio::runtime::Handle::current();
    let go = check.go();
    let checking = move || {
        go.wait(crate::orchestrator::replay::StoreCheck::AT_THE_LATEST);
        crate::audit::writer::yield_to_the_log_path();
        let result = handle.block_on(async {
            let reader = crate::audit::reader::AuditReader::open(&target)
                .await
                .map_err(|err| err.to_string())?;
            let report = crate::audit::verify::verify_run_chain(reader.conn(), &session)
                .await
                .map_err(|err| err.to_string())?;
            match report.problems.is_empty() {
                true => Ok(()),
                false => Err(report.problems.join("; ")),
            }
        });
        let _ = verdict.send(Some(result));
    };
    if let Err(err) = std::thread::Builder::new()
        .name("orch-verify".into())
        .spawn(checking)
    {
        // Without a thread the run cannot be shown sound: it stops, as for a bad chain.
        let (verdict, check) = crate::orchestrator::replay::StoreCheck::new();
        let _ = verdict.send(Some(Err(format!(
            "the check of the stored chain could not start: {err}"
        ))));
        return check;
    }
    check
}

/// The stored session of a resumed run (`audit::resume`).
async fn load_replay(
    target: &AuditTarget,
    session: &str,
) -> Result<crate::orchestrator::replay::Replay, LaunchError> {
    let reader = crate::audit::reader::AuditReader::open(target).await?;
    Ok(crate::audit::resume::replay(&reader, session).await?.0)
}

/// Pins the run's base and makes its run branch (`--isolation worktree`); says once
/// when the user's tree has changes the run does not include.
/// What the run says about its workspace at start (stderr and the timeline).
type Notes = Vec<(NoticeLevel, String)>;

fn prepare_workspace(config: &Config) -> Result<(Option<Isolation>, Notes), LaunchError> {
    let mut notes = Notes::new();
    if config.isolation != IsolationChoice::Worktree {
        let parallel = config
            .agents
            .groups
            .iter()
            .map(|g| crate::config::group_settings(g, &config.cli_orchestration).max_parallel)
            .max()
            .unwrap_or(1);
        if parallel > 1 {
            notes.push((NoticeLevel::Warning, format!(
                "--isolation shared: every agent works in {} itself, and up to {parallel} at once can overwrite each other's edits (--max-parallel 1 runs them one at a time)",
                config.paths.project_root.display()
            )));
        }
        return Ok((None, notes));
    }
    // At start, before any agent: a few git commands, run here. A resumed run goes on
    // from the base and run branch it pinned.
    let (workspace, tree) = if config.resume {
        let workspace = Workspace::open(&config.paths.project_root, &config.paths.session)?;
        (workspace, crate::workspace::UserTree::default())
    } else {
        Workspace::prepare(
            &config.paths.project_root,
            &config.paths.session,
            config.base.clone(),
        )?
    };
    if tree.is_dirty() && config.base != BaseChoice::Snapshot {
        notes.push((NoticeLevel::Info, format!(
            "{} uncommitted change(s) in your tree are not part of this run (--include-uncommitted takes them)",
            tree.changed_count
        )));
    }
    notes.push((NoticeLevel::Info, format!(
        "agents work in worktrees under .orch/worktrees/{}; their work is merged into branch {} (see it with `git log --stat {}`, take it with `launch merge {}`)",
        config.paths.session,
        workspace.run_branch(),
        workspace.run_branch(),
        config.paths.session
    )));
    let settings = &config.agents.worktree;
    let setup = WorktreeSetup {
        copy: settings.copy.clone(),
        link: settings.link.clone(),
        commands: settings.setup.clone(),
        command_timeout: settings.setup_timeout_ms.map_or(
            crate::workspace::DEFAULT_SETUP_TIMEOUT,
            std::time::Duration::from_millis,
        ),
        ..WorktreeSetup::default()
    };
    Ok((Some(Isolation::new(workspace.with_setup(setup))), notes))
}

/// A run whose log or audit store could not be written has failed, whatever its agents
/// did: says so (naming the file and the OS error) and marks the report failed. True if
/// it did. The audit store records the failure itself (`sink_failed`).
fn fail_on_sink_failure(
    report: &mut RunReport,
    failures: &tokio::sync::watch::Receiver<Option<crate::events::SinkFailure>>,
) -> bool {
    let Some(failure) = failures.borrow().clone() else {
        return false;
    };
    report.status = crate::events::RunStatus::Failed;
    let problem = failure.to_string();
    if !report.problems.contains(&problem) {
        report.problems.push(problem);
    }
    true
}
