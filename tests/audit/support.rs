//! Simulated runs (realistic event sequences through the real bus and AuditSink) and
//! helpers to run the real `orch-audit` binary against the result.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orch::agent::backend::{AgentKind, TurnKind};
use orch::agent::event::{AgentEvent, ItemStatus, TurnOutcome, Usage};
use orch::audit::{AuditOptions, AuditSink, AuditTarget, RunMeta};
use orch::events::{
    AgentStatus, EventBus, InterruptSummary, OrchEventKind, PromptStats, RunStatus, SinkThread,
    TurnRecord, WaveKind,
};
use orch::redact::Redactor;

pub const PLANTED_KEY: &str = "sk-proj-PLANTEDsecretKEY0123456789abcdef";
pub const PLANTED_ENV_NAME: &str = "ORCH_TEST_SERVICE_TOKEN";
pub const PLANTED_ENV_VALUE: &str = "envtokenvalue-77f1c2d9e8";

pub fn redactor() -> Arc<Redactor> {
    Arc::new(Redactor::from_env([
        (PLANTED_ENV_NAME, PLANTED_ENV_VALUE),
        ("HOME", "/root"),
    ]))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn meta(session: &str, prompt: &str) -> RunMeta {
    RunMeta {
        session: session.into(),
        started_at_ms: now_ms(),
        prompt: prompt.into(),
        backend: "demo".into(),
        project_root: "/tmp/project".into(),
    }
}

/// How a simulated run is shaped.
#[derive(Clone, Debug)]
pub struct Shape {
    pub agents: Vec<(&'static str, &'static str, AgentKind, Vec<&'static str>)>,
    /// Streamed events per turn, besides started/usage/finished.
    pub chatter: usize,
    pub pause: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            agents: vec![
                ("planner", "planner", AgentKind::Core, vec![]),
                ("researcher", "researcher", AgentKind::Core, vec![]),
                (
                    "builder",
                    "builder",
                    AgentKind::Core,
                    vec!["dynamic-blueprint"],
                ),
                (
                    "api-impl",
                    "implementer",
                    AgentKind::Dynamic,
                    vec!["builder-implementer"],
                ),
            ],
            chatter: 6,
            pause: true,
        }
    }
}

/// Publishes one agent's two turns; returns the number of events published.
pub async fn publish_agent(
    bus: &EventBus,
    agent: &str,
    role: &str,
    kind: AgentKind,
    tags: &[&str],
    wave: u32,
    chatter: usize,
) -> usize {
    let mut count = 0;
    bus.publish(OrchEventKind::AgentStarted {
        agent: agent.into(),
        role: role.into(),
        kind,
        wave,
        depends_on: vec![],
    })
    .await;
    count += 1;
    for (turn, turn_kind) in [(1u32, TurnKind::Plan), (2, TurnKind::FollowUp)] {
        let prompt = format!(
            "{role} turn {turn}: build the thing. Use key {PLANTED_KEY} and token {PLANTED_ENV_VALUE}."
        );
        bus.publish(OrchEventKind::TurnStarted {
            agent: agent.into(),
            turn,
            attempt: 1,
            kind: turn_kind,
            backend: "demo".into(),
            model: Some("demo-1".into()),
            prompt: PromptStats::of(&prompt),
            purpose: None,
        })
        .await;
        count += 1;
        let started = now_ms();
        let mut events = vec![AgentEvent::Started {
            thread_id: Some(format!("thread-{agent}")),
        }];
        for i in 0..chatter {
            events.push(match i % 3 {
                0 => AgentEvent::Reasoning {
                    text: format!("thinking step {i} about {agent}"),
                },
                1 => AgentEvent::Command {
                    id: Some(format!("c{i}")),
                    command: format!("cargo test --quiet # {i}"),
                    status: ItemStatus::Completed,
                    exit_code: Some(0),
                    output: Some(format!(
                        "ok {i}\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz012345"
                    )),
                },
                _ => AgentEvent::Message {
                    text: format!("progress {i} ünïcødé ✓ leaked {PLANTED_KEY}"),
                },
            });
        }
        let usage = Usage {
            input_tokens: 1000 + u64::from(turn),
            cached_input_tokens: 10,
            output_tokens: 200,
            reasoning_output_tokens: 5,
        };
        events.push(AgentEvent::Usage(usage));
        events.push(AgentEvent::Finished {
            outcome: TurnOutcome::Completed,
        });
        for event in events {
            bus.publish(OrchEventKind::Agent {
                agent: agent.into(),
                turn,
                event,
            })
            .await;
            count += 1;
        }
        let response = format!(
            "{agent} answer for turn {turn}\n{}\nsecret {PLANTED_ENV_VALUE}",
            "lorem ipsum ".repeat(600)
        );
        bus.publish(OrchEventKind::TurnFinished(Box::new(TurnRecord {
            agent: agent.into(),
            role: role.into(),
            agent_kind: kind,
            wave,
            turn,
            attempt: 1,
            kind: turn_kind,
            prompt,
            response,
            usage,
            started_at_ms: started.saturating_sub(1500),
            finished_at_ms: now_ms(),
            backend: "demo".into(),
            model: Some("demo-1".into()),
            thread_id: Some(format!("thread-{agent}")),
            outcome: TurnOutcome::Completed,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            cost_usd: None,
        })))
        .await;
        count += 1;
    }
    bus.publish(OrchEventKind::AgentFinished {
        agent: agent.into(),
        role: role.into(),
        kind,
        wave,
        status: AgentStatus::Succeeded,
        usage: Usage::default(),
    })
    .await;
    count + 1
}

