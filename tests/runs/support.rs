//! Helpers of the run tests: long project roots, slow demo runs, a run's files.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::repo::{TestRepo, read, wait_for};

/// A demo scenario slow enough to act on the run while it goes (about a minute).
pub const SLOW: &str = "delay=400,events=20,gap=200";

/// A repository at a project root of exactly `len` bytes, inside the test's temp dir.
pub fn long_root(repo: &TestRepo, len: usize) -> PathBuf {
    let mut root = repo.dir.path().join("deep");
    while root.as_os_str().len() + 51 < len {
        root.push("d".repeat(50));
    }
    let rest = len - root.as_os_str().len() - 1;
    root.push("r".repeat(rest));
    assert_eq!(root.as_os_str().len(), len);
    std::fs::create_dir_all(&root).unwrap();
    crate::repo::init_git_repo(&root, &repo.dir.path().join("home"));
    root
}

/// Makes the test's `$XDG_RUNTIME_DIR` (private, as a login session has it).
pub fn runtime_dir(repo: &TestRepo) -> PathBuf {
    let dir = repo.dir.path().join("home/run");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap();
    dir
}

/// `launch --backend demo --mux none --demo-scenario <scenario> <extra>` in `root`.
pub fn demo_command(repo: &TestRepo, root: &Path, scenario: &str, extra: &[&str]) -> Command {
    let mut cmd = repo.launch();
    cmd.current_dir(root).args([
        "--prompt",
        "Ship the MVP",
        "--backend",
        "demo",
        "--mux",
        "none",
        "--demo-scenario",
        scenario,
    ]);
    cmd.args(extra);
    cmd
}

pub fn spawn_quiet(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn run_dir(root: &Path, session: &str) -> PathBuf {
    root.join(".orch/runs").join(session)
}

/// Waits until the run records its control socket; returns the socket's path.
pub fn wait_for_socket(root: &Path, session: &str) -> PathBuf {
    let record = run_dir(root, session).join("control.path");
    wait_for("the run's control socket", Duration::from_secs(30), || {
        !read(&record).trim().is_empty()
    });
    PathBuf::from(read(&record).trim())
}

/// `status` of the run's `state.json`.
pub fn state(root: &Path, session: &str) -> Option<String> {
    let text = std::fs::read_to_string(run_dir(root, session).join("state.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(value["status"].as_str()?.to_owned())
}

/// Stops the run (if it still goes) and reaps `child`.
pub fn stop(repo: &TestRepo, root: &Path, session: &str, child: &mut Child) {
    if child.try_wait().unwrap().is_none() {
        let _ = repo
            .launch()
            .current_dir(root)
            .args(["ctl", "stop", "--session", session])
            .output();
    }
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
