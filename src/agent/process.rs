//! The child-process runner shared by the agent CLI backends.
//!
//! Owns how an agent process is started and stopped: its own process group, the
//! prompt written to its stdin (never argv, where `ps` shows it and E2BIG caps it), an
//! explicit environment, a parent-death signal on Linux, stdout read as raw bytes,
//! stderr kept as a bounded tail for failure messages, the time since its last output,
//! and an awaited end: SIGTERM to the whole group, the grace period, SIGKILL to what
//! is left, the leader reaped. Each group is registered with the run's `watchdog`, so
//! no agent outlives a killed orchestrator. Does not parse output.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::agent::backend::BackendError;
use crate::agent::watchdog;

/// Bytes of stderr kept for error messages (the tail: the end says what went wrong).
const STDERR_TAIL: usize = 16 * 1024;

/// How often a group that is being stopped is checked for survivors.
const POLL: Duration = Duration::from_millis(25);

/// What to run.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// The complete environment of the child.
    pub env: Vec<(OsString, OsString)>,
    /// Time between SIGTERM and SIGKILL to the process group when it is stopped.
    pub kill_grace: Duration,
}

/// How the process ended.
#[derive(Debug)]
pub struct ProcessExit {
    pub status: Option<ExitStatus>,
    /// The last bytes the process wrote to stderr, decoded lossily.
    pub stderr_tail: String,
    /// Some process of the group was still there after the grace period and got
    /// SIGKILL.
    pub killed: bool,
}

impl ProcessExit {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "exit status 1; stderr: …" for failure messages.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "unknown exit status".into(),
        };
        let stderr = self.stderr_tail.trim();
        if stderr.is_empty() {
            status
        } else {
            format!("{status}; stderr: {stderr}")
        }
    }
}

/// A running agent process. End it with `end` (awaited: TERM, grace, KILL, reaped);
/// dropping it instead SIGKILLs its whole group at once.
pub struct AgentProcess {
    program: String,
    child: Child,
    /// The leader's status once it has been reaped.
    status: Option<ExitStatus>,
    reaped: bool,
    pgid: Pid,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    stdin: Option<JoinHandle<()>>,
    kill_grace: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last byte on stdout or stderr.
    last_output_ms: Arc<AtomicU64>,
    ended: bool,
}

