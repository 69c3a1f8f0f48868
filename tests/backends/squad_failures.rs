//! Failed turns inside a whole squad (`launch --backend anthropic --mux none`): a
//! rate limit with `retry-after` is retried no sooner than asked, an overloaded server
//! is retried with backoff until the tries run out and the agent's `fallback` backend
//! takes over, and a rejected key moves at once to the fallback, which finishes the
//! agent's work (the builder's blueprint included). Each path shows in the agent's log
//! and the timeline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::model_server::{
    ModelServer, Reply, Request, anthropic_text, chat_text, status,
};
use crate::support::squad::{
    Books, Phase, SQUAD, answer, assert_metrics_match, route_http, run_bounded,
};
use crate::support::{TestRepo, read, text};

const ORCH_KDL: &str = r#"
retry {
    max-tries 3
    base-delay-ms 100
    max-delay-ms 2000
}
group "default" {
    agent "planner" {
        role "Planner"
        fallback "openai"
        plan-prompt "Outline the plan."
        follow-up-prompt "Write the final plan."
    }
    agent "researcher" {
        role "Researcher"
        depends-on "planner"
        plan-prompt "Outline the research."
        follow-up-prompt "Report your findings."
    }
    agent "builder" {
        role "Builder"
        depends-on "researcher"
        fallback "openai"
        plan-prompt "Outline how to split the work."
        follow-up-prompt "Write the blueprint of specialist agents."
    }
}
"#;

/// The failures each agent meets on the Anthropic API, request by request; after them
/// it is answered normally. The OpenAI-compatible fallback always answers.
fn failures(agent: &str, phase: Phase, nth: usize) -> Option<Reply> {
    match (agent, phase, nth) {
        ("planner", _, _) => Some(status(529, None, "overloaded_error", "Overloaded")),
        ("researcher", Phase::Plan, 0) => {
            Some(status(429, Some(1), "rate_limit_error", "slow down"))
        }
        ("researcher", Phase::FollowUp, 0) => Some(status(503, None, "api_error", "busy")),
        ("builder", _, _) => Some(status(
            401,
            None,
            "authentication_error",
            "invalid x-api-key",
        )),
        _ => None,
    }
}

fn script(books: Books) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let seen: Mutex<HashMap<(String, bool), usize>> = Mutex::new(HashMap::new());
    move |req| {
        let Some(route) = route_http(req) else {
            return status(
                400,
                None,
                "invalid_request_error",
                "no agent in the system prompt",
            );
        };
        if req.path.ends_with("/messages") {
            let nth = {
                let mut seen = seen.lock().unwrap();
                let n = seen
                    .entry((route.agent.clone(), route.phase == Phase::Plan))
                    .or_default();
                *n += 1;
                *n - 1
            };
            if let Some(reply) = failures(&route.agent, route.phase, nth) {
                return reply;
            }
            let (_, usage) = books.next(&route.agent);
            anthropic_text(&answer(&route), usage)
        } else {
            let (_, usage) = books.next(&route.agent);
            chat_text(&answer(&route), usage)
        }
    }
}

