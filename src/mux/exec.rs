//! Running a multiplexer's CLI (zellij, tmux) as argv, with errors that say what to do.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::mux::error::MuxError;

/// How to name a multiplexer in errors.
pub(crate) struct Tool {
    /// The program name as typed on a command line.
    pub name: &'static str,
    /// How to install it, for `ProgramNotFound`.
    pub install: &'static str,
    /// The env var that points at its binary.
    pub env: &'static str,
}

/// `bin argv…` without the multiplexer's own session variables (so it also works from
/// inside another session), with `env` added.
pub(crate) fn command(
    bin: &Path,
    scrub: &[&str],
    env: &[(OsString, OsString)],
    argv: Vec<OsString>,
) -> Command {
    let mut cmd = Command::new(bin);
    for var in scrub {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.args(argv);
    default_signals(&mut cmd);
    cmd
}

/// Starts the multiplexer with every signal at its default action. An ignored signal
/// stays ignored across exec, and Zellij hands its own dispositions on to the panes'
/// commands: launched under `nohup` (SIGHUP ignored) or as a background job of a script
/// (SIGINT, SIGQUIT ignored), its panes' `tail -F` outlived the session and Ctrl+C did
/// nothing in a pane. (tmux resets them for its panes itself; this covers both.)
fn default_signals(cmd: &mut Command) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // sigaction(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            for sig in Signal::iterator() {
                if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
                    let _ = signal(sig, SigHandler::SigDfl);
                }
            }
            Ok(())
        });
    }
}

/// How long one multiplexer command may take. Zellij 0.45 can leave an `action` waiting
/// forever (e.g. a listing while a client is creating the session); nothing we ask of a
/// multiplexer takes more than a moment otherwise.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `command` with stdin closed and returns whatever it answered; kills it and fails
/// with `TimedOut` after [`COMMAND_TIMEOUT`].
pub(crate) fn output(mut command: Command, bin: &Path, tool: &Tool) -> Result<Output, MuxError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                MuxError::ProgramNotFound {
                    program: bin.to_path_buf(),
                    tool: tool.install,
                    env: tool.env,
                }
            } else {
                MuxError::Spawn {
                    program: bin.to_path_buf(),
                    source,
                }
            }
        })?;
    // Drain both pipes while waiting, so a chatty command never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let args: Vec<_> = command
                    .get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                return Err(MuxError::TimedOut {
                    command: format!("{} {}", tool.name, args.join(" ")),
                    waited: COMMAND_TIMEOUT,
                });
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(MuxError::Spawn {
                    program: bin.to_path_buf(),
                    source,
                });
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Turns a non-zero exit into `CommandFailed`, naming the command and its stderr.
pub(crate) fn check(out: Output, tool: &Tool, args: &[OsString]) -> Result<Output, MuxError> {
    if out.status.success() {
        return Ok(out);
    }
    let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    Err(MuxError::CommandFailed {
        command: format!("{} {}", tool.name, shown.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{SigHandler, Signal, signal};

    /// Signals the launching process ignores (SIGHUP under `nohup`) are back at their
    /// default action in the multiplexer, so its panes die with the session.
    #[test]
    fn a_multiplexer_starts_with_no_signal_ignored() {
        // SAFETY: only SIGHUP's disposition changes, and it is restored below; no test
        // in this binary relies on receiving SIGHUP.
        let before = unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) }.unwrap();
        let out = command(
            Path::new("/bin/sh"),
            &[],
            &[],
            vec!["-c".into(), "grep SigIgn /proc/self/status".into()],
        )
        .output();
        let ignored_here = std::fs::read_to_string("/proc/self/status").unwrap();
        // SAFETY: as above.
        unsafe { signal(Signal::SIGHUP, before) }.unwrap();
        let mask = |status: &str| {
            let line = status.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let sighup = 1u64 << (Signal::SIGHUP as i32 - 1);
        assert_ne!(
            mask(&ignored_here) & sighup,
            0,
            "the test set SIGHUP to ignored"
        );
        let child = String::from_utf8(out.unwrap().stdout).unwrap();
        assert_eq!(mask(&child) & sighup, 0, "SIGHUP still ignored: {child}");
    }
}
