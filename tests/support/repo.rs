//! Hermetic temp repos and the real `launch` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "reaper.rs"]
mod reaper;

pub struct TestRepo {
    // Declared first, so it stops leftover processes before `dir` is deleted.
    _reaper: reaper::Reaper,
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("repo")).expect("repo dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        init_git_repo(&dir.path().join("repo"), &dir.path().join("home"));
        // A private runtime dir, as a login session has: control sockets go there.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(dir.path().join("home/run"))
            .expect("runtime dir");
        TestRepo {
            _reaper: reaper::Reaper::new(dir.path()),
            dir,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// `launch` with a scrubbed, private environment, run from the repo root.
    pub fn launch(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_launch"));
        let home = self.dir.path().join("home");
        cmd.current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("ZELLIJ_SOCKET_DIR", home.join("zellij"))
            .env("CODEX_HOME", home.join(".codex"))
            .stdin(Stdio::null());
        cmd
    }

    /// `orch-audit` with the same private environment as [`TestRepo::launch`]'s HOME,
    /// run from the repo root; not run yet.
    pub fn audit_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch-audit"));
        cmd.current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"));
        cmd
    }

    /// `orch-audit ARGS`: its stdout, after asserting it succeeded.
    pub fn audit(&self, args: &[&str]) -> String {
        let out = self
            .audit_command()
            .args(args)
            .output()
            .expect("run orch-audit");
        assert!(
            out.status.success(),
            "orch-audit {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `launch --prompt "Ship the MVP" --backend demo --mux none <extra>`, not run yet.
    pub fn demo_command(&self, extra: &[&str]) -> Command {
        let mut cmd = self.launch();
        cmd.args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
        ]);
        cmd.args(extra);
        cmd
    }

    pub fn demo(&self, scenario: &str, extra: &[&str]) -> Output {
        let mut cmd = self.demo_command(&["--demo-scenario", scenario]);
        cmd.args(extra);
        cmd.output().expect("run launch")
    }

    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.root().join(".orch/runs"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    pub fn only_run(&self) -> PathBuf {
        let dirs = self.run_dirs();
        assert_eq!(dirs.len(), 1, "expected exactly one run: {dirs:?}");
        dirs[0].clone()
    }

    pub fn timeline(&self) -> String {
        read(&self.only_run().join("logs/timeline.log"))
    }
}

/// A real git repository with one commit (a README), made with a private HOME so no
/// user or system git config is read.
pub fn init_git_repo(root: &Path, home: &Path) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(root)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(args)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(root.join("README.md"), "# test repo\n").expect("write README");
    git(&["add", "README.md"]);
    git(&[
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@localhost",
        "commit",
        "-q",
        "-m",
        "start",
    ]);
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Timeline lines parsed as (time in ms since epoch-ish ordering, event, subject).
pub fn timeline_events(timeline: &str) -> Vec<(String, String, String)> {
    timeline
        .lines()
        .filter(|l| l.starts_with("20"))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next().unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

/// Position of the first timeline line with this event and subject.
pub fn at(events: &[(String, String, String)], event: &str, subject: &str) -> usize {
    events
        .iter()
        .position(|(_, e, s)| e == event && s == subject)
        .unwrap_or_else(|| panic!("no `{event} {subject}` in the timeline: {events:#?}"))
}

/// `git ARGS` in `root`; fails the test when git fails. Its stdout.
pub fn git(root: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Writes `name` in `root` and commits it (as a test identity); the user's own commit.
pub fn commit_file(root: &Path, name: &str, content: &str) {
    std::fs::write(root.join(name), content).unwrap();
    git(root, &["add", name]);
    git(
        root,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@localhost",
            "commit",
            "-q",
            "-m",
            name,
        ],
    );
}

/// Everything of the user's side of the repository that a run must not change: the
/// checked-out branch, HEAD, the index's bytes, the porcelain status (untracked files
/// included), the stash list and the README's bytes.
pub fn user_side(root: &Path) -> (String, String, Vec<u8>, String, String, String) {
    (
        git(root, &["symbolic-ref", "HEAD"]),
        git(root, &["rev-parse", "HEAD"]),
        std::fs::read(root.join(".git/index")).expect("index"),
        git(root, &["status", "--porcelain", "--untracked-files=all"]),
        git(root, &["stash", "list"]),
        std::fs::read_to_string(root.join("README.md")).expect("README"),
    )
}

/// An `orch.kdl` squad of two one-turn agents: a planner, then a builder that writes
/// the blueprint. Tests put their own nodes before it.
pub const PLANNER_AND_BUILDER_KDL: &str = r#"
agent "planner" {
    role "Planner"
    plan-prompt "Plan."
    follow-up-enabled #false
}
agent "builder" {
    role "Builder"
    depends-on "planner"
    plan-prompt "Write the blueprint."
    follow-up-enabled #false
}
"#;

/// The start of every `scripted_codex`: reads the prompt into `$prompt`, finds the
/// agent by its "(agent `ID`)" marker (`unknown` without one) into `$agent`, and
/// records the call's arguments in `$STATE/calls.<agent>` and its prompt in
/// `$STATE/prompt.<agent>.<n>` (`$n`: the call's number for that agent).
const SCRIPTED_CODEX_START: &str = r#"#!/bin/sh
prompt=$(cat)
agent=$(printf '%s' "$prompt" | sed -n 's/.*(agent `\([^`]*\)`).*/\1/p' | head -n 1)
[ -n "$agent" ] || agent=unknown
echo "$*" >> "$STATE/calls.$agent"
n=$(wc -l < "$STATE/calls.$agent")
printf '%s' "$prompt" > "$STATE/prompt.$agent.$n"
"#;

/// A fake `codex` for a scripted squad: `SCRIPTED_CODEX_START`, then the shell `body`,
/// as `<tmp>/codex`, and the builder's answer (`blueprint`, as a JSON string) in
/// `<tmp>/state/blueprint`. Returns the script's path and the state directory
/// (`$STATE` for the script).
pub fn scripted_codex(repo: &TestRepo, body: &str, blueprint: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let state = repo.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("blueprint"),
        serde_json::to_string(blueprint).unwrap(),
    )
    .unwrap();
    let codex = repo.dir.path().join("codex");
    std::fs::write(&codex, format!("{SCRIPTED_CODEX_START}{body}")).unwrap();
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    (codex, state)
}
