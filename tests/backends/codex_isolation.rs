//! Isolation with the real Codex CLI: the scripted model makes Codex really edit files
//! (apply_patch and shell commands) in each agent's worktree, and the run branch must
//! hold every edit. Two parallel agents edit one file, a dependant reads it; two
//! parallel agents edit the same line; an agent runs `git commit` itself under Codex's
//! sandbox. The user's branch, index, tree and stash stay as they were throughout.

use std::process::Output;
use std::time::Duration;

use crate::support::codex::{SCRIPTED_KEY, codex_bin, shell_call, write_codex_config};
use crate::support::model_server::{ModelServer, Reply, Request, responses_text};
use crate::support::squad::{Books, Phase, answer, route_codex, run_bounded};
use crate::support::{TestRepo, git, read, text, user_side};

/// The builder's blueprint: `left` and `right` in parallel, `check` after both.
const BLUEPRINT: &str = "```json\n{\"agents\":[\
{\"id\":\"left\",\"role\":\"Left editor\",\"prompt\":\"Edit the top of lib.txt.\",\"dependsOn\":[]},\
{\"id\":\"right\",\"role\":\"Right editor\",\"prompt\":\"Edit the bottom of lib.txt.\",\"dependsOn\":[]},\
{\"id\":\"check\",\"role\":\"Checker\",\"prompt\":\"Check lib.txt and record it.\",\"dependsOn\":[\"left\",\"right\"]}]}\n```\n";

const LIB: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n";

/// What `left` and `right` do in their final turn (one shell command each, run by
/// Codex in the agent's worktree); `check` prints lib.txt and writes CHECK.md.
#[derive(Clone, Copy)]
struct Edits {
    left: &'static str,
    right: &'static str,
}

/// An apply_patch edit of line `two` of lib.txt.
const LEFT_PATCH: &str = "apply_patch <<'PATCH'\n*** Begin Patch\n*** Update File: lib.txt\n@@\n one\n-two\n+two (left)\n three\n*** End Patch\nPATCH\n";

/// What a resolve turn writes: both sides of a conflict on line `two`.
const RESOLVED: &str = "printf 'one\\ntwo (left)\\ntwo (right)\\nthree\\nfour\\nfive\\nsix\\nseven\\neight\\nnine\\nten\\n' > lib.txt";

fn script(books: Books, edits: Edits) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req| {
        let Some(route) = route_codex(req) else {
            return responses_text("unrouted", "no agent marker", Default::default());
        };
        let (n, usage) = books.next(&route.agent);
        let id = format!("r{n}");
        let first_step = req.tool_outputs_since_user() == 0;
        if route.phase == Phase::FollowUp && first_step {
            if req.last_user_text().contains("stopped on a conflict") {
                return shell_call(req, &id, RESOLVED, usage);
            }
            match route.agent.as_str() {
                "left" => return shell_call(req, &id, edits.left, usage),
                "right" => return shell_call(req, &id, edits.right, usage),
                "check" => {
                    return shell_call(req, &id, "cat lib.txt && echo checked > CHECK.md", usage);
                }
                _ => {}
            }
        }
        let text = match (route.agent.as_str(), route.phase) {
            ("builder", Phase::FollowUp) => BLUEPRINT.to_string(),
            _ => answer(&route),
        };
        responses_text(&id, &text, usage)
    }
}

struct IsolationRun {
    repo: TestRepo,
    out: Output,
    server: ModelServer,
    before: (String, String, Vec<u8>, String, String, String),
}

impl IsolationRun {
    fn show(&self, path: &str) -> String {
        git(
            &self.repo.root(),
            &["show", &format!("orch/codex-iso:{path}")],
        )
    }

    fn log(&self, agent: &str) -> String {
        read(&self.repo.only_run().join(format!("logs/{agent}.log")))
    }

    /// Every request the server got for `agent`, as JSON text.
    fn requests_of(&self, agent: &str) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| route_codex(&r.request()).is_some_and(|route| route.agent == agent))
            .map(|r| r.body.to_string())
            .collect()
    }
}

/// Runs the squad with `edits` on the real Codex; the user's tree has an uncommitted
/// edit and an untracked file, recorded before. `None` when Codex is not installed.
async fn isolation_run(edits: Edits) -> Option<IsolationRun> {
    let codex = codex_bin()?;
    let books = Books::default();
    let server = ModelServer::start(script(books, edits)).await;
    let repo = TestRepo::new();
    let root = repo.root();
    std::fs::write(root.join("lib.txt"), LIB).unwrap();
    git(&root, &["add", "lib.txt"]);
    git(&root, &["commit", "-q", "-m", "lib"]);
    std::fs::write(root.join("README.md"), "an uncommitted edit of the user\n").unwrap();
    std::fs::write(root.join("notes.txt"), "an untracked file of the user\n").unwrap();
    let before = user_side(&root);
    write_codex_config(&repo.dir.path().join("home/.codex"), &server);

    let mut cmd = repo.launch();
    cmd.args([
        "--prompt",
        "Ship the MVP",
        "--backend",
        "codex",
        "--mux",
        "none",
        "--session",
        "codex-iso",
    ])
    .env("ORCH_CODEX_BIN", &codex)
    .env(SCRIPTED_KEY.0, SCRIPTED_KEY.1);
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(300)))
        .await
        .unwrap();
    Some(IsolationRun {
        repo,
        out,
        server,
        before,
    })
}

