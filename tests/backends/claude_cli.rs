//! The real Claude Code CLI (pinned in scripts/tools.sh) against the scripted
//! Anthropic Messages server: `claude -p --input-format text` takes the prompt from
//! stdin, and the backend reads its stream-json answer.

use std::path::PathBuf;
use std::time::Duration;

use orch::agent::claude::ClaudeBackend;
use orch::agent::settings::{BackendSettings, CliSettings};
use orch::agent::{Backend, TurnOutcome, Usage};

use crate::support::model_server::{ModelServer, anthropic_text, status};
use crate::support::{collecting_bus, request, turn_events};

fn claude_bin() -> Option<PathBuf> {
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
