//! Who owns a session: a second run with a live session name is refused before it
//! touches the first run, two starts at once cannot both win, a killed run is seen as
//! crashed (and its socket and pid file cleared), a failed start does not look running.

use std::time::{Duration, Instant};

use crate::repo::{TestRepo, read, text, wait_for};
use crate::support::{SLOW, demo_command, run_dir, spawn_quiet, state, stop, wait_for_socket};

/// Every file of a run directory with its bytes (logs excluded: the first run writes on).
fn run_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_run_with_a_live_session_name_is_refused_untouched() {
    let repo = TestRepo::new();
    let root = repo.root();
    let mut first = spawn_quiet(demo_command(&repo, &root, SLOW, &["--session", "dup"]));
    let socket = wait_for_socket(&root, "dup");
    let dir = run_dir(&root, "dup");
    // The socket can answer before the timeline's writer has flushed its first line.
    let timeline_path = dir.join("logs/timeline.log");
    wait_for(
        "the first run's run_started",
        Duration::from_secs(30),
        || read(&timeline_path).contains("run_started"),
    );
    let before = run_files(&dir);
    let audit_before = std::fs::metadata(root.join(".orch/audit.db"))
        .unwrap()
        .len();

    let second = demo_command(&repo, &root, "delay=0", &["--session", "dup"])
        .output()
        .unwrap();
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("session `dup` is taken"), "{stderr}");
    assert!(stderr.contains("another name"), "{stderr}");
    assert_eq!(run_files(&dir), before, "the first run's files changed");
    assert!(socket.exists());
    // The first run still answers, on its own socket.
    let status = repo
        .launch()
        .args(["ctl", "status", "--session", "dup"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    let timeline = read(&timeline_path);
    assert_eq!(timeline.matches("run_started").count(), 1, "{timeline}");
    // The store has one run of that name (its file only grew by the first run's rows).
    assert!(
        std::fs::metadata(root.join(".orch/audit.db"))
            .unwrap()
            .len()
            >= audit_before
    );

    stop(&repo, &root, "dup", &mut first);
    assert_eq!(state(&root, "dup").as_deref(), Some("stopped"));
}

#[test]
fn two_starts_of_one_session_at_once_cannot_both_win() {
    let repo = TestRepo::new();
    let root = repo.root();
    let mut children: Vec<_> = (0..2)
        .map(|_| spawn_quiet(demo_command(&repo, &root, SLOW, &["--session", "race"])))
        .collect();
    wait_for_socket(&root, "race");
    // One is refused at once; the other runs on.
    let start = Instant::now();
    let (refused, winner) = loop {
        if let Some(status) = children[0].try_wait().unwrap() {
            break (status, children.remove(1));
        }
        if let Some(status) = children[1].try_wait().unwrap() {
            break (status, children.remove(0));
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "neither was refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.code(), Some(2));
    let mut winner = winner;
    assert!(winner.try_wait().unwrap().is_none(), "the winner runs on");
    stop(&repo, &root, "race", &mut winner);
    assert_eq!(state(&root, "race").as_deref(), Some("stopped"));
}

#[test]
fn a_killed_run_is_listed_crashed_its_socket_cleared_and_its_name_refused() {
    let repo = TestRepo::new();
    let root = repo.root();
    let mut child = spawn_quiet(demo_command(&repo, &root, SLOW, &["--session", "doomed"]));
    let socket = wait_for_socket(&root, "doomed");
    let dir = run_dir(&root, "doomed");
    assert!(dir.join("orchestrator.pid").exists());
    let ls = repo.launch().args(["ls", "--json"]).output().unwrap();
    assert!(
        text(&ls.stdout).contains("\"state\":\"running\""),
        "{}",
        text(&ls.stdout)
    );

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = Instant::now();
    let ls = repo.launch().args(["ls"]).output().unwrap();
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert!(
        text(&ls.stdout).contains("doomed") && text(&ls.stdout).contains("crashed"),
        "{}",
        text(&ls.stdout)
    );
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    assert!(!socket.exists(), "the stale socket is removed");
    assert!(
        !dir.join("orchestrator.pid").exists(),
        "the stale pid file is removed"
    );
    assert!(!dir.join("control.path").exists());
    // It stays crashed.
    let ls = repo.launch().args(["ls"]).output().unwrap();
    assert!(text(&ls.stdout).contains("crashed"), "{}", text(&ls.stdout));
    // Its name is not reused (its logs and store rows stay as they were).
    let timeline = read(&dir.join("logs/timeline.log"));
    let again = demo_command(&repo, &root, "delay=0", &["--session", "doomed"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("crashed earlier"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(read(&dir.join("logs/timeline.log")), timeline);
    // A new run starts fine.
    let fresh = demo_command(&repo, &root, "delay=0", &[]).output().unwrap();
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
}

#[test]
fn the_next_launch_clears_a_crashed_run() {
    let repo = TestRepo::new();
    let root = repo.root();
    let mut child = spawn_quiet(demo_command(&repo, &root, SLOW, &["--session", "gone"]));
    let socket = wait_for_socket(&root, "gone");
    child.kill().unwrap();
    child.wait().unwrap();
    let fresh = demo_command(&repo, &root, "delay=0", &["--session", "next"])
        .output()
        .unwrap();
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    assert!(!socket.exists(), "the stale socket is removed");
    assert!(!run_dir(&root, "gone").join("orchestrator.pid").exists());
    assert_eq!(state(&root, "gone").as_deref(), Some("crashed"));
}

#[test]
fn a_failed_start_does_not_look_running() {
    let repo = TestRepo::new();
    let root = repo.root();
    // The audit store cannot be opened: the start fails after the session is claimed.
    let out = demo_command(
        &repo,
        &root,
        "delay=0",
        &[
            "--session",
            "broken",
            "--audit-path",
            "/proc/orch-none/audit.db",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "{}", text(&out.stderr));
    let dir = run_dir(&root, "broken");
    assert!(!dir.join("orchestrator.pid").exists(), "a stale pid file");
    assert!(!dir.join("control.path").exists());
    let ls = repo.launch().args(["ls"]).output().unwrap();
    let listing = text(&ls.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with("broken"))
        .unwrap_or_default();
    assert!(line.contains("failed"), "{listing}");
    // The name is free again.
    let again = demo_command(&repo, &root, "delay=0", &["--session", "broken"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
}
