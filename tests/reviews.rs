//! Reviews through the real `launch` binary: a writer on a fake `codex`, reviewed by a
//! fake `claude` (another backend). A malformed verdict gets one repair turn; a failed
//! verdict goes back to the writer as a fix turn; the reviewer looks again at the fix
//! in the writer's worktree. A reviewer that keeps failing the work pauses the run for
//! the user (`needs-you`), who is notified and lets it try again with `ctl resume`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{TestRepo, git, read, text, wait_for};

/// A `codex` that writes `<agent>.txt` for a planned turn and `fix.txt` for a fix turn
/// (a prompt that names no agent), keeping each prompt in `$PROMPTS`.
const CODEX: &str = r#"#!/bin/sh
prompt=$(cat)
printf '%s' "$prompt" > "$(mktemp "$PROMPTS/codex.XXXXXX")"
agent=$(printf '%s' "$prompt" | sed -n 's/.*(agent `\([^`]*\)`).*/\1/p' | head -n 1)
if [ -n "$agent" ]; then echo "work of $agent" >> "$agent.txt"; else echo fixed >> fix.txt; fi
echo '{"type":"thread.started","thread_id":"t-writer"}'
echo '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}'
"#;

/// A `claude` reviewer. Its first answer is not JSON; after that it passes the work
/// once `fix.txt` is in its working directory (the writer's worktree) or `$STATE/pass`
/// exists, and fails it otherwise. Each call's prompt and arguments are kept.
const CLAUDE: &str = r#"#!/bin/sh
prompt=$(cat)
n=$(ls "$PROMPTS" | grep -c '^claude' || true)
printf '%s' "$prompt" > "$PROMPTS/claude.$n"
printf '%s\n' "$@" > "$PROMPTS/args.$n"
if [ "$n" = 0 ]; then
  answer='It looks fine to me.'
elif [ -f fix.txt ] && [ ! -f "$STATE/strict" ] || [ -f "$STATE/pass" ]; then
  answer='{"verdict":"pass","points":[{"point":"fix.txt exists","pass":true,"note":""}]}'
else
  answer='{"verdict":"fail","points":[{"point":"fix.txt exists","pass":false,"note":"create fix.txt"},{"point":"writer.txt exists","pass":true}]}'
fi
json=$(printf '%s' "$answer" | sed 's/\\/\\\\/g; s/"/\\"/g')
echo '{"type":"system","subtype":"init","session_id":"s-critic","model":"claude-sonnet-4-5"}'
echo "{\"type\":\"assistant\",\"session_id\":\"s-critic\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"$json\"}],\"usage\":{\"input_tokens\":20,\"output_tokens\":8}}}"
echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"session_id\":\"s-critic\",\"result\":\"$json\",\"usage\":{\"input_tokens\":20,\"output_tokens\":8}}"
"#;

fn orch_kdl(max_rounds: u32) -> String {
    format!(
        r#"
reviewer "critic" backend="claude" model="claude-sonnet-4-5" prompt="Check that fix.txt exists."
agent "writer" {{
    role "Writer"
    permissions "edit"
    plan-prompt "Write your file."
    follow-up-enabled #false
    review "critic" max-rounds={max_rounds}
}}
"#
    )
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `launch` on the writer's squad, with both fake CLIs; not yet started.
fn command(repo: &TestRepo, max_rounds: u32, extra: &[&str]) -> Command {
    std::fs::write(repo.root().join("orch.kdl"), orch_kdl(max_rounds)).unwrap();
    let codex = script(repo.dir.path(), "codex", CODEX);
    let claude = script(repo.dir.path(), "claude", CLAUDE);
    for dir in ["prompts", "state"] {
        std::fs::create_dir_all(repo.dir.path().join(dir)).unwrap();
    }
    let mut cmd = repo.launch();
    cmd.args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .args(["--notify", "none"])
        .args(extra)
        .env("ORCH_CODEX_BIN", &codex)
        .env("ORCH_CLAUDE_BIN", &claude)
        .env("PROMPTS", repo.dir.path().join("prompts"))
        .env("STATE", repo.dir.path().join("state"));
    cmd
}

/// `launch ctl resume --session SESSION`, then waits for the run to succeed.
fn resume_and_finish(
    repo: &TestRepo,
    session: &str,
    mut launch: std::process::Child,
    stderr_path: &Path,
) {
    let resumed = repo
        .launch()
        .args(["ctl", "resume", "--session", session])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let status = launch.wait().unwrap();
    assert!(status.success(), "{}", read(stderr_path));
}

fn prompt_files(repo: &TestRepo, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo.dir.path().join("prompts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort_by_key(|n| {
        n.rsplit('.')
            .next()
            .and_then(|k| k.parse::<u32>().ok())
            .unwrap_or(0)
    });
    names
        .iter()
        .map(|n| read(&repo.dir.path().join("prompts").join(n)))
        .collect()
}

