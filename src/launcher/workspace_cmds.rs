//! `launch merge`, `launch diff` and `launch clean`: the user's side of a run's branch.
//! Output is plain text on stdout (no pager, no colour); errors go through
//! `LaunchError`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{CleanArgs, DiffArgs, MergeArgs};
use crate::config::resolve::project_root;
use crate::launcher::error::{LaunchError, exit};
use crate::workspace::{
    Changes, CleanForce, CleanScope, UserMergeOutcome, Workspace, clean, merge_run,
};

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(10)]
}

pub fn merge(args: &MergeArgs, cwd: &Path) -> Result<ExitCode, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    match merge_run(&root, &args.session)? {
        UserMergeOutcome::AlreadyUpToDate { branch } => {
            println!(
                "`{branch}` already holds run {}: nothing to merge",
                args.session
            )
        }
        UserMergeOutcome::FastForward { branch, tip } => println!(
            "fast-forwarded `{branch}` to run {} ({})",
            args.session,
            short(&tip)
        ),
        UserMergeOutcome::MergeCommit { branch, commit } => println!(
            "merged run {} into `{branch}` with merge commit {}",
            args.session,
            short(&commit)
        ),
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

fn print_changes(title: &str, changes: &Changes, with_patch: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{title}: {} → {}, {} commit(s)",
        short(&changes.base),
        short(&changes.head),
        changes.commits.len()
    )?;
    for commit in &changes.commits {
        writeln!(out, "  {} {}", short(&commit.oid), commit.subject)?;
    }
    if changes.is_empty() {
        writeln!(out, "no changes")?;
        return out.flush();
    }
    writeln!(out)?;
    writeln!(out, "{}", changes.diffstat)?;
    if with_patch {
        writeln!(out)?;
        out.write_all(&changes.patch)?;
    }
    out.flush()
}

pub fn diff(args: &DiffArgs, cwd: &Path) -> Result<ExitCode, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let workspace = Workspace::open(&root, &args.session)?;
    let (title, changes) = match &args.agent {
        Some(agent) => {
            let worktree = workspace.open_agent(agent)?;
            (
                format!(
                    "agent {agent} of run {} ({})",
                    args.session,
                    worktree.label()
                ),
                workspace.agent_changes(&worktree)?,
            )
        }
        None => (
            format!("run {} ({})", args.session, workspace.run_branch()),
            workspace.run_changes()?,
        ),
    };
    match print_changes(&title, &changes, !args.stat) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(LaunchError::Output { source: err });
        }
        _ => {}
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

pub fn clean_runs(args: &CleanArgs, cwd: &Path) -> Result<ExitCode, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let scope = match &args.session {
        Some(session) => CleanScope::Session(session.clone()),
        None => CleanScope::All,
    };
    let force = if args.force {
        CleanForce::Force
    } else {
        CleanForce::Refuse
    };
    let report = clean(&root, &scope, force)?;
    for path in &report.removed_worktrees {
        println!("removed worktree {}", path.display());
    }
    for (branch, oid) in &report.deleted_branches {
        println!("deleted branch {branch} (was {})", short(oid));
    }
    for session in &report.live {
        eprintln!(
            "run {session} is still going: left alone (stop it with `launch ctl stop --session {session}`)"
        );
    }
    for (session, reasons) in &report.refused {
        eprintln!("run {session} left alone:");
        for reason in reasons {
            eprintln!("  {reason}");
        }
        eprintln!("  (`launch clean --session {session} --force` removes it anyway)");
    }
    let nothing = report.removed_worktrees.is_empty() && report.deleted_branches.is_empty();
    if nothing && report.refused.is_empty() && report.live.is_empty() {
        println!("nothing to clean");
    }
    Ok(ExitCode::from(
        if report.refused.is_empty() && report.live.is_empty() {
            exit::SUCCESS
        } else {
            exit::RUN_FAILED
        },
    ))
}
