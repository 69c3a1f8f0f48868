//! The run's watchdog: a small process (`launch __watchdog`) that stops every agent
//! process group still registered when the orchestrator goes away, even by `kill -9`.
//!
//! A parent-death signal reaches only an agent's leader, and only SIGTERM, which an
//! agent may ignore; its children never get it. So the orchestrator starts one watchdog
//! in a session of its own (out of reach of the terminal's signals and of the agents'
//! group kills) with a pipe on its stdin. Each agent writes `+<pgid>` itself, between
//! fork and exec (`register_from_child`), so its group is known before it runs a line of
//! its own; the orchestrator then writes `+<pgid> <start ticks>` and, once that group is
//! gone, `-<pgid>`. The pipe's write end is
//! close-on-exec, so only the orchestrator holds it: when the orchestrator exits or is
//! killed, the kernel closes it, the watchdog reads EOF, sends SIGTERM to every group
//! still registered, waits a short grace, sends SIGKILL to what is left and exits.
//!
//! A group is only signalled while it can still be ours: when its leader is alive with
//! the start time it had when registered, or gone (a pid whose number is still a live
//! group's id is not handed out again, so the survivors are the agent's). Owns the
//! protocol and both ends; `install` is called once by the launcher, and without it
//! (unit tests, library use) agents run unwatched.

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::liveness::ProcessIdentity;

/// The hidden `launch` subcommand that runs the watchdog.
pub const SUBCOMMAND: &str = "__watchdog";

static PIPE: OnceLock<Mutex<Option<std::process::ChildStdin>>> = OnceLock::new();

/// The pipe's write end as a raw fd, for `register_from_child`; -1 without a watchdog.
/// Never closed while the process runs (the `ChildStdin` above is only dropped on a
/// failed write, and then this is set to -1 first).
static PIPE_FD: AtomicI32 = AtomicI32::new(-1);

/// Starts the watchdog (`program __watchdog --grace-ms …`) for this process's agents.
/// Once per process; later calls do nothing.
pub fn install(program: &Path, grace: Duration) -> std::io::Result<()> {
    if PIPE.get().is_some() {
        return Ok(());
    }
    let mut command = Command::new(program);
    if let Ok(exe) = std::env::current_exe() {
        // `ps` shows `…/launch __watchdog`, not `/proc/self/exe __watchdog`.
        std::os::unix::process::CommandExt::arg0(&mut command, exe);
    }
    command
        .arg(SUBCOMMAND)
        .arg("--grace-ms")
        .arg(grace.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: setsid(2) is async-signal-safe; it runs in the forked child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdin = child.stdin.take();
    // The watchdog outlives this handle on purpose: it exits on EOF of its stdin.
    drop(child);
    if let Some(pipe) = &stdin {
        PIPE_FD.store(pipe.as_raw_fd(), Ordering::SeqCst);
    }
    let _ = PIPE.set(Mutex::new(stdin));
    Ok(())
}

fn send(line: &str) {
    let Some(pipe) = PIPE.get() else { return };
    let mut pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
    let Some(writer) = pipe.as_mut() else { return };
    // One short line is below PIPE_BUF, so it arrives whole; the watchdog reads all the
    // time, so this does not block for long.
    if let Err(err) = writer.write_all(line.as_bytes()) {
        PIPE_FD.store(-1, Ordering::SeqCst);
        tracing::warn!(error = %err, "the agent watchdog is gone; agents may outlive a killed orchestrator");
        *pipe = None;
    }
}

/// Tells the watchdog about a new agent process group (its leader's pid).
pub fn register(pgid: Pid) {
    if PIPE.get().is_none() {
        return;
    }
    let ticks = ProcessIdentity::of(pgid.as_raw() as u32).map_or(0, |id| id.start_ticks);
    send(&format!("+{} {ticks}\n", pgid.as_raw()));
}

/// Registers the calling process's own group (`+<pid>`): for a spawned agent's
/// `pre_exec`, which runs in the forked child before exec, so the group is known to the
/// watchdog before the agent can start a process of its own, however late the
/// orchestrator's thread gets to `register`. The child still holds the pipe's write end
/// there (it is close-on-exec).
///
/// Async-signal-safe: no allocation, no lock; getpid(2), sigaction(2) and one write(2)
/// of a few bytes (below PIPE_BUF, so it cannot interleave with the orchestrator's
/// lines). SIGPIPE is ignored around the write, so a gone watchdog cannot kill the
/// child; a failed write is ignored (the orchestrator's own `register` follows).
pub fn register_from_child() {
    use nix::sys::signal::{SigHandler, signal};
    let fd = PIPE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 24];
    let len = pid_line(nix::unistd::getpid().as_raw(), &mut buf);
    // SAFETY: `signal` installs no handler code (SIG_IGN, then back to SIG_DFL, which is
    // what std set it to in this child just before); `fd` stays open until exec.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
        let _ = nix::unistd::write(BorrowedFd::borrow_raw(fd), &buf[..len]);
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}

