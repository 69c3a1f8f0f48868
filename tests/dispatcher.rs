//! The run dispatcher through the real `launch` binary on the demo backend: a panicking
//! agent, dependants' context, retries as attempts, blocked agents in the store.

mod support;

use support::{TestRepo, read, text};

fn session(repo: &TestRepo) -> String {
    let run = repo.only_run();
    run.file_name()
        .and_then(|n| n.to_str())
        .expect("session dir name")
        .to_owned()
}

/// The JSON turn file of `agent`'s `n`-th turn (`001-plan.json`…) from the store.
fn turn_file(repo: &TestRepo, session: &str, agent: &str, name: &str) -> serde_json::Value {
    let path = format!("/runs/{session}/agents/{agent}/{name}");
    serde_json::from_str(&repo.audit(&["cat", &path])).expect("turn file is JSON")
}

#[test]
fn a_panicking_agent_fails_blocks_its_dependant_and_the_run_ends_non_zero() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5,panic=frontend-ui", &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("frontend-ui (failed)") && stderr.contains("integration-tests (blocked)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ended abnormally: panicked"),
        "the reason names the panic: {stderr}"
    );
    let timeline = repo.timeline();
    assert!(
        timeline.contains("agent_finished backend-api status=succeeded"),
        "the sibling still finishes: {timeline}"
    );
    assert!(
        timeline.contains("agent_finished integration-tests status=blocked by=frontend-ui"),
        "{timeline}"
    );
    let last = timeline.lines().last().unwrap_or_default();
    assert!(last.contains("run_finished status=failed"), "{timeline}");
}

#[test]
fn a_dependant_plan_prompt_quotes_the_final_answers_of_what_it_depends_on() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let session = session(&repo);
    let prompt = turn_file(&repo, &session, "integration-tests", "001-plan.json")["prompt"]
        .as_str()
        .expect("prompt")
        .to_owned();
    for parent in ["backend-api", "frontend-ui"] {
        let answer = turn_file(&repo, &session, parent, "002-follow-up.json")["response"]
            .as_str()
            .expect("response")
            .trim()
            .to_owned();
        assert!(!answer.is_empty(), "{parent} answered");
        let start: String = answer.chars().take(200).collect();
        assert!(
            prompt.contains(&start),
            "the plan prompt of integration-tests quotes {parent}'s answer {start:?}:\n{prompt}"
        );
    }
}

#[test]
fn retries_are_attempts_of_the_same_turn() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5,fail=backend-api:transient:2", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    for line in [
        "turn_started backend-api turn=1 attempt=1",
        "turn_started backend-api turn=1 attempt=2",
        "turn_started backend-api turn=1 attempt=3",
        "turn_started backend-api turn=2 attempt=1",
    ] {
        assert!(timeline.contains(line), "{line}: {timeline}");
    }
    assert!(
        !timeline.contains("turn_started backend-api turn=3"),
        "a two-turn agent has two turns: {timeline}"
    );
    let log = read(&repo.only_run().join("logs/backend-api.log"));
    assert!(log.contains("── turn 1 (attempt 3) plan"), "{log}");
}

#[test]
fn a_blocked_agent_keeps_its_role_kind_and_wave_in_the_store() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5,crash=frontend-ui", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let session = session(&repo);
    let show: serde_json::Value =
        serde_json::from_str(&repo.audit(&["show", &session, "--json"])).expect("show JSON");
    let blocked = show["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["agent"] == "integration-tests")
        .expect("integration-tests in show")
        .clone();
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    assert!(
        !blocked["role"].as_str().unwrap_or_default().is_empty(),
        "{blocked}"
    );
    assert_eq!(blocked["kind"], "dynamic", "{blocked}");
    assert_eq!(blocked["wave"], 1, "{blocked}");
}
