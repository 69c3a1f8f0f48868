//! Budgets and cost through the real `launch` binary on the demo backend: a run over its
//! `--max-tokens` pauses with the budget named, a plain `ctl resume` is refused, and
//! `ctl resume --max-tokens N` lets it finish with every turn once in the store; a
//! `price` in `orch.kdl` sets the cost `--metrics` and `orch-audit show` report, and
//! `--max-cost` pauses the same way.

mod support;

use std::process::Stdio;
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
        .demo_command(&[
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
    let events = repo.audit(&["events", "budget"]);
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

/// One demo agent on a model priced in `orch.kdl` at $1 per thousand tokens both ways,
/// so the cost is the token count in thousandths of a dollar.
const PRICED: &str = r#"
price "house-model" input=1000 output=1000
agent "solo" {
    role "Solo"
    plan-prompt "Outline the plan."
    follow-up-prompt "Write the final plan."
}
"#;

/// A demo run (session `priced`) of `config` on `house-model` with `--metrics`: the
/// repo, and what the run printed.
fn run_with_metrics(config: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    std::fs::write(repo.root().join("orch.kdl"), config).unwrap();
    let out = repo
        .demo_command(&[
            "--session",
            "priced",
            "--model",
            "house-model",
            "--metrics",
            "--demo-scenario",
            "delay=0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (repo, printed)
}

/// The `--metrics` row of the agent `solo`.
fn solo_row(metrics: &str) -> &str {
    metrics
        .lines()
        .find(|l| l.starts_with("solo "))
        .unwrap_or_else(|| panic!("{metrics}"))
}

#[test]
fn a_price_in_orch_kdl_gives_the_cost_that_metrics_and_orch_audit_show_report() {
    let (repo, metrics) = run_with_metrics(PRICED);
    let solo = solo_row(&metrics);
    let numbers: Vec<&str> = solo.split_whitespace().collect();
    // agent wave status input cached output cost
    let input: u64 = numbers[3].parse().unwrap();
    let cached: u64 = numbers[4].parse().unwrap();
    let output: u64 = numbers[5].parse().unwrap();
    // Cached input is billed at the input rate here (no `cached-input`).
    let dollars = (input + output) as f64 / 1000.0;
    assert!(cached <= input, "{solo}");
    assert_eq!(numbers[6], format!("${dollars:.4}"), "{metrics}");
    assert!(
        metrics.contains(&format!("${dollars:.4}")) && metrics.contains("(run total)"),
        "{metrics}"
    );
    let show = repo.audit(&["show", "priced"]);
    assert!(show.contains(&format!("cost ${dollars:.4}")), "{show}");

    // Without the price the same model counts tokens only, and the run says so once.
    let (repo, metrics) =
        run_with_metrics(&PRICED.replace("price \"house-model\" input=1000 output=1000\n", ""));
    let timeline = repo.timeline();
    assert_eq!(
        timeline.matches("no price for model `house-model`").count(),
        1,
        "{timeline}"
    );
    let solo = solo_row(&metrics);
    assert!(solo.trim_end().ends_with(" -"), "{solo}");
}

#[test]
fn a_spent_cost_budget_pauses_the_run_until_resumed_with_a_larger_one() {
    let repo = TestRepo::new();
    // A second agent after the first, so the run has work left when the budget runs out.
    let config = format!(
        "{PRICED}agent \"second\" {{\n    role \"Second\"\n    plan-prompt \"Go on.\"\n    depends-on \"solo\"\n}}\n"
    );
    std::fs::write(repo.root().join("orch.kdl"), config).unwrap();
    let stderr_path = repo.dir.path().join("launch.stderr");
    // A turn of the demo costs about $0.25 at this price: the budget runs out after the
    // first agent.
    let mut launch = repo
        .demo_command(&[
            "--session",
            "costly",
            "--model",
            "house-model",
            "--max-cost",
            "0.15",
            "--demo-scenario",
            "delay=0",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn launch");
    wait_for("the cost budget pause", Duration::from_secs(60), || {
        read(&stderr_path).contains("paused: the cost budget is spent")
    });
    let refused = ctl(&repo, &["resume", "--session", "costly"]);
    assert!(!refused.status.success());
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(said.contains("--max-cost"), "{said}");
    let bad = ctl(
        &repo,
        &["resume", "--session", "costly", "--max-cost", "-1"],
    );
    assert!(!bad.status.success());
    let resumed = ctl(
        &repo,
        &["resume", "--session", "costly", "--max-cost", "100"],
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let status = launch.wait().expect("wait for launch");
    assert!(status.success(), "{}", read(&stderr_path));
    let interrupts = read(&repo.only_run().join("logs/interrupt.log"));
    assert!(
        interrupts.contains("budget: --max-cost $0.1500 reached"),
        "{interrupts}"
    );
}

#[test]
fn an_agents_own_max_tokens_pauses_the_run_and_a_plain_resume_gives_it_more() {
    let repo = TestRepo::new();
    // A two-turn demo agent allowed fewer tokens than its first turn uses.
    std::fs::write(
        repo.root().join("orch.kdl"),
        r#"
agent "solo" {
    role "Solo"
    plan-prompt "Outline the plan."
    follow-up-prompt "Write the final plan."
    max-tokens 50
}
"#,
    )
    .unwrap();
    let stderr_path = repo.dir.path().join("launch.stderr");
    let mut launch = repo
        .demo_command(&["--session", "own", "--demo-scenario", "delay=0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn launch");
    wait_for("the agent's budget pause", Duration::from_secs(60), || {
        read(&stderr_path).contains("paused: the agent `solo` token budget is spent")
    });
    let said = read(&stderr_path);
    assert!(
        said.contains("`launch ctl resume --session own` gives `solo` its budget again"),
        "{said}"
    );
    // A plain resume is the answer: the agent gets its 50 tokens again and finishes.
    let resumed = ctl(&repo, &["resume", "--session", "own"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let status = launch.wait().expect("wait for launch");
    assert!(status.success(), "{}", read(&stderr_path));
    let interrupts = read(&repo.only_run().join("logs/interrupt.log"));
    assert!(
        interrupts.contains("budget: max-tokens 50 of agent `solo` reached"),
        "{interrupts}"
    );
    let timeline = repo.timeline();
    assert!(
        timeline.contains("agent `solo` may use 50 more tokens"),
        "{timeline}"
    );
}