impl AgentProcess {
    /// Starts the process; `input` (the prompt) is written to its stdin by a task of
    /// its own, then stdin is closed. Without `input`, stdin is `/dev/null`.
    pub fn spawn(spec: &ProcessSpec, input: Option<Vec<u8>>) -> Result<AgentProcess, BackendError> {
        let program = spec.program.display().to_string();
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2), getppid(2) and `watchdog::register_from_child`, all async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
                // The parent may have died between fork and prctl.
                if nix::unistd::getppid() == Pid::from_raw(1) {
                    return Err(std::io::Error::other(
                        "parent exited before the agent started",
                    ));
                }
                watchdog::register_from_child();
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|reason| spawn_error(&spec.program, reason))?;
        let Some(pid) = child.id() else {
            return Err(BackendError::Spawn {
                program,
                reason: std::io::Error::other("the process exited before it could be tracked"),
            });
        };
        let pgid = Pid::from_raw(pid as i32);
        watchdog::register(pgid);
        let started = Instant::now();
        let last_output_ms = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take();
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_tail(stderr, started, last_output_ms.clone())));
        let stdin = match (child.stdin.take(), input) {
            (Some(mut pipe), Some(input)) => {
                let program = program.clone();
                Some(tokio::spawn(async move {
                    // Written apart from the stdout reader, so a CLI that answers
                    // before it read everything cannot deadlock the turn.
                    let written = async {
                        pipe.write_all(&input).await?;
                        pipe.shutdown().await
                    };
                    if let Err(err) = written.await {
                        tracing::debug!(%program, error = %err, "the agent did not read all of its prompt");
                    }
                }))
            }
            _ => None,
        };
        Ok(AgentProcess {
            program,
            child,
            status: None,
            reaped: false,
            pgid,
            stdout,
            stderr,
            stdin,
            kill_grace: spec.kill_grace,
            started,
            last_output_ms,
            ended: false,
        })
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// The process id of the leader (also the id of its process group).
    pub fn pid(&self) -> u32 {
        self.pgid.as_raw() as u32
    }

    /// Reads the next chunk of stdout; 0 at end of stream. Cancel-safe.
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.stdout {
            Some(stdout) => stdout.read(buf).await?,
            None => 0,
        };
        if n > 0 {
            touch(&self.last_output_ms, self.started);
        }
        Ok(n)
    }

    /// How long the process has written nothing, to stdout or stderr.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_output_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Waits for the leader to exit (it is reaped). Cancel-safe.
    pub async fn wait_exit(&mut self) -> Option<ExitStatus> {
        if !self.reaped {
            self.status = self.child.wait().await.ok();
            self.reaped = true;
        }
        self.status
    }

    /// Ends the process and its whole group, awaited: SIGTERM to the group unless it is
    /// already gone, up to the grace period for every member to exit, SIGKILL to what
    /// is left, the leader reaped. Call it after the leader exited too: processes it
    /// left behind in its group are stopped the same way.
    pub async fn end(mut self) -> ProcessExit {
        self.stdout = None;
        let deadline = Instant::now() + self.kill_grace;
        if !self.reaped || group_alive(self.pgid) {
            let _ = killpg(self.pgid, Signal::SIGTERM);
        }
        let mut killed = false;
        loop {
            if !self.reaped {
                if let Ok(status) = tokio::time::timeout(POLL, self.child.wait()).await {
                    self.status = status.ok();
                    self.reaped = true;
                }
            }
            if self.reaped && !group_alive(self.pgid) {
                break;
            }
            if Instant::now() >= deadline {
                killed = true;
                let _ = killpg(self.pgid, Signal::SIGKILL);
                if !self.reaped {
                    self.status = self.child.wait().await.ok();
                    self.reaped = true;
                }
                break;
            }
            if self.reaped {
                tokio::time::sleep(POLL).await;
            }
        }
        self.ended = true;
        watchdog::unregister(self.pgid);
        if let Some(task) = self.stdin.take() {
            task.abort();
        }
        let stderr = match self.stderr.take() {
            // Bounded: a process outside the group may still hold stderr open.
            Some(task) => tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        ProcessExit {
            status: self.status,
            stderr_tail: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
            killed,
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(task) = self.stderr.take() {
            task.abort();
        }
        if let Some(task) = self.stdin.take() {
            task.abort();
        }
        if self.ended {
            return;
        }
        // Dropped without `end` (an aborted task): no time for a grace period, and
        // nothing may be left behind. Tokio reaps the leader in the background.
        let _ = killpg(self.pgid, Signal::SIGKILL);
        watchdog::unregister(self.pgid);
    }
}

/// The error of a failed spawn, with the OS's reason in the text.
fn spawn_error(program: &Path, reason: std::io::Error) -> BackendError {
    if reason.kind() == std::io::ErrorKind::NotFound && program.is_file() {
        // The file exists (it was resolved), so its interpreter is what is missing.
        return BackendError::ProgramNotFound {
            program: program.display().to_string(),
            hint: format!(
                " or its interpreter (a script's `#!` line, e.g. `node`) is not on the agent's PATH ({reason})"
            ),
        };
    }
    if reason.kind() == std::io::ErrorKind::NotFound {
        return BackendError::ProgramNotFound {
            program: program.display().to_string(),
            hint: format!(" ({reason})"),
        };
    }
    BackendError::Spawn {
        program: program.display().to_string(),
        reason,
    }
}

/// True while some process of group `pgid` is running (zombies waiting for a reaper
/// that is not us do not count).
pub fn group_alive(pgid: Pid) -> bool {
    match killpg(pgid, None) {
        Err(Errno::ESRCH) => false,
        Err(_) => true,
        Ok(()) => has_live_member(pgid.as_raw()),
    }
}

/// Scans /proc for a process of group `pgid` that is not a zombie.
fn has_live_member(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let mut fields = stat[close + 1..].split_whitespace();
            let state = fields.next();
            let _ppid = fields.next();
            let group = fields.next().and_then(|g| g.parse::<i32>().ok());
            group == Some(pgid) && state != Some("Z") && state != Some("X")
        })
}

fn touch(last_output_ms: &AtomicU64, started: Instant) {
    last_output_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
}

async fn read_tail(
    mut stderr: impl AsyncRead + Unpin,
    started: Instant,
    last_output_ms: Arc<AtomicU64>,
) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                touch(&last_output_ms, started);
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    tail
}

