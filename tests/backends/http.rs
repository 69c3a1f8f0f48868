//! The HTTP backends (anthropic, minimax, openai) against the scripted server: a plan
//! turn and a follow-up that resends the conversation, usage equal to what the server
//! sent, and rate-limited, overloaded and auth-failed turns classified three ways.

use std::time::Duration;

use orch::agent::settings::BackendSettings;
use orch::agent::{
    AgentEvent, Backend, ChatMessage, ChatRole, FailureClass, TurnOutcome, TurnResult, Usage,
    build_backend,
};

use crate::support::model_server::{
    ModelServer, Reply, Request, anthropic_overloaded_mid_stream, anthropic_text, chat_text, status,
};
use crate::support::{Collected, collecting_bus, request, turn_events};

fn usage(k: u64) -> Usage {
    Usage {
        input_tokens: 300 * k + 11,
        cached_input_tokens: 20 * k,
        output_tokens: 30 * k + 1,
        reasoning_output_tokens: 0,
    }
}

/// Replies by role (text in the prompt) and turn (user messages in the conversation).
fn squad_reply(req: &Request, text: fn(&str, Usage) -> Reply) -> Reply {
    let prompt = req.last_user_text();
    let role = ["planner", "researcher", "builder", "api-dev"]
        .into_iter()
        .find(|r| prompt.contains(r))
        .unwrap_or("unknown");
    let turn = req.user_messages() as u64;
    let k = turn + 2 * role.len() as u64;
    text(&format!("{role} turn {turn} ✓"), usage(k))
}

fn settings_for(server: &ModelServer) -> BackendSettings {
    let mut settings = BackendSettings::default();
    settings.anthropic.base_url = server.url();
    settings.anthropic.api_key = Some("sk-ant-scripted".into());
    settings.minimax.base_url = format!("{}/anthropic", server.url());
    settings.minimax.api_key = Some("mm-scripted-key".into());
    settings.openai.base_url = format!("{}/v1", server.url());
    settings.openai.model = Some("qwen2.5-coder:7b".into());
    settings.idle_timeout = Duration::from_secs(30);
    settings
}

async fn turn(
    backend: &dyn Backend,
    bus: &orch::events::EventBus,
    agent: &str,
    n: u32,
    prompt: &str,
    history: Vec<ChatMessage>,
) -> TurnResult {
    let dir = std::env::temp_dir();
    let mut req = request(agent, n, prompt, &dir);
    req.history = history;
    // Turns that only produce text: the direct HTTP client's (one that acts goes
    // through an agent CLI, see `acting_http.rs`).
    req.permissions = orch::agent::Permissions::ReadOnly;
    tokio::time::timeout(
        Duration::from_secs(60),
        backend.turn(&req, &turn_events(bus, agent, n)),
    )
    .await
    .expect("turn timed out")
    .expect("turn could not start")
}

/// Runs planner, researcher, builder and one dynamic agent, two turns each.
async fn run_squad(
    backend: &dyn Backend,
    server: &ModelServer,
    collected: &Collected,
    bus: &orch::events::EventBus,
) {
    let mut total = Usage::default();
    for agent in ["planner", "researcher", "builder", "api-dev"] {
        let first = turn(
            backend,
            bus,
            agent,
            1,
            &format!("You are the {agent}. Plan."),
            Vec::new(),
        )
        .await;
        assert_eq!(first.outcome, TurnOutcome::Completed, "{agent}: {first:?}");
        assert_eq!(first.response, format!("{agent} turn 1 ✓"));
        let history = vec![
            ChatMessage {
                role: ChatRole::User,
                content: format!("You are the {agent}. Plan."),
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: first.response.clone(),
            },
        ];
        let second = turn(
            backend,
            bus,
            agent,
            2,
            &format!("{agent}: follow up."),
            history,
        )
        .await;
        assert_eq!(
            second.outcome,
            TurnOutcome::Completed,
            "{agent}: {second:?}"
        );
        // The follow-up resent the conversation: two user messages, so turn 2.
        assert_eq!(second.response, format!("{agent} turn 2 ✓"));
        total.add(&first.usage);
        total.add(&second.usage);
        bus.flush().await;
        let events = collected.events_of(agent, 2);
        assert_eq!(
            events.first(),
            Some(&AgentEvent::Started { thread_id: None })
        );
        assert!(events.contains(&AgentEvent::Message {
            text: format!("{agent} turn 2 ✓")
        }));
        assert_eq!(
            events.last(),
            Some(&AgentEvent::Finished {
                outcome: TurnOutcome::Completed
            })
        );
    }
    assert_eq!(total, server.usage_sent());
    assert_eq!(server.requests().len(), 8);
}

