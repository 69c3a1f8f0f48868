//! Set-up of a new agent worktree: files the checkout lacks (`.env`, and gitignored
//! files matching the repository's `.worktreeinclude`), directories linked rather than
//! copied (`node_modules`), and set-up commands with a timeout.
//!
//! Owns the set-up config and its application. Does not create the worktree
//! (`worktree.rs`); what set-up placed is kept out of the agent's commits by
//! `commit.rs`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::workspace::error::WorkspaceError;
use crate::workspace::git::{Git, split_z, tail};

/// The file at the repository root that names gitignored files to copy into each
/// worktree (gitignore syntax; the convention of Claude Code and others).
pub const WORKTREE_INCLUDE: &str = ".worktreeinclude";

/// Default time a set-up command may take.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// How a new worktree is made ready, from the agents config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeSetup {
    /// Paths (relative to the repository root) copied from the user's tree when the
    /// checkout lacks them; missing ones are skipped.
    pub copy: Vec<String>,
    /// Directories symlinked to the user's copy (shared, not isolated).
    pub link: Vec<String>,
    /// Shell commands run in the worktree, in order; a failure fails the agent.
    pub commands: Vec<String>,
    /// Time each command may take before its process group is killed.
    pub command_timeout: Duration,
    /// Also copy gitignored files that match `.worktreeinclude`.
    pub use_worktree_include: bool,
}

impl Default for WorktreeSetup {
    fn default() -> Self {
        WorktreeSetup {
            copy: Vec::new(),
            link: Vec::new(),
            commands: Vec::new(),
            command_timeout: DEFAULT_SETUP_TIMEOUT,
            use_worktree_include: true,
        }
    }
}

/// What set-up did to one worktree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupReport {
    /// Files copied from the user's tree (relative paths).
    pub copied: Vec<String>,
    /// Directories linked to the user's tree.
    pub linked: Vec<String>,
    /// Commands that ran, with how long each took.
    pub commands: Vec<(String, Duration)>,
}

impl SetupReport {
    /// Paths set-up placed that are not the agent's work: kept out of its commits.
    pub fn placed(&self) -> Vec<String> {
        self.copied.iter().chain(&self.linked).cloned().collect()
    }
}

