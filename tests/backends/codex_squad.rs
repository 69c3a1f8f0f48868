//! The whole squad on the real Codex CLI: `launch --backend codex --mux none --metrics`
//! runs planner, researcher, builder and the builder's dynamic wave against the
//! scripted Responses server. Codex really runs a shell command and applies a patch,
//! every follow-up resumes its agent's thread, and `--metrics` adds up to what the
//! server sent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::codex::{
    PATCH, SCRIPTED_KEY, codex_bin, git_repo, recorded_argvs, recording_codex, shell_call,
    write_codex_config,
};
use crate::support::model_server::{ModelServer, Reply, Request, responses_text};
use crate::support::squad::{
    Books, Phase, Route, SQUAD, answer, assert_metrics_match, route_codex, run_bounded,
};
use crate::support::{TestRepo, at, read, text, timeline_events};

/// Replies by agent and turn; the docs agent's follow-up runs a command, then edits
/// README.md through apply_patch, then answers. `fail` may answer a request first.
fn script(
    books: Books,
    unrouted: Arc<Mutex<Vec<String>>>,
    fail: impl Fn(&Route) -> Option<Reply> + Send + Sync + 'static,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req| {
        let Some(route) = route_codex(req) else {
            unrouted.lock().unwrap().push(req.last_user_text());
            return responses_text(
                "unrouted",
                "no agent marker in this request",
                Default::default(),
            );
        };
        if let Some(reply) = fail(&route) {
            return reply;
        }
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

/// A finished `launch --backend codex` run of the squad.
struct CodexRun {
    repo: TestRepo,
    out: Output,
    argv_dir: PathBuf,
    books: Books,
    _server: ModelServer,
}

impl CodexRun {
    fn log(&self, agent: &str) -> String {
        read(&self.repo.only_run().join(format!("logs/{agent}.log")))
    }
}

/// Runs the squad on the real Codex (through `recording_codex`) against the scripted
/// server; `setup` may write an orch.kdl or change Codex's config. `None` when Codex is
/// not installed and not required.
async fn codex_squad(
    fail: impl Fn(&Route) -> Option<Reply> + Send + Sync + 'static,
    setup: impl FnOnce(&TestRepo),
) -> Option<CodexRun> {
    let codex = codex_bin()?;
    let books = Books::default();
    let unrouted = Arc::new(Mutex::new(Vec::new()));
    let server = ModelServer::start(script(books.clone(), unrouted.clone(), fail)).await;
    let repo = TestRepo::new();
    git_repo(&repo.root());
    write_codex_config(&repo.dir.path().join("home/.codex"), &server);
    setup(&repo);
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
    ])
    .arg("--metrics")
    .env("ORCH_CODEX_BIN", &wrapper)
    .env(SCRIPTED_KEY.0, SCRIPTED_KEY.1);
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(300)))
        .await
        .unwrap();
    assert!(out.status.success(), "launch failed: {}", text(&out.stderr));
    assert_eq!(
        *unrouted.lock().unwrap(),
        Vec::<String>::new(),
        "requests without an agent"
    );
    Some(CodexRun {
        repo,
        out,
        argv_dir,
        books,
        _server: server,
    })
}

