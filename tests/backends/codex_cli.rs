//! The real Codex CLI driven by `CodexBackend` against the scripted Responses server:
//! it runs a shell command, edits a file through apply_patch, resumes its thread for
//! the follow-up, and the usage we report equals what the server sent.

use std::time::Duration;

use crate::support::codex::{PATCH, codex_bin, codex_env, git_repo, shell_call};
use crate::support::model_server::{ModelServer, Reply, Request, responses_text};
use crate::support::{collecting_bus, request, turn_events};
use orch::agent::codex::CodexBackend;
use orch::agent::settings::{BackendSettings, CliSettings};
use orch::agent::{AgentEvent, Backend, ItemStatus, TurnOutcome, Usage};

fn usage(k: u64) -> Usage {
    Usage {
        input_tokens: 1000 * k + 17,
        cached_input_tokens: 100 * k,
        output_tokens: 40 * k + 3,
        reasoning_output_tokens: 5 * k,
    }
}

pub fn codex_script(req: &Request) -> Reply {
    let prompt = req.last_user_text();
    if prompt.contains("PLAN-TURN") {
        match req.tool_outputs_since_user() {
            0 => shell_call(req, "p1", "echo ran-ok > ran.txt && cat ran.txt", usage(1)),
            1 => shell_call(req, "p2", PATCH, usage(2)),
            _ => responses_text("p3", "plan ready", usage(3)),
        }
    } else if prompt.contains("FOLLOW-UP-TURN") {
        responses_text("f1", "final answer", usage(4))
    } else {
        responses_text("x", "unexpected prompt", Usage::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_command_edits_a_file_and_resumes_its_thread() {
    let Some(codex) = codex_bin() else { return };
    let server = ModelServer::start(codex_script).await;
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_repo(&repo);
    let settings = BackendSettings {
        env: codex_env(root.path(), &server),
        codex: CliSettings {
            bin: Some(codex),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    };
    let backend = CodexBackend::new(&settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();

    let plan = request("planner", 1, "PLAN-TURN: outline the work", &repo);
    let first = tokio::time::timeout(
        Duration::from_secs(180),
        backend.turn(&plan, &turn_events(&bus, "planner", 1)),
    )
    .await
    .expect("plan turn timed out")
    .expect("plan turn could not start");
    bus.flush().await;
    assert_eq!(first.outcome, TurnOutcome::Completed, "{first:?}");
    assert_eq!(first.response, "plan ready");
    let thread_id = first.thread_id.clone().expect("a thread id");

    // Codex really ran the command and really changed the file.
    assert_eq!(
        std::fs::read_to_string(repo.join("ran.txt")).unwrap(),
        "ran-ok\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "# demo\nnew line from codex\n"
    );
    let events = collected.events_of("planner", 1);
    assert_eq!(
        events.first(),
        Some(&AgentEvent::PermissionsSet {
            policy: "act".into(),
            flags: "--sandbox workspace-write".into()
        })
    );
    assert_eq!(
        events.get(1),
        Some(&AgentEvent::Started {
            thread_id: Some(thread_id.clone())
        })
    );
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Command { status: ItemStatus::Completed, exit_code: Some(0), output: Some(o), .. } if o.contains("ran-ok"))), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::FileChange { path, status: ItemStatus::Completed, .. } if path.ends_with("README.md"))), "{events:#?}");
    assert_eq!(
        events.last(),
        Some(&AgentEvent::Finished {
            outcome: TurnOutcome::Completed
        })
    );
    // The usage we report is exactly what the server sent for this turn.
    assert_eq!(first.usage, server.usage_sent());
    assert_eq!(first.usage, {
        let mut u = usage(1);
        u.add(&usage(2));
        u.add(&usage(3));
        u
    });
    let emitted: Usage = events.iter().fold(Usage::default(), |mut acc, e| {
        if let AgentEvent::Usage(u) = e {
            acc.add(u)
        }
        acc
    });
    assert_eq!(emitted, first.usage);

    let mut follow_up = request("planner", 2, "FOLLOW-UP-TURN: give the final answer", &repo);
    follow_up.resume = Some(thread_id.clone());
    let second = tokio::time::timeout(
        Duration::from_secs(180),
        backend.turn(&follow_up, &turn_events(&bus, "planner", 2)),
    )
    .await
    .expect("follow-up turn timed out")
    .expect("follow-up turn could not start");
    bus.flush().await;
    assert_eq!(second.outcome, TurnOutcome::Completed, "{second:?}");
    assert_eq!(second.response, "final answer");
    assert_eq!(
        second.thread_id.as_deref(),
        Some(thread_id.as_str()),
        "the follow-up resumed the same thread"
    );
    // Codex reports the thread's running total; we report only this turn's share.
    assert_eq!(second.usage, usage(4));
    let mut total = first.usage;
    total.add(&second.usage);
    assert_eq!(total, server.usage_sent());
    // The server saw the resumed request on the same thread, with the earlier turn in it.
    let last = server.requests().pop().unwrap();
    assert_eq!(
        last.headers
            .iter()
            .find(|(k, _)| k == "thread-id")
            .map(|(_, v)| v.as_str()),
        Some(thread_id.as_str())
    );
    assert!(last.body["input"].to_string().contains("PLAN-TURN"));
    assert_eq!(
        last.headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str()),
        Some("Bearer sk-scripted-test-key")
    );
    sinks.finish().await;
}

