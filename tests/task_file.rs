//! `launch --task-file FILE` through the real binaries on the demo backend: the task
//! file edited while the dynamic wave runs is a new revision in the timeline and the
//! store (SHA-256, diff, whole text); prompts built from then on carry the new text;
//! the next wave is planned by the autonomous orchestrator with the old and the new
//! text, in a run that was not autonomous.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{TestRepo, read, text, wait_for};

const FIRST: &str = "Build a small CLI that greets people.\n";
const SECOND: &str = "Build a small CLI that greets people.\nAlso add rate limiting.\n";

/// `launch --task-file TASK` on the demo backend as session `steered`, not yet started.
fn steered(repo: &TestRepo, task: &std::path::Path, scenario: &str) -> std::process::Command {
    let mut cmd = repo.launch();
    cmd.arg("--task-file")
        .arg(task)
        .args(["--backend", "demo", "--mux", "none", "--notify", "none"])
        .args(["--session", "steered", "--demo-scenario", scenario]);
    cmd
}

/// Waits until run `steered` schedules its dynamic wave; its timeline's path.
fn until_the_dynamic_wave(repo: &TestRepo) -> std::path::PathBuf {
    let timeline = repo.root().join(".orch/runs/steered/logs/timeline.log");
    wait_for("the dynamic wave", Duration::from_secs(120), || {
        read(&timeline).contains("kind=dynamic")
    });
    timeline
}

#[test]
fn an_edited_task_file_is_a_revision_and_the_next_wave_is_planned_with_it() {
    let repo = TestRepo::new();
    // Outside the repository: the user's tree stays as it is.
    let task = repo.dir.path().join("task.md");
    std::fs::write(&task, FIRST).unwrap();
    let run = steered(&repo, &task, "delay=500")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let timeline = until_the_dynamic_wave(&repo);
    std::fs::write(&task, SECOND).unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let timeline = read(&timeline);
    assert!(timeline.contains("task_revised #1 sha256="), "{timeline}");
    assert!(timeline.contains("+Also add rate limiting."), "{timeline}");
    // Both revisions are in the store: the first in `run_started`, the second whole.
    let started = repo.audit(&["events", "steered", "--kind", "run_started", "--json"]);
    assert!(started.contains("greets people"), "{started}");
    assert!(!started.contains("rate limiting"), "{started}");
    let revised = repo.audit(&["events", "steered", "--kind", "task_revised", "--json"]);
    let revised: serde_json::Value = serde_json::from_str(revised.lines().next().unwrap()).unwrap();
    assert_eq!(revised["payload"]["text"], SECOND, "{revised}");
    assert_eq!(revised["payload"]["revision"], 1, "{revised}");

    // The autonomous orchestrator planned the next wave with both texts (the run was
    // not autonomous), and that wave's agents were given the new task.
    let turns: serde_json::Value =
        serde_json::from_str(&repo.audit(&["turns", "steered", "--json", "--content"])).unwrap();
    let turns = turns.as_array().unwrap();
    let planner = turns
        .iter()
        .find(|t| t["agent"] == "autonomous-orchestrator")
        .unwrap_or_else(|| panic!("no autonomous wave: {turns:?}"));
    let prompt = planner["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("The task changed while the squad worked")
            && prompt.contains("Also add rate limiting.")
            && prompt.contains("Before, it said:\n\nBuild a small CLI that greets people.\n\n"),
        "{prompt}"
    );
    let later: Vec<&serde_json::Value> = turns
        .iter()
        .filter(|t| {
            t["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "autonomous")
        })
        .filter(|t| t["agent"] != "autonomous-orchestrator" && t["kind"] == "plan")
        .collect();
    assert!(!later.is_empty(), "{turns:?}");
    for t in later {
        assert!(
            t["prompt"]
                .as_str()
                .unwrap()
                .contains("Also add rate limiting."),
            "{t}"
        );
    }
    assert_eq!(
        support::git(&repo.root(), &["status", "--porcelain"]).trim(),
        ""
    );
}

/// The `task_revised` numbers in the audit store so far (none while it cannot be read).
fn stored_revisions(repo: &TestRepo) -> Vec<u64> {
    let out = repo
        .audit_command()
        .args(["events", "steered", "--kind", "task_revised", "--json"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| event["payload"]["revision"].as_u64())
        .collect()
}

const THIRD: &str =
    "Build a small CLI that greets people.\nAlso add rate limiting.\nAnd a --quiet flag.\n";

#[test]
fn a_resumed_run_numbers_its_revisions_after_the_stored_ones_and_sees_an_edit_made_meanwhile() {
    let repo = TestRepo::new();
    let task = repo.dir.path().join("task.md");
    std::fs::write(&task, FIRST).unwrap();
    let mut run = steered(&repo, &task, "delay=800")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let timeline = until_the_dynamic_wave(&repo);
    std::fs::write(&task, SECOND).unwrap();
    // In the store, not only in the timeline: SIGKILL loses what the audit writer has
    // not committed yet (at most its last 25 ms).
    wait_for("the first revision", Duration::from_secs(60), || {
        read(&timeline).contains("task_revised #1") && stored_revisions(&repo) == [1]
    });
    run.kill().unwrap();
    run.wait().unwrap();
    // Edited while the run is not running.
    std::fs::write(&task, THIRD).unwrap();
    let out = repo
        .launch()
        .args(["resume", "steered", "--mux", "none", "--notify", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let revisions: Vec<(u64, String)> = repo
        .audit(&["events", "steered", "--kind", "task_revised", "--json"])
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                event["payload"]["revision"].as_u64().unwrap(),
                event["payload"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        revisions,
        [(1, SECOND.to_owned()), (2, THIRD.to_owned())],
        "numbered on from the stored revision, the edit made meanwhile included"
    );
    // The resumed run started from the last stored revision.
    let started = repo.audit(&["events", "steered", "--kind", "run_started", "--json"]);
    let last: serde_json::Value = serde_json::from_str(started.lines().last().unwrap()).unwrap();
    assert_eq!(last["payload"]["config"]["prompt"], SECOND, "{last}");
    assert_eq!(last["payload"]["config"]["task_revision"], 1, "{last}");
}

#[test]
fn a_task_file_that_is_missing_empty_or_given_with_a_prompt_is_refused() {
    let repo = TestRepo::new();
    let missing = repo.dir.path().join("nope.md");
    let out = repo
        .launch()
        .arg("--task-file")
        .arg(&missing)
        .args(["--backend", "demo", "--mux", "none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nope.md"),
        "{}",
        text(&out.stderr)
    );
    let empty = repo.dir.path().join("empty.md");
    std::fs::write(&empty, "  \n").unwrap();
    let out = repo
        .launch()
        .arg("--task-file")
        .arg(&empty)
        .args(["--backend", "demo", "--mux", "none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is empty"),
        "{}",
        text(&out.stderr)
    );
    let both = repo
        .launch()
        .args(["--prompt", "x", "--task-file"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}
