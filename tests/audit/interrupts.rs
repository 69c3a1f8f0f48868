//! Interrupting the real `launch` while its dynamic wave streams: after a pause, a stop
//! (SIGINT twice) or SIGTERM the store verifies, and every event the demo backend
//! emitted is in it exactly once.
//!
//! What the backend emitted is counted outside the store: each streamed event is one
//! line in its agent's log (`.orch/runs/<s>/logs/<agent>.log`), and the demo numbers the
//! tool calls of a turn (`{"step":0}`, `{"step":1}`...), so a gap or a repeat shows.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use orch::agent::event::AgentEvent;
use orch::events::render::agent_event_body;

use crate::repo::{TestRepo, read};
use crate::support::*;

/// Extra tool calls per turn, and the pause between them: a dynamic turn streams for
/// about a second, long enough to be interrupted in the middle.
const STEPS: u64 = 40;
const SCENARIO: &str = "delay=20,events=40,gap=25";

/// Labels that start the log line of a streamed agent event (see `agent_event_body`).
const STREAM_LABELS: &[&str] = &[
    "thread   ",
    "message  ",
    "thinking ",
    "command  ",
    "file     ",
    "tool     ",
    "tokens   ",
    "limit    ",
    "error    ",
    "finished ",
];

struct Run {
    repo: TestRepo,
    child: ChildGuard,
}

/// Starts the squad and returns once a dynamic agent is streaming tool calls.
fn start_streaming_wave() -> Run {
    let repo = TestRepo::new();
    let child = demo_launch(&repo, SCENARIO, &["--prompt", "Ship the MVP"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = ChildGuard(child);
    assert!(
        wait_until(Duration::from_secs(30), || !repo.run_dirs().is_empty()),
        "no run directory"
    );
    let log = repo.only_run().join("logs/backend-api.log");
    assert!(
        wait_until(Duration::from_secs(60), || read(&log)
            .contains("todo_list({\"step\":3})")),
        "the dynamic wave never streamed: {}",
        read(&log)
    );
    Run { repo, child }
}

impl Run {
    fn signal(&self, signal: Signal) {
        kill(self.child.pid(), signal).unwrap();
    }

    fn timeline(&self) -> String {
        read(&self.repo.only_run().join("logs/timeline.log"))
    }

    fn wait_timeline(&self, needle: &str) {
        assert!(
            wait_until(Duration::from_secs(30), || self.timeline().contains(needle)),
            "no `{needle}` in the timeline:\n{}",
            self.timeline()
        );
    }

    fn wait_stopped(&mut self) {
        let status = self
            .child
            .wait_exit(Duration::from_secs(60))
            .expect("launch did not exit after the stop");
        assert_eq!(status.code(), Some(130), "a stopped run exits 130");
    }

    /// Streamed events per agent as its log shows them, in order.
    fn logged(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(self.repo.only_run().join("logs")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let Some(agent) = name.strip_suffix(".log") else {
                continue;
            };
            if matches!(agent, "timeline" | "interrupt") {
                continue;
            }
            let lines: Vec<String> = read(&path)
                .lines()
                // `HH:MM:SS.mmm body`
                .filter_map(|line| line.split_once(' ').map(|(_, body)| body.to_owned()))
                .filter(|body| STREAM_LABELS.iter().any(|l| body.starts_with(l)))
                .collect();
            if !lines.is_empty() {
                out.insert(agent.to_owned(), lines);
            }
        }
        out
    }
}

/// Streamed events per agent as the store holds them, rendered like the log does.
fn stored(rows: &[serde_json::Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let (Some(agent), Ok(event)) = (
            row["agent"].as_str(),
            serde_json::from_value::<AgentEvent>(row["payload"].clone()),
        ) else {
            continue;
        };
        if row["kind"] != event.kind() {
            continue; // a lifecycle event whose payload happens to parse
        }
        out.entry(agent.to_owned())
            .or_default()
            .push(agent_event_body(&event));
    }
    out
}

/// Stored and logged streams agree, agent by agent and event by event; on a mismatch
/// names the agent, both counts and the first event that differs.
fn assert_same_events(
    stored: &BTreeMap<String, Vec<String>>,
    logged: &BTreeMap<String, Vec<String>>,
) {
    let agents: BTreeSet<&String> = stored.keys().chain(logged.keys()).collect();
    for agent in agents {
        let (s, l) = (
            stored.get(agent).map_or(&[][..], Vec::as_slice),
            logged.get(agent).map_or(&[][..], Vec::as_slice),
        );
        if s != l {
            let at = s
                .iter()
                .zip(l)
                .position(|(a, b)| a != b)
                .unwrap_or(s.len().min(l.len()));
            panic!(
                "{agent}: {} events stored, {} emitted (logged); first difference at #{at}: stored {:?}, logged {:?}",
                s.len(),
                l.len(),
                s.get(at),
                l.get(at)
            );
        }
    }
}

/// The checks of acceptance (c) on a run that has ended; returns the stored rows.
fn assert_complete(run: &Run) -> Vec<serde_json::Value> {
    let db = repo_db(&run.repo);
    let session = only_session(&run.repo);
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let rows = export(&db, &session);
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=rows.len() as i64).collect::<Vec<_>>(),
        "the run's sequence has no gap and no repeat"
    );
    // The stop's interrupt summary, then the end; no pause summary overtakes them.
    let n = rows.len();
    assert_eq!(rows[n - 2]["kind"], "run_paused", "{}", rows[n - 2]);
    assert_eq!(rows[n - 1]["kind"], "run_finished", "{}", rows[n - 1]);
    assert_eq!(rows[n - 1]["payload"]["status"], "stopped");
    let runs = json(&orch_audit(&db, &["runs", "--json"]));
    assert_eq!(runs[0]["status"], "stopped", "{runs}");

    // Exactly the events the backend emitted, in the order it emitted them.
    let logged = run.logged();
    let total: usize = logged.values().map(Vec::len).sum();
    assert!(total > 100, "the run streamed ({total} events)");
    assert_same_events(&stored(&rows), &logged);

    // Per turn the numbered tool calls count up from 0 with no gap and no repeat, and
    // a turn that completed has all of them.
    let mut steps: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r["kind"] == "tool_call") {
        let args: serde_json::Value =
            serde_json::from_str(row["payload"]["arguments"].as_str().unwrap()).unwrap();
        steps
            .entry((
                row["agent"].as_str().unwrap().to_owned(),
                row["turn"].as_i64().unwrap(),
            ))
            .or_default()
            .push(args["step"].as_u64().unwrap());
    }
    let mut started = BTreeSet::new();
    let mut finished = BTreeSet::new();
    for row in &rows {
        let key = (
            row["agent"].as_str().unwrap_or("").to_owned(),
            row["turn"].as_i64().unwrap_or(0),
        );
        match row["kind"].as_str().unwrap() {
            "turn_started" => assert!(started.insert(key), "{row}"),
            "turn_finished" => {
                let step_count = steps.get(&key).map_or(0, Vec::len) as u64;
                if row["payload"]["outcome"]["status"] == "completed" {
                    assert_eq!(step_count, STEPS, "{key:?} completed");
                }
                assert!(finished.insert(key), "{row}");
            }
            _ => {}
        }
    }
    for (key, list) in &steps {
        assert_eq!(
            *list,
            (0..list.len() as u64).collect::<Vec<_>>(),
            "tool steps of {key:?}"
        );
    }
    assert_eq!(started, finished, "every started turn has its record");
    rows
}

