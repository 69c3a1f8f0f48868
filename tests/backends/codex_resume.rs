//! `launch resume` with the real Codex CLI: an agent's turn is cut off by SIGKILL of
//! `launch` while the scripted model is still answering, after Codex ran a command in
//! the agent's worktree. The resumed run continues the thread (`codex exec resume`):
//! its request carries the earlier items of the thread (the first prompt, the command
//! and its output) beside the new prompt saying the turn was interrupted; the file the
//! command wrote, never committed, ends up in the agent's commit.

use std::process::Stdio;
use std::time::Duration;

use crate::support::codex::{SCRIPTED_KEY, codex_bin, shell_call, write_codex_config};
use crate::support::model_server::{ModelServer, Reply, Request, responses_text};
use crate::support::squad::{Books, route_codex, run_bounded};
use crate::support::{TestRepo, commit_file, git, text, user_side};

const ORCH_KDL: &str = r#"
agent "worker" {
    role "Worker"
    permissions "act"
    plan-prompt "Write partial.txt, then report."
    follow-up-enabled #false
}
"#;

fn script(books: Books) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req| {
        let Some(route) = route_codex(req) else {
            return responses_text("unrouted", "no agent marker", Default::default());
        };
        let (n, usage) = books.next(&route.agent);
        let id = format!("r{n}");
        if req.last_user_text().contains("was interrupted") {
            responses_text(&id, "worker: finished after the resume", usage)
        } else if req.tool_outputs_since_user() == 0 {
            shell_call(req, &id, "echo partial > partial.txt", usage)
        } else {
            // The model never answers the command's output: the turn is under way when
            // `launch` is killed.
            Reply::Hang
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_continues_a_killed_turn_on_its_thread_with_the_earlier_items() {
    let Some(codex) = codex_bin() else {
        return;
    };
    let server = ModelServer::start(script(Books::default())).await;
    let repo = TestRepo::new();
    let root = repo.root();
    commit_file(&root, "orch.kdl", ORCH_KDL);
    let before = user_side(&root);
    write_codex_config(&repo.dir.path().join("home/.codex"), &server);
    let command = |args: &[&str]| {
        let mut cmd = repo.launch();
        cmd.args(args)
            .args(["--mux", "none", "--notify", "none"])
            .env("ORCH_CODEX_BIN", &codex)
            .env(SCRIPTED_KEY.0, SCRIPTED_KEY.1);
        cmd
    };

    let mut first = command(&[
        "--prompt",
        "Ship it",
        "--backend",
        "codex",
        "--session",
        "cx",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let start = std::time::Instant::now();
    while !server.requests().iter().any(|r| r.status == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the worker's turn never got under way"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let resume = command(&["resume", "cx"]);
    let out = tokio::task::spawn_blocking(move || run_bounded(resume, Duration::from_secs(300)))
        .await
        .unwrap();
    assert!(out.status.success(), "resume: {}", text(&out.stderr));

    // The continuation went to the same thread: Codex sent the earlier items again.
    let requests = server.requests();
    let resumed = requests
        .iter()
        .map(|r| r.body["input"].to_string())
        .find(|input| input.contains("was interrupted"))
        .expect("a request of the resumed turn");
    assert!(
        resumed.contains("Write partial.txt, then report."),
        "the first prompt: {resumed}"
    );
    assert!(
        resumed.contains("echo partial > partial.txt"),
        "the command: {resumed}"
    );
    assert!(resumed.contains("function_call_output"), "{resumed}");
    // What it did before the cut was told, from the store.
    assert!(
        resumed.contains("ran `") && resumed.contains("partial.txt"),
        "{resumed}"
    );
    // The uncommitted file is in the worker's commit on the run branch.
    assert_eq!(git(&root, &["show", "orch/cx:partial.txt"]), "partial\n");
    assert_eq!(user_side(&root), before, "the user's side changed");
    let verify = repo.audit(&["verify", "cx"]);
    assert!(verify.starts_with("ok"), "{verify}");
}
