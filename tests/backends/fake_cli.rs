//! The CLI backends' command lines and process handling, checked with stand-in
//! programs (shell scripts) that record their arguments and replay a fixture: the
//! claude and gemini CLIs are not installed in CI, and a crash is easiest to script.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::agent::settings::{BackendSettings, CliSettings};
use orch::agent::{AgentEvent, TurnOutcome, build_backend};

use crate::support::{collecting_bus, request, turn_events};

/// Writes an executable script that records "$@" to `args` and its stdin to `stdin`,
/// then runs `body`.
pub(crate) fn fake_cli(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$ARGS_FILE\"\ncat > \"$ARGS_FILE.stdin\"\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub(crate) fn settings(dir: &Path, cli: &str, bin: PathBuf) -> BackendSettings {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut settings = BackendSettings {
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("ARGS_FILE".into(), dir.join("args").into_os_string()),
            ("FIXTURES".into(), fixtures.into()),
        ],
        ..BackendSettings::default()
    };
    let cli_settings = CliSettings {
        bin: Some(bin),
        model: Some("default-model".into()),
        ..CliSettings::default()
    };
    match cli {
        "claude" => {
            settings.claude = CliSettings {
                extra_args: settings.claude.extra_args.clone(),
                ..cli_settings
            }
        }
        "gemini" => {
            settings.gemini = CliSettings {
                extra_args: settings.gemini.extra_args.clone(),
                ..cli_settings
            }
        }
        _ => settings.codex = cli_settings,
    }
    settings
}

async fn run(
    backend_name: &str,
    body: &str,
    resume: Option<&str>,
    prompt: &str,
) -> (orch::agent::TurnResult, Vec<String>, Vec<AgentEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_cli(dir.path(), backend_name, body);
    let backend = build_backend(backend_name, &settings(dir.path(), backend_name, bin)).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let mut req = request("builder", 2, prompt, dir.path());
    req.resume = resume.map(str::to_string);
    req.model = Some("agent-model".into());
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        backend.turn(&req, &turn_events(&bus, "builder", 2)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    bus.flush().await;
    let args = std::fs::read_to_string(dir.path().join("args"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let stdin = std::fs::read_to_string(dir.path().join("args.stdin")).unwrap();
    assert_eq!(stdin, prompt, "the prompt did not arrive on stdin");
    let events = collected.events();
    sinks.finish().await;
    (result, args, events)
}

#[tokio::test]
async fn claude_gets_stream_json_flags_and_resumes_by_session_id() {
    let (result, args, events) = run(
        "claude",
        "cat \"$FIXTURES/claude/success.jsonl\"",
        Some("5b0c2e1a"),
        "-starts with a dash",
    )
    .await;
    assert_eq!(
        args,
        [
            "-p",
            "--input-format",
            "text",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "agent-model",
            "--resume=5b0c2e1a",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Bash",
        ]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("5b0c2e1a-8f3d-4c6b-9a71-2d4e6f8a0b13")
    );
    assert_eq!(
        events.last(),
        Some(&AgentEvent::Finished {
            outcome: TurnOutcome::Completed
        })
    );
}

#[tokio::test]
async fn gemini_gets_stream_json_flags_and_resumes_by_session_id() {
    let (result, args, _) = run(
        "gemini",
        "cat \"$FIXTURES/gemini/success.jsonl\"",
        Some("7e3f"),
        "-p is not a flag here",
    )
    .await;
    assert_eq!(
        args,
        [
            "-o",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--skip-trust",
            "-m",
            "agent-model",
            "-r",
            "7e3f",
        ]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.response,
        "Fixed the loop bound; all parser tests pass now."
    );
}

#[tokio::test]
async fn codex_command_lines_for_plan_and_resume() {
    let (_, plan_args, _) = run(
        "codex",
        "cat \"$FIXTURES/codex/completed.jsonl\"",
        None,
        "plan it",
    )
    .await;
    assert_eq!(
        plan_args,
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-m",
            "agent-model",
            "--sandbox",
            "workspace-write",
            "--",
            "-"
        ]
    );
    let (result, resume_args, _) = run(
        "codex",
        "cat \"$FIXTURES/codex/completed.jsonl\"",
        Some("0199f3c1"),
        "follow up",
    )
    .await;
    assert_eq!(
        resume_args,
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-m",
            "agent-model",
            "-c",
            "sandbox_mode=\"workspace-write\"",
            "resume",
            "--",
            "0199f3c1",
            "-"
        ]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
}

#[tokio::test]
async fn a_crashed_agent_is_interrupted_and_its_stderr_is_kept() {
    let body = "echo '{\"type\":\"thread.started\",\"thread_id\":\"t-crash\"}'\necho 'fatal: lost the plot' >&2\nexit 3";
    let (result, _, events) = run("codex", body, None, "plan").await;
    let TurnOutcome::Interrupted { message } = &result.outcome else {
        panic!("{:?}", result.outcome)
    };
    assert!(
        message.contains("turn.completed")
            && message.contains("fatal: lost the plot")
            && message.contains('3'),
        "{message}"
    );
    assert_eq!(result.thread_id.as_deref(), Some("t-crash"));
    assert!(matches!(
        events.last(),
        Some(AgentEvent::Finished {
            outcome: TurnOutcome::Interrupted { .. }
        })
    ));
}

#[tokio::test]
async fn dropping_a_turn_stops_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let body = format!(
        "echo $$ > {}\necho '{{\"type\":\"thread.started\",\"thread_id\":\"t\"}}'\nexec sleep 300",
        pidfile.display()
    );
    let bin = fake_cli(dir.path(), "codex", &body);
    let mut settings = settings(dir.path(), "codex", bin);
    settings.kill_grace = Duration::from_millis(500);
    let backend = build_backend("codex", &settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let req = request("builder", 1, "plan", dir.path());
    let events = turn_events(&bus, "builder", 1);
    let turn = backend.turn(&req, &events);
    // Run the turn until the agent has started, then drop it.
    let started = async {
        loop {
            bus.flush().await;
            // The policy is announced before the process starts; wait for the process.
            if collected
                .events()
                .iter()
                .any(|e| matches!(e, AgentEvent::Started { .. }))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = turn => panic!("the turn ended by itself"),
        _ = tokio::time::timeout(Duration::from_secs(20), started) => {}
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = async {
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the agent survived its dropped turn");
    sinks.finish().await;
}
