//! Is the process that owns a run still alive? A pid alone cannot say (pids are
//! reused), so a run records its orchestrator's pid together with the process's start
//! time (`/proc/<pid>/stat`, field 22, in clock ticks since boot) and compares both.
//!
//! Owns that identity and its text form (`<pid> <start ticks>`). Does not decide what a
//! dead owner means for a run (the launcher and `orch-audit` do).

use std::path::Path;

/// A process, named so that a reused pid does not match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Start time in clock ticks since boot; 0 where it could not be read.
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessIdentity {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// The process now running as `pid`, if any.
    pub fn of(pid: u32) -> Option<Self> {
        Some(ProcessIdentity {
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// True while the same process (same pid, same start time) runs.
    pub fn is_alive(&self) -> bool {
        match start_ticks(self.pid) {
            Some(now) => self.start_ticks == 0 || now == self.start_ticks,
            None => false,
        }
    }

    /// `<pid> <start ticks>`, the form kept in `orchestrator.pid`.
    pub fn to_text(&self) -> String {
        format!("{} {}", self.pid, self.start_ticks)
    }

    /// Reads `<pid> <start ticks>` (or a bare `<pid>`, start unknown).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_ticks = match parts.next() {
            Some(ticks) => ticks.parse().ok()?,
            None => 0,
        };
        Some(ProcessIdentity { pid, start_ticks })
    }

    /// Reads a pid file written with `to_text`.
    pub fn read(path: &Path) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first, so field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.start_ticks > 0, "start time read from /proc");
        assert!(me.is_alive());
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!reused.is_alive(), "same pid, other start time");
    }

    #[test]
    fn a_finished_process_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let identity = ProcessIdentity::of(child.id()).expect("running child");
        child.wait().expect("wait");
        assert!(!identity.is_alive());
    }

    #[test]
    fn text_round_trips_and_a_bare_pid_is_accepted() {
        let id = ProcessIdentity {
            pid: 42,
            start_ticks: 12345,
        };
        assert_eq!(ProcessIdentity::parse(&id.to_text()), Some(id));
        assert_eq!(
            ProcessIdentity::parse("42\n"),
            Some(ProcessIdentity {
                pid: 42,
                start_ticks: 0
            })
        );
        assert_eq!(ProcessIdentity::parse("x"), None);
    }
}