#[tokio::test]
async fn a_missing_codex_binary_is_a_clear_error() {
    let settings = BackendSettings {
        env: vec![("PATH".into(), "/nonexistent-dir".into())],
        ..BackendSettings::default()
    };
    let err = CodexBackend::new(&settings)
        .err()
        .expect("no codex on an empty PATH");
    assert_eq!(
        err.to_string(),
        "`codex` was not found on PATH; install it or set ORCH_CODEX_BIN to its path"
    );
}

/// One turn with `-m model`; returns the first request's body and the CLI's own lines.
async fn first_request_with(codex: std::path::PathBuf, model: &str) -> (String, Vec<String>) {
    let server =
        ModelServer::start(|_: &Request| responses_text("m1", "mini answer", usage(1))).await;
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_repo(&repo);
    let settings = BackendSettings {
        env: codex_env(root.path(), &server),
        codex: CliSettings {
            bin: Some(codex),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    };
    let backend = CodexBackend::new(&settings).unwrap();
    let (bus, sinks, collected) = collecting_bus();
    let mut req = request("planner", 1, "MINI-TURN", &repo);
    req.model = Some(model.into());
    let result = tokio::time::timeout(
        Duration::from_secs(180),
        backend.turn(&req, &turn_events(&bus, "planner", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    sinks.finish().await;
    let events = collected.events();
    assert_eq!(result.outcome, TurnOutcome::Completed, "{events:#?}");
    let lines = events
        .into_iter()
        .filter_map(|e| match e {
            AgentEvent::RawLine { text } | AgentEvent::Error { message: text } => Some(text),
            _ => None,
        })
        .collect();
    let body = server
        .requests()
        .iter()
        .find(|r| r.path.ends_with("/responses"))
        .expect("codex sent a request")
        .body
        .to_string();
    (body, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mini_model_is_in_codex_catalog_and_keeps_apply_patch() {
    let Some(codex) = codex_bin() else { return };
    let mini = BackendSettings::default().codex.mini_model.unwrap();
    let (body, lines) = first_request_with(codex.clone(), &mini).await;
    assert!(
        !lines.iter().any(|l| l.contains("Model metadata")),
        "codex does not know `{mini}`: {lines:?}"
    );
    assert!(body.contains("apply_patch"), "no apply_patch with `{mini}`");
    // The old choice, for contrast: Codex falls back to generic metadata for it.
    let (_, lines) = first_request_with(codex, "gpt-5.1-codex-mini").await;
    assert!(
        lines.iter().any(|l| l.contains("Model metadata")),
        "{lines:?}"
    );
}

/// A model tier with its own base URL and key (`tier "fast" base-url=… key-env=…`):
/// the real Codex CLI sends that tier's turns to its server with its key, not to the
/// provider of its CODEX_HOME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_on_a_tier_endpoint_reaches_that_server_with_that_key() {
    let Some(codex) = codex_bin() else { return };
    let home_server =
        ModelServer::start(|_: &Request| responses_text("h", "home", Usage::default())).await;
    let tier_server =
        ModelServer::start(|_: &Request| responses_text("t", "from the tier", Usage::default()))
            .await;
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_repo(&repo);
    let settings = BackendSettings {
        env: codex_env(root.path(), &home_server),
        codex: CliSettings {
            bin: Some(codex),
            ..CliSettings::default()
        },
        ..BackendSettings::default()
    }
    .with_endpoint(
        "codex",
        Some(&format!("{}/v1", tier_server.url())),
        Some("sk-tier-key-0123456789"),
    );
    let backend = CodexBackend::new(&settings).unwrap();
    let (bus, _sinks, _collected) = collecting_bus();
    let plan = request("worker", 1, "PLAN-TURN: say hello", &repo);
    let result = tokio::time::timeout(
        Duration::from_secs(180),
        backend.turn(&plan, &turn_events(&bus, "worker", 1)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start");
    assert_eq!(result.outcome, TurnOutcome::Completed, "{result:?}");
    assert_eq!(result.response, "from the tier");
    assert!(
        home_server.requests().is_empty(),
        "nothing went to CODEX_HOME's provider"
    );
    let requests = tier_server.requests();
    assert!(!requests.is_empty());
    for r in requests {
        assert_eq!(
            r.request().header("authorization"),
            Some("Bearer sk-tier-key-0123456789")
        );
    }
}