/// Timeline lines of one event and agent, with their times.
fn timeline(repo: &TestRepo, event: &str, agent: &str) -> Vec<(OffsetDateTime, String)> {
    repo.timeline()
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let at = OffsetDateTime::parse(parts.next()?, &Rfc3339).ok()?;
            let rest = format!("{} {}", parts.next()?, parts.next().unwrap_or(""));
            rest.starts_with(&format!("{event} {agent} "))
                .then_some((at, rest))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_overloads_and_auth_failures_take_their_own_paths_in_a_squad() {
    let books = Books::default();
    let server = ModelServer::start(script(books.clone())).await;
    let repo = TestRepo::new();
    std::fs::write(repo.root().join("orch.kdl"), ORCH_KDL).unwrap();
    let mut cmd = repo.launch();
    cmd.args([
        "--prompt",
        "Ship the MVP",
        "--backend",
        "anthropic",
        "--mux",
        "none",
    ])
    .args([
        "--base-url",
        &server.url(),
        "--model",
        "scripted-model",
        "--metrics",
        // Every agent on the HTTP client (agents that act would run on `claude`).
        "--permissions",
        "read-only",
    ])
    .env("ANTHROPIC_API_KEY", "sk-ant-squad");
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(120)))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "launch failed: {stderr}");
    let run = repo.only_run();
    let log = |agent: &str| read(&run.join(format!("logs/{agent}.log")));
    for agent in SQUAD {
        assert!(
            log(agent).contains(&format!("── {agent} succeeded")),
            "{agent}.log:\n{}",
            log(agent)
        );
    }
    let requests = server.requests();
    let count = |agent: &str, path_end: &str| {
        requests
            .iter()
            .filter(|r| r.path.ends_with(path_end))
            .filter(|r| route_http(&r.request()).is_some_and(|route| route.agent == agent))
            .count()
    };

    // Overloaded: retried with backoff, bounded by max-tries, then the fallback.
    let planner = log("planner");
    let retries: Vec<&str> = planner
        .lines()
        .filter(|l| l.contains("retry    "))
        .collect();
    assert_eq!(retries.len(), 3, "{planner}");
    assert!(
        retries[0].contains("transient failure: HTTP 529: overloaded_error")
            && retries[0].contains("→ retrying (attempt 2)"),
        "{planner}"
    );
    assert!(retries[1].contains("→ retrying (attempt 3)"), "{planner}");
    assert!(
        retries[2].contains("→ falling back to backend `openai`"),
        "{planner}"
    );
    assert_eq!(count("planner", "/messages"), 3, "three tries on anthropic");
    assert_eq!(
        count("planner", "/chat/completions"),
        2,
        "both turns on the fallback"
    );
    assert!(planner.contains("· backend openai"), "{planner}");
    let decisions: Vec<String> = timeline(&repo, "turn_retrying", "planner")
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    assert_eq!(decisions.len(), 3, "{decisions:#?}");
    assert!(
        decisions[0].contains("class=transient decision=retrying (attempt 2)"),
        "{decisions:#?}"
    );
    assert!(
        decisions[2].contains("decision=falling back to backend `openai`"),
        "{decisions:#?}"
    );

    // Rate limited: the limit is logged, and the retry waits at least `retry-after`.
    let researcher = log("researcher");
    assert!(
        researcher.contains("limit    HTTP 429: rate_limit_error: slow down (retry after 1s)"),
        "{researcher}"
    );
    assert!(
        researcher.contains("transient failure: HTTP 503: api_error: busy → retrying (attempt 2)"),
        "{researcher}"
    );
    assert!(!researcher.contains("falling back"), "{researcher}");
    assert_eq!(
        count("researcher", "/messages"),
        4,
        "one failure per turn, then answers"
    );
    let retried = timeline(&repo, "turn_retrying", "researcher");
    let started = timeline(&repo, "turn_started", "researcher");
    assert!(
        retried[0]
            .1
            .contains("class=transient decision=retrying (attempt 2)"),
        "{retried:#?}"
    );
    let next_start = started
        .iter()
        .find(|(at, _)| *at > retried[0].0)
        .expect("a retry");
    assert!(
        next_start.0 - retried[0].0 >= time::Duration::seconds(1),
        "retried before retry-after: {retried:#?} {started:#?}"
    );

    // Auth failure: terminal, so no retry on anthropic: straight to the fallback, which
    // writes the blueprint whose agents then run.
    let builder = log("builder");
    let retries: Vec<&str> = builder
        .lines()
        .filter(|l| l.contains("retry    "))
        .collect();
    assert_eq!(retries.len(), 1, "{builder}");
    assert!(retries[0].contains("terminal failure: HTTP 401: authentication_error: invalid x-api-key → falling back to backend `openai`"), "{builder}");
    assert_eq!(count("builder", "/messages"), 1);
    assert_eq!(count("builder", "/chat/completions"), 2);
    assert!(
        builder.contains("blueprint accepted for wave 1: api, docs, review (after api, docs)"),
        "{builder}"
    );
    assert!(
        timeline(&repo, "turn_retrying", "builder")[0]
            .1
            .contains("class=terminal decision=falling back to backend `openai`")
    );

    // Failed requests cost nothing; the metrics are what the answers reported.
    assert_metrics_match(&stderr, &books);
}