#[tokio::test]
async fn anthropic_runs_the_squad_and_resends_the_conversation() {
    let server = ModelServer::start(|req| squad_reply(req, anthropic_text)).await;
    let (bus, sinks, collected) = collecting_bus();
    let backend = build_backend("anthropic", &settings_for(&server)).unwrap();
    run_squad(backend.as_ref(), &server, &collected, &bus).await;
    let last = server.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/messages");
    assert_eq!(last.body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(last.body["model"], "claude-sonnet-4-5");
    assert_eq!(last.body["stream"], true);
    // The agent's role travels as the system prompt on every turn.
    let system = last.body["system"].as_str().unwrap();
    assert!(
        system.starts_with("You are the api-dev (agent `api-dev`) in a squad"),
        "{system}"
    );
    let header = |name: &str| {
        last.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-api-key").as_deref(), Some("sk-ant-scripted"));
    assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(header("authorization"), None);
    sinks.finish().await;
}

#[tokio::test]
async fn minimax_sends_both_key_headers_to_its_base_url() {
    let server = ModelServer::start(|req| squad_reply(req, anthropic_text)).await;
    let (bus, sinks, collected) = collecting_bus();
    let backend = build_backend("minimax", &settings_for(&server)).unwrap();
    run_squad(backend.as_ref(), &server, &collected, &bus).await;
    let last = server.requests().pop().unwrap();
    assert_eq!(last.path, "/anthropic/v1/messages");
    assert_eq!(last.body["model"], "MiniMax-M2.1");
    let header = |name: &str| {
        last.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-api-key").as_deref(), Some("mm-scripted-key"));
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer mm-scripted-key")
    );
    sinks.finish().await;
}

#[tokio::test]
async fn openai_chat_runs_the_squad() {
    let server = ModelServer::start(|req| squad_reply(req, chat_text)).await;
    let (bus, sinks, collected) = collecting_bus();
    let backend = build_backend("openai", &settings_for(&server)).unwrap();
    run_squad(backend.as_ref(), &server, &collected, &bus).await;
    let last = server.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.body["model"], "qwen2.5-coder:7b");
    assert_eq!(last.body["stream_options"]["include_usage"], true);
    let messages = last.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "system, user, assistant, user");
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are the api-dev (agent `api-dev`) in a squad"),
        "{messages:?}"
    );
    sinks.finish().await;
}

/// One failing turn against a server that always gives `reply`.
async fn failed_turn(
    backend: &str,
    reply: fn() -> Reply,
) -> (FailureClass, String, Vec<AgentEvent>) {
    let server = ModelServer::start(move |_| reply()).await;
    let (bus, sinks, collected) = collecting_bus();
    let backend = build_backend(backend, &settings_for(&server)).unwrap();
    let result = turn(
        backend.as_ref(),
        &bus,
        "planner",
        1,
        "planner: plan",
        Vec::new(),
    )
    .await;
    bus.flush().await;
    let events = collected.events();
    sinks.finish().await;
    match result.outcome {
        TurnOutcome::Failed { class, message } => {
            assert_eq!(
                events.last(),
                Some(&AgentEvent::Finished {
                    outcome: TurnOutcome::Failed {
                        class: class.clone(),
                        message: message.clone()
                    }
                })
            );
            (class, message, events)
        }
        other => panic!("expected a failed turn, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limited_turns_are_transient_with_the_servers_retry_after() {
    let (class, message, events) = failed_turn("anthropic", || {
        status(429, Some(7), "rate_limit_error", "slow down")
    })
    .await;
    assert_eq!(
        class,
        FailureClass::Transient {
            retry_after_secs: Some(7)
        }
    );
    assert!(
        message.contains("429") && message.contains("rate_limit_error"),
        "{message}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::RateLimit {
            retry_after_secs: Some(7),
            ..
        }
    )));
    let (class, _, _) = failed_turn("openai", || {
        status(429, Some(3), "rate_limit_exceeded", "slow down")
    })
    .await;
    assert_eq!(
        class,
        FailureClass::Transient {
            retry_after_secs: Some(3)
        }
    );
}

