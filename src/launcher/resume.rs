//! `launch resume <session>` and `launch continue <session> --prompt …`: a run started
//! again from its audit store, and a new run on top of a finished one.
//!
//! Owns the refusals (a run that succeeded, one still running, a store whose chain does
//! not verify) and the config of the resumed or follow-up run. The replay itself is
//! `orchestrator::replay`; reading the store is `audit::resume`.

use std::path::Path;

use crate::agent::id::is_valid_agent_id;
use crate::audit::AuditTarget;
use crate::audit::reader::AuditReader;
use crate::cli::RunArgs;
use crate::config::resolve::{audit_target, own_terminal, project_root};
use crate::config::{Config, ConfigError, Env, ParentRun, resolve};
use crate::launcher::error::LaunchError;
use crate::workspace::{BaseChoice, Workspace};

/// What `resume_config` read, for the run in this process (`--mux none`): its replay is
/// not read twice, and its reader stays open. After a crash the store's first connection
/// recovers the write-ahead log, and the last one to close copies it into the database:
/// with the reader open that is not on the way to the first agent. In a Zellij or tmux
/// run the launcher exits with the reader never closed; the orchestrator reads anew.
pub(crate) struct Preloaded {
    pub session: String,
    pub reader: AuditReader,
    pub replay: crate::orchestrator::replay::Replay,
}

static PRELOADED: std::sync::Mutex<Option<Preloaded>> = std::sync::Mutex::new(None);

fn keep_preloaded(preloaded: Preloaded) {
    if let Ok(mut slot) = PRELOADED.lock() {
        *slot = Some(preloaded);
    }
}

/// The replay and reader `resume_config` kept for `session`, if any.
pub(crate) fn take_preloaded(session: &str) -> Option<Preloaded> {
    let mut slot = PRELOADED.lock().ok()?;
    match slot.as_ref() {
        Some(p) if p.session == session => slot.take(),
        _ => None,
    }
}

fn refuse(session: &str, reason: String) -> LaunchError {
    LaunchError::CannotResume {
        session: session.to_owned(),
        reason,
    }
}

/// An unknown session is bad input (exit 2), named as such.
fn unknown(session: &str) -> impl FnOnce(crate::audit::AuditError) -> LaunchError + '_ {
    move |err| {
        match err {
        crate::audit::AuditError::UnknownSession { .. } => refuse(
            session,
            "the audit store holds no run of that name; `launch ls` and `orch-audit runs` list the runs".into(),
        ),
        other => other.into(),
    }
    }
}

fn check_name(session: &str) -> Result<(), LaunchError> {
    if is_valid_agent_id(session) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "session name `{}` is not allowed: use lowercase letters, digits, `-` and `_` (at most 64)",
            session.escape_debug()
        ))
        .into())
    }
}

/// The audit store of the flags, with a remote store's token from the environment.
fn store_of(
    args: &RunArgs,
    env: &Env,
    cwd: &Path,
    root: &Path,
    what: &str,
) -> Result<AuditTarget, LaunchError> {
    match audit_target(args, env, cwd, root) {
        Some(AuditTarget::Remote { url, .. }) => Ok(AuditTarget::Remote {
            url,
            token: env.get("ORCH_AUDIT_TOKEN").cloned().unwrap_or_default(),
        }),
        Some(AuditTarget::Local(path)) if !path.exists() => Err(ConfigError::Invalid(format!(
            "{what} reads the run from the audit store, and there is none at {} (--audit-path names another)",
            path.display()
        ))
        .into()),
        Some(local) => Ok(local),
        None => Err(ConfigError::Invalid(format!(
            "{what} reads the run from the audit store; --no-audit cannot be used with it"
        ))
        .into()),
    }
}

