//! Gates through the real `launch` binary: a gate that fails once gets one fix turn and
//! the agent succeeds; a gate that always fails ends the agent after its runs, blocks its
//! dependant and fails the run; an integrated gate the fix turns cannot mend pauses the
//! run for the user, who mends it in the agent's worktree and resumes.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use support::{TestRepo, git, read, text};

/// A `codex` that keeps each prompt it gets (in `$PROMPTS`), writes `<agent>.txt` in
/// its working directory (`fix.txt` for a prompt that names no agent: a fix turn) and
/// answers.
const CODEX: &str = r#"#!/bin/sh
prompt=$(cat)
printf '%s' "$prompt" > "$(mktemp "$PROMPTS/prompt.XXXXXX")"
agent=$(printf '%s' "$prompt" | sed -n 's/.*(agent `\([^`]*\)`).*/\1/p' | head -n 1)
if [ -n "$agent" ]; then echo "work of $agent" >> "$agent.txt"; else echo fixed >> fix.txt; fi
echo '{"type":"thread.started","thread_id":"t-gate"}'
echo '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":1}}'
"#;

fn run(repo: &TestRepo, orch_kdl: &str, extra: &[&str]) -> Output {
    std::fs::write(repo.root().join("orch.kdl"), orch_kdl).unwrap();
    let codex = repo.dir.path().join("codex");
    std::fs::write(&codex, CODEX).unwrap();
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prompts = repo.dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    repo.launch()
        .args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .args(extra)
        .env("ORCH_CODEX_BIN", &codex)
        .env("PROMPTS", &prompts)
        .output()
        .expect("run launch")
}

fn prompts(repo: &TestRepo) -> Vec<String> {
    std::fs::read_dir(repo.dir.path().join("prompts"))
        .unwrap()
        .map(|e| read(&e.unwrap().path()))
        .collect()
}

