//! Isolation through the real binaries on the demo backend (which writes real files in
//! its worktree): each agent in its own worktree, its work committed and merged into
//! the run branch, conflicts resolved or named, the user's repository untouched, and
//! each agent's patch in the audit store.

mod support;

use std::process::Command;

use support::{TestRepo, commit_file, git, text, user_side};

fn audit(repo: &TestRepo, args: &[&str]) -> std::process::Output {
    repo.audit_command()
        .args(args)
        .output()
        .expect("run orch-audit")
}

fn session(repo: &TestRepo) -> String {
    repo.only_run()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("session")
        .to_owned()
}

#[test]
fn parallel_agents_and_a_dependant_work_in_worktrees_and_meet_on_the_run_branch() {
    let repo = TestRepo::new();
    let root = repo.root();
    // An uncommitted edit and an untracked file: the run must leave both alone.
    std::fs::write(root.join("README.md"), "# test repo\nmy own edit\n").unwrap();
    std::fs::write(root.join("notes.txt"), "untracked\n").unwrap();
    let before = user_side(&root);
    let out = repo.demo("delay=5", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        user_side(&root),
        before,
        "the user's branch, index and tree"
    );
    let session = session(&repo);
    let run_branch = format!("orch/{session}");
    // Each specialist committed its own module; the run branch holds all three.
    let log = git(&root, &["log", "--format=%s", &run_branch]);
    for agent in ["backend-api", "frontend-ui", "integration-tests"] {
        assert!(log.contains(&format!("orch: {agent} (")), "{log}");
        let module = format!("demo/{}.py", agent.replace('-', "_"));
        git(
            &root,
            &["cat-file", "-e", &format!("{run_branch}:{module}")],
        );
        assert!(
            root.join(format!(".orch/worktrees/{session}/{agent}/{module}"))
                .is_file(),
            "{agent} wrote in its own worktree"
        );
        assert!(!root.join(&module).exists(), "nothing in the user's tree");
    }
    // Both parallel edits of the shared roster are there.
    let roster = git(&root, &["show", &format!("{run_branch}:demo/SQUAD.md")]);
    assert!(roster.contains("- backend-api: done"), "{roster}");
    assert!(roster.contains("- frontend-ui: done"), "{roster}");
    // The dependant started from its parents' merged work.
    let timeline = repo.timeline();
    let merged_tip = |agent: &str| -> String {
        let line = timeline
            .lines()
            .find(|l| l.contains(&format!("agent_merged {agent} ")))
            .unwrap_or_else(|| panic!("{agent} merged: {timeline}"));
        line.split("tip=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let last_parent = [merged_tip("backend-api"), merged_tip("frontend-ui")];
    let tests_base = timeline
        .lines()
        .find(|l| l.contains("worktree_ready integration-tests "))
        .and_then(|l| l.split("base=").nth(1))
        .expect("integration-tests worktree")
        .trim()
        .to_owned();
    assert!(
        last_parent.contains(&tests_base),
        "base {tests_base} is a parent's merge tip {last_parent:?}"
    );
    for parent in ["backend-api", "frontend-ui"] {
        let base = git(&root, &["rev-parse", &tests_base]);
        let parent_commit = git(
            &root,
            &[
                "log",
                "-1",
                "--format=%H",
                &format!("--grep=orch: {parent} ("),
                &run_branch,
            ],
        );
        let is_ancestor = Command::new("git")
            .current_dir(&root)
            .args([
                "merge-base",
                "--is-ancestor",
                parent_commit.trim(),
                base.trim(),
            ])
            .status()
            .unwrap();
        assert!(is_ancestor.success(), "{parent} is in the dependant's base");
    }
    // The store has each agent's patch; `orch-audit diff` shows it.
    let diff = audit(&repo, &["diff", &session, "--agent", "backend-api"]);
    assert!(diff.status.success(), "{}", text(&diff.stderr));
    assert!(
        text(&diff.stdout).contains("+++ b/demo/backend_api.py"),
        "{}",
        text(&diff.stdout)
    );
}

#[test]
fn a_conflict_between_parallel_agents_gets_a_resolve_turn_with_both_edits_kept() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5,clash=resolve", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let session = session(&repo);
    let clash = git(
        &repo.root(),
        &["show", &format!("orch/{session}:demo/CLASH.md")],
    );
    assert!(
        clash.contains("backend-api wrote this line.")
            && clash.contains("frontend-ui wrote this line."),
        "{clash}"
    );
    assert!(
        !clash.contains("<<<<<<<") && !clash.contains(">>>>>>>"),
        "{clash}"
    );
    assert!(repo.timeline().contains("resolving=true"));
}

#[test]
fn an_unresolved_conflict_fails_that_agent_names_the_path_and_keeps_its_branch() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5,clash=stubborn", &[]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "never a success with an edit missing: {stderr}"
    );
    assert!(stderr.contains("demo/CLASH.md"), "{stderr}");
    assert!(stderr.contains("integration-tests (blocked)"), "{stderr}");
    let session = session(&repo);
    let timeline = repo.timeline();
    let loser = ["backend-api", "frontend-ui"]
        .into_iter()
        .find(|a| {
            timeline.contains(&format!(
                "merge_conflict {a} paths=demo/CLASH.md resolving=false"
            ))
        })
        .unwrap_or_else(|| panic!("one agent lost the merge: {timeline}"));
    assert!(
        stderr.contains(&format!("{loser}: its work conflicts")),
        "{stderr}"
    );
    // Its branch is kept, with its commit on it.
    let log = git(
        &repo.root(),
        &[
            "log",
            "--format=%s",
            &format!("orch-agent/{session}/{loser}"),
        ],
    );
    assert!(log.contains(&format!("orch: {loser} (")), "{log}");
}

