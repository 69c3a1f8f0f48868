//! Who owns a run, and what is left of one whose owner is gone.
//!
//! A run is owned by the process named in `<run dir>/orchestrator.pid` (pid and start
//! time, see `liveness`). `launch` claims a session before it writes anything of the
//! run: under an flock on `orchestrator.lock` it refuses a session whose owner still
//! runs (exit 2) and a session that crashed (its logs and store rows stay as they were;
//! a new run takes a new name), then writes its own identity. The orchestrator that a
//! Zellij/tmux launcher starts adopts its parent's claim. When the claim ends without
//! the run having written its final state (a failed start), the state says `failed`.
//!
//! A run whose owner is gone while no final state was written has crashed: the next
//! `launch` or `launch ls` clears its socket, socket record and pid file, and writes
//! `{"status": "crashed"}` as its state so that it stays known as crashed.
//!
//! Owns the claim, the liveness of a run and that clean-up. Does not run anything.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::control::socket_dir;
use crate::launcher::error::LaunchError;
use crate::liveness::ProcessIdentity;
use crate::paths::{RunPaths, list_sessions};

/// `status` of a crashed run in `state.json`.
pub const CRASHED: &str = "crashed";

/// Whether a run's owner is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunLiveness {
    /// `orchestrator.pid` names a process that runs.
    Live(ProcessIdentity),
    /// `orchestrator.pid` names a process that is gone.
    Gone(ProcessIdentity),
    /// No `orchestrator.pid`: the run ended (or never started, or was cleared).
    NoOwner,
}

/// Reads `orchestrator.pid` and checks the process it names.
pub fn liveness(paths: &RunPaths) -> RunLiveness {
    match ProcessIdentity::read(&paths.pid_file()) {
        Some(owner) if is_running(&owner) => RunLiveness::Live(owner),
        Some(owner) => RunLiveness::Gone(owner),
        None => RunLiveness::NoOwner,
    }
}