/// The thread id each `codex exec … resume -- <id> PROMPT` run resumed.
fn resumed_threads(argv_dir: &std::path::Path) -> Vec<String> {
    let mut resumed: Vec<String> = recorded_argvs(argv_dir)
        .iter()
        .filter_map(|args| {
            let at = args.iter().position(|a| a == "resume")?;
            assert_eq!(args.get(at + 1).map(String::as_str), Some("--"), "{args:?}");
            args.get(at + 2).cloned()
        })
        .collect();
    resumed.sort();
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_squad_runs_end_to_end_with_resumed_threads_and_exact_metrics() {
    let Some(run) = codex_squad(|_| None, |_| {}).await else {
        return;
    };
    let repo = &run.repo;

    // Every agent ran and has its log; both turns ran on one thread per agent.
    let mut threads: BTreeMap<&str, String> = BTreeMap::new();
    for agent in SQUAD {
        let log = run.log(agent);
        assert!(
            log.contains(&format!("── {agent} succeeded")),
            "{agent}.log:\n{log}"
        );
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

    // Codex really ran the command and really changed the file, in its worktree; orch
    // committed that and merged it into the run branch; the user's tree is as it was.
    let runs: Vec<_> = std::fs::read_dir(repo.root().join(".orch/runs"))
        .unwrap()
        .flatten()
        .collect();
    let session = runs[0].file_name().into_string().unwrap();
    let show = |path: &str| {
        let out = std::process::Command::new("git")
            .current_dir(repo.root())
            .args(["show", &format!("orch/{session}:{path}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(show("ran.txt"), "ran-ok\n");
    assert_eq!(show("README.md"), "# demo\nnew line from codex\n");
    assert!(!repo.root().join("ran.txt").exists());
    let docs = run.log("docs");
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
    assert_eq!(recorded_argvs(&run.argv_dir).len(), 2 * SQUAD.len());
    let mut expected: Vec<String> = threads.values().cloned().collect();
    expected.sort();
    assert_eq!(resumed_threads(&run.argv_dir), expected);

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
    assert_metrics_match(&text(&run.out.stderr), &run.books);
    assert_eq!(run.books.per_agent().len(), SQUAD.len());
}

/// Codex's usage-limit error: HTTP 429 `usage_limit_reached` with the reset time.
fn usage_limit(resets_in_secs: i64) -> Reply {
    let resets_at = time::OffsetDateTime::now_utc().unix_timestamp() + resets_in_secs;
    Reply::Status {
        status: 429,
        headers: Vec::new(),
        body: json!({"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
            "plan_type": "plus", "resets_at": resets_at}})
        .to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_usage_limit_parks_without_using_up_a_try() {
    // The planner's first request meets the usage limit, its second an overloaded
    // server; then it is answered. With `max-tries 2`, the overload's retry is only
    // possible if the park did not count as a try.
    let planner_requests = Arc::new(Mutex::new(0));
    let fail = move |route: &Route| {
        if route.agent != "planner" || route.phase != Phase::Plan {
            return None;
        }
        let mut n = planner_requests.lock().unwrap();
        *n += 1;
        match *n {
            1 => Some(usage_limit(1)),
            2 => Some(Reply::Status {
                status: 503,
                headers: Vec::new(),
                body: json!({"error": {"type": "server_error", "message": "overloaded"}})
                    .to_string(),
            }),
            _ => None,
        }
    };
    let setup = |repo: &TestRepo| {
        let kdl = format!(
            "retry {{\n    max-tries 2\n    base-delay-ms 50\n    max-park-ms 1500\n}}\n{}",
            orch::config::defaults::DEFAULT_AGENTS_KDL
        );
        std::fs::write(repo.root().join("orch.kdl"), kdl).unwrap();
        // Codex retries failed requests itself; leave that to orch here.
        let config = repo.dir.path().join("home/.codex/config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("request_max_retries = 0\nstream_max_retries = 0\n");
        std::fs::write(&config, text).unwrap();
    };
    let Some(run) = codex_squad(fail, setup).await else {
        return;
    };
    for agent in SQUAD {
        let log = run.log(agent);
        assert!(
            log.contains(&format!("── {agent} succeeded")),
            "{agent}.log:\n{log}"
        );
    }
    let planner = run.log("planner");
    let retries: Vec<&str> = planner
        .lines()
        .filter(|l| l.contains("retry    "))
        .collect();
    assert_eq!(retries.len(), 2, "{planner}");
    assert!(
        retries[0].contains("usage_limit failure: You’ve hit your usage limit")
            && retries[0].contains("→ parked until the usage limit resets in")
            && retries[0].contains("(not counted as an attempt)"),
        "{planner}"
    );
    assert!(
        retries[1].contains("transient failure: ") && retries[1].contains("→ retrying (attempt 2)"),
        "{planner}"
    );
    assert!(
        planner.lines().any(
            |l| l.contains("limit    You’ve hit your usage limit") && l.contains("(resets at ")
        ),
        "{planner}"
    );
    let events = timeline_events(&run.repo.timeline());
    let parked = events
        .iter()
        .position(|(_, e, s)| e == "turn_retrying" && s == "planner")
        .unwrap();
    let resumed_at = events[parked + 1..]
        .iter()
        .position(|(_, e, s)| e == "turn_started" && s == "planner")
        .map(|i| i + parked + 1)
        .unwrap();
    let gap = time::OffsetDateTime::parse(
        &events[resumed_at].0,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        - time::OffsetDateTime::parse(
            &events[parked].0,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    assert!(
        gap <= time::Duration::seconds(5),
        "the park outlasted max-park-ms: {gap}"
    );
    assert!(
        run.repo.timeline().contains("turn_retrying planner turn=1 class=usage_limit decision=parked until the usage limit resets"),
        "{}",
        run.repo.timeline()
    );

    // Three plan runs for the planner (limit, overload, answer); the follow-up resumed
    // the thread of the one that answered.
    let threads = logged_threads(&planner);
    assert_eq!(threads.len(), 4, "{planner}");
    assert_eq!(threads[2], threads[3]);
    assert!(resumed_threads(&run.argv_dir).contains(&threads[2]));
    assert!(!resumed_threads(&run.argv_dir).contains(&threads[0]));
    assert_eq!(recorded_argvs(&run.argv_dir).len(), 2 * SQUAD.len() + 2);
    assert_metrics_match(&text(&run.out.stderr), &run.books);
}
