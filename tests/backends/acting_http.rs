//! HTTP models that act: `launch --backend minimax|openai` against the scripted server.
//! The read-only core agents (planner, researcher, builder) talk to the API directly;
//! the blueprint's agents, which change files, run on the real agent CLI pointed at
//! the same endpoint (Claude Code for minimax, Codex for openai), make a real tool call
//! that writes a file in their worktree, and their work reaches the run branch.

use std::time::Duration;

use serde_json::json;

use crate::claude_cli::claude_bin;
use crate::support::codex::{codex_bin, git_repo, keep_tmp_out_of_codex_sandbox, shell_call};
use crate::support::model_server::{
    ModelServer, Recorded, Request, anthropic_text, anthropic_tool_use, chat_text, responses_text,
    status,
};
use crate::support::squad::{SQUAD, agent_marker, answer, route_codex, route_http, run_bounded};
use crate::support::{TestRepo, git, read, text};

/// The blueprint's agents: they change files.
const ACTING: [&str; 3] = ["api", "docs", "review"];

/// The agent a CLI request works for: the marker of the first user message that has one.
fn cli_agent(req: &Request) -> Option<String> {
    let messages = req.body.get("messages").or_else(|| req.body.get("input"))?;
    messages
        .as_array()?
        .iter()
        .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .find_map(|m| agent_marker(&m["content"].to_string()))
}

/// Whether a tool's result came back in this conversation (the file is written: from
/// then on the agent answers).
fn after_tool_result(req: &Request) -> bool {
    req.body["messages"].to_string().contains("\"tool_result\"")
}

/// The command each acting agent runs: it writes `<agent>.txt`.
fn write_command(agent: &str) -> String {
    format!("printf 'work of {agent}\\n' > {agent}.txt")
}

/// A request's path without its query (Claude Code adds `?beta=true`).
fn path(path: &str) -> &str {
    path.split('?').next().unwrap_or_default()
}

fn minimax_script(req: &Request) -> crate::support::model_server::Reply {
    if !path(&req.path).ends_with("/v1/messages") {
        return status(404, None, "not_found_error", "not scripted");
    }
    if let Some(route) = route_http(req) {
        return anthropic_text(&answer(&route), Default::default());
    }
    let offers_bash = req.body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "Bash"));
    match cli_agent(req) {
        Some(agent) if offers_bash && !after_tool_result(req) => anthropic_tool_use(
            &format!("w-{agent}"),
            "Bash",
            &json!({"command": write_command(&agent), "description": "write the file"}),
        ),
        Some(agent) => anthropic_text(&format!("{agent}: done"), Default::default()),
        // A side request of the CLI (titles, summaries).
        None => anthropic_text("side answer", Default::default()),
    }
}

fn openai_script(req: &Request) -> crate::support::model_server::Reply {
    if req.path.ends_with("/chat/completions") {
        return match route_http(req) {
            Some(route) => chat_text(&answer(&route), Default::default()),
            None => status(400, None, "invalid_request_error", "no agent"),
        };
    }
    if !req.path.ends_with("/responses") {
        return status(404, None, "not_found_error", "not scripted");
    }
    match route_codex(req) {
        Some(route) if req.tool_outputs_since_user() == 0 => shell_call(
            req,
            &format!("w-{}", route.agent),
            &write_command(&route.agent),
            Default::default(),
        ),
        Some(route) => responses_text(
            "done",
            &format!("{}: done", route.agent),
            Default::default(),
        ),
        None => responses_text("side", "side answer", Default::default()),
    }
}