/// The same process still runs, and is not a zombie (a killed orchestrator whose
/// parent has not reaped it yet has stopped all the same).
fn is_running(owner: &ProcessIdentity) -> bool {
    owner.is_alive() && !is_zombie(owner.pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// The `status` in `state.json`, if the run wrote one.
pub fn final_status(paths: &RunPaths) -> Option<String> {
    let text = std::fs::read_to_string(paths.state_file()).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(value.get("status")?.as_str()?.to_owned())
}

/// The exclusive flock on `orchestrator.lock`, held while a claim is taken, adopted,
/// released, or a crashed run is cleared. Released when dropped.
struct RunLock(#[allow(dead_code)] Flock<File>);

impl RunLock {
    fn acquire(paths: &RunPaths) -> Result<Self, LaunchError> {
        let path = paths.lock_file();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| claim_error(&path, source))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(RunLock)
            .map_err(|(_, errno)| claim_error(&path, errno.into()))
    }
}

fn claim_error(path: &Path, source: std::io::Error) -> LaunchError {
    LaunchError::RunDir {
        path: path.display().to_string(),
        source,
    }
}

/// This process's claim on a session (see the module docs).
#[derive(Debug)]
pub struct RunClaim {
    paths: RunPaths,
    me: ProcessIdentity,
    released: bool,
}

impl RunClaim {
    /// Claims `paths.session` for this process, for `launch`: refuses a live or crashed
    /// session (exit 2) before anything of that run is touched. Clears every crashed run
    /// of the project first.
    pub fn take(paths: &RunPaths) -> Result<Self, LaunchError> {
        Self::take_as(paths, false)
    }

    /// Claims `paths.session` for `launch resume`: like `take`, but a crashed, stopped
    /// or failed run is what it continues, so only a live owner is refused; the old
    /// final state goes (the resumed run writes its own).
    pub fn take_for_resume(paths: &RunPaths) -> Result<Self, LaunchError> {
        Self::take_as(paths, true)
    }

    fn take_as(paths: &RunPaths, resume: bool) -> Result<Self, LaunchError> {
        clear_crashed_runs(&paths.project_root);
        std::fs::create_dir_all(&paths.run_dir)
            .map_err(|source| claim_error(&paths.run_dir, source))?;
        let _lock = RunLock::acquire(paths)?;
        match liveness(paths) {
            RunLiveness::Live(owner) => {
                return Err(LaunchError::SessionTaken {
                    session: paths.session.clone(),
                    pid: owner.pid,
                });
            }
            RunLiveness::Gone(_) if resume => clear_crashed_locked(paths),
            RunLiveness::Gone(_) => {
                clear_crashed_locked(paths);
                return Err(crashed(paths));
            }
            RunLiveness::NoOwner if resume => {}
            RunLiveness::NoOwner if final_status(paths).as_deref() == Some(CRASHED) => {
                return Err(crashed(paths));
            }
            RunLiveness::NoOwner => {}
        }
        if resume {
            let _ = std::fs::remove_file(paths.state_file());
        }
        Self::write(paths)
    }

    /// Takes over the claim of the launcher that started this orchestrator (its
    /// parent); refuses when another live process holds the session.
    pub fn adopt(paths: &RunPaths) -> Result<Self, LaunchError> {
        let _lock = RunLock::acquire(paths)?;
        if let RunLiveness::Live(owner) = liveness(paths) {
            let parent = nix::unistd::getppid().as_raw() as u32;
            if owner.pid != parent && owner.pid != std::process::id() {
                return Err(LaunchError::SessionTaken {
                    session: paths.session.clone(),
                    pid: owner.pid,
                });
            }
        }
        Self::write(paths)
    }

    /// Writes this process's identity to `orchestrator.pid` (mode 0600); the caller
    /// holds the lock.
    fn write(paths: &RunPaths) -> Result<Self, LaunchError> {
        let me = ProcessIdentity::current();
        let path = paths.pid_file();
        let tmp = paths.run_dir.join("orchestrator.pid.tmp");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| file.write_all(format!("{}\n", me.to_text()).as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|source| claim_error(&path, source))?;
        Ok(RunClaim {
            paths: paths.clone(),
            me,
            released: false,
        })
    }

    /// Ends the claim: removes `orchestrator.pid` if it still names this process (an
    /// adopting orchestrator has taken it over otherwise), and records `failed` when
    /// the run wrote no final state (it did not start).
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let Ok(_lock) = RunLock::acquire(&self.paths) else {
            return;
        };
        if ProcessIdentity::read(&self.paths.pid_file()) != Some(self.me) {
            return;
        }
        if final_status(&self.paths).is_none() {
            write_state(&self.paths, "failed", "the run did not start");
        }
        socket_dir::remove(&self.paths);
        let _ = std::fs::remove_file(self.paths.pid_file());
    }
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        self.release_now();
    }
}

fn crashed(paths: &RunPaths) -> LaunchError {
    LaunchError::SessionCrashed {
        session: paths.session.clone(),
        logs: paths.logs_dir().display().to_string(),
    }
}

fn write_state(paths: &RunPaths, status: &str, reason: &str) {
    let state = serde_json::json!({ "status": status, "reason": reason });
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(paths.state_file())
        .and_then(|mut file| file.write_all(state.to_string().as_bytes()));
}

/// Clears every crashed run of the project (see the module docs); returns their
/// sessions. Live runs are never touched.
pub fn clear_crashed_runs(project_root: &Path) -> Vec<String> {
    list_sessions(project_root)
        .into_iter()
        .filter(|session| {
            let paths = RunPaths::new(project_root, session);
            // Only runs with a pid file can have crashed; the others need no lock.
            paths.pid_file().exists() && clear_if_crashed(&paths)
        })
        .collect()
}

/// Clears the run if its owner is gone; true if it did.
pub fn clear_if_crashed(paths: &RunPaths) -> bool {
    let Ok(_lock) = RunLock::acquire(paths) else {
        return false;
    };
    if matches!(liveness(paths), RunLiveness::Gone(_)) {
        clear_crashed_locked(paths);
        true
    } else {
        false
    }
}