fn assert_user_side_unchanged(run: &IsolationRun) {
    assert_eq!(
        user_side(&run.repo.root()),
        run.before,
        "the user's branch, HEAD, index, tree or stash changed"
    );
    for stray in ["CHECK.md", "SELF.md"] {
        assert!(
            !run.repo.root().join(stray).exists(),
            "{stray} in the user's tree"
        );
    }
    assert_eq!(read(&run.repo.root().join("lib.txt")), LIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_parallel_edits_of_one_file_and_a_dependant_meet_on_the_run_branch() {
    let edits = Edits {
        left: LEFT_PATCH,
        right: "sed -i 's/^nine$/nine (right)/' lib.txt",
    };
    let Some(run) = isolation_run(edits).await else {
        return;
    };
    assert!(
        run.out.status.success(),
        "launch: {}",
        text(&run.out.stderr)
    );

    // Three worktrees of specialists, each on its own branch.
    let root = run.repo.root();
    let timeline = run.repo.timeline();
    for agent in ["left", "right", "check"] {
        assert!(
            timeline.contains(&format!(
                "worktree_ready {agent} branch=orch-agent/codex-iso/{agent}"
            )),
            "no worktree for {agent}:\n{timeline}"
        );
    }

    // The run branch holds both edits and the dependant's file.
    let lib = run.show("lib.txt");
    assert_eq!(
        lib,
        LIB.replace("two\n", "two (left)\n")
            .replace("nine\n", "nine (right)\n")
    );
    assert_eq!(run.show("CHECK.md"), "checked\n");
    let log = git(&root, &["log", "--format=%s%n%b", "orch/codex-iso"]);
    for agent in ["left", "right", "check"] {
        assert!(
            log.contains(&format!("Orch-Agent: {agent}")),
            "no commit of {agent} on the run branch:\n{log}"
        );
    }

    // The dependant's worktree had both parents' edits when it started: Codex sent the
    // output of its `cat lib.txt` back to the model.
    let check = run.requests_of("check");
    assert!(
        check
            .iter()
            .any(|body| body.contains("two (left)") && body.contains("nine (right)")),
        "check did not see both edits: {check:#?}"
    );

    assert_user_side_unchanged(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_edits_of_the_same_line_end_with_both_or_a_named_failure() {
    let edits = Edits {
        left: LEFT_PATCH,
        right: "sed -i 's/^two$/two (right)/' lib.txt",
    };
    let Some(run) = isolation_run(edits).await else {
        return;
    };
    let stderr = text(&run.out.stderr);
    if run.out.status.success() {
        // The resolve turn kept both sides; no conflict marker is left.
        let lib = run.show("lib.txt");
        assert!(
            lib.contains("two (left)") && lib.contains("two (right)"),
            "an edit is missing:\n{lib}"
        );
        assert!(
            !lib.contains("<<<<<<<") && !lib.contains(">>>>>>>"),
            "{lib}"
        );
        let resolved = ["left", "right"].iter().any(|agent| {
            run.log(agent).contains("merge-resolve") || run.log(agent).contains("conflict")
        });
        assert!(resolved, "no resolve turn in either agent's log");
    } else {
        // Never a success with an edit missing: the failure names the path and agent.
        assert!(stderr.contains("lib.txt"), "{stderr}");
        assert!(
            stderr.contains("left") || stderr.contains("right"),
            "{stderr}"
        );
    }
    assert_user_side_unchanged(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_own_git_commit_under_codexs_sandbox_still_reaches_the_run_branch() {
    let edits = Edits {
        left: "echo self > SELF.md && git add SELF.md && git commit -q -m 'left: my own commit'",
        right: "sed -i 's/^nine$/nine (right)/' lib.txt",
    };
    let Some(run) = isolation_run(edits).await else {
        return;
    };
    assert!(
        run.out.status.success(),
        "launch: {}",
        text(&run.out.stderr)
    );
    assert_eq!(run.show("SELF.md"), "self\n");
    assert!(run.show("lib.txt").contains("nine (right)"));
    // The command is in the agent's log with its exit code, whether git let it commit
    // or not (Codex's sandbox refuses the write to the worktree's git dir, and its
    // `--json` stream then leaves the command out: orch takes it from the session record).
    let left = run.log("left");
    let command = left
        .lines()
        .find(|l| l.contains("command ") && l.contains("git commit") && l.contains("→ exit"))
        .unwrap_or_else(|| panic!("no `git commit` command in the log:\n{left}"));
    let own_commit = git(&run.repo.root(), &["log", "--format=%s", "orch/codex-iso"])
        .contains("left: my own commit");
    if !own_commit {
        assert!(command.contains("exit 128"), "{command}");
        assert!(command.contains("Read-only file system"), "{command}");
    }
    assert_user_side_unchanged(&run);
}
