//! Agent processes of the CLI backends, with stand-in CLIs (shell scripts): the prompt
//! travels on stdin (a 1 MiB prompt arrives whole and never shows in the process's
//! command line), a stop ends a group that ignores SIGTERM within the grace, a silent
//! agent is ended after the idle limit, and a failed exit after a completed turn is
//! reported. Codex's error wordings are classed from fixtures in `tests/fixtures/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orch::agent::{AgentEvent, FailureClass, StopSignal, TurnOutcome, build_backend};

use crate::fake_cli::{fake_cli, settings};
use crate::support::{collecting_bus, request, turn_events, wait_for};

fn repo_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/codex")
        .join(name)
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Running and not a zombie.
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_prompt_reaches_the_cli_on_stdin_and_never_in_its_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Records its pid, waits for the test to look at it, then answers.
    let body = format!(
        "echo $$ > {d}/pid\nwhile [ ! -e {d}/go ]; do sleep 0.05; done\ncat \"{}\"",
        repo_fixture("completed.jsonl").display()
    );
    let bin = fake_cli(dir.path(), "codex", &body);
    let backend = build_backend("codex", &settings(dir.path(), "codex", bin)).unwrap();
    let line = "PROMPT-SECRET-7f3a: every agent sees this line, ps must not.\n";
    let mut prompt = String::new();
    while prompt.len() < (1 << 20) {
        prompt.push_str(line);
    }
    let (bus, sinks, _) = collecting_bus();
    let req = request("builder", 1, &prompt, dir.path());
    let events = turn_events(&bus, "builder", 1);
    let turn = tokio::spawn({
        let backend = backend.clone();
        async move { backend.turn(&req, &events).await }
    });
    let pidfile = dir.path().join("pid");
    tokio::task::spawn_blocking(move || {
        wait_for("the fake CLI to start", Duration::from_secs(20), || {
            read_pid(&pidfile) > 0
        })
    })
    .await
    .unwrap();
    let pid = read_pid(&dir.path().join("pid"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("exec"), "{cmdline}");
    assert!(!cmdline.contains("PROMPT-SECRET"), "{cmdline}");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,args", "ww"])
        .output();
    if let Ok(ps) = ps {
        let ps = String::from_utf8_lossy(&ps.stdout);
        assert!(!ps.contains("PROMPT-SECRET"), "ps shows the prompt");
    }
    std::fs::write(dir.path().join("go"), "").unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), turn)
        .await
        .expect("turn timed out")
        .unwrap()
        .expect("turn could not start");
    assert_eq!(result.outcome, TurnOutcome::Completed);
    let received = std::fs::read(dir.path().join("args.stdin")).unwrap();
    assert_eq!(received.len(), prompt.len());
    assert!(received == prompt.as_bytes(), "the prompt arrived altered");
    sinks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_an_agent_that_ignores_sigterm_and_its_child_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let body = format!(
        "trap '' TERM\nsleep 120 &\necho $! > {d}/child\necho $$ > {d}/pid\n\
         echo '{{\"type\":\"thread.started\",\"thread_id\":\"t-stop\"}}'\n\
         while :; do sleep 1; done"
    );
    let bin = fake_cli(dir.path(), "codex", &body);
    let mut settings = settings(dir.path(), "codex", bin);
    let grace = Duration::from_secs(1);
    settings.kill_grace = grace;
    let backend = build_backend("codex", &settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let (handle, signal) = StopSignal::pair();
    let mut req = request("builder", 1, "plan", dir.path());
    req.stop = signal;
    let events = turn_events(&bus, "builder", 1);
    let turn = tokio::spawn({
        let backend = backend.clone();
        async move { backend.turn(&req, &events).await }
    });
    let d2 = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait_for("the agent and its child", Duration::from_secs(20), || {
            read_pid(&d2.join("pid")) > 0 && read_pid(&d2.join("child")) > 0
        })
    })
    .await
    .unwrap();
    let (leader, child) = (
        read_pid(&dir.path().join("pid")),
        read_pid(&dir.path().join("child")),
    );
    assert!(is_running(leader) && is_running(child));
    let stopped_at = Instant::now();
    handle.stop();
    let result = tokio::time::timeout(grace + Duration::from_secs(2), turn)
        .await
        .expect("the stopped turn did not end within grace + 2 s")
        .unwrap()
        .expect("turn could not start");
    let took = stopped_at.elapsed();
    assert!(
        took >= grace,
        "the group was killed before its grace ({took:?})"
    );
    assert_eq!(
        result.outcome,
        TurnOutcome::Interrupted {
            message: "stopped by the user".into()
        }
    );
    assert_eq!(result.thread_id.as_deref(), Some("t-stop"));
    // The leader is reaped before the turn returns; its orphaned child goes with the
    // group's SIGKILL (init reaps it).
    assert!(!is_running(leader), "the agent outlived its stopped turn");
    let child_gone = Instant::now();
    while is_running(child) && child_gone.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !is_running(child),
        "the agent's child outlived its stopped turn"
    );
    bus.flush().await;
    assert!(matches!(
        collected.events().last(),
        Some(AgentEvent::Finished {
            outcome: TurnOutcome::Interrupted { .. }
        })
    ));
    sinks.finish().await;
}