fn check_relative(agent: &str, path: &str) -> Result<(), WorkspaceError> {
    let bad = |problem: &str| WorkspaceError::SetupPath {
        agent: agent.to_owned(),
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() {
        return Err(bad("must be a path relative to the repository root"));
    }
    for component in p.components() {
        match component {
            Component::Normal(name) if name == ".git" => {
                return Err(bad("is inside .git"));
            }
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(bad("must stay inside the repository (no `..`)")),
        }
    }
    Ok(())
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError {
    let path = path.to_path_buf();
    move |source| WorkspaceError::Io {
        action,
        path,
        source,
    }
}

/// Copies a file, symlink or directory tree.
fn copy_path(from: &Path, to: &Path) -> Result<(), WorkspaceError> {
    let meta = std::fs::symlink_metadata(from).map_err(io("read", from))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io("read the link", from))?;
        std::os::unix::fs::symlink(target, to).map_err(io("create the link", to))
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(io("create", to))?;
        for entry in std::fs::read_dir(from).map_err(io("list", from))? {
            let entry = entry.map_err(io("list", from))?;
            copy_path(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(drop).map_err(io("copy to", to))
    }
}

/// Untracked, gitignored files of the user's tree that match `.worktreeinclude`.
pub fn worktree_include_files(git: &Git, root: &Path) -> Result<Vec<String>, WorkspaceError> {
    let include = root.join(WORKTREE_INCLUDE);
    if !include.is_file() {
        return Ok(Vec::new());
    }
    let matching = git.run_z([
        "ls-files".as_ref(),
        "-z".as_ref(),
        "--others".as_ref(),
        "--ignored".as_ref(),
        "--exclude-from".as_ref(),
        include.as_os_str(),
    ])?;
    let matching: Vec<String> = matching
        .into_iter()
        .filter(|p| !p.starts_with(".orch/") && !p.ends_with('/'))
        .collect();
    if matching.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = Vec::new();
    for path in &matching {
        input.extend_from_slice(path.as_bytes());
        input.push(0);
    }
    let cmd = git.cmd(["check-ignore", "-z", "--stdin"]).stdin(input);
    let out = cmd.output()?;
    match out.status.code() {
        Some(0) | Some(1) => Ok(split_z(&out.stdout)),
        _ => Err(cmd.failure(&out)),
    }
}

/// Makes a fresh worktree ready: copies, links, then commands.
pub fn apply(
    setup: &WorktreeSetup,
    git: &Git,
    root: &Path,
    worktree: &Path,
    agent: &str,
    session: &str,
) -> Result<SetupReport, WorkspaceError> {
    let mut report = SetupReport::default();
    let mut copies: Vec<String> = Vec::new();
    for path in &setup.copy {
        check_relative(agent, path)?;
        copies.push(path.trim_end_matches('/').to_owned());
    }
    if setup.use_worktree_include {
        copies.extend(worktree_include_files(git, root)?);
    }
    copies.sort();
    copies.dedup();
    for path in copies {
        let from = root.join(&path);
        let to = worktree.join(&path);
        // Missing in the user's tree: nothing to copy. Present in the checkout: it is
        // tracked, and the committed version wins.
        if std::fs::symlink_metadata(&from).is_err() || std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        copy_path(&from, &to)?;
        report.copied.push(path);
    }
    for path in &setup.link {
        check_relative(agent, path)?;
        let path = path.trim_end_matches('/').to_owned();
        let from = root.join(&path);
        let to = worktree.join(&path);
        if !from.exists() || std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        std::os::unix::fs::symlink(&from, &to).map_err(io("create the link", &to))?;
        report.linked.push(path);
    }
    for command in &setup.commands {
        let started = Instant::now();
        run_setup_command(
            command,
            setup.command_timeout,
            worktree,
            root,
            agent,
            session,
        )?;
        report.commands.push((command.clone(), started.elapsed()));
    }
    Ok(report)
}

/// Runs one set-up command in its own process group; on timeout the whole group is
/// killed. Output goes to a file (a pipe left open by a background child would hang
/// a reader).
fn run_setup_command(
    command: &str,
    timeout: Duration,
    worktree: &Path,
    root: &Path,
    agent: &str,
    session: &str,
) -> Result<(), WorkspaceError> {
    let log_path: PathBuf = std::env::temp_dir();
    let mut log = tempfile::tempfile().map_err(io("create a temporary file in", &log_path))?;
    let log_err = log
        .try_clone()
        .map_err(io("open a temporary file in", &log_path))?;
    let log_out = log
        .try_clone()
        .map_err(io("open a temporary file in", &log_path))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(worktree)
        .env("ORCH_WORKTREE", worktree)
        .env("ORCH_PROJECT_ROOT", root)
        .env("ORCH_AGENT", agent)
        .env("ORCH_SESSION", session)
        .stdin(Stdio::null())
        .stdout(log_out)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(io("start a set-up command in", worktree))?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(WorkspaceError::Io {
                    action: "wait for a set-up command in",
                    path: worktree.to_path_buf(),
                    source,
                });
            }
        }
    };
    // Whatever the command left running in the background goes with it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    if status.is_none() {
        let _ = child.wait();
    }
    let mut output = String::new();
    let _ = std::io::Seek::rewind(&mut log);
    let _ = log.take(1 << 20).read_to_string(&mut output);
    let output = tail(&output, 20);
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(WorkspaceError::SetupFailed {
            agent: agent.to_owned(),
            command: command.to_owned(),
            status: status.to_string(),
            output,
        }),
        None => Err(WorkspaceError::SetupTimedOut {
            agent: agent.to_owned(),
            command: command.to_owned(),
            timeout,
            output,
        }),
    }
}