#[test]
fn verify_fails_when_one_byte_of_a_stored_patch_changes() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=0", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(audit(&repo, &["verify"]).status.success());
    let db = repo.root().join(".orch/audit.db");
    // The patch's first chunk: flip one byte of the stored content.
    let sql = "UPDATE fs_data SET data = CAST(replace(CAST(data AS TEXT), 'backend_api', 'backend_apI') AS BLOB) \
         WHERE ino = (SELECT d.ino FROM fs_dentry d JOIN fs_dentry p ON d.parent_ino = p.ino \
         WHERE d.name = 'changes.patch' AND p.name = 'backend-api') AND chunk_index = 0;";
    let edit = Command::new("sqlite3").arg(&db).arg(sql).output();
    let Ok(edit) = edit else {
        if std::env::var_os("ORCH_TEST_REQUIRE_TOOLS").is_some() {
            panic!("sqlite3 is required");
        }
        eprintln!("skipped: sqlite3 not found");
        return;
    };
    assert!(edit.status.success(), "{}", text(&edit.stderr));
    let verify = audit(&repo, &["verify"]);
    assert!(!verify.status.success(), "a changed patch fails verify");
}

const SETUP_KDL: &str = r#"
worktree {
    copy ".env"
    setup "echo ready > setup-ran.txt"
}
agent "solo" {
    role "Solo"
    plan-prompt "Outline the plan."
    follow-up-prompt "Write the final plan."
}
"#;

#[test]
fn worktree_set_up_copies_files_and_runs_commands_and_a_failing_command_fails_the_agent() {
    let repo = TestRepo::new();
    let root = repo.root();
    commit_file(&root, ".gitignore", ".env\n");
    std::fs::write(root.join(".env"), "TOKEN=local\n").unwrap();
    std::fs::write(root.join("orch.kdl"), SETUP_KDL).unwrap();
    let out = repo.demo("delay=0", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let worktree = root.join(format!(".orch/worktrees/{}/solo", session(&repo)));
    assert_eq!(
        std::fs::read_to_string(worktree.join(".env")).unwrap(),
        "TOKEN=local\n"
    );
    assert_eq!(
        std::fs::read_to_string(worktree.join("setup-ran.txt")).unwrap(),
        "ready\n"
    );

    let failing = TestRepo::new();
    std::fs::write(
        failing.root().join("orch.kdl"),
        SETUP_KDL.replace("echo ready > setup-ran.txt", "echo no-deps >&2; exit 3"),
    )
    .unwrap();
    let out = failing.demo("delay=0", &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("solo (failed)"), "{stderr}");
    assert!(
        stderr.contains("exit 3"),
        "the failing command is named: {stderr}"
    );
}

/// `launch` of the repository's `orch.kdl` on the `codex` backend, with `script` as
/// the `codex` it runs.
fn launch_with_codex(repo: &TestRepo, script: &str) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let codex = repo.dir.path().join("codex");
    std::fs::write(&codex, script).unwrap();
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.launch()
        .args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .env("ORCH_CODEX_BIN", &codex)
        .output()
        .expect("run launch")
}

/// A `codex` script: `body` runs with `$agent` set to the agent the prompt names, then
/// the turn answers "done".
fn scripted_codex(body: &str) -> String {
    format!(
        r#"#!/bin/sh
prompt=$(cat)
agent=$(printf '%s' "$prompt" | sed -n 's/.*(agent `\([^`]*\)`).*/\1/p' | head -n 1)
{body}
echo '{{"type":"thread.started","thread_id":"t-1"}}'
echo '{{"type":"item.completed","item":{{"id":"i1","type":"agent_message","text":"done"}}}}'
echo '{{"type":"turn.completed","usage":{{"input_tokens":1,"cached_input_tokens":0,"output_tokens":1}}}}'
"#
    )
}

