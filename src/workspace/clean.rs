//! `launch clean`: removes the worktrees and branches (`orch/<s>`, `orch-agent/<s>/*`)
//! of finished runs. A worktree with uncommitted changes or an agent branch not merged
//! into its run branch makes the whole run's clean-up refuse, naming each, unless
//! forced; a live run is never touched. Nothing else is.
//!
//! Owns finding a run's git leftovers and removing them. Does not remove run logs or
//! the audit store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::liveness::ProcessIdentity;
use crate::paths::RunPaths;
use crate::workspace::base::{Workspace, ignore_orch_dir, repo_root, session_worktrees_dir};
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::Git;
use crate::workspace::worktree::{AgentWorktree, agent_meta_file};

/// Which runs to clean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanScope {
    Session(String),
    All,
}

/// Whether unsaved work stops the clean-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanForce {
    /// Refuse worktrees with changes and unmerged agent branches.
    Refuse,
    /// Remove them anyway.
    Force,
}

/// What `clean` did and did not do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub removed_worktrees: Vec<PathBuf>,
    /// `(branch, the commit it was at)`: `git branch <branch> <commit>` brings one back.
    pub deleted_branches: Vec<(String, String)>,
    /// Per run: why it was left alone.
    pub refused: Vec<(String, Vec<String>)>,
    /// Runs still going: never cleaned.
    pub live: Vec<String>,
}

#[derive(Default)]
struct RunLeftovers {
    /// `(path, registered with git)`.
    worktrees: Vec<PathBuf>,
    branches: Vec<(String, String)>,
    has_dir: bool,
}

fn leftovers(git: &Git, root: &Path) -> Result<BTreeMap<String, RunLeftovers>, WorkspaceError> {
    let mut runs: BTreeMap<String, RunLeftovers> = BTreeMap::new();
    let refs = git.run([
        "for-each-ref",
        "--format=%(refname)%09%(objectname)",
        "refs/heads/orch/",
        "refs/heads/orch-agent/",
    ])?;
    for line in refs.lines() {
        let Some((name, oid)) = line.split_once('\t') else {
            continue;
        };
        let branch = name.trim_start_matches("refs/heads/");
        let session = if let Some(s) = branch.strip_prefix("orch/") {
            s
        } else if let Some(rest) = branch.strip_prefix("orch-agent/") {
            rest.split('/').next().unwrap_or(rest)
        } else {
            continue;
        };
        runs.entry(session.to_owned())
            .or_default()
            .branches
            .push((branch.to_owned(), oid.to_owned()));
    }
    let worktrees_dir = crate::paths::orch_dir(root).join("worktrees");
    let list = git.run(["worktree", "list", "--porcelain"])?;
    for line in list.lines() {
        let Some(path) = line.strip_prefix("worktree ") else {
            continue;
        };
        let path = PathBuf::from(path);
        if let Ok(rest) = path.strip_prefix(&worktrees_dir) {
            if let Some(session) = rest.components().next() {
                let session = session.as_os_str().to_string_lossy().into_owned();
                runs.entry(session).or_default().worktrees.push(path);
            }
        }
    }
    for entry in std::fs::read_dir(&worktrees_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                runs.entry(name.to_owned()).or_default().has_dir = true;
            }
        }
    }
    Ok(runs)
}

impl Workspace {
    /// Paths changed in an agent's worktree and not committed (set-up's files aside):
    /// what a read-only agent should not have left.
    pub fn uncommitted(&self, worktree: &AgentWorktree) -> Result<Vec<String>, WorkspaceError> {
        worktree_changes(self.git(), self.root(), &worktree.path)
    }
}

/// Uncommitted changes of a worktree, minus what set-up placed there.
fn worktree_changes(git: &Git, root: &Path, path: &Path) -> Result<Vec<String>, WorkspaceError> {
    let wt = git.at(path);
    let entries = wt.run_z([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
    ])?;
    let placed: Vec<String> = worktree_meta(root, path)
        .map(|w| w.setup.placed())
        .unwrap_or_default();
    Ok(entries
        .iter()
        .filter_map(|e| e.get(3..))
        .filter(|p| {
            !placed
                .iter()
                .any(|placed| *p == placed || p.starts_with(&format!("{placed}/")))
        })
        .map(str::to_owned)
        .collect())
}

