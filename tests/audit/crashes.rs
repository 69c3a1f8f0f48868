//! A run stopped by SIGINT keeps every emitted event exactly once; a writer killed with
//! SIGKILL leaves a store that verifies and can be resumed; `events --follow` tails a
//! run while it writes and ends when the run does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orch::agent::backend::{AgentKind, TurnKind};
use orch::agent::event::{AgentEvent, Usage};
use orch::audit::{AuditSink, AuditTarget};
use orch::events::{OrchEventKind, PromptStats, RunStatus, SinkThread, WaveKind};

use crate::support::*;

const CHILD_DB: &str = "ORCH_TEST_CHILD_DB";
const CHILD_SESSION: &str = "ORCH_TEST_CHILD_SESSION";

/// The writer child gives up by itself after this long, whatever happens to its test.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

/// Not a test on its own: the writer process that the tests below start and signal.
#[test]
#[ignore = "run as a child process by the crash tests"]
fn writer_child() {
    let (Ok(db), Ok(session)) = (std::env::var(CHILD_DB), std::env::var(CHILD_SESSION)) else {
        return;
    };
    // Stops by itself: with the test process that started it, or after its lifetime.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + CHILD_LIFETIME;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone()).unwrap();
        let redactor = redactor();
        let sink = AuditSink::open_shared(
            AuditTarget::Local(PathBuf::from(db)),
            meta(&session, "stream"),
            &redactor,
        )
        .unwrap();
        let (bus, thread) = SinkThread::spawn(vec![Box::new(sink)], redactor);
        bus.publish(OrchEventKind::WaveScheduled {
            wave: 1,
            kind: WaveKind::Dynamic,
            agents: vec!["a".into(), "b".into()],
        })
        .await;
        for agent in ["a", "b"] {
            bus.publish(OrchEventKind::AgentStarted {
                agent: agent.into(),
                role: "r".into(),
                kind: AgentKind::Dynamic,
                wave: 1,
                depends_on: vec![],
            })
            .await;
            bus.publish(OrchEventKind::TurnStarted {
                agent: agent.into(),
                turn: 1,
                attempt: 1,
                kind: TurnKind::Plan,
                backend: "demo".into(),
                model: None,
                prompt: PromptStats::default(),
                purpose: None,
            })
            .await;
        }
        println!("ready");
        let mut emitted: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let agent = if emitted % 2 == 0 { "a" } else { "b" };
            bus.publish(OrchEventKind::Agent {
                agent: agent.into(),
                turn: 1,
                event: AgentEvent::Message {
                    text: format!("event #{emitted}"),
                },
            })
            .await;
            emitted += 1;
            if emitted % 64 == 0 {
                if Instant::now() > deadline {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        bus.publish(OrchEventKind::StopRequested {
            source: "sigint".into(),
        })
        .await;
        bus.publish(OrchEventKind::RunFinished {
            status: RunStatus::Stopped,
            usage: Usage::default(),
            failed: vec![],
        })
        .await;
        thread.finish().await;
        println!("emitted {emitted}");
    });
}

fn start_writer(db: &Path, session: &str) -> ChildGuard {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crashes::writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, db)
        .env(CHILD_SESSION, session)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// The numbers of the child's `event #N` messages, in stored order.
fn message_numbers(db: &Path, session: &str) -> Vec<usize> {
    let messages = orch_audit(db, &["events", session, "--kind", "message", "--json"]);
    stdout(&messages)
        .lines()
        .filter_map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["payload"]["text"]
                .as_str()?
                .strip_prefix("event #")?
                .parse()
                .ok()
        })
        .collect()
}