#[test]
fn a_reviewer_on_another_backend_repairs_its_verdict_fails_once_then_passes() {
    let repo = TestRepo::new();
    let out = command(&repo, 3, &[]).output().expect("run launch");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // The reviewer: a review, one repair of its prose answer, a second look.
    let reviews = prompt_files(&repo, "claude");
    assert_eq!(reviews.len(), 3, "{reviews:#?}");
    let has = |n: usize, text: &str| {
        assert!(
            reviews[n].contains(text),
            "review {n} lacks {text:?}: {}",
            reviews[n]
        );
    };
    has(0, "## Its task");
    has(0, "Write your file.");
    has(0, "writer.txt"); // the diff
    has(0, "Check that fix.txt exists.");
    has(1, "could not be read");
    has(2, "worked on the points you failed");
    has(2, "fix.txt"); // the new diff
    // On its own backend and model, read-only, resumed on its own conversation.
    let args = read(&repo.dir.path().join("prompts/args.0"));
    assert!(args.contains("claude-sonnet-4-5"), "{args}");
    let args = read(&repo.dir.path().join("prompts/args.2"));
    assert!(args.contains("--resume=s-critic"), "{args}");

    // The writer: its turn, then one fix turn quoting the failed point only.
    let codex = prompt_files(&repo, "codex");
    assert_eq!(codex.len(), 2, "{codex:#?}");
    let fix = codex
        .iter()
        .find(|p| p.contains("does not accept your work yet"))
        .expect("a fix prompt");
    assert!(
        fix.contains("(critic)") && fix.contains("- fix.txt exists: create fix.txt"),
        "{fix}"
    );
    assert!(!fix.contains("writer.txt exists"), "{fix}");

    // The log, the timeline and the store tell it; both turns' work is merged.
    let log = read(&repo.only_run().join("logs/writer.log"));
    assert!(
        log.contains(
            "writer review 1 by critic failed: 1 of 2 points (fix.txt exists: create fix.txt)"
        ),
        "{log}"
    );
    assert!(log.contains("writer review 2 by critic passed"), "{log}");
    // Each turn says why it was taken.
    for why in [
        "plan (reviewer critic) · backend claude · model claude-sonnet-4-5",
        "follow-up (reviewer critic, repair) · backend claude",
        "follow-up (review fix) · backend codex",
    ] {
        assert!(log.contains(why), "{why}: {log}");
    }
    let session = repo.only_run();
    let session = session.file_name().unwrap().to_str().unwrap();
    let events = repo.audit(&["events", session]);
    assert_eq!(events.matches("review_finished").count(), 2, "{events}");
    let show = |path: &str| git(&repo.root(), &["show", &format!("orch/{session}:{path}")]);
    assert_eq!(show("writer.txt"), "work of writer\n");
    assert_eq!(show("fix.txt"), "fixed\n");
    let verify = repo
        .audit_command()
        .args(["verify", session])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

#[test]
fn a_reviewer_that_keeps_failing_pauses_the_run_for_you_until_resumed() {
    let repo = TestRepo::new();
    let notes = repo.dir.path().join("notes.jsonl");
    let notify = format!("cat >> '{}'", notes.display());
    // The reviewer fails the work even after the fix, until `$STATE/pass` exists.
    std::fs::create_dir_all(repo.dir.path().join("state")).unwrap();
    std::fs::write(repo.dir.path().join("state/strict"), "").unwrap();
    let stderr_path = repo.dir.path().join("launch.stderr");
    let launch = command(
        &repo,
        1,
        &["--session", "review", "--notify-command", &notify],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&stderr_path).unwrap())
    .spawn()
    .expect("spawn launch");
    wait_for("the needs-you pause", Duration::from_secs(60), || {
        read(&notes).contains("needs_you")
    });
    let stderr = read(&stderr_path);
    assert!(stderr.contains("`writer` needs you: reviewer `critic` still fails its work after 1 round(s): fix.txt exists"), "{stderr}");
    let status = repo
        .launch()
        .args(["ctl", "status", "--session", "review"])
        .output()
        .unwrap();
    let status = text(&status.stdout);
    assert!(status.contains("needs you: reviewer `critic`"), "{status}");
    let interrupts = read(&repo.only_run().join("logs/interrupt.log"));
    assert!(
        interrupts.contains("needs-you: writer: reviewer `critic` still fails"),
        "{interrupts}"
    );
    assert!(interrupts.contains("writer needs you"), "{interrupts}");

    // The user decides the work is fine; the reviewer looks again and passes it.
    std::fs::write(repo.dir.path().join("state/pass"), "").unwrap();
    resume_and_finish(&repo, "review", launch, &stderr_path);

    // No fix turn after the round limit; one needs-you and one finish notified.
    assert_eq!(prompt_files(&repo, "codex").len(), 1);
    let kinds: Vec<String> = read(&notes)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
        .collect();
    assert_eq!(kinds, ["\"needs_you\"", "\"finished\""], "{}", read(&notes));
    let first: serde_json::Value =
        serde_json::from_str(read(&notes).lines().next().unwrap()).unwrap();
    assert_eq!(first["agent"], "writer");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .starts_with("reviewer `critic`"),
        "{first}"
    );
    let events = repo.audit(&["events", "review"]);
    assert!(events.contains("pause_requested"), "{events}");
}

