//! Shared helpers of the multiplexer tests: finding tools, hermetic dirs, bounded waits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../support/reaper.rs"]
mod reaper;
pub use reaper::Reaper;

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
