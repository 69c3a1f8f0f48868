//! The whole squad on the real Codex CLI: `launch --backend codex --mux none --metrics`
//! runs planner, researcher, builder and the builder's dynamic wave against the
//! scripted Responses server. Codex really runs a shell command and applies a patch,
//! every follow-up resumes its agent's thread, and `--metrics` adds up to what the
//! server sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::codex::{
    PATCH, SCRIPTED_KEY, codex_bin, git_repo, recorded_argvs, recording_codex, shell_call,
    write_codex_config,
};
use crate::support::model_server::{ModelServer, Reply, Request, responses_text};
use crate::support::squad::{
    Books, Phase, SQUAD, answer, assert_metrics_match, route_codex, run_bounded,
};
use crate::support::{TestRepo, at, read, text, timeline_events};

/// Replies by agent and turn; the docs agent's follow-up runs a command, then edits
/// README.md through apply_patch, then answers.
fn script(
    books: Books,
    unrouted: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> impl Fn(&Request) -> Reply {
    move |req| {
        let Some(route) = route_codex(req) else {
            unrouted.lock().unwrap().push(req.last_user_text());
            return responses_text(
                "unrouted",
                "no agent marker in this request",
                Default::default(),
            );
        };
        let (n, usage) = books.next(&route.agent);
        let id = format!("r{n}");
        if route.agent == "docs" && route.phase == Phase::FollowUp {
            match req.tool_outputs_since_user() {
                0 => return shell_call(req, &id, "echo ran-ok > ran.txt && cat ran.txt", usage),
                1 => return shell_call(req, &id, PATCH, usage),
                _ => {}
            }
        }
        responses_text(&id, &answer(&route), usage)
    }
}

/// The thread ids an agent's log names ("thread   <id>" lines), in order.
fn logged_threads(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            l.split_once(" thread   ")
                .map(|(_, id)| id.trim().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_squad_runs_end_to_end_with_resumed_threads_and_exact_metrics() {
    let Some(codex) = codex_bin() else { return };
    let books = Books::default();
    let unrouted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = ModelServer::start(script(books.clone(), unrouted.clone())).await;
    let repo = TestRepo::new();
    git_repo(&repo.root());
    let home = repo.dir.path().join("home");
    write_codex_config(&home.join(".codex"), &server);
    let argv_dir = repo.dir.path().join("codex-argv");
    let wrapper = recording_codex(repo.dir.path(), &codex, &argv_dir);

    let mut cmd = repo.launch();
    cmd.args([
        "--prompt",
        "Ship the MVP",
        "--backend",
        "codex",
        "--mux",
        "none",
        "--metrics",
    ])
    .env("ORCH_CODEX_BIN", &wrapper)
    .env(SCRIPTED_KEY.0, SCRIPTED_KEY.1);
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(300)))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "launch failed: {stderr}");
    assert_eq!(
        *unrouted.lock().unwrap(),
        Vec::<String>::new(),
        "requests without an agent"
    );

    // Every agent ran and has its log.
    let run = repo.only_run();
    let mut threads: BTreeMap<&str, String> = BTreeMap::new();
    for agent in SQUAD {
        let log = read(&run.join(format!("logs/{agent}.log")));
        assert!(
            log.contains(&format!("── {agent} succeeded")),
            "{agent}.log:\n{log}"
        );
        // Both turns ran on one thread: the follow-up's Started names the plan's thread.
        let logged = logged_threads(&log);
        assert_eq!(logged.len(), 2, "{agent}.log:\n{log}");
        assert_eq!(logged[0], logged[1], "{agent}.log:\n{log}");
        threads.insert(agent, logged[0].clone());
    }
    let distinct: BTreeSet<&String> = threads.values().collect();
    assert_eq!(
        distinct.len(),
        SQUAD.len(),
        "one thread per agent: {threads:?}"
    );

    // Codex really ran the command and really changed the file, in the repository.
    assert_eq!(read(&repo.root().join("ran.txt")), "ran-ok\n");
    assert_eq!(
        read(&repo.root().join("README.md")),
        "# demo\nnew line from codex\n"
    );
    let docs = read(&run.join("logs/docs.log"));
    assert!(
        docs.contains("command  $ ") && docs.contains("ran-ok"),
        "{docs}"
    );
    assert!(
        docs.lines()
            .any(|l| l.contains("file     ") && l.contains("README.md")),
        "{docs}"
    );

    // Each follow-up was `codex exec … resume -- <the plan turn's thread id> PROMPT`.
    let argvs = recorded_argvs(&argv_dir);
    assert_eq!(argvs.len(), 2 * SQUAD.len(), "{argvs:#?}");
    let resumed: Vec<String> = argvs
        .iter()
        .filter_map(|args| {
            let at = args.iter().position(|a| a == "resume")?;
            assert_eq!(args.get(at + 1).map(String::as_str), Some("--"), "{args:?}");
            args.get(at + 2).cloned()
        })
        .collect();
    let mut expected: Vec<String> = threads.values().cloned().collect();
    expected.sort();
    let mut resumed_sorted = resumed.clone();
    resumed_sorted.sort();
    assert_eq!(resumed_sorted, expected, "{argvs:#?}");

    // The dependant ran after the parallel pair.
    let events = timeline_events(&repo.timeline());
    let review = at(&events, "agent_started", "review");
    assert!(review > at(&events, "agent_finished", "api"), "{events:#?}");
    assert!(
        review > at(&events, "agent_finished", "docs"),
        "{events:#?}"
    );

    // --metrics: exactly what the server sent, per agent and in total (Codex reports
    // thread-cumulative usage; the follow-ups must not count the plan turns again).
    assert_metrics_match(&stderr, &books);
    assert_eq!(books.per_agent().len(), SQUAD.len());
}
