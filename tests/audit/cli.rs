//! `orch-audit` commands against a simulated run.

use orch::audit::AuditTarget;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_run_is_listed_shown_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(".orch/audit.db");
    let session = "run-20261122-101010-abcd";
    let published = simulate_run(AuditTarget::Local(db.clone()), session, &Shape::default()).await;

    let runs = json(&orch_audit(&db, &["runs", "--json"]));
    assert_eq!(runs[0]["session"], session);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["agents"], 4);
    assert_eq!(runs[0]["events"], published as i64);
    assert_eq!(runs[0]["input_tokens"], 4 * (1001 + 1002));

    let show = json(&orch_audit(&db, &["show", session, "--json"]));
    assert_eq!(show["agents"].as_array().unwrap().len(), 4);
    assert_eq!(show["agents"][2]["turns"][1]["type"], "follow-up");
    assert_eq!(show["waves"][0]["kind"], "core");
    let text = stdout(&orch_audit(&db, &["show", session]));
    assert!(
        text.contains("builder (builder, core, wave 1)  succeeded"),
        "{text}"
    );

    let turns = json(&orch_audit(
        &db,
        &[
            "turns", session, "--agent", "builder", "--type", "plan", "--json",
        ],
    ));
    assert_eq!(turns.as_array().unwrap().len(), 1);
    assert_eq!(turns[0]["tags"][0], "dynamic-blueprint");

    let events = json(
        &orch_audit(
            &db,
            &[
                "events", session, "--agent", "planner", "--kind", "command", "--json",
            ],
        )
        .clone_with_array(),
    );
    assert_eq!(
        events.as_array().unwrap().len(),
        4,
        "2 commands per turn, 2 turns"
    );
    let first_three = json(
        &orch_audit(
            &db,
            &[
                "events", session, "--agent", "planner", "--kind", "command", "--limit", "3",
                "--json",
            ],
        )
        .clone_with_array(),
    );
    assert_eq!(
        first_three.as_array().unwrap()[..],
        events.as_array().unwrap()[..3],
        "--limit keeps the first events"
    );

    let ls = json(&orch_audit(
        &db,
        &["ls", &format!("/runs/{session}/agents/planner"), "--json"],
    ));
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["001-plan.json", "002-follow-up.json"]);
    let turn_file = orch_audit(
        &db,
        &[
            "cat",
            &format!("/runs/{session}/agents/planner/002-follow-up.json"),
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&turn_file.stdout).unwrap();
    assert_eq!(doc["thread_id"], "thread-planner");
    assert_eq!(doc["type"], "follow-up");
    assert!(
        doc["response"].as_str().unwrap().len() > 4096,
        "spans several chunks"
    );

    let jsonl = stdout(&orch_audit(
        &db,
        &["cat", &format!("/runs/{session}/events/planner.jsonl")],
    ));
    let timeline = stdout(&orch_audit(
        &db,
        &["cat", &format!("/runs/{session}/events/timeline.jsonl")],
    ));
    let exported = stdout(&orch_audit(&db, &["export", session, "--format", "jsonl"]));
    assert_eq!(exported.lines().count(), published);
    assert!(jsonl.lines().count() > 10 && timeline.contains("run_finished"));
    let interrupt = json(&orch_audit(
        &db,
        &["cat", &format!("/runs/{session}/interrupt-1.json")],
    ));
    assert_eq!(interrupt["number"], 1);

    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(
        stdout(&verify).starts_with("ok: 1 runs"),
        "{}",
        stdout(&verify)
    );
}

trait CloneWithArray {
    fn clone_with_array(&self) -> std::process::Output;
}

/// `events --json` prints JSON lines; wrap them into one array for `json()`.
impl CloneWithArray for std::process::Output {
    fn clone_with_array(&self) -> std::process::Output {
        let lines: Vec<&str> = std::str::from_utf8(&self.stdout).unwrap().lines().collect();
        let mut out = self.clone();
        out.stdout = format!("[{}]", lines.join(",")).into_bytes();
        out
    }
}

#[test]
fn a_missing_store_or_session_has_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = orch_audit(&dir.path().join("nope.db"), &["runs"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no audit store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_turn_never_overwrites_the_first_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-191919-0007";
    let redactor = redactor();
    let sink = orch::audit::AuditSink::open_shared(
        AuditTarget::Local(db.clone()),
        meta(session, "p"),
        &redactor,
    )
    .unwrap();
    let (bus, thread) = orch::events::SinkThread::spawn(vec![Box::new(sink)], redactor);
    // The same agent twice (a resumed run redoing a turn): both records are kept.
    publish_agent(
        &bus,
        "planner",
        "planner",
        orch::agent::backend::AgentKind::Core,
        &[],
        1,
        1,
    )
    .await;
    publish_agent(
        &bus,
        "planner",
        "planner",
        orch::agent::backend::AgentKind::Core,
        &[],
        1,
        1,
    )
    .await;
    thread.finish().await;
    let ls = json(&orch_audit(
        &db,
        &["ls", &format!("/runs/{session}/agents/planner"), "--json"],
    ));
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "001-plan-2.json",
            "001-plan.json",
            "002-follow-up-2.json",
            "002-follow-up.json"
        ]
    );
    assert!(orch_audit(&db, &["verify"]).status.success());
}