/// What every acting run must show: the squad succeeded, the core agents' requests
/// were the HTTP client's, the acting agents' files are on the run branch.
fn check_run(repo: &TestRepo, out: &std::process::Output, requests: &[Recorded]) {
    assert!(out.status.success(), "launch failed: {}", text(&out.stderr));
    let run = repo.only_run();
    for agent in SQUAD {
        let log = read(&run.join(format!("logs/{agent}.log")));
        assert!(
            log.contains(&format!("── {agent} succeeded")),
            "{agent}.log:\n{log}"
        );
    }
    let direct: Vec<String> = requests
        .iter()
        .filter_map(|r| route_http(&r.request()))
        .map(|route| route.agent)
        .collect();
    for core in ["planner", "researcher", "builder"] {
        assert_eq!(
            direct.iter().filter(|a| *a == core).count(),
            2,
            "{direct:?}"
        );
    }
    for agent in ACTING {
        assert!(!direct.iter().any(|a| a == agent), "{agent} went over HTTP");
    }
    let session = run.file_name().unwrap().to_str().unwrap().to_owned();
    let tree = git(
        &repo.root(),
        &["ls-tree", "--name-only", &format!("orch/{session}")],
    );
    for agent in ACTING {
        let file = format!("{agent}.txt");
        assert!(tree.lines().any(|l| l == file), "{file} missing:\n{tree}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimax_agents_that_change_files_act_through_claude_code() {
    let Some(claude) = claude_bin() else { return };
    let server = ModelServer::start(minimax_script).await;
    let repo = TestRepo::new();
    git_repo(&repo.root());
    let mut cmd = repo.launch();
    cmd.args([
        "--prompt",
        "Ship the MVP",
        "--backend",
        "minimax",
        "--mux",
        "none",
    ])
    .env("ORCH_CLAUDE_BIN", &claude)
    .env(
        "ORCHESTRATED_CODEX_MINIMAX_BASE_URL",
        format!("{}/anthropic", server.url()),
    )
    .env("ORCHESTRATED_CODEX_MINIMAX_API_KEY", "mm-acting-key")
    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    .env("DISABLE_AUTOUPDATER", "1")
    .env("DISABLE_TELEMETRY", "1");
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(240)))
        .await
        .unwrap();
    let requests = server.requests();
    check_run(&repo, &out, &requests);
    // The CLI's requests went to MiniMax's endpoint with its key and model.
    let cli: Vec<&Recorded> = requests
        .iter()
        .filter(|r| {
            path(&r.path).ends_with("/v1/messages")
                && route_http(&r.request()).is_none()
                && cli_agent(&r.request()).is_some()
        })
        .collect();
    assert!(!cli.is_empty());
    // Every request of the CLI went to MiniMax's endpoint.
    for r in &requests {
        assert!(path(&r.path).starts_with("/anthropic/"), "{}", r.path);
    }
    for r in &cli {
        assert_eq!(r.body["model"], "MiniMax-M2.1");
        let key = r
            .headers
            .iter()
            .find(|(k, _)| k == "x-api-key")
            .map(|(_, v)| v.as_str());
        assert_eq!(key, Some("mm-acting-key"));
    }
    // The follow-up resumed the CLI's session: its request carries the plan turn's
    // answer as a message of the conversation, not as a transcript in the prompt.
    assert!(
        cli.iter().any(|r| {
            let body = r.body.to_string();
            cli_agent(&r.request()).as_deref() == Some("api")
                && body.contains("api: done")
                && !body.contains("What was said so far")
        }),
        "the follow-up did not resume the plan turn's session"
    );
    // The Bash call ran in the agent's worktree: its output is in the agent's log.
    let log = read(&repo.only_run().join("logs/api.log"));
    assert!(log.contains("printf 'work of api"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_agents_that_change_files_act_through_codex() {
    let Some(codex) = codex_bin() else { return };
    let server = ModelServer::start(openai_script).await;
    let repo = TestRepo::new();
    git_repo(&repo.root());
    keep_tmp_out_of_codex_sandbox(&repo.dir.path().join("home/.codex"));
    let mut cmd = repo.launch();
    cmd.args([
        "--prompt",
        "Ship the MVP",
        "--backend",
        "openai",
        "--mux",
        "none",
    ])
    .args(["--base-url", &format!("{}/v1", server.url())])
    .args(["--model", "orch-test-model"])
    .env("ORCH_CODEX_BIN", &codex)
    .env("OPENAI_API_KEY", "sk-openai-acting");
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(240)))
        .await
        .unwrap();
    let requests = server.requests();
    check_run(&repo, &out, &requests);
    let responses: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path.ends_with("/responses"))
        .collect();
    assert!(!responses.is_empty());
    for r in &responses {
        assert_eq!(r.path, "/v1/responses");
        assert_eq!(r.body["model"], "orch-test-model");
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(auth, Some("Bearer sk-openai-acting"));
    }
}

/// Without the CLI its agents that change files need, the run says so when it starts,
/// before any turn, and that agent's turn fails naming what to install.
#[test]
fn a_missing_acting_cli_is_said_when_the_run_starts() {
    let repo = TestRepo::new();
    git_repo(&repo.root());
    std::fs::write(
        repo.root().join("orch.kdl"),
        r#"
permissions "edit"
group "work" {
    agent "writer" {
        role "Writer"
        plan-prompt "Write a file."
        follow-up-enabled #false
    }
}
"#,
    )
    .unwrap();
    let out = repo
        .launch()
        .args([
            "--prompt",
            "Ship it",
            "--backend",
            "openai",
            "--mux",
            "none",
        ])
        // Nothing listens there: no turn may reach it.
        .args(["--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
        .env("ORCH_CODEX_BIN", repo.dir.path().join("no-such-codex"))
        .output()
        .expect("run launch");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let timeline = repo.timeline();
    let said = timeline
        .lines()
        .position(|l| l.contains("its agents that change files run on the `codex` CLI"))
        .unwrap_or_else(|| panic!("said in the timeline:\n{timeline}"));
    let started = timeline
        .lines()
        .position(|l| l.contains("agent_started writer"))
        .unwrap_or_else(|| panic!("the agent started:\n{timeline}"));
    assert!(said < started, "said before any agent starts:\n{timeline}");
    assert!(
        stderr.contains("until then every agent that may change files will fail"),
        "{stderr}"
    );
}
