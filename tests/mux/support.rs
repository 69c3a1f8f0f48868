//! Shared helpers of the multiplexer tests: finding tools, hermetic dirs, bounded waits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The binary of a tool the test needs: `$env_var`, then `fallbacks`, then PATH.
/// `None` (after printing why) when it is missing and `ORCH_TEST_REQUIRE_TOOLS` is not
/// `1`; a failure when it is.
pub fn require_tool(name: &str, env_var: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let candidates = std::env::var_os(env_var)
        .map(PathBuf::from)
        .into_iter()
        .chain(fallbacks.iter().map(PathBuf::from))
        .chain(
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
    for candidate in candidates {
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let message = format!("`{name}` not found (set {env_var} or put it on PATH)");
    if std::env::var("ORCH_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{message}; ORCH_TEST_REQUIRE_TOOLS=1 makes this a failure");
    }
    eprintln!("SKIPPED: {message}");
    None
}

/// Polls `check` until it returns `Some`, at most `limit`; panics with `what` and the
/// last observation when time runs out.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match check() {
            Ok(value) => {
                if std::env::var_os("ORCH_TEST_TIMING").is_some() {
                    eprintln!("waited {:?} for {what}", start.elapsed());
                }
                return value;
            }
            Err(last) if start.elapsed() >= limit => {
                panic!("timed out after {limit:?} waiting for {what}; last seen:\n{last}")
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// Appends one line to a log file, as the orchestrator's log sink would.
pub fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// Writes an executable script that records its argv (NUL-separated) into `marker`:
/// the stand-in for `launch ctl interrupt` until the control socket is merged.
pub fn marker_script(dir: &Path, marker: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("fake-launch");
    let body = format!(
        "#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\" > '{}.tmp' && mv '{}.tmp' '{}'\n",
        marker.display(),
        marker.display(),
        marker.display()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Reads the argv a marker script recorded.
pub fn read_marker(marker: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(marker).ok()?;
    let mut args: Vec<String> = text.split('\0').map(str::to_owned).collect();
    args.pop();
    Some(args)
}

/// Agent names that try to break quoting, as in the layout snapshots.
pub const HOSTILE_NAMES: &[&str] = &[
    "planner",
    "research er",
    "say \"hi\"",
    "naïve ✓ 日本",
    "it's $(touch /tmp/orch-pwned) `id`",
    "#{session_name} ##",
    "semi;colon && echo no;",
    "-n --name=x leading dash",
    "ninth",
];

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
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                    environ.split(|b| *b == 0).any(|var| {
                        var.iter().position(|b| *b == b'=').is_some_and(|eq| {
                            let value = &var[eq + 1..];
                            value.starts_with(dir)
                                && matches!(value.get(dir.len()), None | Some(b'/'))
                        })
                    })
                })
            })
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (pid, cmd.trim_end().to_owned())
            })
            .collect()
    }
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
        for (pid, cmd) in &stuck {
            eprintln!("test clean-up: stopping leftover process {pid}: {cmd}");
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        if stuck.is_empty() {
            return;
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