/// A `codex` whose first call fails (exit 1, an error event) and whose later calls
/// write `<agent>.txt` and succeed.
const FLAKY_CODEX: &str = r#"#!/bin/sh
cat > /dev/null
if [ ! -f "$STATE/failed-once" ]; then
  touch "$STATE/failed-once"
  echo '{"type":"error","message":"model overloaded: upstream said no"}'
  exit 1
fi
echo "work" >> writer.txt
echo '{"type":"thread.started","thread_id":"t-writer"}'
echo '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}'
"#;

#[test]
fn repeated_failures_of_an_agent_pause_the_run_for_you_and_resume_tries_again() {
    let repo = TestRepo::new();
    std::fs::write(
        repo.root().join("orch.kdl"),
        r#"
retry { max-tries 1; needs-you-after 1; }
agent "writer" {
    role "Writer"
    permissions "edit"
    plan-prompt "Write your file."
    follow-up-enabled #false
}
"#,
    )
    .unwrap();
    let codex = script(repo.dir.path(), "codex", FLAKY_CODEX);
    let state = repo.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let notes = repo.dir.path().join("notes.jsonl");
    let stderr_path = repo.dir.path().join("launch.stderr");
    let launch = repo
        .launch()
        .args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .args(["--session", "flaky", "--notify", "none", "--notify-command"])
        .arg(format!("cat >> '{}'", notes.display()))
        .env("ORCH_CODEX_BIN", &codex)
        .env("STATE", &state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn launch");
    wait_for("the needs-you pause", Duration::from_secs(60), || {
        read(&notes).contains("needs_you")
    });
    let note: serde_json::Value =
        serde_json::from_str(read(&notes).lines().next().unwrap()).unwrap();
    assert_eq!(note["agent"], "writer");
    let reason = note["reason"].as_str().unwrap();
    assert!(
        reason.contains("1 failed attempt in a row") && reason.contains("exit status: 1"),
        "{reason}"
    );
    resume_and_finish(&repo, "flaky", launch, &stderr_path);
    assert_eq!(
        git(&repo.root(), &["show", "orch/flaky:writer.txt"]),
        "work\n"
    );
}
