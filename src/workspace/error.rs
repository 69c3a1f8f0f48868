//! Failures of the workspace subsystem: git commands, set-up, and the refusals that
//! keep the user's repository and an agent's work safe.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Git {
        command: String,
        status: String,
        /// The last lines of git's stderr.
        stderr: String,
    },
    #[error("failed to run `{command}`: is git installed and on PATH?")]
    GitSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{root}` is not inside a git repository: run `git init` there, or use --isolation shared"
    )]
    NotARepository { root: PathBuf },
    #[error(
        "the repository at `{root}` has no commits yet: commit something first (`git commit --allow-empty -m init` will do)"
    )]
    NoCommits { root: PathBuf },
    #[error(
        "`{reference}` is not a commit in `{root}`: pass an existing branch, tag or commit to --base"
    )]
    BadBase { root: PathBuf, reference: String },
    #[error(
        "{what} `{name}` is not allowed: use lowercase letters, digits, `-` and `_` (at most 64)"
    )]
    BadName { what: &'static str, name: String },
    #[error(
        "run branch `{branch}` already exists: pick another --session, or remove it with `launch clean --session {session}`"
    )]
    RunBranchExists { branch: String, session: String },
    #[error(
        "run {session} has no workspace in `{root}` (no {file}): was it started with --isolation worktree?"
    )]
    NoWorkspace {
        session: String,
        root: PathBuf,
        file: String,
    },
    #[error("agent `{agent}` of run {session} has no worktree at `{path}`")]
    NoWorktree {
        agent: String,
        session: String,
        path: PathBuf,
    },
    #[error(
        "a worktree for agent `{agent}` already exists at `{path}`: open it instead of creating it"
    )]
    WorktreeExists { agent: String, path: PathBuf },
    #[error(
        "the worktree of agent `{agent}` is already its agent's: orch does not move or remove it"
    )]
    NotStaged { agent: String },
    #[error("agent `{agent}` has a read-only worktree: there is nothing to commit or merge")]
    ReadOnly { agent: String },
    #[error("failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read `{path}`: {message}")]
    BadMetadata { path: PathBuf, message: String },
    #[error("set-up command `{command}` of agent `{agent}` failed ({status}):\n{output}")]
    SetupFailed {
        agent: String,
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "set-up command `{command}` of agent `{agent}` did not finish within {timeout:?} and was killed:\n{output}"
    )]
    SetupTimedOut {
        agent: String,
        command: String,
        timeout: Duration,
        output: String,
    },
    #[error("set-up of agent `{agent}`: `{path}` {problem}")]
    SetupPath {
        agent: String,
        path: String,
        problem: String,
    },
    #[error(
        "the run branch `{branch}` moved while agent `{agent}` was being integrated (expected {expected}, found {found}); integrate agents one at a time"
    )]
    RunBranchMoved {
        branch: String,
        agent: String,
        expected: String,
        found: String,
    },
    #[error(
        "the run branch `{branch}` is checked out in `{path}`: orch never moves a checked-out branch; switch that worktree to another branch"
    )]
    RunBranchCheckedOut { branch: String, path: PathBuf },
    #[error(
        "agent `{agent}` left its worktree on {found} instead of `{branch}`, and its work is not on `{branch}`: check out `{branch}` in `{path}`"
    )]
    AgentLeftBranch {
        agent: String,
        branch: String,
        found: String,
        path: PathBuf,
    },
    #[error(
        "run {session} is still going (orchestrator pid {pid}): stop it first (`launch ctl stop --session {session}`)"
    )]
    RunIsLive { session: String, pid: u32 },
    #[error("no run branch `{branch}` in `{root}`: `launch ls` lists the runs")]
    NoRunBranch { branch: String, root: PathBuf },
    #[error("no branch `{branch}` for agent `{agent}` of run {session}")]
    NoAgentBranch {
        branch: String,
        agent: String,
        session: String,
    },
    #[error(
        "your repository is on a detached HEAD: check out the branch to merge run {session} into"
    )]
    DetachedHead { session: String },
    #[error(
        "merging run {session} would overwrite your uncommitted changes to: {}; commit or stash them first",
        files.join(", ")
    )]
    WouldOverwrite { session: String, files: Vec<String> },
    #[error(
        "merging run {session} into `{branch}` conflicts in: {}; nothing was changed. Merge by hand with `git merge {run_branch}`",
        files.join(", ")
    )]
    MergeConflicts {
        session: String,
        branch: String,
        run_branch: String,
        files: Vec<String>,
    },
    #[error("nothing to clean: no worktrees or branches of {what} in `{root}`")]
    NothingToClean { what: String, root: PathBuf },
}
