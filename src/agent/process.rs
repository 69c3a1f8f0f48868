//! The child-process runner shared by the agent CLI backends.
//!
//! Owns how an agent process is started and stopped: its own process group, stdin
//! closed, an explicit environment, a parent-death signal on Linux, stdout read as
//! raw bytes, stderr kept as a bounded tail for failure messages, and on drop the
//! whole group gets SIGTERM, a grace period, then SIGKILL. Does not parse output.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::agent::backend::BackendError;

/// Bytes of stderr kept for error messages (the tail: the end says what went wrong).
const STDERR_TAIL: usize = 16 * 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// The complete environment of the child.
    pub env: Vec<(OsString, OsString)>,
    pub kill_grace: Duration,
}

/// How the process ended.
#[derive(Debug)]
pub struct ProcessExit {
    pub status: Option<ExitStatus>,
    /// The last bytes the process wrote to stderr, decoded lossily.
    pub stderr_tail: String,
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

/// A running agent process. Dropping it before `wait` stops the whole process group.
pub struct AgentProcess {
    program: String,
    child: Option<Child>,
    pgid: Option<Pid>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    kill_grace: Duration,
}

impl AgentProcess {
    pub fn spawn(spec: &ProcessSpec) -> Result<AgentProcess, BackendError> {
        let program = spec.program.display().to_string();
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2) and getppid(2), both async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
                // The parent may have died between fork and prctl.
                if nix::unistd::getppid() == Pid::from_raw(1) {
                    return Err(std::io::Error::other(
                        "parent exited before the agent started",
                    ));
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                // The file exists (it was resolved), so its interpreter is what is missing.
                let hint = if spec.program.is_file() {
                    " or its interpreter (a script's `#!` line, e.g. `node`) is not on the agent's PATH".into()
                } else {
                    String::new()
                };
                BackendError::ProgramNotFound {
                    program: program.clone(),
                    hint,
                }
            } else {
                BackendError::Spawn {
                    program: program.clone(),
                    source,
                }
            }
        })?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        let stdout = child.stdout.take();
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_tail(stderr)));
        Ok(AgentProcess {
            program,
            child: Some(child),
            pgid,
            stdout,
            stderr,
            kill_grace: spec.kill_grace,
        })
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// Reads the next chunk of stdout; 0 at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stdout {
            Some(stdout) => stdout.read(buf).await,
            None => Ok(0),
        }
    }

    /// Waits for the process to exit (call after stdout ended), then stops any
    /// processes it left behind in its group.
    pub async fn wait(mut self) -> ProcessExit {
        self.stdout = None;
        let status = match self.child.take() {
            Some(mut child) => child.wait().await.ok(),
            None => None,
        };
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGTERM);
        }
        let stderr = match self.stderr.take() {
            // Bounded: a leftover holding stderr open was just sent SIGTERM.
            Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        ProcessExit {
            status,
            stderr_tail: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(task) = self.stderr.take() {
            task.abort();
        }
        let Some(pgid) = self.pgid.take() else { return };
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = killpg(pgid, Signal::SIGTERM);
        let grace = self.kill_grace;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        let _ = killpg(pgid, Signal::SIGKILL);
                        let _ = child.wait().await;
                    } else {
                        // The leader exited; make sure nothing of the group survives.
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                });
            }
            Err(_) => {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    }
}

async fn read_tail(mut stderr: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
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
        let mut process = AgentProcess::spawn(&spec).unwrap();
        let out = read_all(&mut process).await;
        // HOME is not inherited; `cat` sees EOF at once because stdin is null.
        assert_eq!(String::from_utf8(out).unwrap(), "x \n");
        let exit = process.wait().await;
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
        let mut process = AgentProcess::spawn(&sh(&script, Duration::from_millis(200))).unwrap();
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
        let err = AgentProcess::spawn(&spec).err().unwrap();
        assert!(err.to_string().contains("its interpreter"), "{err}");
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
