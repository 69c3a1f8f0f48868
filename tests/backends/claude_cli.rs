//! The real Claude Code CLI (pinned in scripts/tools.sh) against the scripted
//! Anthropic Messages server: `claude -p --input-format text` takes the prompt from
//! stdin, and the backend reads its stream-json answer.

use std::path::PathBuf;
use std::time::Duration;

use orch::agent::claude::ClaudeBackend;
use orch::agent::settings::{BackendSettings, CliSettings};
use orch::agent::{AgentEvent, Backend, Permissions, TurnOutcome, Usage};

use crate::support::model_server::{
    ModelServer, Request, anthropic_text, anthropic_tool_use, status,
};
use crate::support::{collecting_bus, request, turn_events};

pub(crate) fn claude_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ORCH_CLAUDE_BIN").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/orch-tools/npm/node_modules/.bin/claude")),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    if std::env::var("ORCH_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("the claude CLI is required (ORCH_TEST_REQUIRE_TOOLS=1) but is not installed");
    }
    eprintln!("SKIP: claude CLI not installed (scripts/tools.sh ensure_claude installs it)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_reads_its_prompt_from_stdin() {
    let Some(claude) = claude_bin() else { return };
    let server = ModelServer::start(|req| {
        if req.path.starts_with("/v1/messages") && !req.path.contains("count_tokens") {
            anthropic_text("claude: stdin prompt received", Usage::default())
        } else {
            status(404, None, "not_found_error", "not scripted")
        }
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_HOME", home.join(".config").to_str().unwrap()),
        ("CLAUDE_CONFIG_DIR", home.join(".claude").to_str().unwrap()),
        ("ANTHROPIC_BASE_URL", &server.url()),
        ("ANTHROPIC_API_KEY", "sk-ant-scripted-test-key"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let settings = BackendSettings {
        env,
        claude: CliSettings {
            bin: Some(claude),
            model: Some("claude-sonnet-4-5".into()),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    };
    let backend = ClaudeBackend::new(&settings).unwrap();
    let (bus, sinks, _) = collecting_bus();
    let prompt = "-REAL-CLAUDE-PROMPT-4c1d: a prompt that starts with a dash";
    let req = request("planner", 1, prompt, &repo);
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        backend.turn(&req, &turn_events(&bus, "planner", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    sinks.finish().await;
    let requests = server.requests();
    assert_eq!(
        result.outcome,
        TurnOutcome::Completed,
        "requests: {:#?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(result.response, "claude: stdin prompt received");
    assert!(
        requests.iter().any(|r| r
            .request()
            .last_user_text()
            .contains("REAL-CLAUDE-PROMPT-4c1d")),
        "no request carried the prompt"
    );
}

/// The scripted model: ask for a Bash command that writes a file with python3, then,
/// once a tool result came back, answer with text.
fn python_writer(req: &Request) -> crate::support::model_server::Reply {
    if !req.path.starts_with("/v1/messages") || req.path.contains("count_tokens") {
        return status(404, None, "not_found_error", "not scripted");
    }
    let offers_bash = req.body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "Bash"));
    if !offers_bash {
        // A side request of the CLI (titles, summaries): plain text.
        return anthropic_text("side answer", Usage::default());
    }
    if req.body.to_string().contains("\"tool_result\"") {
        return anthropic_text("python step finished", Usage::default());
    }
    anthropic_tool_use(
        "py1",
        "Bash",
        &serde_json::json!({
            "command": "python3 -c \"open('made-by-python.txt','w').write('ok'); print('PY-OUT-7f3a')\"",
            "description": "write a file with python3"
        }),
    )
}

/// Runs one turn of the real CLI under `permissions` in a fresh repo; returns the
/// repo, the result and the agent's events.
async fn python_turn(
    claude: PathBuf,
    permissions: Permissions,
) -> (tempfile::TempDir, TurnOutcome, Vec<AgentEvent>, Vec<String>) {
    let server = ModelServer::start(python_writer).await;
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_HOME", home.join(".config").to_str().unwrap()),
        ("CLAUDE_CONFIG_DIR", home.join(".claude").to_str().unwrap()),
        ("ANTHROPIC_BASE_URL", &server.url()),
        ("ANTHROPIC_API_KEY", "sk-ant-scripted-test-key"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let settings = BackendSettings {
        env,
        claude: CliSettings {
            bin: Some(claude),
            model: Some("claude-sonnet-4-5".into()),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    };
    let backend = ClaudeBackend::new(&settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let mut req = request("builder", 1, "write the file with python3", &repo);
    req.permissions = permissions;
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        backend.turn(&req, &turn_events(&bus, "builder", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    sinks.finish().await;
    let events = collected.events_of("builder", 1);
    (root, result.outcome, events, collected.warnings())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_runs_python_under_act_and_records_the_denial_under_read_only() {
    let Some(claude) = claude_bin() else { return };

    let (root, outcome, events, warnings) = python_turn(claude.clone(), Permissions::Act).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(outcome, TurnOutcome::Completed, "events: {events:#?}");
    let written = root.path().join("repo/made-by-python.txt");
    assert_eq!(
        std::fs::read_to_string(&written).ok().as_deref(),
        Some("ok"),
        "python3 did not run under act; events: {events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            AgentEvent::Command { output: Some(out), .. } if out.contains("PY-OUT-7f3a"))),
        "the command's output is not in the agent's events: {events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AgentEvent::PermissionDenied { .. })),
        "{events:#?}"
    );
    assert!(events.contains(&AgentEvent::PermissionsSet {
        policy: "act".into(),
        flags: "--permission-mode acceptEdits --allowedTools Bash".into(),
    }));

    let (root, _, events, warnings) = python_turn(claude, Permissions::ReadOnly).await;
    assert!(
        !root.path().join("repo/made-by-python.txt").exists(),
        "read-only let python3 write a file"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            AgentEvent::PermissionDenied { tool, detail } if tool == "Bash" && detail.contains("python3"))),
        "no denial event under read-only: {events:#?}"
    );
    // Not a plain success: the run's timeline gets a warning naming the policy.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`builder` turn 1") && w.contains("denied under `read-only`")),
        "{warnings:?}"
    );
}
