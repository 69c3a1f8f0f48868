//! `launch merge`, `launch diff` and `launch clean` through the real binary, on runs
//! whose branches and worktrees the `orch::workspace` library made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use orch::workspace::{BaseChoice, CommitInfo, MergeMode, MergeOutcome, Workspace};

struct Repo {
    dir: tempfile::TempDir,
    root: PathBuf,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(root: &Path, path: &str, content: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

impl Repo {
    /// A repository on `main` with one commit, an uncommitted edit and an untracked file.
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-ws-cli")
            .tempdir()
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let repo = Repo { dir, root };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Test User"]);
        repo.git(&["config", "user.email", "user@example.com"]);
        write(&repo.root, "README.md", "# Project\n\nline one\nline two\n");
        write(&repo.root, "src/app.txt", "alpha\nbeta\ngamma\n");
        write(&repo.root, ".gitignore", "*.log\n");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "initial"]);
        repo
    }

    fn env(&self, cmd: &mut Command) {
        let home = self.dir.path().join("home");
        cmd.current_dir(&self.root)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .stdin(Stdio::null());
    }

    fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.env(&mut cmd);
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim_end().to_owned()
    }

    fn launch(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_launch"));
        self.env(&mut cmd);
        // orch ignores a GIT_DIR it inherits: every command names its repository.
        cmd.env("GIT_DIR", "/nonexistent")
            .env("GIT_INDEX_FILE", "/nonexistent/index");
        cmd.args(args).output().unwrap()
    }

    /// Branch, HEAD, index bytes, tree bytes (without .git and .orch) and stash.
    fn untouched(&self) -> (String, String, Vec<u8>, BTreeMap<String, Vec<u8>>, String) {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel == ".git" || rel == ".orch" {
                    continue;
                }
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut tree = BTreeMap::new();
        walk(&self.root, &self.root, &mut tree);
        (
            self.git(&["symbolic-ref", "HEAD"]),
            self.git(&["rev-parse", "HEAD"]),
            std::fs::read(self.root.join(".git/index")).unwrap(),
            tree,
            self.git(&["stash", "list"]),
        )
    }

    /// A finished run: agents `api` (edits src/app.txt) and `ui` (adds ui.txt) merged
    /// into `orch/<session>`.
    fn finished_run(&self, session: &str) -> Workspace {
        let (ws, _) = Workspace::prepare(&self.root, session, BaseChoice::Head).unwrap();
        for (agent, path, content) in [
            ("api", "src/app.txt", "alpha\nbeta (api)\ngamma\n"),
            ("ui", "ui.txt", "the ui\n"),
        ] {
            let mut wt = ws.create_agent(agent).unwrap();
            write(&wt.path, path, content);
            let info = CommitInfo {
                role: "Engineer".into(),
                summary: format!("{agent} work"),
            };
            assert!(ws.commit_agent(&wt, &info).unwrap().is_changed());
            let outcome = ws.integrate(&mut wt, MergeMode::Rebase).unwrap();
            assert!(
                matches!(outcome, MergeOutcome::Merged { .. }),
                "{outcome:?}"
            );
        }
        ws
    }
}

