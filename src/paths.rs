//! Where a run keeps its files: `.orch/runs/<session>/…` under the project root.
//!
//! Owns the names of every per-run file and the session-name format. Agent ids are
//! validated before they become file names (see `agent::id`), never sanitized here.

use std::path::{Path, PathBuf};

use crate::agent::id::is_valid_agent_id;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunPaths {
    pub project_root: PathBuf,
    pub session: String,
    pub run_dir: PathBuf,
}

impl RunPaths {
    pub fn new(project_root: &Path, session: &str) -> Self {
        RunPaths {
            project_root: project_root.to_path_buf(),
            session: session.to_owned(),
            run_dir: runs_dir(project_root).join(session),
        }
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.run_dir.join("logs")
    }

    /// The log of one agent. `None` for an id that is not path-safe.
    pub fn agent_log(&self, agent: &str) -> Option<PathBuf> {
        is_valid_agent_id(agent).then(|| self.logs_dir().join(format!("{agent}.log")))
    }

    pub fn timeline_log(&self) -> PathBuf {
        self.logs_dir().join("timeline.log")
    }

    /// The timeline for people (`.txt`, so no agent log can take its name).
    pub fn timeline_text(&self) -> PathBuf {
        self.logs_dir().join("timeline.txt")
    }

    pub fn interrupt_log(&self) -> PathBuf {
        self.logs_dir().join("interrupt.log")
    }

    /// `control.path`: where the run's control socket is (the socket itself lives at a
    /// short path outside the run directory, see `control::socket_dir`).
    pub fn control_path_file(&self) -> PathBuf {
        self.run_dir.join("control.path")
    }

    /// Where runs of earlier versions put their socket (cleared with a crashed run).
    pub fn legacy_control_socket(&self) -> PathBuf {
        self.run_dir.join("control.sock")
    }

    /// Held (flock) while a launcher claims the run or clears it after a crash.
    pub fn lock_file(&self) -> PathBuf {
        self.run_dir.join("orchestrator.lock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("orchestrator.pid")
    }

    pub fn config_file(&self) -> PathBuf {
        self.run_dir.join("config.json")
    }

    pub fn state_file(&self) -> PathBuf {
        self.run_dir.join("state.json")
    }

    pub fn layout_file(&self) -> PathBuf {
        self.run_dir.join("layout.kdl")
    }

    /// The agent panes of a Zellij/tmux run, in slot order (`launch attach` rebuilds
    /// the session from it).
    pub fn panes_file(&self) -> PathBuf {
        self.run_dir.join("panes.json")
    }

    /// stdout/stderr of the detached orchestrator of a Zellij/tmux run.
    pub fn orchestrator_log(&self) -> PathBuf {
        self.run_dir.join("orchestrator.log")
    }

    pub fn zellij_config_dir(&self) -> PathBuf {
        self.run_dir.join("zellij")
    }
}

pub fn orch_dir(project_root: &Path) -> PathBuf {
    project_root.join(".orch")
}

pub fn runs_dir(project_root: &Path) -> PathBuf {
    orch_dir(project_root).join("runs")
}

pub fn default_audit_path(project_root: &Path) -> PathBuf {
    orch_dir(project_root).join("audit.db")
}

/// A new session name: `run-YYYYMMDD-HHMMSS-xxxx`.
pub fn new_session_name() -> String {
    let now = time::OffsetDateTime::now_utc();
    let suffix: u16 = rand::random();
    format!(
        "run-{:04}{:02}{:02}-{:02}{:02}{:02}-{:04x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        suffix
    )
}

/// The directory holding `.git` above `start`, if any. A `.git` counts when it is a
/// file (a worktree's or submodule's `gitdir:` link) or a directory with a `HEAD`, as
/// git itself decides: an empty `.git` directory (Codex's sandbox leaves one as a mount
/// point in every writable root, `/tmp` included) is not a repository.
pub fn find_repo_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            let git = dir.join(".git");
            git.is_file() || git.join("HEAD").is_file()
        })
        .map(Path::to_path_buf)
}

/// Sessions of a project, newest first (session names sort by time).
pub fn list_sessions(project_root: &Path) -> Vec<String> {
    let mut sessions: Vec<String> = std::fs::read_dir(runs_dir(project_root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    sessions.sort_by(|a, b| b.cmp(a));
    sessions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_git_dir_is_not_a_repository_but_a_gitdir_link_is() {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path();
        let inner = outer.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        // What Codex's sandbox leaves in a writable root.
        std::fs::create_dir(outer.join(".git")).unwrap();
        assert_eq!(find_repo_root(&inner), None);
        std::fs::write(outer.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(find_repo_root(&inner).as_deref(), Some(outer));
        std::fs::write(outer.join("a/.git"), "gitdir: elsewhere\n").unwrap();
        assert_eq!(find_repo_root(&inner), Some(outer.join("a")));
    }

    #[test]
    fn session_names_have_the_documented_shape() {
        let name = new_session_name();
        assert_eq!(name.len(), "run-20261122-101010-abcd".len(), "{name}");
        assert!(name.starts_with("run-"));
        assert!(is_valid_agent_id(&name), "session names are path-safe too");
    }

    #[test]
    fn unsafe_agent_ids_have_no_log_path() {
        let paths = RunPaths::new(Path::new("/repo"), "run-x");
        assert_eq!(
            paths.agent_log("api"),
            Some(PathBuf::from("/repo/.orch/runs/run-x/logs/api.log"))
        );
        assert_eq!(paths.agent_log("../evil"), None);
        assert_eq!(paths.agent_log("timeline"), None);
    }
}