#[test]
fn sigint_pauses_a_streaming_wave_with_the_store_complete_and_a_second_sigint_stops() {
    let mut run = start_streaming_wave();
    run.signal(Signal::SIGINT);
    run.wait_timeline("run_paused #1");
    // While paused (the process still running) the store already holds every event.
    let db = repo_db(&run.repo);
    let session = only_session(&run.repo);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let rows = export(&db, &session);
            stored(&rows) == run.logged() && rows.iter().any(|r| r["kind"] == "run_paused")
        }),
        "the paused run's events are not all in the store"
    );
    let paused = json(&orch_audit(&db, &["runs", "--json"]));
    assert_eq!(paused[0]["status"], "paused");
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "paused: {}", stdout(&verify));

    run.signal(Signal::SIGINT);
    run.wait_stopped();
    let rows = assert_complete(&run);
    // The pause let the running turns finish: none was cut short.
    assert!(
        rows.iter()
            .filter(|r| r["kind"] == "turn_finished")
            .all(|r| r["payload"]["outcome"]["status"] == "completed"),
        "a pause finishes running turns"
    );
    let interrupt = orch_audit(&db, &["cat", &format!("/runs/{session}/interrupt-1.json")]);
    assert!(interrupt.status.success());
}

#[test]
fn a_second_sigint_mid_stream_stops_with_every_emitted_event_stored_once() {
    let mut run = start_streaming_wave();
    // Pause, then stop before the running turns can finish: they end mid-stream.
    run.signal(Signal::SIGINT);
    run.wait_timeline("pause_requested source=SIGINT");
    run.signal(Signal::SIGINT);
    run.wait_stopped();
    assert_cut_short(&assert_complete(&run), "the stop");
}

#[test]
fn sigterm_mid_stream_stops_with_every_emitted_event_stored_once() {
    let mut run = start_streaming_wave();
    run.signal(Signal::SIGTERM);
    run.wait_stopped();
    assert_cut_short(&assert_complete(&run), "SIGTERM");
    assert!(run.timeline().contains("stop_requested source=SIGTERM"));
}

/// `what` ended at least one streaming turn early (its record says `interrupted`).
fn assert_cut_short(rows: &[serde_json::Value], what: &str) {
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "turn_finished"
                && r["payload"]["outcome"]["status"] == "interrupted"),
        "{what} cut no streaming turn short"
    );
}
