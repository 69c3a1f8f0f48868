//! `launch merge <session>`: brings a run's branch into the user's current branch, a
//! fast-forward when possible, else a merge commit. Refuses, changing nothing, when
//! the user's uncommitted changes would be overwritten or the merge would conflict.
//!
//! Owns the one place orch writes to the user's branch, index and tree, and only on
//! the user's request.

use std::path::Path;

use crate::workspace::base::{check_name, repo_root, run_branch_name, user_tree_paths};
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::Git;

/// What `launch merge` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserMergeOutcome {
    /// The current branch already holds the run branch.
    AlreadyUpToDate {
        branch: String,
    },
    FastForward {
        branch: String,
        tip: String,
    },
    MergeCommit {
        branch: String,
        commit: String,
    },
}

/// Merges `orch/<session>` into the branch checked out at `project_root`.
pub fn merge_run(project_root: &Path, session: &str) -> Result<UserMergeOutcome, WorkspaceError> {
    check_name("session name", session)?;
    let root = repo_root(project_root)?;
    let git = Git::new(&root).with_identity_of_repo()?;
    if let Some(pid) = crate::liveness::ProcessIdentity::read(
        &crate::paths::RunPaths::new(&root, session).pid_file(),
    )
    .filter(|p| p.is_alive())
    .map(|p| p.pid)
    {
        return Err(WorkspaceError::RunIsLive {
            session: session.to_owned(),
            pid,
        });
    }
    let run_branch = run_branch_name(session);
    let tip = git
        .resolve_commit(&format!("refs/heads/{run_branch}"))?
        .ok_or_else(|| WorkspaceError::NoRunBranch {
            branch: run_branch.clone(),
            root: root.clone(),
        })?;
    let current = git
        .cmd(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .output()?;
    if !current.status.success() {
        return Err(WorkspaceError::DetachedHead {
            session: session.to_owned(),
        });
    }
    let branch = String::from_utf8_lossy(&current.stdout).trim().to_owned();
    let Some(head) = git.resolve_commit("HEAD")? else {
        return Err(WorkspaceError::NoCommits { root });
    };
    if git.is_ancestor(&tip, &head)? {
        return Ok(UserMergeOutcome::AlreadyUpToDate { branch });
    }
    let fork = git.run(["merge-base", &head, &tip])?;
    let incoming = git.run_z([
        "diff",
        "--name-only",
        "--no-renames",
        "-z",
        &fork,
        &tip,
        "--",
    ])?;
    let dirty = user_tree_paths(&git)?;
    let overwritten: Vec<String> = dirty
        .into_iter()
        .filter(|p| {
            incoming
                .iter()
                .any(|i| i == p || i.starts_with(&format!("{}/", p.trim_end_matches('/'))))
        })
        .collect();
    if !overwritten.is_empty() {
        return Err(WorkspaceError::WouldOverwrite {
            session: session.to_owned(),
            files: overwritten,
        });
    }
    if fork == head {
        git.run(["merge", "--quiet", "--ff-only", &tip])?;
        return Ok(UserMergeOutcome::FastForward { branch, tip });
    }
    // A trial merge in git's object store: a conflict is found without touching the
    // user's index or tree.
    let trial = git
        .cmd([
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            &head,
            &tip,
        ])
        .output()?;
    if trial.status.code() == Some(1) {
        let text = String::from_utf8_lossy(&trial.stdout).into_owned();
        let files: Vec<String> = text
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        return Err(WorkspaceError::MergeConflicts {
            session: session.to_owned(),
            branch,
            run_branch,
            files,
        });
    }
    let message = format!("Merge run {session} ({run_branch}) into {branch}");
    let merge = git.cmd([
        "merge",
        "--quiet",
        "--no-ff",
        "--no-edit",
        "-m",
        &message,
        &tip,
    ]);
    let out = merge.output()?;
    if !out.status.success() {
        // Only reached with a git too old for `merge-tree --write-tree`: put the
        // user's tree back as it was.
        let _ = git.run(["merge", "--abort"]);
        return Err(merge.failure(&out));
    }
    Ok(UserMergeOutcome::MergeCommit {
        branch,
        commit: git.run(["rev-parse", "HEAD"])?,
    })
}