#[tokio::test]
async fn overloaded_turns_are_transient() {
    let (class, _, _) = failed_turn("anthropic", || {
        status(529, None, "overloaded_error", "Overloaded")
    })
    .await;
    assert_eq!(
        class,
        FailureClass::Transient {
            retry_after_secs: None
        }
    );
    let (class, message, _) = failed_turn("minimax", anthropic_overloaded_mid_stream).await;
    assert_eq!(
        class,
        FailureClass::Transient {
            retry_after_secs: None
        }
    );
    assert_eq!(message, "overloaded_error: Overloaded");
    let (class, _, _) = failed_turn("openai", || status(503, None, "server_error", "busy")).await;
    assert_eq!(
        class,
        FailureClass::Transient {
            retry_after_secs: None
        }
    );
}

#[tokio::test]
async fn auth_failures_are_terminal() {
    let (class, message, _) = failed_turn("anthropic", || {
        status(401, None, "authentication_error", "invalid x-api-key")
    })
    .await;
    assert_eq!(class, FailureClass::Terminal);
    assert!(message.contains("invalid x-api-key"), "{message}");
    let (class, _, _) =
        failed_turn("openai", || status(401, None, "invalid_api_key", "bad key")).await;
    assert_eq!(class, FailureClass::Terminal);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let server = ModelServer::start(|_| status(500, None, "x", "x")).await;
    let mut settings = settings_for(&server);
    drop(server);
    // Nothing listens there any more (the port may be reused, but not within this test).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.anthropic.base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (bus, sinks, _) = collecting_bus();
    let backend = build_backend("anthropic", &settings).unwrap();
    let result = turn(backend.as_ref(), &bus, "planner", 1, "plan", Vec::new()).await;
    assert!(
        matches!(
            result.outcome,
            TurnOutcome::Failed {
                class: FailureClass::Transient { .. },
                ..
            }
        ),
        "{result:?}"
    );
    sinks.finish().await;
}

#[test]
fn http_backends_without_key_or_model_are_clear_errors() {
    let settings = BackendSettings::default();
    let err = build_backend("minimax", &settings).err().unwrap();
    assert_eq!(
        err.to_string(),
        "backend `minimax` is not configured: no API key; set ORCHESTRATED_CODEX_MINIMAX_API_KEY or ANTHROPIC_API_KEY"
    );
    let err = build_backend("openai", &settings).err().unwrap();
    assert!(err.to_string().contains("--model"));
    let err = build_backend("cobol", &settings).err().unwrap();
    assert!(
        err.to_string()
            .contains("codex, claude, gemini, anthropic, minimax, openai")
    );
}

#[tokio::test]
async fn after_a_terminal_failure_a_fallback_backend_finishes_the_work() {
    // The primary backend's key is rejected; the agent's fallback (openai) answers.
    let server = ModelServer::start(|req| {
        if req.path == "/v1/messages" {
            status(401, None, "authentication_error", "invalid x-api-key")
        } else {
            squad_reply(req, chat_text)
        }
    })
    .await;
    let settings = settings_for(&server);
    let (bus, sinks, collected) = collecting_bus();
    let mut outcomes = Vec::new();
    for name in ["anthropic", "openai"] {
        let backend = build_backend(name, &settings).unwrap();
        let result = turn(
            backend.as_ref(),
            &bus,
            "builder",
            1,
            "builder: plan",
            Vec::new(),
        )
        .await;
        let done = result.outcome.is_success();
        outcomes.push(result.outcome);
        if done {
            assert_eq!(result.response, "builder turn 1 ✓");
            break;
        }
    }
    assert!(matches!(
        outcomes[0],
        TurnOutcome::Failed {
            class: FailureClass::Terminal,
            ..
        }
    ));
    assert_eq!(outcomes[1], TurnOutcome::Completed);
    bus.flush().await;
    let finished: Vec<_> = collected
        .events()
        .into_iter()
        .filter(|e| matches!(e, AgentEvent::Finished { .. }))
        .collect();
    assert_eq!(finished.len(), 2);
    sinks.finish().await;
}
