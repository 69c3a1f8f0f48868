//! The one way orch runs git: arguments built from data (never a shell string),
//! `-C <dir>`, a scrubbed environment, no user hooks, typed errors.
//!
//! Owns how a git command is built and how its failure is reported. Does not decide
//! which commands a workflow runs (the other files of `workspace` do).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::workspace::error::WorkspaceError;

/// The identity of commits orch makes when the repository has none configured.
pub const ORCH_NAME: &str = "orch";
pub const ORCH_EMAIL: &str = "orch@localhost";

/// Settings every command gets: no hooks (orch's commits and rebases must not run the
/// user's scripts), no signing prompts, no ref updates beyond the one asked for, no
/// background gc in the middle of a run.
const CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "rebase.updateRefs=false",
    "rebase.autoStash=false",
    "rebase.autoSquash=false",
    "merge.autoStash=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
    "core.quotePath=false",
];

/// Where git commands run and with which identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Git {
    dir: PathBuf,
    /// Set orch's identity (the repository has no user.name/user.email).
    orch_identity: bool,
    /// Work done ahead of need (worktrees made before their agent starts): its
    /// processes run at the lowest CPU priority, so git steps an agent waits for win.
    background: bool,
}

impl Git {
    pub fn new(dir: &Path) -> Self {
        Git {
            dir: dir.to_path_buf(),
            orch_identity: false,
            background: false,
        }
    }

    /// The same, for work done ahead of need (see `background`).
    pub fn in_background(mut self) -> Self {
        self.background = true;
        self
    }

    /// The same settings, run in another directory (an agent's worktree).
    pub fn at(&self, dir: &Path) -> Self {
        Git {
            dir: dir.to_path_buf(),
            orch_identity: self.orch_identity,
            background: self.background,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Commits made through this `Git` name `orch <orch@localhost>` unless the
    /// repository (or the user's global config) has an identity.
    pub fn with_identity_of_repo(mut self) -> Result<Self, WorkspaceError> {
        let name = self.cmd(["config", "user.name"]).success()?;
        let email = self.cmd(["config", "user.email"]).success()?;
        self.orch_identity = !(name && email);
        Ok(self)
    }

    pub fn cmd<I, S>(&self, args: I) -> GitCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        GitCommand {
            git: self.clone(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            stdin: None,
        }
    }

    /// Runs `args` and returns stdout (lossy UTF-8, one trailing newline removed).
    pub fn run<I, S>(&self, args: I) -> Result<String, WorkspaceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args).run()
    }

    /// The commit `rev` names, or `None` when it names none.
    pub fn resolve_commit(&self, rev: &str) -> Result<Option<String>, WorkspaceError> {
        let out = self
            .cmd(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}"))
            .output()?;
        if out.status.success() {
            Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
        } else {
            Ok(None)
        }
    }

    /// True when `ancestor` is an ancestor of (or equal to) `descendant`.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, WorkspaceError> {
        self.cmd(["merge-base", "--is-ancestor", ancestor, descendant])
            .success()
    }

    /// Moves `refname` to `new` only if it is still at `old` (`None`: must not exist).
    pub fn update_ref(
        &self,
        refname: &str,
        new: &str,
        old: Option<&str>,
        message: &str,
    ) -> Result<(), WorkspaceError> {
        self.run(["update-ref", "-m", message, refname, new, old.unwrap_or("")])
            .map(drop)
    }

    /// Lines of `-z` output, without empty entries.
    pub fn run_z<I, S>(&self, args: I) -> Result<Vec<String>, WorkspaceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Ok(split_z(&self.cmd(args).run_raw()?))
    }
}

/// Starts `cmd` at the lowest CPU priority (nice 19).
fn lowest_priority(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec and only makes one system call,
    // which is async-signal-safe; its failure leaves the priority as it was.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19);
            Ok(())
        });
    }
}

pub fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// One git command being built.
#[derive(Debug)]
pub struct GitCommand {
    git: Git,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
}

impl GitCommand {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// `git -C <dir> <args>`, as a user would type it (for error messages).
    pub fn display(&self) -> String {
        let mut text = format!("git -C {}", self.git.dir.display());
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                text.push_str(&format!(" '{arg}'"));
            } else {
                text.push(' ');
                text.push_str(&arg);
            }
        }
        text
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        // Variables that would point git at another repository, index or config, or
        // change its output, are dropped: the command means what its args say.
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("GIT_") || name == "EMAIL" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_EDITOR", "true")
            .env("GIT_SEQUENCE_EDITOR", "true")
            .env("GIT_PAGER", "cat")
            .env("GIT_ASKPASS", "true")
            .env("LC_ALL", "C");
        if self.git.orch_identity {
            cmd.env("GIT_AUTHOR_NAME", ORCH_NAME)
                .env("GIT_AUTHOR_EMAIL", ORCH_EMAIL)
                .env("GIT_COMMITTER_NAME", ORCH_NAME)
                .env("GIT_COMMITTER_EMAIL", ORCH_EMAIL);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        if self.git.background {
            lowest_priority(&mut cmd);
        }
        cmd.arg("-C").arg(&self.git.dir);
        for setting in CONFIG {
            cmd.arg("-c").arg(setting);
        }
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the command whatever its exit status.
    pub fn output(&self) -> Result<Output, WorkspaceError> {
        let spawn_error = |source| WorkspaceError::GitSpawn {
            command: self.display(),
            source,
        };
        let mut child = self.command().spawn().map_err(spawn_error)?;
        if let (Some(bytes), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            // Written from a thread: git may fill its stdout pipe before reading stdin.
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        child.wait_with_output().map_err(spawn_error)
    }

    /// Runs the command; a non-zero exit is an error carrying stderr's tail.
    pub fn run_raw(&self) -> Result<Vec<u8>, WorkspaceError> {
        let out = self.output()?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failure(&out))
        }
    }

    pub fn run(&self) -> Result<String, WorkspaceError> {
        let stdout = self.run_raw()?;
        let mut text = String::from_utf8_lossy(&stdout).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// For commands whose exit status is the answer: 0 → true, 1 → false.
    pub fn success(&self) -> Result<bool, WorkspaceError> {
        let out = self.output()?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failure(&out)),
        }
    }

    pub fn failure(&self, out: &Output) -> WorkspaceError {
        WorkspaceError::Git {
            command: self.display(),
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 20),
        }
    }
}

/// The last `lines` lines of `text`, trimmed.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    if out.len() > 4000 {
        let cut = out.len() - 4000;
        let cut = (cut..out.len())
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(out.len());
        out = format!("…{}", &out[cut..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new(dir.path());
        let err = git.run(["rev-parse", "HEAD"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("git -C"), "{text}");
        assert!(text.contains("rev-parse HEAD"), "{text}");
        assert!(text.contains("not a git repository"), "{text}");
    }

    #[test]
    fn arguments_are_data_not_shell() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new(dir.path());
        git.run(["init", "-q"]).unwrap();
        // A branch-like argument with shell metacharacters reaches git verbatim.
        let out = git
            .cmd(["check-ref-format", "--branch", "a;touch pwned"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 2), "");
    }
}