async fn turn_with(
    body: &str,
    tune: impl FnOnce(&mut orch::agent::BackendSettings),
) -> (orch::agent::TurnResult, Vec<AgentEvent>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_cli(dir.path(), "codex", body);
    let mut settings = settings(dir.path(), "codex", bin);
    tune(&mut settings);
    let backend = build_backend("codex", &settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let req = request("builder", 1, "plan", dir.path());
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        backend.turn(&req, &turn_events(&bus, "builder", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    let took = started.elapsed();
    bus.flush().await;
    let events = collected.events();
    sinks.finish().await;
    (result, events, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_is_ended_after_the_idle_limit_and_classed_transient() {
    let (result, _, took) = turn_with(
        "echo '{\"type\":\"thread.started\",\"thread_id\":\"t-idle\"}'\nexec sleep 300",
        |s| {
            s.cli_idle_timeout = Duration::from_millis(300);
            s.kill_grace = Duration::from_millis(500);
        },
    )
    .await;
    assert_eq!(
        result.outcome,
        TurnOutcome::Failed {
            class: FailureClass::Transient {
                retry_after_secs: None
            },
            message: "no output from `codex` for 0.3 s; the turn was ended".into()
        }
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_on_stderr_keeps_an_agent_from_being_idle() {
    let body = format!(
        "for i in 1 2 3 4 5 6; do echo working >&2; sleep 0.1; done\ncat \"{}\"",
        repo_fixture("completed.jsonl").display()
    );
    let (result, _, _) = turn_with(&body, |s| {
        s.cli_idle_timeout = Duration::from_millis(400);
    })
    .await;
    assert_eq!(result.outcome, TurnOutcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_exit_after_a_completed_turn_is_reported() {
    let body = format!(
        "cat \"{}\"\necho 'panicked at shutdown' >&2\nexit 5",
        repo_fixture("completed.jsonl").display()
    );
    let (result, events, _) = turn_with(&body, |_| {}).await;
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(result.response, "Done.");
    let warning = events.iter().find_map(|e| match e {
        AgentEvent::Error { message } if message.contains("then exited") => Some(message),
        _ => None,
    });
    let warning = warning.expect("no event about the failed exit");
    assert!(
        warning.contains("exit status: 5") && warning.contains("panicked at shutdown"),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_high_demand_and_a_cut_stream_are_transient() {
    for fixture in ["high_demand.jsonl", "stream_disconnected.jsonl"] {
        let body = format!("cat \"{}\"", repo_fixture(fixture).display());
        let (result, _, _) = turn_with(&body, |_| {}).await;
        assert!(
            matches!(
                result.outcome,
                TurnOutcome::Failed {
                    class: FailureClass::Transient { .. },
                    ..
                }
            ),
            "{fixture}: {:?}",
            result.outcome
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_that_cannot_start_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("codex");
    std::fs::write(&script, "#!/nonexistent/node\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let backend = build_backend("codex", &settings(dir.path(), "codex", script)).unwrap();
    let (bus, sinks, _) = collecting_bus();
    let req = request("builder", 1, "plan", dir.path());
    let err = backend
        .turn(&req, &turn_events(&bus, "builder", 1))
        .await
        .expect_err("a missing interpreter must fail the spawn")
        .to_string();
    assert!(
        err.contains("interpreter") && err.contains("No such file or directory"),
        "{err}"
    );
    sinks.finish().await;
}
