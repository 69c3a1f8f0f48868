//! The real Gemini CLI (pinned in scripts/tools.sh) against a scripted Gemini API
//! server: on a piped stdin the CLI runs headless and takes the prompt from it.

use std::path::PathBuf;
use std::time::Duration;

use orch::agent::gemini::GeminiBackend;
use orch::agent::settings::{BackendSettings, CliSettings};
use orch::agent::{Backend, TurnOutcome, Usage};

use crate::support::model_server::{ModelServer, Reply, status};
use crate::support::{collecting_bus, request, turn_events};

fn gemini_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ORCH_GEMINI_BIN").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/orch-tools/npm/node_modules/.bin/gemini")),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    if std::env::var("ORCH_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("the gemini CLI is required (ORCH_TEST_REQUIRE_TOOLS=1) but is not installed");
    }
    eprintln!("SKIP: gemini CLI not installed (scripts/tools.sh ensure_gemini installs it)");
    None
}

/// One streamed `generateContent` answer.
fn gemini_text(text: &str) -> Reply {
    let chunk = serde_json::json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 7, "totalTokenCount": 57},
        "modelVersion": "gemini-2.5-flash"
    });
    Reply::Sse {
        body: format!("data: {chunk}\r\n\r\n"),
        usage: Usage::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gemini_reads_its_prompt_from_stdin() {
    let Some(gemini) = gemini_bin() else { return };
    let server = ModelServer::start(|req| {
        if req.path.contains(":streamGenerateContent") {
            gemini_text("gemini: stdin prompt received")
        } else {
            status(404, None, "NOT_FOUND", "not scripted")
        }
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(home.join(".gemini")).unwrap();
    std::fs::write(
        home.join(".gemini/settings.json"),
        r#"{"security":{"auth":{"selectedType":"gemini-api-key"},"folderTrust":{"enabled":false}},"general":{"disableAutoUpdate":true},"privacy":{"usageStatisticsEnabled":false}}"#,
    )
    .unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_HOME", home.join(".config").to_str().unwrap()),
        ("GOOGLE_GEMINI_BASE_URL", &server.url()),
        ("GEMINI_API_KEY", "scripted-test-key"),
        ("GEMINI_CLI_NO_RELAUNCH", "true"),
        ("GEMINI_CLI_INTEGRATION_TEST", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let settings = BackendSettings {
        env,
        gemini: CliSettings {
            bin: Some(gemini),
            model: Some("gemini-2.5-flash".into()),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    };
    let backend = GeminiBackend::new(&settings).unwrap();
    let (bus, sinks, _) = collecting_bus();
    let prompt = "-REAL-GEMINI-PROMPT-9b2e: a prompt that starts with a dash";
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
    assert_eq!(result.response, "gemini: stdin prompt received");
    assert!(
        requests
            .iter()
            .any(|r| r.body.to_string().contains("REAL-GEMINI-PROMPT-9b2e")),
        "no request carried the prompt"
    );
}