#[test]
fn launch_merge_fast_forwards_the_current_branch() {
    let repo = Repo::new();
    let ws = repo.finished_run("run-ff");
    write(&repo.root, "notes.txt", "untracked, unrelated\n");
    let out = repo.launch(&["merge", "run-ff"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("fast-forwarded `main` to run run-ff"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), ws.run_tip().unwrap());
    assert_eq!(
        std::fs::read_to_string(repo.root.join("ui.txt")).unwrap(),
        "the ui\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.root.join("notes.txt")).unwrap(),
        "untracked, unrelated\n"
    );
    let again = repo.launch(&["merge", "run-ff"]);
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("already holds run run-ff"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn launch_merge_makes_a_merge_commit_when_the_branch_moved_on() {
    let repo = Repo::new();
    repo.finished_run("run-mc");
    write(
        &repo.root,
        "README.md",
        "# Project\n\nline one\nline two\nline three (user)\n",
    );
    repo.git(&["commit", "-q", "-am", "user work"]);
    let out = repo.launch(&["merge", "run-mc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("with merge commit"),
        "{}",
        text(&out.stdout)
    );
    let parents = repo.git(&["rev-list", "--parents", "-1", "HEAD"]);
    assert_eq!(parents.split(' ').count(), 3, "{parents}");
    assert!(
        std::fs::read_to_string(repo.root.join("src/app.txt"))
            .unwrap()
            .contains("beta (api)")
    );
    assert!(
        std::fs::read_to_string(repo.root.join("README.md"))
            .unwrap()
            .contains("(user)")
    );
}

#[test]
fn launch_merge_refuses_to_overwrite_changes_or_to_conflict_and_changes_nothing() {
    let repo = Repo::new();
    repo.finished_run("run-no");
    // An uncommitted edit of a file the run changed, and an untracked file it adds.
    write(
        &repo.root,
        "src/app.txt",
        "alpha\nbeta (mine, uncommitted)\ngamma\n",
    );
    write(&repo.root, "ui.txt", "my own ui.txt\n");
    write(&repo.root, "notes.txt", "unrelated\n");
    let before = repo.untouched();
    let out = repo.launch(&["merge", "run-no"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("would overwrite your uncommitted changes to: src/app.txt, ui.txt"),
        "{stderr}"
    );
    assert!(!stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(repo.untouched(), before);

    // A committed change on the same line: a conflict, found before anything changes.
    std::fs::remove_file(repo.root.join("ui.txt")).unwrap();
    repo.git(&["commit", "-q", "-am", "user edits beta"]);
    let before = repo.untouched();
    let out = repo.launch(&["merge", "run-no"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("conflicts in: src/app.txt"), "{stderr}");
    assert!(stderr.contains("git merge orch/run-no"), "{stderr}");
    assert_eq!(repo.untouched(), before);

    let out = repo.launch(&["merge", "run-missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no run branch `orch/run-missing`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn launch_diff_prints_the_run_or_one_agent() {
    let repo = Repo::new();
    repo.finished_run("run-d");
    let out = repo.launch(&["diff", "run-d"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("run run-d (orch/run-d): "), "{stdout}");
    assert!(stdout.contains("2 commit(s)"), "{stdout}");
    assert!(
        stdout.contains("orch: api (Engineer) in run run-d"),
        "{stdout}"
    );
    assert!(stdout.contains("2 files changed"), "{stdout}");
    assert!(
        stdout.contains("+beta (api)") && stdout.contains("+the ui"),
        "{stdout}"
    );

    let out = repo.launch(&["diff", "run-d", "--agent", "ui"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("agent ui of run run-d (orch-agent/run-d/ui)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+the ui") && !stdout.contains("beta (api)"),
        "{stdout}"
    );

    let out = repo.launch(&["diff", "run-d", "--stat"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("2 files changed") && !stdout.contains("+the ui"),
        "{stdout}"
    );

    let out = repo.launch(&["diff", "run-nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run run-nope has no workspace"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn launch_clean_refuses_unsaved_work_then_removes_only_orch_leftovers() {
    let repo = Repo::new();
    repo.git(&["branch", "feature"]);
    repo.git(&["branch", "orchestra"]);
    let ws = repo.finished_run("run-c");
    // An agent with uncommitted changes, and one with a commit never merged.
    let dirty = ws.create_agent("dirty").unwrap();
    write(&dirty.path, "half.txt", "half done\n");
    let unmerged = ws.create_agent("unmerged").unwrap();
    write(&unmerged.path, "lost.txt", "would be lost\n");
    ws.commit_agent(
        &unmerged,
        &CommitInfo {
            role: "R".into(),
            summary: String::new(),
        },
    )
    .unwrap();
    // A worktree made ahead for an agent that never started, its files never checked
    // out (the run was killed): nothing of an agent is there to lose.
    let ahead = ws.begin_worktree("ahead", true).unwrap();
    assert!(ahead.staged);
    std::fs::create_dir_all(repo.root.join(".orch/runs/run-c/logs")).unwrap();
    write(&repo.root, ".orch/runs/run-c/logs/timeline.log", "kept\n");
    write(&repo.root, "notes.txt", "untracked\n");
    let before = repo.untouched();

    let out = repo.launch(&["clean", "--session", "run-c"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "worktree {} has uncommitted changes: half.txt",
            dirty.path.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "branch orch-agent/run-c/unmerged has 1 commit(s) not merged into orch/run-c"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&ahead.path.display().to_string()),
        "{stderr}"
    );
    assert!(dirty.path.join("half.txt").exists(), "nothing removed");
    assert!(!repo.git(&["branch", "--list", "orch/run-c"]).is_empty());

    let out = repo.launch(&["clean", "--session", "run-c", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("deleted branch orch-agent/run-c/unmerged (was "),
        "{stdout}"
    );
    assert!(
        stdout.contains("deleted branch orch/run-c (was "),
        "{stdout}"
    );
    assert!(!repo.root.join(".orch/worktrees/run-c").exists());
    let branches = repo.git(&["branch", "--format=%(refname:short)"]);
    assert_eq!(
        branches, "feature\nmain\norchestra",
        "only orch's branches go"
    );
    assert_eq!(
        repo.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(repo.root.join(".orch/runs/run-c/logs/timeline.log")).unwrap(),
        "kept\n"
    );
    assert_eq!(repo.untouched(), before);
    let out = repo.launch(&["clean", "--session", "run-c"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nothing to clean"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn launch_clean_all_removes_finished_runs_and_never_a_live_one() {
    let repo = Repo::new();
    repo.finished_run("run-old");
    repo.finished_run("run-live");
    // This test process stands in for run-live's orchestrator.
    let pid_file = repo.root.join(".orch/runs/run-live/orchestrator.pid");
    std::fs::create_dir_all(pid_file.parent().unwrap()).unwrap();
    std::fs::write(
        &pid_file,
        orch::liveness::ProcessIdentity::current().to_text(),
    )
    .unwrap();
    let out = repo.launch(&["clean", "--all", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("run run-live is still going"),
        "{}",
        text(&out.stderr)
    );
    assert!(!repo.root.join(".orch/worktrees/run-old").exists());
    assert!(repo.root.join(".orch/worktrees/run-live/api").is_dir());
    let branches = repo.git(&["branch", "--format=%(refname:short)"]);
    assert!(!branches.contains("run-old"), "{branches}");
    assert!(
        branches.contains("orch/run-live") && branches.contains("orch-agent/run-live/api"),
        "{branches}"
    );
    // Once it has ended, a plain clean takes it: its agent branches are merged.
    std::fs::write(&pid_file, "999999999 1").unwrap();
    let out = repo.launch(&["clean", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!repo.root.join(".orch/worktrees/run-live").exists());
    assert_eq!(repo.git(&["branch", "--format=%(refname:short)"]), "main");
    let out = repo.launch(&["clean", "--all"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("nothing to clean"),
        "{}",
        text(&out.stdout)
    );
}
