//! The control socket: found through `control.path` at any project-root and session
//! length, 0600 in a private 0700 directory, still answering after a thousand idle
//! connections under `ulimit -n 1024`, and request text that cannot forge log lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::repo::{TestRepo, read, text, wait_for};
use crate::support::{
    SLOW, demo_command, long_root, run_dir, runtime_dir, spawn_quiet, state, stop, wait_for_socket,
};

#[test]
fn a_200_byte_root_and_a_64_byte_session_run_and_answer_ctl() {
    let repo = TestRepo::new();
    let root = long_root(&repo, 200);
    let runtime = runtime_dir(&repo);
    let session = format!("long-{}", "s".repeat(59));
    assert_eq!(session.len(), 64);

    let mut child = spawn_quiet(demo_command(&repo, &root, SLOW, &["--session", &session]));
    let socket = wait_for_socket(&root, &session);
    assert_eq!(
        socket.parent().unwrap(),
        runtime.join("orch"),
        "{}",
        socket.display()
    );
    assert!(socket.as_os_str().len() < 108);
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode(&socket) & 0o777, 0o600, "socket mode");
    assert_eq!(
        mode(&runtime.join("orch")) & 0o777,
        0o700,
        "socket dir mode"
    );

    // `launch ctl` from the long root, and from elsewhere with --project-root (what
    // the Ctrl+S binding runs).
    let status = repo
        .launch()
        .current_dir(&root)
        .args(["ctl", "status", "--json", "--session", &session])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("\"ok\":true"),
        "{}",
        text(&status.stdout)
    );
    let root_arg = root.display().to_string();
    let interrupt = repo
        .launch()
        .args([
            "ctl",
            "interrupt",
            "--session",
            &session,
            "--project-root",
            &root_arg,
        ])
        .output()
        .unwrap();
    assert!(interrupt.status.success(), "{}", text(&interrupt.stderr));
    assert!(
        text(&interrupt.stdout).contains("pausing"),
        "{}",
        text(&interrupt.stdout)
    );
    let ls = repo
        .launch()
        .current_dir(&root)
        .args(["ls"])
        .output()
        .unwrap();
    assert!(
        text(&ls.stdout).contains(&format!("{session} paused")),
        "{}",
        text(&ls.stdout)
    );

    stop(&repo, &root, &session, &mut child);
    assert_eq!(state(&root, &session).as_deref(), Some("stopped"));
    assert!(!socket.exists(), "the socket is removed at the end");
    assert!(!run_dir(&root, &session).join("control.path").exists());
    assert!(!run_dir(&root, &session).join("orchestrator.pid").exists());

    // A short run to the end at the same root, with a generated session name.
    let out = demo_command(&repo, &root, "delay=0", &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Connects and leaves the connection idle.
fn idle_connection(socket: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

#[test]
fn the_socket_answers_after_a_thousand_idle_connections_under_ulimit_1024() {
    let repo = TestRepo::new();
    let root = repo.root();
    runtime_dir(&repo);
    let session = "run-idle";
    let mut child = spawn_with_fd_limit(&repo, session, 1024);
    let socket = wait_for_socket(&root, session);
    let limits = read(std::path::Path::new(&format!(
        "/proc/{}/limits",
        child.id()
    )));
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "{limits}"
    );

    let started = Instant::now();
    let mut idle: Vec<UnixStream> = (0..1000).map(|_| idle_connection(&socket)).collect();
    // Connections over the limit got one line saying so and were closed.
    let mut last = String::new();
    BufReader::new(idle.pop().unwrap())
        .read_line(&mut last)
        .unwrap();
    assert!(last.contains("\"busy\":true"), "{last:?}");

    let status = repo
        .launch()
        .args(["ctl", "status", "--json", "--session", session])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("\"ok\":true"));
    // Bounded only against a hang (a loaded machine accepts 200 connections slowly).
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );

    // An idle connection is closed by the run within a few seconds.
    let mut first = idle.remove(0);
    let mut rest = Vec::new();
    let waited = Instant::now();
    let n = first.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "an idle connection gets no answer");
    assert!(waited.elapsed() < Duration::from_secs(10));

    // And again, with all those connections still open on this side.
    let again = repo
        .launch()
        .args(["ctl", "status", "--session", session])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
    drop(idle);
    stop(&repo, &root, session, &mut child);
    assert_eq!(state(&root, session).as_deref(), Some("stopped"));
}

