//! Budgets through the real `launch` binary on the demo backend: a run over its
//! `--max-tokens` pauses with the budget named, a plain `ctl resume` is refused, and
//! `ctl resume --max-tokens N` lets it finish with every turn once in the store.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{TestRepo, read, text, wait_for};

fn ctl(repo: &TestRepo, args: &[&str]) -> std::process::Output {
    repo.launch()
        .arg("ctl")
        .args(args)
        .output()
        .expect("run launch ctl")
}

#[test]
fn a_spent_token_budget_pauses_the_run_until_resumed_with_a_larger_one() {
    let repo = TestRepo::new();
    let stderr_path = repo.dir.path().join("launch.stderr");
    // Each payload appended as one line to a file the test reads.
    let notes = repo.dir.path().join("notes.jsonl");
    let notify_command = format!("cat >> '{}'", notes.display());
    // The demo's planner alone uses about 380 tokens.
    let mut launch = repo
        .launch()
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
            "--session",
            "budget",
            "--max-tokens",
            "300",
            "--demo-scenario",
            "delay=0",
            "--notify-command",
            &notify_command,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn launch");
    wait_for("the budget pause", Duration::from_secs(60), || {
        read(&stderr_path).contains("paused: the token budget is spent")
    });
    let status = ctl(&repo, &["status", "--session", "budget", "--json"]);
    assert!(
        text(&status.stdout).contains("\"paused\""),
        "{}",
        text(&status.stdout)
    );

    // A plain resume is refused, and says how to go on.
    let refused = ctl(&repo, &["resume", "--session", "budget"]);
    assert!(!refused.status.success());
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(said.contains("--max-tokens"), "{said}");

    let resumed = ctl(
        &repo,
        &["resume", "--session", "budget", "--max-tokens", "1000000"],
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let status = launch.wait().expect("wait for launch");
    let stderr = read(&stderr_path);
    assert!(status.success(), "{stderr}");

    // The summary names the budget; every turn is in the store once.
    let interrupts = read(&repo.only_run().join("logs/interrupt.log"));
    assert!(
        interrupts.contains("budget: --max-tokens 300 reached"),
        "{interrupts}"
    );
    let events = Command::new(env!("CARGO_BIN_EXE_orch-audit"))
        .current_dir(repo.root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", repo.dir.path().join("home"))
        .args(["events", "budget"])
        .output()
        .unwrap();
    let events = text(&events.stdout);
    // --notify-command heard the budget pause (it needs the user) and the end.
    let notes: Vec<serde_json::Value> = read(&notes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let kinds: Vec<&str> = notes.iter().map(|n| n["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["needs_you", "finished"], "{notes:#?}");
    assert!(
        notes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("--max-tokens 300")
    );
    assert_eq!(notes[0]["run"], "budget");
    let mut turns: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("turn_started"))
        .collect();
    let all = turns.len();
    assert!(all >= 6, "{events}");
    turns.sort();
    turns.dedup();
    assert_eq!(turns.len(), all, "a turn ran twice:\n{events}");
}
