//! Who owns a run: the host, the boot and the process (pid + start time) of its
//! orchestrator, recorded in its `runs` row when the writer opens the store, and read
//! back to tell a run whose orchestrator is gone (`crashed`) from one still running.
//!
//! Owns reading that identity from `/proc` and the verdict. Does not record it (the
//! writer does) or act on it.

use libsql::{Connection, Value};

use crate::audit::error::AuditError;
use crate::audit::reader::{collect, opt_int, opt_text};
use crate::liveness::ProcessIdentity;

/// This machine's name (`/proc/sys/kernel/hostname`), empty if unknown.
pub fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), empty if unknown: a process
/// of an earlier boot is gone whatever its pid.
pub fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

/// The owner recorded in a `runs` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOwner {
    pub host: Option<String>,
    pub boot_id: Option<String>,
    pub pid: Option<i64>,
    pub pid_start: Option<i64>,
}

/// The owner recorded for a run (empty for a store written before owners were).
pub async fn load(conn: &Connection, session: &str) -> Result<RunOwner, AuditError> {
    let found = collect(
        conn,
        "SELECT host, boot_id, pid, pid_start FROM runs WHERE session = ?1",
        vec![Value::Text(session.to_owned())],
        |r| {
            Ok(RunOwner {
                host: opt_text(r, 0)?,
                boot_id: opt_text(r, 1)?,
                pid: opt_int(r, 2)?,
                pid_start: opt_int(r, 3)?,
            })
        },
    )
    .await;
    match found {
        Ok(mut owners) => Ok(owners.pop().unwrap_or_default()),
        // A store written before owners were recorded, opened read-only.
        Err(AuditError::Sql { .. }) => Ok(RunOwner::default()),
        Err(err) => Err(err),
    }
}

/// What can be said about a run's orchestrator from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    Alive,
    Gone,
    /// Another host, or no owner recorded (an older store): nothing can be said.
    Unknown,
}

impl RunOwner {
    pub fn state(&self) -> OwnerState {
        let (Some(host), Some(pid)) = (&self.host, self.pid) else {
            return OwnerState::Unknown;
        };
        if host.is_empty() || *host != host_name() {
            return OwnerState::Unknown;
        }
        let boot = boot_id();
        if let Some(recorded) = &self.boot_id
            && !recorded.is_empty()
            && !boot.is_empty()
            && *recorded != boot
        {
            return OwnerState::Gone;
        }
        let Ok(pid) = u32::try_from(pid) else {
            return OwnerState::Unknown;
        };
        let identity = ProcessIdentity {
            pid,
            start_ticks: self
                .pid_start
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(0),
        };
        if identity.is_alive() && !is_zombie(pid) {
            OwnerState::Alive
        } else {
            OwnerState::Gone
        }
    }
}

/// A killed process nobody has reaped yet still has its `/proc` entry, in state `Z`
/// (a detached orchestrator's parent may never reap it).
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold any
    // character: look after the last `)`.
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_gone() {
        let me = ProcessIdentity::current();
        let owner = RunOwner {
            host: Some(host_name()),
            boot_id: Some(boot_id()),
            pid: Some(i64::from(me.pid)),
            pid_start: Some(me.start_ticks as i64),
        };
        assert_eq!(owner.state(), OwnerState::Alive);
        let reused = RunOwner {
            pid_start: Some(me.start_ticks as i64 + 1),
            ..owner.clone()
        };
        assert_eq!(reused.state(), OwnerState::Gone, "a reused pid");
        let rebooted = RunOwner {
            boot_id: Some("another-boot".into()),
            ..owner.clone()
        };
        assert_eq!(rebooted.state(), OwnerState::Gone);
        let elsewhere = RunOwner {
            host: Some("another-host.invalid".into()),
            ..owner.clone()
        };
        assert_eq!(elsewhere.state(), OwnerState::Unknown);
        assert_eq!(RunOwner::default().state(), OwnerState::Unknown);
    }

    #[test]
    fn a_killed_unreaped_child_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = ProcessIdentity::of(child.id()).unwrap();
        let owner = RunOwner {
            host: Some(host_name()),
            boot_id: Some(boot_id()),
            pid: Some(i64::from(id.pid)),
            pid_start: Some(id.start_ticks as i64),
        };
        assert_eq!(owner.state(), OwnerState::Alive);
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while owner.state() != OwnerState::Gone {
            assert!(
                std::time::Instant::now() < deadline,
                "a zombie counts as alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert_eq!(owner.state(), OwnerState::Gone);
    }
}