/// `launch --mux none <SLOW run>` started by `sh` under `ulimit -n <limit>`.
fn spawn_with_fd_limit(repo: &TestRepo, session: &str, limit: u32) -> std::process::Child {
    let mut sh = std::process::Command::new("sh");
    let launch = repo.launch();
    sh.current_dir(repo.root()).env_clear();
    for (key, value) in launch.get_envs() {
        if let Some(value) = value {
            sh.env(key, value);
        }
    }
    sh.args(["-c", &format!(r#"ulimit -n {limit} && exec "$0" "$@""#)])
        .arg(env!("CARGO_BIN_EXE_launch"))
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
            "--session",
            session,
            "--demo-scenario",
            SLOW,
        ]);
    spawn_quiet(sh)
}

#[test]
fn the_socket_outlives_running_out_of_file_descriptors() {
    let repo = TestRepo::new();
    let root = repo.root();
    let session = "run-emfile";
    let mut child = spawn_with_fd_limit(&repo, session, 48);
    let socket = wait_for_socket(&root, session);
    // Paused once its first turn runs (its worktree and logs are open by then), the run
    // opens no file of its own while the connections use them all.
    let timeline = run_dir(&root, session).join("logs/timeline.log");
    wait_for("the planner's first turn", Duration::from_secs(60), || {
        read(&timeline).contains("turn_started planner")
    });
    let pause = repo
        .launch()
        .args(["ctl", "pause", "--session", session])
        .output()
        .unwrap();
    assert!(pause.status.success(), "{}", text(&pause.stderr));
    let interrupt = run_dir(&root, session).join("logs/interrupt.log");
    wait_for("the interrupt summary", Duration::from_secs(60), || {
        read(&interrupt).contains("stop for good")
    });
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .unwrap()
            .count()
    };
    let before = open_fds();

    let started = Instant::now();
    // The run closes a connection that asks nothing after a few seconds: on a loaded
    // machine those first accepted can be closed again before the count is read, so
    // more are opened until the run holds all it may.
    let mut idle: Vec<UnixStream> = Vec::new();
    wait_for(
        "the run to run out of descriptors",
        Duration::from_secs(60),
        || {
            if open_fds() < 46 && idle.len() < 300 {
                idle.extend((0..50).map(|_| idle_connection(&socket)));
            }
            open_fds() >= 46
        },
    );
    let status = repo
        .launch()
        .args(["ctl", "status", "--json", "--session", session])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("\"mode\":\"paused\""));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    wait_for(
        "the idle connections to close",
        Duration::from_secs(15),
        || open_fds() <= before + 1,
    );
    stop(&repo, &root, session, &mut child);
    assert_eq!(state(&root, session).as_deref(), Some("stopped"));
}

#[test]
fn request_text_cannot_forge_a_timeline_line_or_reach_a_pane_raw() {
    let repo = TestRepo::new();
    let root = repo.root();
    let session = "run-hostile";
    let mut child = spawn_quiet(demo_command(&repo, &root, SLOW, &["--session", session]));
    let socket = wait_for_socket(&root, session);

    let hostile =
        "x\n2026-01-01T00:00:00.000Z run_finished status=succeeded\u{1b}[2J\u{1b}]0;pwned\u{7}";
    let request = serde_json::json!({ "command": "pause", "source": hostile });
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    assert!(answer.contains("\"ok\":true"), "{answer}");

    let timeline_path = run_dir(&root, session).join("logs/timeline.log");
    wait_for("the pause in the timeline", Duration::from_secs(30), || {
        read(&timeline_path).contains("pause_requested")
    });
    // A bad request's echo is clean too.
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.write_all(b"{\"command\":\"\x1b[2J\"}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    assert!(answer.contains("bad request"), "{answer}");
    assert!(
        !answer.contains('\u{1b}') && !answer.contains("\\u001b"),
        "{answer}"
    );

    stop(&repo, &root, session, &mut child);
    let logs = run_dir(&root, session).join("logs");
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let body = read(&path);
        assert!(
            !body.contains('\u{1b}'),
            "an escape reached {}",
            path.display()
        );
        assert!(!body.contains("pwned\u{7}"), "{}", path.display());
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00.000Z")),
            "a forged line in {}:\n{body}",
            path.display()
        );
    }
    let timeline = read(&timeline_path);
    let line = timeline
        .lines()
        .find(|l| l.contains("pause_requested"))
        .unwrap();
    assert!(line.contains("source=x?2026-01-01T00:00:00.000Z"), "{line}");
    assert!(!line.contains("run_finished status"), "{line}");
}
