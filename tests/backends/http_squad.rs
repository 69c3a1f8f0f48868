//! The whole squad on each HTTP backend: `launch --backend anthropic|minimax|openai
//! --mux none --metrics` against the scripted server. The server routes every request
//! by the system prompt (which agent) and the resent conversation (which turn); the
//! builder answers with a blueprint whose agents then run; `--metrics` adds up to what
//! the server sent.

use std::time::Duration;

use crate::support::model_server::{
    ModelServer, Recorded, Reply, Request, anthropic_text, chat_text, status,
};
use crate::support::squad::{
    Books, Phase, SQUAD, answer, assert_metrics_match, route_http, run_bounded,
};
use crate::support::{TestRepo, read, text};

/// Replies in the API the request came in on: Anthropic Messages or chat completions.
pub fn http_script(books: Books) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req| {
        let Some(route) = route_http(req) else {
            return status(
                400,
                None,
                "invalid_request_error",
                "no agent in the system prompt",
            );
        };
        let (_, usage) = books.next(&route.agent);
        if req.path.ends_with("/messages") {
            anthropic_text(&answer(&route), usage)
        } else {
            chat_text(&answer(&route), usage)
        }
    }
}

/// Runs the squad with `args` and `env` and checks what every backend must do.
async fn http_squad(args: &[&str], env: &[(&str, String)]) -> Vec<Recorded> {
    let books = Books::default();
    let server = ModelServer::start(http_script(books.clone())).await;
    let repo = TestRepo::new();
    let mut cmd = repo.launch();
    // Every agent on the HTTP client (agents that act run on an agent CLI: see
    // `acting_http.rs`).
    cmd.args(["--prompt", "Ship the MVP", "--mux", "none", "--metrics"])
        .args(["--permissions", "read-only"])
        .args(args.iter().map(|a| a.replace("{url}", &server.url())));
    for (key, value) in env {
        cmd.env(key, value.replace("{url}", &server.url()));
    }
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(120)))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "launch failed: {stderr}");
    let run = repo.only_run();
    for agent in SQUAD {
        let log = read(&run.join(format!("logs/{agent}.log")));
        assert!(
            log.contains(&format!("── {agent} succeeded")),
            "{agent}.log:\n{log}"
        );
    }
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.status == 200), "{requests:#?}");
    // Two turns per agent; each follow-up resent the plan turn (two user messages).
    assert_eq!(requests.len(), 2 * SQUAD.len());
    for agent in SQUAD {
        let turns: Vec<Phase> = requests
            .iter()
            .filter_map(|r| route_http(&r.request()))
            .filter(|route| route.agent == agent)
            .map(|route| route.phase)
            .collect();
        assert_eq!(turns, [Phase::Plan, Phase::FollowUp], "{agent}");
    }
    // The builder's blueprint ran: the review agent's log names the parallel pair.
    let review = read(&run.join("logs/review.log"));
    assert!(review.contains("depends on api, docs"), "{review}");
    assert_metrics_match(&stderr, &books);
    requests
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_runs_the_whole_squad() {
    let requests = http_squad(
        &["--backend", "anthropic", "--base-url", "{url}"],
        &[("ANTHROPIC_API_KEY", "sk-ant-squad".into())],
    )
    .await;
    for r in &requests {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(header(r, "x-api-key"), Some("sk-ant-squad"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimax_runs_the_whole_squad_at_its_base_url() {
    let requests = http_squad(
        &["--backend", "minimax"],
        &[
            (
                "ORCHESTRATED_CODEX_MINIMAX_BASE_URL",
                "{url}/anthropic".into(),
            ),
            ("ORCHESTRATED_CODEX_MINIMAX_API_KEY", "mm-squad-key".into()),
        ],
    )
    .await;
    for r in &requests {
        assert_eq!(r.path, "/anthropic/v1/messages");
        assert_eq!(r.body["model"], "MiniMax-M2.1");
        assert_eq!(header(r, "x-api-key"), Some("mm-squad-key"));
        assert_eq!(header(r, "authorization"), Some("Bearer mm-squad-key"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_runs_the_whole_squad() {
    let requests = http_squad(
        &[
            "--backend",
            "openai",
            "--base-url",
            "{url}/v1",
            "--model",
            "qwen2.5-coder:7b",
        ],
        &[],
    )
    .await;
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.body["model"], "qwen2.5-coder:7b");
        assert_eq!(header(r, "authorization"), None);
    }
}