/// Finds the binary for a CLI backend: the explicit path if given, else `name` on `path`.
pub fn resolve_program(
    name: &str,
    explicit: Option<&Path>,
    env_hint: &str,
    path: Option<&OsStr>,
) -> Result<PathBuf, BackendError> {
    if let Some(explicit) = explicit {
        if is_executable(explicit) {
            return Ok(explicit.to_path_buf());
        }
        return Err(BackendError::ProgramNotFound {
            program: explicit.display().to_string(),
            hint: format!(
                " (set by {env_hint}); point {env_hint} at the `{name}` binary or unset it to search PATH"
            ),
        });
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(BackendError::ProgramNotFound {
        program: name.to_string(),
        hint: format!(" on PATH; install it or set {env_hint} to its path"),
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, grace: Duration) -> ProcessSpec {
        ProcessSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("ORCH_T".into(), "x".into()),
            ],
            kill_grace: grace,
        }
    }

    async fn read_all(process: &mut AgentProcess) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = process.read(&mut buf).await.unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn runs_with_explicit_env_closed_stdin_and_keeps_stderr() {
        let spec = sh(
            "echo \"$ORCH_T $HOME\"; cat; echo oops >&2; exit 3",
            Duration::from_secs(1),
        );
        let mut process = AgentProcess::spawn(&spec, None).unwrap();
        let out = read_all(&mut process).await;
        // HOME is not inherited; `cat` sees EOF at once because stdin is null.
        assert_eq!(String::from_utf8(out).unwrap(), "x \n");
        let exit = process.end().await;
        assert_eq!(exit.status.and_then(|s| s.code()), Some(3));
        assert_eq!(exit.stderr_tail, "oops\n");
        assert!(exit.describe().contains("oops"));
    }

    #[tokio::test]
    async fn dropping_a_process_kills_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A grandchild that ignores nothing; its pid tells us whether it survived.
        let script = format!(
            "sleep 300 & echo $! > {}; echo ready; wait",
            pidfile.display()
        );
        let mut process =
            AgentProcess::spawn(&sh(&script, Duration::from_millis(200)), None).unwrap();
        let mut buf = [0u8; 64];
        let n = process.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ready\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(process);
        let gone = async {
            while nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .expect("grandchild survived the drop");
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    }

    #[tokio::test]
    async fn a_script_whose_interpreter_is_missing_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("codex");
        std::fs::write(&script, "#!/nonexistent/node\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = ProcessSpec {
            program: script,
            ..sh("", Duration::from_secs(1))
        };
        let err = AgentProcess::spawn(&spec, None).err().unwrap();
        assert!(err.to_string().contains("its interpreter"), "{err}");
        assert!(err.to_string().contains("os error 2"), "{err}");
    }

    #[tokio::test]
    async fn a_spawn_failure_names_the_os_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProcessSpec {
            // A directory: execve fails with EACCES.
            program: dir.path().to_path_buf(),
            ..sh("", Duration::from_secs(1))
        };
        let err = AgentProcess::spawn(&spec, None).err().unwrap().to_string();
        assert!(err.contains("Permission denied"), "{err}");
        // Arguments over the kernel's limit: E2BIG.
        let spec = ProcessSpec {
            args: vec!["-c".into(), "x".repeat(200 * 1024).into()],
            ..sh("", Duration::from_secs(1))
        };
        let err = AgentProcess::spawn(&spec, None).err().unwrap().to_string();
        assert!(err.contains("Argument list too long"), "{err}");
    }

    #[tokio::test]
    async fn the_input_reaches_stdin_whole_while_stdout_is_read() {
        // `cat` echoes while it reads: stdout fills before stdin is written, so a
        // writer that waited for the reader (or the other way round) would hang.
        let input: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        let mut process =
            AgentProcess::spawn(&sh("cat", Duration::from_secs(1)), Some(input.clone())).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), read_all(&mut process))
            .await
            .expect("stdin and stdout deadlocked");
        assert!(out == input, "got {} bytes back", out.len());
        assert!(process.end().await.success());
    }

    #[tokio::test]
    async fn ending_a_group_that_ignores_sigterm_kills_it_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "trap '' TERM; sh -c \"trap '' TERM; sleep 300\" & echo $! > {}; echo ready; wait; wait",
            pidfile.display()
        );
        let grace = Duration::from_millis(400);
        let mut process = AgentProcess::spawn(&sh(&script, grace), None).unwrap();
        let mut buf = [0u8; 64];
        let n = process.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ready\n");
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let leader = process.pid() as i32;
        let started = std::time::Instant::now();
        let exit = process.end().await;
        let took = started.elapsed();
        assert!(exit.killed, "{exit:?}");
        assert!(took >= grace, "ended after {took:?}, before the grace");
        assert!(took < grace + Duration::from_secs(2), "took {took:?}");
        assert!(!is_running(leader), "the leader survived");
        // The child is SIGKILLed with its group; its parent is gone, so init reaps it.
        let gone = async {
            while is_running(child) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), gone)
            .await
            .expect("the leader's child survived the end of its group");
    }

    #[tokio::test]
    async fn a_group_that_exits_on_sigterm_ends_without_waiting_the_grace() {
        let mut process = AgentProcess::spawn(
            &sh("echo ready; exec sleep 300", Duration::from_secs(30)),
            None,
        )
        .unwrap();
        let mut buf = [0u8; 64];
        process.read(&mut buf).await.unwrap();
        let started = std::time::Instant::now();
        let exit = process.end().await;
        assert!(!exit.killed);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn is_running(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
    }

    #[test]
    fn missing_programs_are_clear_errors() {
        let err = resolve_program(
            "codex",
            None,
            "ORCH_CODEX_BIN",
            Some(OsStr::new("/nonexistent")),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`codex` was not found on PATH; install it or set ORCH_CODEX_BIN to its path"
        );
        let err = resolve_program(
            "codex",
            Some(Path::new("/no/codex")),
            "ORCH_CODEX_BIN",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/no/codex"));
        assert_eq!(
            resolve_program("sh", None, "X", Some(OsStr::new("/nonexistent:/bin"))).unwrap(),
            Path::new("/bin/sh")
        );
    }
}