/// A `codex` that writes `<its agent>.txt` in its working directory and answers.
fn writing_codex() -> String {
    scripted_codex(r#"echo "work of $agent" > "$agent.txt""#)
}

#[test]
fn a_configured_agent_that_may_edit_gets_its_work_merged_and_a_read_only_ones_changes_are_named() {
    let repo = TestRepo::new();
    let root = repo.root();
    std::fs::write(
        root.join("orch.kdl"),
        r#"
group "work" {
    agent "writer" {
        role "Writer"
        permissions "edit"
        plan-prompt "Write your file."
        follow-up-enabled #false
    }
    agent "reader" {
        role "Reader"
        plan-prompt "Only read."
        follow-up-enabled #false
    }
}
"#,
    )
    .unwrap();
    let before = user_side(&root);
    let out = launch_with_codex(&repo, &writing_codex());
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let session = session(&repo);
    // The agent that may edit: its file is on the run branch.
    assert_eq!(
        git(&root, &["show", &format!("orch/{session}:writer.txt")]),
        "work of writer\n"
    );
    // The read-only one: not kept, and said.
    let listed = git(
        &root,
        &["ls-tree", "-r", "--name-only", &format!("orch/{session}")],
    );
    assert!(!listed.contains("reader.txt"), "{listed}");
    assert!(
        stderr.contains("agent `reader` is read-only but changed reader.txt"),
        "{stderr}"
    );
    assert_eq!(user_side(&root), before);
}

/// A `codex` for the made-ahead test: `slow` and `failing` take a second; `failing`
/// then fails; every agent notes which files its worktree had when it started.
fn ahead_codex() -> String {
    scripted_codex(
        r#"ls > "seen-by-$agent.txt"
case "$agent" in
  slow|failing) sleep 1 ;;
esac
[ "$agent" = failing ] && exit 4
echo "work of $agent" > "$agent.txt""#,
    )
}

#[test]
fn a_dependants_worktree_is_made_while_its_parent_works_and_one_never_started_is_removed() {
    let repo = TestRepo::new();
    let root = repo.root();
    std::fs::write(
        root.join("orch.kdl"),
        r#"
permissions "edit"
group "work" {
    agent "slow" {
        role "Slow"
        plan-prompt "Work."
        follow-up-enabled #false
    }
    agent "after" {
        role "After"
        plan-prompt "Work."
        follow-up-enabled #false
        depends-on "slow"
    }
    agent "failing" {
        role "Failing"
        plan-prompt "Work."
        follow-up-enabled #false
    }
    agent "blocked" {
        role "Blocked"
        plan-prompt "Work."
        follow-up-enabled #false
        depends-on "failing"
    }
}
"#,
    )
    .unwrap();
    let before = user_side(&root);
    let out = launch_with_codex(&repo, &ahead_codex());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "`failing` failed: {stderr}");
    let session = session(&repo);
    let worktrees = root.join(".orch/worktrees").join(&session);
    // `after`'s worktree was made while `slow` worked, at the tip of that moment, and
    // moved to the tip with `slow`'s work when it started.
    let branch = format!("orch-agent/{session}/after");
    let reflog = git(&root, &["reflog", "show", "--format=%gs", &branch]);
    let mut steps = reflog.lines().rev();
    let created = steps.next().expect("created");
    let base = git(&root, &["rev-parse", "HEAD"]);
    assert_eq!(
        created,
        format!("branch: Created from {}", base.trim()),
        "{reflog}"
    );
    let slow_tip = git(
        &root,
        &[
            "log",
            "-1",
            "--format=%H",
            "--grep=orch: slow (",
            &format!("orch/{session}"),
        ],
    );
    assert!(
        reflog.contains(&format!("reset: moving to {}", slow_tip.trim())),
        "{reflog}"
    );
    let seen = std::fs::read_to_string(worktrees.join("after/seen-by-after.txt")).unwrap();
    assert!(
        seen.contains("slow.txt"),
        "its parent's work was there: {seen}"
    );
    assert_eq!(
        git(&root, &["show", &format!("orch/{session}:after.txt")]),
        "work of after\n"
    );
    // `blocked` never started: the worktree made for it, and its branch, are gone.
    assert!(!worktrees.join("blocked").exists());
    assert!(!worktrees.join(".meta/agents/blocked.json").exists());
    assert_eq!(
        git(
            &root,
            &["branch", "--list", &format!("orch-agent/{session}/blocked")]
        ),
        ""
    );
    assert_eq!(user_side(&root), before);
}