fn events(repo: &TestRepo) -> String {
    let session = repo.only_run();
    let session = session.file_name().unwrap().to_str().unwrap();
    repo.audit(&["events", session])
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn a_gate_that_fails_once_gets_one_fix_turn_and_the_agent_succeeds() {
    let repo = TestRepo::new();
    let marker = repo.dir.path().join("gate-ran-once");
    let gate = format!(
        "test -f {m} || {{ touch {m}; echo 'check: 1 failing case'; exit 1; }}",
        m = quoted(&marker)
    );
    let kdl = format!(
        r#"
agent "writer" {{
    role "Writer"
    permissions "edit"
    plan-prompt "Write your file."
    follow-up-enabled #false
    gate {gate:?} timeout-s=60
}}
"#
    );
    let out = run(&repo, &kdl, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let log = read(&repo.only_run().join("logs/writer.log"));
    let gates: Vec<&str> = log.lines().filter(|l| l.contains("── gate ")).collect();
    assert_eq!(gates.len(), 2, "{log}");
    assert!(
        gates[0].contains("(run 1): failed (exit 1)") && gates[0].contains("1 failing case"),
        "{log}"
    );
    assert!(gates[1].contains("(run 2): passed"), "{log}");
    assert!(log.contains("── writer succeeded"), "{log}");

    // One fix turn: the second prompt quotes the gate, its exit code and its output.
    let prompts = prompts(&repo);
    assert_eq!(prompts.len(), 2, "{prompts:#?}");
    let fix = prompts
        .iter()
        .find(|p| p.contains("does not pass its gate"))
        .expect("a fix prompt");
    assert!(
        fix.contains("exit code 1") && fix.contains("1 failing case"),
        "{fix}"
    );

    let events = events(&repo);
    assert_eq!(events.matches("gate_finished").count(), 2, "{events}");
    // Both turns' work is on the run branch.
    let session = repo.only_run();
    let session = session.file_name().unwrap().to_str().unwrap();
    let show = |path: &str| git(&repo.root(), &["show", &format!("orch/{session}:{path}")]);
    assert_eq!(show("writer.txt"), "work of writer\n");
    assert_eq!(show("fix.txt"), "fixed\n");
}

#[test]
fn a_gate_that_always_fails_fails_the_agent_blocks_its_dependant_and_the_run() {
    let repo = TestRepo::new();
    let kdl = r#"
agent "writer" {
    role "Writer"
    permissions "edit"
    plan-prompt "Write your file."
    follow-up-enabled #false
}
agent "after" {
    role "After"
    plan-prompt "Go on."
    follow-up-enabled #false
    depends-on "writer"
}
"#;
    // From the command line: every agent that may change files runs it (`after` is
    // read-only, so it would not).
    let notes = repo.dir.path().join("notes.jsonl");
    let notify = format!("cat >> '{}'", notes.display());
    let out = run(
        &repo,
        kdl,
        &[
            "--gate",
            "echo 'still broken'; exit 2",
            "--notify-command",
            &notify,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "gate `echo 'still broken'; exit 2` still fails after 3 run(s) (exit code 2)"
        ),
        "{stderr}"
    );
    let log = read(&repo.only_run().join("logs/writer.log"));
    assert_eq!(log.matches("── gate ").count(), 3, "{log}");
    assert_eq!(
        prompts(&repo)
            .iter()
            .filter(|p| p.contains("does not pass its gate"))
            .count(),
        2
    );
    let events = events(&repo);
    assert_eq!(events.matches("gate_finished").count(), 3, "{events}");
    assert!(
        events
            .lines()
            .any(|l| l.contains("agent_finished") && l.contains("after") && l.contains("blocked")),
        "{events}"
    );
    // --notify-command heard the failure, naming the agent.
    let note: serde_json::Value = serde_json::from_str(read(&notes).trim()).unwrap();
    assert_eq!(note["event"], "failed");
    assert_eq!(note["agent"], "writer");
    // The failed agent's branch is kept; nothing of it reached the run branch.
    let session = repo.only_run();
    let session = session.file_name().unwrap().to_str().unwrap();
    let branches = git(&repo.root(), &["branch", "--list", "--all"]);
    assert!(
        branches.contains(&format!("orch-agent/{session}/writer")),
        "{branches}"
    );
}

#[test]
fn two_agents_that_pass_alone_but_not_together_the_second_merged_fixes_it() {
    let repo = TestRepo::new();
    // Each agent's own file passes; both together need `fix.txt`.
    let kdl = r#"
gate "[ ! -f a.txt ] || [ ! -f b.txt ] || [ -f fix.txt ] || { echo 'a and b clash'; exit 1; }"
group "pair" {
    orchestration { parallel #true; }
    agent "a" {
        role "A"
        permissions "edit"
        plan-prompt "Write a."
        follow-up-enabled #false
    }
    agent "b" {
        role "B"
        permissions "edit"
        plan-prompt "Write b."
        follow-up-enabled #false
    }
}
"#;
    let out = run(&repo, kdl, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let logs: Vec<String> = ["a", "b"]
        .iter()
        .map(|agent| read(&repo.only_run().join(format!("logs/{agent}.log"))))
        .collect();
    // The agent merged second met the other's work: its gate failed on the integrated
    // tip, one fix turn, then it passed; the first agent's gate ran once.
    let fixed: Vec<&String> = logs
        .iter()
        .filter(|log| log.contains("failed (exit 1)") && log.contains("a and b clash"))
        .collect();
    assert_eq!(fixed.len(), 1, "{logs:#?}");
    assert!(fixed[0].contains("(run 2): passed"), "{}", fixed[0]);
    let fix = prompts(&repo)
        .into_iter()
        .find(|p| p.contains("does not pass its gate"))
        .expect("a fix prompt");
    assert!(fix.contains("together with other agents' work"), "{fix}");
    let session = repo.only_run();
    let session = session.file_name().unwrap().to_str().unwrap();
    let tree = git(
        &repo.root(),
        &["ls-tree", "--name-only", &format!("orch/{session}")],
    );
    for file in ["a.txt", "b.txt", "fix.txt"] {
        assert!(tree.lines().any(|l| l == file), "{file} missing:\n{tree}");
    }
    // The fixed agent's work was committed twice; the store still verifies.
    let verify = repo.audit_command().arg("verify").output().unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
}

#[test]
fn an_integrated_gate_the_fix_turns_cannot_mend_pauses_the_run_for_you() {
    let repo = TestRepo::new();
    // Both together need `mended.txt`, which no agent writes: only the user can.
    let kdl = r#"
gate "[ ! -f a.txt ] || [ ! -f b.txt ] || [ -f mended.txt ] || { echo 'a and b clash'; exit 1; }" max-attempts=2
group "pair" {
    orchestration { parallel #true; }
    agent "a" { role "A"; permissions "edit"; plan-prompt "Write a."; follow-up-enabled #false; }
    agent "b" { role "B"; permissions "edit"; plan-prompt "Write b."; follow-up-enabled #false; }
}
"#;
    std::fs::write(repo.root().join("orch.kdl"), kdl).unwrap();
    let codex = repo.dir.path().join("codex");
    std::fs::write(&codex, CODEX).unwrap();
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prompts = repo.dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    let notes = repo.dir.path().join("notes.jsonl");
    let stderr_path = repo.dir.path().join("launch.stderr");
    let mut launch = repo
        .launch()
        .args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .args(["--session", "pair", "--notify", "none", "--notify-command"])
        .arg(format!("cat >> '{}'", notes.display()))
        .env("ORCH_CODEX_BIN", &codex)
        .env("PROMPTS", &prompts)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn launch");
    support::wait_for(
        "the needs-you pause",
        std::time::Duration::from_secs(60),
        || read(&notes).contains("needs_you"),
    );
    let note: serde_json::Value =
        serde_json::from_str(read(&notes).lines().next().unwrap()).unwrap();
    let agent = note["agent"].as_str().unwrap().to_owned();
    let reason = note["reason"].as_str().unwrap();
    assert!(
        reason.contains("still fails on the integrated run branch after 2 run(s)")
            && reason.contains("a and b clash"),
        "{reason}"
    );
    // The user mends it in the agent's worktree and lets it try again.
    let worktree = repo.root().join(format!(".orch/worktrees/pair/{agent}"));
    std::fs::write(worktree.join("mended.txt"), "by hand\n").unwrap();
    let resumed = repo
        .launch()
        .args(["ctl", "resume", "--session", "pair"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let status = launch.wait().unwrap();
    assert!(status.success(), "{}", read(&stderr_path));
    let tree = git(&repo.root(), &["ls-tree", "--name-only", "orch/pair"]);
    for file in ["a.txt", "b.txt", "mended.txt"] {
        assert!(tree.lines().any(|l| l == file), "{file} missing:\n{tree}");
    }
    let interrupts = read(&repo.only_run().join("logs/interrupt.log"));
    assert!(
        interrupts.contains(&format!("needs-you: {agent}: gate")),
        "{interrupts}"
    );
}

/// `orch.kdl` edited while the run goes on: the run names the change to its gates and
/// keeps checking against the gate it started with (here a gate that would fail).
#[test]
fn a_gate_edited_in_orch_kdl_mid_run_is_named_and_the_run_keeps_its_own() {
    let repo = TestRepo::new();
    let squad = |gate: &str| {
        format!(
            r#"
gate "{gate}" timeout-s=30
agent "first" {{
    role "First"
    permissions "edit"
    plan-prompt "Write your file."
    follow-up-enabled #false
}}
agent "second" {{
    role "Second"
    permissions "edit"
    depends-on "first"
    plan-prompt "Write your file."
    follow-up-enabled #false
}}
"#
        )
    };
    std::fs::write(repo.root().join("orch.kdl"), squad("true")).unwrap();
    let run = repo
        .launch()
        .args(["--prompt", "Ship it", "--backend", "demo", "--mux", "none"])
        .args([
            "--notify",
            "none",
            "--session",
            "kept",
            "--demo-scenario",
            "delay=1500",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let timeline = repo.root().join(".orch/runs/kept/logs/timeline.log");
    support::wait_for(
        "the first agent's turn",
        std::time::Duration::from_secs(60),
        || read(&timeline).contains("turn_started first"),
    );
    std::fs::write(repo.root().join("orch.kdl"), squad("false")).unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = read(&timeline);
    assert!(
        timeline.contains("orch.kdl changed while the run goes on")
            && timeline.contains("no longer gate `true` (every agent")
            && timeline.contains("now also gate `false` (every agent")
            && timeline.contains("keeps checking against the gates and reviews it started with"),
        "{timeline}"
    );
    // Both agents passed the gate the run started with.
    for agent in ["first", "second"] {
        let log = read(
            &repo
                .root()
                .join(format!(".orch/runs/kept/logs/{agent}.log")),
        );
        assert!(log.contains("── gate true (run 1): passed"), "{log}");
        assert!(log.contains(&format!("── {agent} succeeded")), "{log}");
    }
}
