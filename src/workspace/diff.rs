//! What a run or one agent changed, as plain data: base, commits, diffstat, files and
//! the full patch, for the audit store and `launch diff`.
//!
//! Owns reading changes out of git. Does not store them (the audit store does).

use serde::{Deserialize, Serialize};

use crate::workspace::base::Workspace;
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::Git;
use crate::workspace::worktree::AgentWorktree;

/// One commit: its id and first line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSummary {
    pub oid: String,
    pub subject: String,
}

/// One changed path and how (`A`dded, `M`odified, `D`eleted, `T`ype changed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub status: String,
    pub path: String,
}

/// The changes between two commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub base: String,
    pub head: String,
    /// Oldest first.
    pub commits: Vec<CommitSummary>,
    /// `git diff --stat` text (empty when nothing changed).
    pub diffstat: String,
    pub files: Vec<ChangedFile>,
    /// `git diff --binary base head`: applies with `git apply`. Not in the JSON
    /// summary; stored as its own file.
    #[serde(skip)]
    pub patch: Vec<u8>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.base == self.head || (self.commits.is_empty() && self.files.is_empty())
    }
}

pub(crate) fn commits_between(
    git: &Git,
    base: &str,
    head: &str,
) -> Result<Vec<CommitSummary>, WorkspaceError> {
    let text = git.run([
        "log",
        "--reverse",
        "--format=%H%x09%s",
        &format!("{base}..{head}"),
        "--",
    ])?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (oid, subject) = line.split_once('\t')?;
            Some(CommitSummary {
                oid: oid.to_owned(),
                subject: subject.to_owned(),
            })
        })
        .collect())
}

pub(crate) fn diffstat(git: &Git, base: &str, head: &str) -> Result<String, WorkspaceError> {
    git.run([
        "diff",
        "--no-ext-diff",
        "--no-color",
        "--stat=120",
        base,
        head,
        "--",
    ])
}

pub(crate) fn changed_files(
    git: &Git,
    base: &str,
    head: &str,
) -> Result<Vec<ChangedFile>, WorkspaceError> {
    let fields = git.run_z([
        "diff",
        "--no-ext-diff",
        "--name-status",
        "--no-renames",
        "-z",
        base,
        head,
        "--",
    ])?;
    Ok(fields
        .chunks(2)
        .filter_map(|pair| match pair {
            [status, path] => Some(ChangedFile {
                status: status.clone(),
                path: path.clone(),
            }),
            _ => None,
        })
        .collect())
}

/// Everything between `base` and `head`. The four reads run side by side: an agent's
/// commit step waits for them before its merge.
pub fn changes(git: &Git, base: &str, head: &str) -> Result<Changes, WorkspaceError> {
    std::thread::scope(|scope| {
        let patch = scope.spawn(|| {
            git.cmd([
                "diff",
                "--no-ext-diff",
                "--no-color",
                "--no-textconv",
                "--binary",
                "--full-index",
                base,
                head,
                "--",
            ])
            .run_raw()
        });
        let commits = scope.spawn(|| commits_between(git, base, head));
        let stat = scope.spawn(|| diffstat(git, base, head));
        let files = changed_files(git, base, head);
        let joined = |what: &'static str| WorkspaceError::Io {
            action: what,
            path: git.dir().to_path_buf(),
            source: std::io::Error::other("the reading thread panicked"),
        };
        Ok(Changes {
            base: base.to_owned(),
            head: head.to_owned(),
            patch: patch.join().map_err(|_| joined("read the patch of"))??,
            commits: commits
                .join()
                .map_err(|_| joined("read the commits of"))??,
            diffstat: stat.join().map_err(|_| joined("read the diffstat of"))??,
            files: files?,
        })
    })
}

impl Workspace {
    /// What the run changed: its base to the run branch's tip.
    pub fn run_changes(&self) -> Result<Changes, WorkspaceError> {
        let tip = self.run_tip()?;
        changes(&self.git, &self.base.commit, &tip)
    }

    /// Everything between two commits of the repository.
    pub fn changes_between(&self, base: &str, head: &str) -> Result<Changes, WorkspaceError> {
        changes(&self.git, base, head)
    }

    /// What one agent changed: its base to its branch's tip (committed work only; call
    /// `commit_agent` first).
    pub fn agent_changes(&self, worktree: &AgentWorktree) -> Result<Changes, WorkspaceError> {
        let branch = worktree.writable_branch()?;
        let head = self
            .git
            .resolve_commit(&format!("refs/heads/{branch}"))?
            .ok_or_else(|| WorkspaceError::NoAgentBranch {
                branch: branch.to_owned(),
                agent: worktree.agent.clone(),
                session: worktree.session.clone(),
            })?;
        changes(&self.git, &worktree.base, &head)
    }
}