/// `launch resume SESSION` (or `launch --resume SESSION`): the stored run's config,
/// marked to resume, with this invocation's run-time flags.
pub fn resume_config(
    session: &str,
    args: &RunArgs,
    env: &Env,
    cwd: &Path,
) -> Result<Config, LaunchError> {
    check_name(session)?;
    if args.prompt.is_some() || args.task_file.is_some() {
        return Err(ConfigError::Invalid(
            "`launch resume` goes on with the run's own task; to give a run a follow-up task use `launch continue <session> --prompt …`".into(),
        )
        .into());
    }
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let target = store_of(args, env, cwd, &root, "`launch resume`")?;
    let (stored, problems, preloaded) = super::runtime().block_on(async {
        let reader = AuditReader::open(&target).await?;
        let stored = crate::audit::resume::stored_run(&reader, session)
            .await
            .map_err(unknown(session))?;
        // What the resumed run will read is checked now, before anything of it is
        // used; the whole chain is checked alongside the run (`run_in_foreground`).
        let (replay, mut read) = crate::audit::resume::replay(&reader, session).await?;
        read.extend(stored.config_seq);
        let problems = crate::audit::verify::verify_rows(reader.conn(), session, &read).await?;
        let preloaded = Preloaded {
            session: session.to_owned(),
            reader,
            replay,
        };
        Ok::<_, LaunchError>((stored, problems, preloaded))
    })?;
    match stored.summary.status.as_str() {
        "succeeded" => {
            return Err(refuse(
                session,
                format!(
                    "it finished successfully, so nothing is left to resume; `launch continue {session} --prompt \"…\"` starts a follow-up run on top of it"
                ),
            ));
        }
        "running" | "paused" => {
            return Err(refuse(
                session,
                format!(
                    "it is still running (its owner answers, or is on another machine); `launch ctl status --session {session}` reports on it, and `launch ctl resume` continues a paused run"
                ),
            ));
        }
        _ => {}
    }
    if !problems.is_empty() && !args.force {
        return Err(refuse(
            session,
            format!(
                "its audit store does not verify ({}); `orch-audit verify {session}` shows why; --force resumes all the same",
                problems.join("; ")
            ),
        ));
    }
    let Some(stored_config) = stored.config else {
        return Err(refuse(
            session,
            "the audit store has no config for it (it was recorded by an older orch)".into(),
        ));
    };
    keep_preloaded(preloaded);
    let mut config: Config = serde_json::from_value(stored_config).map_err(|err| {
        refuse(
            session,
            format!("its stored config cannot be read by this orch: {err}"),
        )
    })?;
    if !config.paths.project_root.is_dir() {
        config.paths.project_root = root;
    }
    config.resume = true;
    config.resume_forced = args.force;
    config.audit = Some(target);
    if let Some(mux) = args.mux {
        config.mux = mux;
    }
    if args.max_tokens.is_some() {
        config.max_tokens = args.max_tokens;
    }
    if args.max_cost.is_some() {
        config.max_cost_micros = args.max_cost;
    }
    if args.notify_command.is_some() {
        config.notify_command = args.notify_command.clone();
    }
    config.notify_terminal = args.notify.contains(&crate::cli::NotifyWay::Terminal)
        && !args.notify.contains(&crate::cli::NotifyWay::None);
    config.notify_desktop = args.notify.contains(&crate::cli::NotifyWay::Desktop)
        && !args.notify.contains(&crate::cli::NotifyWay::None);
    config.notify_tty = own_terminal();
    config.metrics |= args.metrics;
    config.stream |= args.stream;
    config.debug_prompt |= args.debug_prompt;
    config.mux_programs = crate::config::resolve::MuxPrograms::from_env(env);
    if let Some(spec) = &args.demo_scenario {
        config.demo = crate::agent::demo::DemoScenario::parse(spec)
            .map_err(|e| ConfigError::Invalid(format!("invalid demo scenario: {e}")))?;
    }
    Ok(config)
}

/// `launch continue PARENT --prompt …`: a new run whose base is the parent's run branch
/// and whose planner is told what the parent did.
pub fn continue_config(
    parent: &str,
    mut args: RunArgs,
    env: &Env,
    cwd: &Path,
) -> Result<Config, LaunchError> {
    check_name(parent)?;
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let target = store_of(&args, env, cwd, &root, "`launch continue`")?;
    let (stored, context) = super::runtime().block_on(async {
        let reader = AuditReader::open(&target).await?;
        let stored = crate::audit::resume::stored_run(&reader, parent)
            .await
            .map_err(unknown(parent))?;
        let context = crate::audit::resume::parent_context(&reader, parent).await?;
        Ok::<_, LaunchError>((stored, context))
    })?;
    if matches!(stored.summary.status.as_str(), "running" | "paused") {
        return Err(refuse(
            parent,
            "it is still running; a follow-up run starts once it has finished".into(),
        ));
    }
    let earlier = stored
        .config
        .and_then(|value| serde_json::from_value::<Config>(value).ok());
    if let Some(earlier) = &earlier {
        if args.backend.is_none() && !env.contains_key("ORCHESTRATED_CODEX_BACKEND") {
            args.backend = Some(earlier.backend.clone());
            if args.model.is_none() {
                args.model = earlier.model.clone();
            }
        }
    }
    let mut config = resolve(&args, env, cwd)?;
    if config.paths.session == parent {
        return Err(ConfigError::Invalid(format!(
            "a follow-up run needs its own session name, not `{parent}`"
        ))
        .into());
    }
    let parent_isolated = earlier
        .as_ref()
        .is_some_and(|e| e.isolation == crate::cli::IsolationChoice::Worktree);
    if parent_isolated && config.isolation == crate::cli::IsolationChoice::Worktree {
        match Workspace::open(&root, parent) {
            Ok(workspace) if args.base.is_none() && !args.include_uncommitted => {
                config.base = BaseChoice::Ref {
                    reference: workspace.run_branch().to_owned(),
                };
            }
            Ok(_) => {}
            Err(err) => {
                return Err(refuse(
                    parent,
                    format!(
                        "its run branch cannot be found ({err}); pass --base to start elsewhere"
                    ),
                ));
            }
        }
    }
    config.parent = Some(ParentRun {
        session: parent.to_owned(),
        context,
    });
    Ok(config)
}