/// Writes `+<pid>\n` into `buf` without allocating; returns its length.
fn pid_line(pid: i32, buf: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[0] = b'+';
    for i in 0..count {
        buf[1 + i] = digits[count - 1 - i];
    }
    buf[1 + count] = b'\n';
    count + 2
}

/// Tells the watchdog that a group is gone (or was SIGKILLed).
pub fn unregister(pgid: Pid) {
    send(&format!("-{}\n", pgid.as_raw()));
}

/// One registered group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Group {
    pgid: i32,
    start_ticks: u64,
}

impl Group {
    /// Whether `pgid` can still name this group (see the module doc).
    fn is_ours(&self) -> bool {
        match ProcessIdentity::of(self.pgid as u32) {
            Some(now) => self.start_ticks == 0 || now.start_ticks == self.start_ticks,
            None => true,
        }
    }
}

/// Applies one protocol line to the registered groups.
fn apply(groups: &mut Vec<Group>, line: &str) {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix('+') {
        let mut parts = rest.split_whitespace();
        let Some(pgid) = parts.next().and_then(|p| p.parse().ok()) else {
            return;
        };
        let start_ticks = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        groups.retain(|g| g.pgid != pgid);
        groups.push(Group { pgid, start_ticks });
    } else if let Some(pgid) = line.strip_prefix('-').and_then(|p| p.parse::<i32>().ok()) {
        groups.retain(|g| g.pgid != pgid);
    }
}

/// The watchdog's main loop: reads registrations until EOF, then stops what is left.
pub fn run(grace: Duration) -> u8 {
    use nix::sys::signal::{SigHandler, signal};
    // SAFETY: ignoring signals installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
    let mut groups = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => apply(&mut groups, &line),
        }
    }
    stop_groups(&groups, grace);
    0
}

/// SIGTERM to each group that is still ours, up to `grace` for them to go, SIGKILL.
fn stop_groups(groups: &[Group], grace: Duration) {
    let live: Vec<Pid> = groups
        .iter()
        .filter(|g| g.is_ours())
        .map(|g| Pid::from_raw(g.pgid))
        .filter(|pgid| killpg(*pgid, Signal::SIGTERM).is_ok())
        .collect();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && live.iter().any(|p| crate::agent::process::group_alive(*p)) {
        std::thread::sleep(Duration::from_millis(25));
    }
    for pgid in live {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_and_removals_are_tracked() {
        let mut groups = Vec::new();
        apply(&mut groups, "+100 55\n");
        apply(&mut groups, "+200\n");
        apply(&mut groups, "garbage\n");
        apply(&mut groups, "-100\n");
        assert_eq!(
            groups,
            [Group {
                pgid: 200,
                start_ticks: 0
            }]
        );
    }

    #[test]
    fn the_childs_line_is_a_registration_without_start_ticks() {
        for pid in [1, 7, 10, 4_194_304, i32::MAX] {
            let mut buf = [0u8; 24];
            let len = pid_line(pid, &mut buf);
            let line = std::str::from_utf8(&buf[..len]).unwrap();
            assert_eq!(line, format!("+{pid}\n"));
            let mut groups = Vec::new();
            apply(&mut groups, line);
            assert_eq!(
                groups,
                [Group {
                    pgid: pid,
                    start_ticks: 0
                }]
            );
        }
    }

    #[test]
    fn a_reused_leader_pid_is_not_ours() {
        let me = ProcessIdentity::current();
        let ours = Group {
            pgid: me.pid as i32,
            start_ticks: me.start_ticks,
        };
        assert!(ours.is_ours());
        let reused = Group {
            start_ticks: me.start_ticks + 1,
            ..ours
        };
        assert!(!reused.is_ours());
    }
}