/// The caller holds the lock and saw the owner gone.
fn clear_crashed_locked(paths: &RunPaths) {
    if final_status(paths).is_none() {
        write_state(
            paths,
            CRASHED,
            "the orchestrator ended without writing the run's final state",
        );
    }
    socket_dir::remove(paths);
    let _ = std::fs::remove_file(paths.pid_file());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_identity() -> ProcessIdentity {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let identity = ProcessIdentity::of(child.id()).unwrap();
        child.wait().unwrap();
        identity
    }

    #[test]
    fn a_live_session_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(tmp.path(), "dup");
        let first = RunClaim::take(&paths).unwrap();
        let pid_text = std::fs::read_to_string(paths.pid_file()).unwrap();
        // Another process would see this one alive; so does this one.
        let err = RunClaim::take(&paths).unwrap_err();
        assert!(matches!(err, LaunchError::SessionTaken { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(paths.pid_file()).unwrap(), pid_text);
        assert!(!paths.state_file().exists());
        drop(first);
        assert!(!paths.pid_file().exists());
        assert_eq!(final_status(&paths).as_deref(), Some("failed"));
    }

    #[test]
    fn a_resume_takes_a_crashed_or_stopped_session_but_not_a_live_one() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(tmp.path(), "again");
        std::fs::create_dir_all(&paths.run_dir).unwrap();
        std::fs::write(paths.pid_file(), dead_identity().to_text()).unwrap();
        // A new run may not take the crashed name; a resume may, and the old final
        // state goes until the resumed run writes its own.
        assert!(matches!(
            RunClaim::take(&paths).unwrap_err(),
            LaunchError::SessionCrashed { .. }
        ));
        assert_eq!(final_status(&paths).as_deref(), Some(CRASHED));
        let claim = RunClaim::take_for_resume(&paths).unwrap();
        assert_eq!(final_status(&paths), None);
        let err = RunClaim::take_for_resume(&paths).unwrap_err();
        assert!(matches!(err, LaunchError::SessionTaken { .. }), "{err}");
        std::fs::write(paths.state_file(), r#"{"status":"stopped"}"#).unwrap();
        claim.release();
        RunClaim::take_for_resume(&paths).unwrap().release();
    }

    #[test]
    fn a_finished_claim_leaves_the_state_the_run_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(tmp.path(), "done");
        let claim = RunClaim::take(&paths).unwrap();
        std::fs::write(paths.state_file(), r#"{"status":"succeeded"}"#).unwrap();
        claim.release();
        assert_eq!(final_status(&paths).as_deref(), Some("succeeded"));
        assert!(!paths.pid_file().exists());
        // A finished session may be run again.
        RunClaim::take(&paths).unwrap().release();
    }

    #[test]
    fn a_crashed_run_is_cleared_marked_and_its_name_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // A live run next to it keeps everything.
        let live_run = RunPaths::new(tmp.path(), "live");
        let live = RunClaim::take(&live_run).unwrap();
        let crashed_run = RunPaths::new(tmp.path(), "crashed");
        std::fs::create_dir_all(&crashed_run.run_dir).unwrap();
        std::fs::write(crashed_run.pid_file(), dead_identity().to_text()).unwrap();
        let socket = tmp.path().join("c.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        socket_dir::record(&crashed_run, &socket).unwrap();

        assert_eq!(clear_crashed_runs(tmp.path()), vec!["crashed".to_owned()]);
        assert!(!socket.exists(), "stale socket removed");
        assert!(!crashed_run.pid_file().exists());
        assert!(!crashed_run.control_path_file().exists());
        assert_eq!(final_status(&crashed_run).as_deref(), Some(CRASHED));
        assert!(live_run.pid_file().exists());
        assert_eq!(
            liveness(&live_run),
            RunLiveness::Live(ProcessIdentity::current())
        );

        let err = RunClaim::take(&crashed_run).unwrap_err();
        assert!(matches!(err, LaunchError::SessionCrashed { .. }), "{err}");
        drop(live);
    }

    #[test]
    fn a_zombie_is_not_running() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let identity = ProcessIdentity::of(child.id()).unwrap();
        // Not waited for: the child stays a zombie until reaped.
        let start = std::time::Instant::now();
        while !is_zombie(identity.pid) {
            assert!(start.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(identity.is_alive(), "the pid alone still looks alive");
        assert!(!is_running(&identity));
        let mut child = child;
        child.wait().unwrap();
    }
}
