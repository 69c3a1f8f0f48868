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
async fn real_gemini_with_only_an_api_key_and_a_fresh_home_plans_and_follows_up_on_one_session() {
    let Some(gemini) = gemini_bin() else { return };
    let server = ModelServer::start(|req| {
        if !req.path.contains(":streamGenerateContent") {
            return status(404, None, "NOT_FOUND", "not scripted");
        }
        let body = req.body.to_string();
        if body.contains("FOLLOW-UP-5d1c") {
            gemini_text("gemini: follow-up answered")
        } else {
            gemini_text("gemini: stdin prompt received")
        }
    })
    .await;
    // Not under the shared /tmp: the CLI reads no settings file below a directory that
    // others can write, as a real HOME is not.
    let root = tempfile::tempdir_in(private_base()).unwrap();
    let home = root.path().join("home");
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    // A fresh HOME: no ~/.gemini, no trusted folders, no auth type chosen.
    let settings = api_key_only(gemini, &home, &server);
    let backend = GeminiBackend::new(&settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let prompt = "-REAL-GEMINI-PROMPT-9b2e: a prompt that starts with a dash";
    let req = request("planner", 1, prompt, &repo);
    let plan = tokio::time::timeout(
        Duration::from_secs(120),
        backend.turn(&req, &turn_events(&bus, "planner", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    let requests = server.requests();
    assert_eq!(
        plan.outcome,
        TurnOutcome::Completed,
        "events: {:#?}\nrequests: {:#?}",
        collected.events_of("planner", 1),
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(plan.response, "gemini: stdin prompt received");
    assert!(
        requests
            .iter()
            .any(|r| r.body.to_string().contains("REAL-GEMINI-PROMPT-9b2e")),
        "no request carried the prompt"
    );
    let session = plan
        .thread_id
        .clone()
        .expect("the plan turn names its session");

    let mut follow = request("planner", 2, "FOLLOW-UP-5d1c: now the final plan", &repo);
    follow.resume = Some(session.clone());
    let before = server.requests().len();
    let follow_up = tokio::time::timeout(
        Duration::from_secs(120),
        backend.turn(&follow, &turn_events(&bus, "planner", 2)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    sinks.finish().await;
    assert_eq!(
        follow_up.outcome,
        TurnOutcome::Completed,
        "events: {:#?}",
        collected.events_of("planner", 2)
    );
    assert_eq!(follow_up.response, "gemini: follow-up answered");
    assert_eq!(follow_up.thread_id.as_deref(), Some(session.as_str()));
    let resumed = server.requests()[before..].iter().any(|r| {
        let body = r.body.to_string();
        body.contains("FOLLOW-UP-5d1c")
            && body.contains("REAL-GEMINI-PROMPT-9b2e")
            && body.contains("gemini: stdin prompt received")
    });
    assert!(
        resumed,
        "the follow-up did not carry the plan turn's messages"
    );
    assert!(
        !home.join(".gemini/settings.json").exists(),
        "orch wrote the user's ~/.gemini/settings.json"
    );
}

/// One streamed answer that calls `write_file`.
fn gemini_write_file(path: &std::path::Path, content: &str) -> Reply {
    let chunk = serde_json::json!({
        "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {
            "name": "write_file",
            "args": {"file_path": path, "content": content}}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 60, "candidatesTokenCount": 9, "totalTokenCount": 69},
        "modelVersion": "gemini-2.5-flash"
    });
    Reply::Sse {
        body: format!("data: {chunk}\r\n\r\n"),
        usage: Usage::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gemini_with_only_an_api_key_edits_a_file_through_a_function_call() {
    let Some(gemini) = gemini_bin() else { return };
    let root = tempfile::tempdir_in(private_base()).unwrap();
    let home = root.path().join("home");
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let target = repo.join("made-by-gemini.txt");
    let wanted = target.clone();
    let server = ModelServer::start(move |req| {
        if !req.path.contains(":streamGenerateContent") {
            return status(404, None, "NOT_FOUND", "not scripted");
        }
        let body = req.body.to_string();
        if !body.contains("WRITE-IT-3e7a") {
            // A side request of the CLI.
            gemini_text("side answer")
        } else if body.contains("functionResponse") {
            gemini_text("gemini: file written")
        } else {
            gemini_write_file(&wanted, "made by gemini\n")
        }
    })
    .await;
    let settings = api_key_only(gemini, &home, &server);
    let backend = GeminiBackend::new(&settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let req = request("api", 1, "WRITE-IT-3e7a: write the file", &repo);
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        backend.turn(&req, &turn_events(&bus, "api", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    sinks.finish().await;
    assert_eq!(
        result.outcome,
        TurnOutcome::Completed,
        "events: {:#?}",
        collected.events_of("api", 1)
    );
    assert_eq!(result.response, "gemini: file written");
    assert_eq!(
        std::fs::read_to_string(&target).ok().as_deref(),
        Some("made by gemini\n"),
        "events: {:#?}",
        collected.events_of("api", 1)
    );
}

/// Settings of a user with only `GEMINI_API_KEY` set and `home` as HOME, talking to
/// `server`.
fn api_key_only(gemini: PathBuf, home: &std::path::Path, server: &ModelServer) -> BackendSettings {
    let path = std::env::var("PATH").unwrap_or_default();
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("GOOGLE_GEMINI_BASE_URL", &server.url()),
        ("GEMINI_API_KEY", "scripted-test-key"),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    BackendSettings {
        env,
        gemini: CliSettings {
            bin: Some(gemini),
            model: Some("gemini-2.5-flash".into()),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    }
}

/// A directory no one else can write to, nor to any directory above it (the Gemini CLI
/// reads no settings file below one that others can write): the target dir when the
/// checkout is in such a place, else a private folder in the real HOME's cache.
fn private_base() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let private = |dir: &std::path::Path| {
        dir.ancestors().all(|d| {
            std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o022 == 0)
        })
    };
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if private(&target) {
        return target;
    }
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let cache = home.join(".cache/orch-test-tmp");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(
        private(&cache),
        "no private directory for the Gemini CLI's settings: {} and {} are below a directory others can write",
        target.display(),
        cache.display()
    );
    cache
}