fn stored_events(db: &Path, session: &str) -> i64 {
    let out = orch_audit(db, &["runs", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|runs| {
            runs.as_array()?
                .iter()
                .find(|r| r["session"] == session)
                .map(|r| r["events"].as_i64().unwrap_or(0))
        })
        .unwrap_or(0)
}

#[test]
fn sigint_mid_stream_keeps_every_emitted_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-161616-0004";
    let mut child = start_writer(&db, session);
    assert!(
        wait_until(Duration::from_secs(60), || stored_events(&db, session)
            > 2000),
        "the writer never got going"
    );
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    assert!(
        child.wait_exit(Duration::from_secs(60)).is_some(),
        "the writer did not stop after SIGINT"
    );
    let mut stdout_text = String::new();
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        stdout_text.push_str(&line.unwrap());
        stdout_text.push('\n');
    }
    let emitted: usize = stdout_text
        .lines()
        .find_map(|l| l.strip_prefix("emitted "))
        .unwrap_or_else(|| panic!("no count from the child: {stdout_text}"))
        .parse()
        .unwrap();

    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert_eq!(
        message_numbers(&db, session),
        (0..emitted).collect::<Vec<_>>(),
        "every emitted event is stored exactly once, in order"
    );
    let runs = json(&orch_audit(&db, &["runs", "--json"]));
    assert_eq!(runs[0]["status"], "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_a_valid_store_that_a_resumed_run_continues() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-171717-0005";
    let mut child = start_writer(&db, session);
    assert!(
        wait_until(Duration::from_secs(60), || stored_events(&db, session)
            > 3000),
        "the writer never got going"
    );
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL).unwrap();
    assert!(child.wait_exit(Duration::from_secs(20)).is_some());
    let verify = orch_audit(&db, &["verify"]);
    assert!(
        verify.status.success(),
        "after kill -9: {}",
        stdout(&verify)
    );
    let before = stored_events(&db, session);
    assert!(before > 3000);
    // Only a tail can be missing: the stored messages are #0, #1... with no hole.
    let numbers = message_numbers(&db, session);
    assert_eq!(
        numbers,
        (0..numbers.len()).collect::<Vec<_>>(),
        "after kill -9 the store holds a prefix of what was emitted"
    );

    // `launch --resume` reopens the same session: the chain and the events files continue.
    let redactor = redactor();
    let sink = AuditSink::open_shared(
        AuditTarget::Local(db.clone()),
        meta(session, "stream"),
        &redactor,
    )
    .unwrap();
    let (bus, thread) = SinkThread::spawn(vec![Box::new(sink)], redactor);
    bus.publish(OrchEventKind::RunResumed).await;
    for i in 0..10 {
        bus.publish(OrchEventKind::Agent {
            agent: "a".into(),
            turn: 1,
            event: AgentEvent::Message {
                text: format!("resumed {i}"),
            },
        })
        .await;
    }
    bus.publish(OrchEventKind::RunFinished {
        status: RunStatus::Succeeded,
        usage: Usage::default(),
        failed: vec![],
    })
    .await;
    thread.finish().await;
    assert_eq!(stored_events(&db, session), before + 12);
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "after resume: {}", stdout(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_tails_a_run_while_it_writes_and_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-181818-0006";
    let redactor = redactor();
    let sink = AuditSink::open_shared(
        AuditTarget::Local(db.clone()),
        meta(session, "follow me"),
        &redactor,
    )
    .unwrap();
    let (bus, thread) = SinkThread::spawn(vec![Box::new(sink)], redactor);
    bus.publish(OrchEventKind::AgentStarted {
        agent: "a".into(),
        role: "r".into(),
        kind: AgentKind::Core,
        wave: 1,
        depends_on: vec![],
    })
    .await;
    bus.flush().await;
    let follower = Command::new(env!("CARGO_BIN_EXE_orch-audit"))
        .args([
            "--audit-path",
            db.to_str().unwrap(),
            "events",
            session,
            "--follow",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut follower = ChildGuard(follower);
    // Every read has a deadline: a follower that hangs fails the test, never CI.
    let lines = LineReader::spawn(follower.0.stdout.take().unwrap());
    let limit = Duration::from_secs(20);
    let first = lines.next_within(limit, "the first event").unwrap();
    assert!(first.contains("agent_started"), "{first}");
    // Each event published now must show up while the run is still going.
    for i in 0..5 {
        bus.publish(OrchEventKind::Agent {
            agent: "a".into(),
            turn: 1,
            event: AgentEvent::Message {
                text: format!("live {i}"),
            },
        })
        .await;
        bus.flush().await;
        let line = lines
            .next_within(limit, &format!("live event {i}"))
            .expect("the follower ended early");
        assert!(line.contains(&format!("live {i}")), "{line}");
    }
    bus.publish(OrchEventKind::RunFinished {
        status: RunStatus::Succeeded,
        usage: Usage::default(),
        failed: vec![],
    })
    .await;
    thread.finish().await;
    let last = lines.next_within(limit, "run_finished").unwrap();
    assert!(last.contains("run_finished"), "{last}");
    assert!(
        lines.next_within(limit, "the end of the output").is_none(),
        "follow ends when the run finishes"
    );
    assert!(follower.wait_exit(limit).is_some());
}

#[test]
fn verify_passes_while_a_run_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-202020-0008";
    let _child = start_writer(&db, session);
    assert!(wait_until(Duration::from_secs(60), || stored_events(
        &db, session
    ) > 500));
    for _ in 0..5 {
        let verify = orch_audit(&db, &["verify"]);
        assert!(verify.status.success(), "mid-run: {}", stdout(&verify));
    }
}
