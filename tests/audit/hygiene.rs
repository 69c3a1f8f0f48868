//! What a run leaves in the project, checked through the real `launch`: `.orch/` is
//! private whatever the umask and never shows in `git status`; an agent's non-JSON
//! output is kept; a runaway 65 MB line is cut without taking `launch` past 100 MB.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo::{TestRepo, read, text};
use crate::support::*;

/// A squad of one single-turn agent, `solo`, so a fake CLI answers one turn.
pub fn solo_squad(repo: &TestRepo) {
    std::fs::write(
        repo.root().join("orch.kdl"),
        "group \"default\" {\n    agent \"solo\" {\n        role \"Solo\"\n        plan-prompt \"Do the task.\"\n        follow-up-enabled #false\n    }\n}\n",
    )
    .unwrap();
}

/// Writes an executable stand-in for `codex` that runs `body` (sh) for every turn.
pub fn fake_codex(repo: &TestRepo, body: &str) -> PathBuf {
    let path = repo.dir.path().join("fake-codex");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `cmd` run under `umask` (a shell builtin: set it, then `exec` the same program
/// with the same arguments, environment and directory).
pub fn under_umask(cmd: &Command, umask: &str) -> Command {
    let mut shell = Command::new("/bin/sh");
    shell
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        shell.current_dir(dir);
    }
    shell
}

/// `launch --backend codex --mux none` with the fake CLI as `codex`.
pub fn fake_codex_launch(repo: &TestRepo, codex: &Path, prompt: &str) -> Command {
    let mut cmd = repo.launch();
    cmd.args(["--prompt", prompt, "--backend", "codex", "--mux", "none"])
        .env("ORCH_CODEX_BIN", codex);
    cmd
}

/// Every path under `dir`, directories included, without following links.
fn paths_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            paths_under(&path, out);
        }
    }
}

fn git(root: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn orch_files_are_private_whatever_the_umask_and_stay_out_of_git_status() {
    for umask in ["022", "000"] {
        let repo = TestRepo::new();
        let home = repo.dir.path().join("home");
        // A real repository (TestRepo's `.git` is a bare marker), with one file of ours.
        git(&repo.root(), &home, &["init", "-q"]);
        std::fs::write(repo.root().join("README"), "hello\n").unwrap();
        let before = git(&repo.root(), &home, &["status", "--porcelain", "-uall"]);

        let mut cmd = repo.launch();
        cmd.args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
        ])
        .args(["--demo-scenario", "events=3"]);
        let mut cmd = under_umask(&cmd, umask);
        let out = cmd.output().expect("launch runs");
        assert_ok(&out);

        let orch = repo.root().join(".orch");
        let mut paths = vec![orch.clone()];
        paths_under(&orch, &mut paths);
        assert!(
            paths.iter().any(|p| p.ends_with("audit.db")) && paths.len() > 8,
            "umask {umask}: the run wrote its files: {paths:?}"
        );
        let mut wrong = Vec::new();
        let worktrees = orch.join("worktrees");
        for path in &paths {
            // An agent's worktree holds the project's own files, with their own modes;
            // the folders that hold the worktrees (`worktrees/<session>`) are private.
            if path
                .strip_prefix(&worktrees)
                .is_ok_and(|rest| rest.components().count() >= 2)
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            if mode != want {
                wrong.push(format!("{:o} {}", mode, path.display()));
            }
        }
        assert!(
            wrong.is_empty(),
            "umask {umask}: not private:\n{}",
            wrong.join("\n")
        );

        let after = git(&repo.root(), &home, &["status", "--porcelain", "-uall"]);
        assert_eq!(after, before, "umask {umask}: `.orch` shows in git status");
        assert!(before.contains("README"), "{before}");
        assert!(
            !repo.root().join(".gitignore").exists(),
            "the user's .gitignore is not written"
        );
    }
}

/// Peak resident memory of a running process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn a_65_mb_line_is_cut_and_non_json_lines_are_kept_within_100_mb() {
    let repo = TestRepo::new();
    solo_squad(&repo);
    let big = 65 * 1024 * 1024;
    let codex = fake_codex(
        &repo,
        &format!(
            r#"echo '{{"type":"thread.started","thread_id":"t-big"}}'
echo 'Note: this CLI prints a banner that is not JSON'
printf '{{"type":"item.completed","item":{{"id":"i1","type":"agent_message","text":"'
head -c {big} /dev/zero | tr '\0' 'x'
printf '"}}}}\n'
echo '{{"type":"item.completed","item":{{"id":"i2","type":"agent_message","text":"small answer"}}}}'
echo '{{"type":"turn.completed","usage":{{"input_tokens":11,"output_tokens":5}}}}'"#
        ),
    );
    let mut child = ChildGuard(
        under_umask(&fake_codex_launch(&repo, &codex, "Print a lot"), "022")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut peak = 0;
    let started = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "launch did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(peak > 0, "VmHWM was read");
    eprintln!("peak RSS of launch with a 65 MiB line: {} MB", peak / 1000);
    assert!(
        peak < 100 * 1000,
        "peak RSS of launch was {} MB with a 65 MB line",
        peak / 1000
    );

    let log = read(&repo.only_run().join("logs/solo.log"));
    assert!(
        log.contains("output   Note: this CLI prints a banner that is not JSON"),
        "{log}"
    );
    // The printf'd prefix, the 65 MiB of text, then `"}}`.
    let prefix = "{\"type\":\"item.completed\",\"item\":{\"id\":\"i1\",\"type\":\"agent_message\",\"text\":\"";
    let line_len = prefix.len() + big + 3;
    assert!(
        log.contains(&format!(
            "… [cut: a {line_len}-byte line, longer than the line limit]"
        )),
        "{}",
        log.lines()
            .map(|l| if l.len() > 300 {
                &l[l.len() - 300..]
            } else {
                l
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(log.contains("message  small answer"), "the stream went on");
    assert!(log.len() < 64 * 1024, "the log holds {} bytes", log.len());

    // The store keeps both raw lines as events.
    let db = repo_db(&repo);
    let events = export(&db, &only_session(&repo));
    let raw: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "raw_line")
        .map(|e| e["payload"]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(raw.len(), 2, "{raw:?}");
    assert_eq!(raw[0], "Note: this CLI prints a banner that is not JSON");
    assert!(raw[1].len() < 8 * 1024);
}
