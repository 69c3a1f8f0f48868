//! A run whose orchestrator was killed reads as `crashed`, not `running`, and
//! `events --follow` on it ends instead of waiting forever.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

use crate::repo::TestRepo;
use crate::support::*;

fn run_status(db: &std::path::Path) -> Option<(String, String, i64)> {
    let out = orch_audit(db, &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let run = runs.as_array()?.first()?.clone();
    Some((
        run["session"].as_str()?.to_owned(),
        run["status"].as_str()?.to_owned(),
        run["events"].as_i64()?,
    ))
}

#[test]
fn kill_9_of_a_headless_run_shows_crashed_and_ends_follow() {
    let repo = TestRepo::new();
    let db = repo_db(&repo);
    let mut launch = repo.launch();
    launch
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
            "--demo-scenario",
            "delay=400",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = ChildGuard(launch.spawn().unwrap());
    assert!(
        wait_until(Duration::from_secs(60), || run_status(&db).is_some_and(
            |(_, status, events)| status == "running" && events >= 3
        )),
        "the run never got going: {:?}",
        run_status(&db)
    );
    let (session, _, _) = run_status(&db).unwrap();
    let mut follow = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_orch-audit"))
            .arg("--audit-path")
            .arg(&db)
            .args(["events", &session, "--follow"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        follow.0.try_wait().unwrap().is_none(),
        "--follow keeps going while the run lives"
    );

    kill(run.pid(), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || run_status(&db)
            .is_some_and(|(_, status, _)| status == "crashed")),
        "not shown crashed within 5 s of kill -9: {:?}",
        run_status(&db)
    );
    assert!(killed.elapsed() < Duration::from_secs(5));
    let show = orch_audit(&db, &["show", &session]);
    assert!(
        stdout(&show).contains("status crashed"),
        "{}",
        stdout(&show)
    );

    let status = follow
        .wait_exit(Duration::from_secs(10))
        .expect("--follow ends once the run is found crashed");
    assert_eq!(status.code(), Some(5), "--follow exits 5 for a crashed run");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follow.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("crashed"), "{stderr}");
    // Reaped or not, the answer is the same (a zombie is not alive).
    let _ = run.0.wait();
    assert_eq!(run_status(&db).unwrap().1, "crashed");
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}
