//! Memory artifacts: one per turn in the store, `memory inspect` and `memory condense`
//! (append-only summaries), in the store or in a `--memory-dir` / `CODEX_MEMORY_DIR`.

use std::process::Command;

use orch::audit::{AuditOptions, AuditTarget};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_lists_artifacts_and_condense_only_appends_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-131313-0001";
    simulate_run(AuditTarget::Local(db.clone()), session, &Shape::default()).await;

    let all = json(&orch_audit(
        &db,
        &["memory", "inspect", "--json", "--limit", "100"],
    ));
    assert_eq!(all.as_array().unwrap().len(), 8, "one artifact per turn");
    let builder = json(&orch_audit(
        &db,
        &[
            "memory",
            "inspect",
            "--agent",
            "builder",
            "--type",
            "follow-up",
            "--json",
        ],
    ));
    assert_eq!(builder.as_array().unwrap().len(), 1);
    let doc = &builder[0]["document"];
    assert_eq!(doc["role"], "builder");
    assert_eq!(doc["tags"], serde_json::json!(["dynamic-blueprint"]));
    assert!(
        builder[0]["path"]
            .as_str()
            .unwrap()
            .starts_with("/memory/artifacts/20")
    );
    assert!(
        doc["response"].as_str().unwrap().chars().count() <= 201,
        "previews without --content"
    );
    let full = json(&orch_audit(
        &db,
        &[
            "memory",
            "inspect",
            "--agent",
            "builder",
            "--limit",
            "1",
            "--content",
            "--json",
        ],
    ));
    assert!(full[0]["document"]["response"].as_str().unwrap().len() > 4096);

    // Nothing is older than a day yet.
    let none = orch_audit(&db, &["memory", "condense", "--days", "1"]);
    assert_eq!(stdout(&none), "nothing to condense\n");
    let condensed = json(&orch_audit(
        &db,
        &[
            "memory",
            "condense",
            "--days",
            "0",
            "--min-group-size",
            "1",
            "--json",
        ],
    ));
    assert_eq!(
        condensed["appended"].as_array().unwrap().len(),
        8,
        "(agent, type) groups"
    );
    let summaries = json(&orch_audit(
        &db,
        &[
            "memory", "inspect", "--type", "summary", "--agent", "planner", "--json",
        ],
    ));
    assert_eq!(summaries.as_array().unwrap().len(), 2);
    let related = summaries[0]["document"]["relatedArtifacts"]
        .as_array()
        .unwrap();
    assert_eq!(related.len(), 1);
    assert!(
        orch_audit(&db, &["cat", related[0].as_str().unwrap()])
            .status
            .success(),
        "originals stay"
    );
    let again = json(&orch_audit(
        &db,
        &[
            "memory",
            "condense",
            "--days",
            "0",
            "--min-group-size",
            "1",
            "--json",
        ],
    ));
    assert_eq!(
        again["appended"].as_array().unwrap().len(),
        0,
        "already summarized"
    );
    let after = json(&orch_audit(
        &db,
        &["memory", "inspect", "--json", "--limit", "100"],
    ));
    assert_eq!(after.as_array().unwrap().len(), 16);
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_dir_mirrors_artifacts_and_takes_the_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let memory = dir.path().join("memory");
    let options = AuditOptions {
        memory_dir: Some(memory.clone()),
        ..AuditOptions::default()
    };
    simulate_run_with(
        AuditTarget::Local(db.clone()),
        "run-20261122-141414-0002",
        &Shape::default(),
        options,
    )
    .await;
    assert_eq!(std::fs::read_dir(&memory).unwrap().count(), 8);

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orch-audit"))
            .args(["--audit-path", db.to_str().unwrap()])
            .args(args)
            .env("CODEX_MEMORY_DIR", &memory)
            .output()
            .unwrap()
    };
    let listed = json(&run(&["memory", "inspect", "--agent", "planner", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        listed[0]["path"]
            .as_str()
            .unwrap()
            .starts_with(memory.to_str().unwrap())
    );
    let condensed = json(&run(&[
        "memory",
        "condense",
        "--days",
        "0",
        "--min-group-size",
        "2",
        "--json",
    ]));
    assert_eq!(
        condensed["appended"].as_array().unwrap().len(),
        0,
        "each (agent, type) group has one artifact"
    );
    let condensed = json(&run(&[
        "memory",
        "condense",
        "--days",
        "0",
        "--min-group-size",
        "1",
        "--json",
    ]));
    assert_eq!(condensed["appended"].as_array().unwrap().len(), 8);
    assert_eq!(
        std::fs::read_dir(&memory).unwrap().count(),
        16,
        "summaries appended, nothing deleted"
    );
}
