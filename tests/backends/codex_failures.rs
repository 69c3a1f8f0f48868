//! The real Codex CLI meeting a usage limit, an overloaded server and a rejected key
//! from the scripted Responses server: each failure lands in its own class.

use std::time::Duration;

use orch::agent::codex::CodexBackend;
use orch::agent::settings::{BackendSettings, CliSettings};
use orch::agent::{AgentEvent, Backend, FailureClass, TurnOutcome};

use crate::support::codex::{codex_bin, codex_env, git_repo};
use crate::support::model_server::{ModelServer, Reply, Request};
use crate::support::{collecting_bus, request, turn_events};

async fn codex_turn(script: fn(&Request) -> Reply) -> Option<(TurnOutcome, Vec<AgentEvent>)> {
    let codex = codex_bin()?;
    let server = ModelServer::start(script).await;
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_repo(&repo);
    let env = codex_env(root.path(), &server);
    // Codex retries failed requests itself; keep that short so the test is quick.
    let config = root.path().join("codex-home/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("request_max_retries = 0\nstream_max_retries = 0\n");
    std::fs::write(&config, text).unwrap();
    let settings = BackendSettings {
        env,
        codex: CliSettings {
            bin: Some(codex),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    };
    let backend = CodexBackend::new(&settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let req = request("planner", 1, "PLAN-TURN", &repo);
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        backend.turn(&req, &turn_events(&bus, "planner", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    bus.flush().await;
    let events = collected.events();
    sinks.finish().await;
    Some((result.outcome, events))
}

fn json_error(status: u16, headers: Vec<(String, String)>, body: serde_json::Value) -> Reply {
    Reply::Status {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_usage_limit_is_parked_with_its_reset_time() {
    let Some((outcome, events)) = codex_turn(|_| {
        json_error(
            429,
            Vec::new(),
            serde_json::json!({"error": {"type": "usage_limit_reached",
            "message": "The usage limit has been reached", "plan_type": "plus",
            "resets_at": time::OffsetDateTime::now_utc().unix_timestamp() + 1800}}),
        )
    })
    .await
    else {
        return;
    };
    eprintln!("{outcome:?}\n{events:#?}");
    let TurnOutcome::Failed {
        class: FailureClass::UsageLimit { resets_in_secs },
        ..
    } = &outcome
    else {
        panic!("expected a usage limit, got {outcome:?}");
    };
    assert!(
        resets_in_secs.is_some_and(|s| (1700..=1860).contains(&s)),
        "{resets_in_secs:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::RateLimit { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_overloaded_server_is_transient() {
    let Some((outcome, events)) = codex_turn(|_| {
        json_error(
            503,
            Vec::new(),
            serde_json::json!({"error": {"type": "server_error", "message": "overloaded"}}),
        )
    })
    .await
    else {
        return;
    };
    eprintln!("{outcome:?}\n{events:#?}");
    assert!(
        matches!(
            outcome,
            TurnOutcome::Failed {
                class: FailureClass::Transient { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_rejected_key_is_terminal() {
    let Some((outcome, events)) = codex_turn(|_| {
        json_error(401, Vec::new(), serde_json::json!({"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "Incorrect API key provided"}}))
    })
    .await
    else {
        return;
    };
    eprintln!("{outcome:?}\n{events:#?}");
    assert!(
        matches!(
            outcome,
            TurnOutcome::Failed {
                class: FailureClass::Terminal,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_internal_server_error_after_its_retries_is_transient() {
    // Codex 0.169 words a 5xx it gave up on as "We're currently experiencing high
    // demand…", without the status.
    let Some((outcome, events)) = codex_turn(|_| {
        json_error(
            500,
            Vec::new(),
            serde_json::json!({"error": {"message": "boom"}}),
        )
    })
    .await
    else {
        return;
    };
    eprintln!("{outcome:?}\n{events:#?}");
    assert!(
        matches!(
            outcome,
            TurnOutcome::Failed {
                class: FailureClass::Transient { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
}
