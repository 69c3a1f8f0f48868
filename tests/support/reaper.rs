//! Stopping whatever a test started that is still running when the test ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Stops, when dropped, every process still running with a directory of the test in its
/// environment (a Zellij or tmux server, a pane's command, an orchestrator), so that
/// nothing a test started outlives it. Processes get a few seconds to end by themselves
/// after the test's own clean-up; one that is still there is stopped, and fails a test
/// that had passed: everything a run starts must stop by itself.
pub struct Reaper(PathBuf);

impl Reaper {
    pub fn new(dir: &Path) -> Self {
        Reaper(dir.to_path_buf())
    }

    /// Processes (not this one) whose environment holds `self.0` or a path under it.
    fn leftovers(&self) -> Vec<(i32, String)> {
        let dir = self.0.as_os_str().as_encoded_bytes();
        let me = std::process::id() as i32;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|environ| names_path(&environ, dir))
            })
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (pid, cmd.trim_end().to_owned())
            })
            .collect()
    }
}

/// Whether a NUL-separated environment has a variable whose value is `dir` or a path
/// under it.
fn names_path(environ: &[u8], dir: &[u8]) -> bool {
    environ.split(|b| *b == 0).any(|var| {
        let value = var.splitn(2, |b| *b == b'=').nth(1).unwrap_or_default();
        value.starts_with(dir) && matches!(value.get(dir.len()), None | Some(b'/'))
    })
}

impl Drop for Reaper {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        // A killed server's panes take a moment to go: give them that first.
        let settle = |limit: Duration| {
            let deadline = Instant::now() + limit;
            let mut left = self.leftovers();
            while !left.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                left = self.leftovers();
            }
            left
        };
        let stuck = settle(Duration::from_secs(5));
        if stuck.is_empty() {
            return;
        }
        for (pid, cmd) in &stuck {
            eprintln!("test clean-up: stopping leftover process {pid}: {cmd}");
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        for (pid, _) in settle(Duration::from_secs(2)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !std::thread::panicking() {
            panic!(
                "{} process(es) outlived the test (listed above)",
                stuck.len()
            );
        }
    }
}