fn worktree_meta(root: &Path, path: &Path) -> Option<AgentWorktree> {
    let agent = path.file_name()?.to_str()?;
    let session = path.parent()?.file_name()?.to_str()?;
    let text = std::fs::read_to_string(agent_meta_file(root, session, agent)).ok()?;
    serde_json::from_str(&text).ok()
}

fn live_pid(root: &Path, session: &str) -> Option<u32> {
    let identity = ProcessIdentity::read(&RunPaths::new(root, session).pid_file())?;
    identity.is_alive().then_some(identity.pid)
}

fn refusals(
    git: &Git,
    root: &Path,
    session: &str,
    run: &RunLeftovers,
) -> Result<Vec<String>, WorkspaceError> {
    let mut reasons = Vec::new();
    for path in &run.worktrees {
        // Made ahead for an agent that never got it: nothing of an agent is there,
        // whatever git says of its files (it may never have had them checked out).
        if !path.exists() || worktree_meta(root, path).is_some_and(|w| w.staged) {
            continue;
        }
        let changes = worktree_changes(git, root, path)?;
        if !changes.is_empty() {
            let shown: Vec<&str> = changes.iter().take(8).map(String::as_str).collect();
            let more = changes.len().saturating_sub(shown.len());
            reasons.push(format!(
                "worktree {} has uncommitted changes: {}{}",
                path.display(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    let run_branch = format!("orch/{session}");
    let run_tip = run
        .branches
        .iter()
        .find(|(b, _)| *b == run_branch)
        .map(|(_, oid)| oid.clone());
    for (branch, oid) in &run.branches {
        if *branch == run_branch {
            continue;
        }
        let merged = match &run_tip {
            Some(tip) => git.is_ancestor(oid, tip)?,
            None => false,
        };
        if !merged {
            let ahead = match &run_tip {
                Some(tip) => git.run(["rev-list", "--count", &format!("{tip}..{oid}")])?,
                None => "its".into(),
            };
            reasons.push(format!(
                "branch {branch} has {ahead} commit(s) not merged into {run_branch}"
            ));
        }
    }
    Ok(reasons)
}

/// Removes the worktrees and branches of finished runs in `scope`.
pub fn clean(
    project_root: &Path,
    scope: &CleanScope,
    force: CleanForce,
) -> Result<CleanReport, WorkspaceError> {
    let root = repo_root(project_root)?;
    let git = Git::new(&root);
    ignore_orch_dir(&root)?;
    // Worktrees whose directory is gone leave admin entries behind: drop those first.
    git.run(["worktree", "prune"])?;
    let mut runs = leftovers(&git, &root)?;
    if let CleanScope::Session(session) = scope {
        crate::workspace::base::check_name("session name", session)?;
        runs.retain(|s, _| s == session);
        if runs.is_empty() {
            return Err(WorkspaceError::NothingToClean {
                what: format!("run {session}"),
                root,
            });
        }
    }
    let mut report = CleanReport::default();
    for (session, run) in runs {
        if live_pid(&root, &session).is_some() {
            report.live.push(session);
            continue;
        }
        if force == CleanForce::Refuse {
            let reasons = refusals(&git, &root, &session, &run)?;
            if !reasons.is_empty() {
                report.refused.push((session, reasons));
                continue;
            }
        }
        for path in &run.worktrees {
            let mut cmd = git.cmd(["worktree", "remove", "--force", "--force"]);
            cmd = cmd.arg(path);
            cmd.run()?;
            report.removed_worktrees.push(path.clone());
        }
        for (branch, oid) in &run.branches {
            git.run(["update-ref", "-d", &format!("refs/heads/{branch}"), oid])?;
            report.deleted_branches.push((branch.clone(), oid.clone()));
        }
        let dir = session_worktrees_dir(&root, &session);
        if run.has_dir && only_orch_files_left(&dir) {
            std::fs::remove_dir_all(&dir).map_err(|source| WorkspaceError::Io {
                action: "remove",
                path: dir.clone(),
                source,
            })?;
        }
    }
    Ok(report)
}

/// True when `dir` holds nothing but orch's `.meta` and empty directories (a stray
/// file of someone else's stays, and so does the directory).
fn only_orch_files_left(dir: &Path) -> bool {
    fn empty_tree(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .all(|e| e.path().is_dir() && !e.path().is_symlink() && empty_tree(&e.path()))
            })
            .unwrap_or(false)
    }
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().all(|e| {
                e.file_name() == ".meta"
                    || (e.path().is_dir() && !e.path().is_symlink() && empty_tree(&e.path()))
            })
        })
        .unwrap_or(false)
}