/// A whole run written to `target`; returns how many events were published.
pub async fn simulate_run(target: AuditTarget, session: &str, shape: &Shape) -> usize {
    simulate_run_with(target, session, shape, AuditOptions::default()).await
}

pub async fn simulate_run_with(
    target: AuditTarget,
    session: &str,
    shape: &Shape,
    options: AuditOptions,
) -> usize {
    let redactor = redactor();
    let prompt = format!("Ship the MVP with {PLANTED_KEY}");
    let sink = AuditSink::open_with(target, meta(session, &prompt), &redactor, options)
        .expect("open audit sink");
    let (bus, thread) = SinkThread::spawn(vec![Box::new(sink)], redactor);
    let mut count = 0;
    bus.publish(OrchEventKind::RunStarted {
        session: session.into(),
        prompt,
        backend: "demo".into(),
        project_root: PathBuf::from("/tmp/project"),
        groups: vec!["default".into()],
        config: None,
        resumed: false,
        parent: None,
    })
    .await;
    count += 1;
    let names: Vec<String> = shape.agents.iter().map(|a| a.0.to_string()).collect();
    bus.publish(OrchEventKind::WaveScheduled {
        wave: 1,
        kind: WaveKind::Core,
        agents: names.clone(),
    })
    .await;
    count += 1;
    for (agent, role, kind, tags) in &shape.agents {
        count += publish_agent(&bus, agent, role, *kind, tags, 1, shape.chatter).await;
    }
    if shape.pause {
        bus.publish(OrchEventKind::PauseRequested {
            source: "ctl".into(),
        })
        .await;
        bus.publish(OrchEventKind::RunPaused(Box::new(InterruptSummary {
            session: session.into(),
            number: 1,
            requested_by: "ctl".into(),
            finished: names.clone(),
            next_steps: vec![format!("resume; token {PLANTED_ENV_VALUE}")],
            ..InterruptSummary::default()
        })))
        .await;
        bus.flush().await;
        bus.publish(OrchEventKind::RunResumed).await;
        count += 3;
    }
    bus.publish(OrchEventKind::RunFinished {
        status: RunStatus::Succeeded,
        usage: Usage::default(),
        failed: vec![],
    })
    .await;
    count += 1;
    thread.finish().await;
    count
}

pub fn orch_audit(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch-audit"))
        .arg("--audit-path")
        .arg(db)
        .args(args)
        .env_remove("AGENTFS_PATH")
        .env_remove("ORCH_AUDIT_TOKEN")
        .env_remove("CODEX_MEMORY_DIR")
        .output()
        .expect("run orch-audit")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "orch-audit failed: {}\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// Whether a tool is required (`ORCH_TEST_REQUIRE_TOOLS=1`) or may be skipped.
pub fn skip_or_fail(what: &str) {
    if std::env::var("ORCH_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{what} is required (ORCH_TEST_REQUIRE_TOOLS=1) but missing");
    }
    eprintln!("SKIPPED: {what} is missing; set ORCH_TEST_REQUIRE_TOOLS=1 to make this a failure");
}

/// Waits for `check` up to `limit`, polling.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// A process a test started; killed and reaped however the test ends, so a failed
/// assertion never leaves it running.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }

    /// Waits for the process to exit on its own, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's output lines on a thread, so every read can have a deadline.
pub struct LineReader(std::sync::mpsc::Receiver<String>);

impl LineReader {
    pub fn spawn(stream: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader(rx)
    }

    /// The next line; panics after `limit`. `None` once the stream has ended.
    pub fn next_within(&self, limit: Duration, what: &str) -> Option<String> {
        match self.0.recv_timeout(limit) {
            Ok(line) => Some(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("no line within {limit:?} while waiting for {what}")
            }
        }
    }
}

/// The store of a repo's runs.
pub fn repo_db(repo: &crate::repo::TestRepo) -> PathBuf {
    repo.root().join(".orch/audit.db")
}

/// The session of a repo's only run.
pub fn only_session(repo: &crate::repo::TestRepo) -> String {
    repo.only_run()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("session directory name")
        .to_owned()
}

/// `launch --backend demo --mux none` in the repo, with a scenario and more arguments.
pub fn demo_launch(repo: &crate::repo::TestRepo, scenario: &str, args: &[&str]) -> Command {
    let mut cmd = repo.launch();
    cmd.args([
        "--backend",
        "demo",
        "--mux",
        "none",
        "--demo-scenario",
        scenario,
    ])
    .args(args);
    cmd
}

/// Every event of a run as exported JSON lines.
pub fn export(db: &Path, session: &str) -> Vec<serde_json::Value> {
    let out = orch_audit(db, &["export", session, "--format", "jsonl"]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("export line is JSON"))
        .collect()
}

/// Fails with the process's stderr unless it exited 0.
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
