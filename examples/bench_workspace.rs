//! Bench-only: the per-agent cost of isolation (not part of the product).
//!
//! Builds (once) a repository of `--files` files totalling about `--mb` MB, then for
//! `--agents` agents measures each step through `orch::workspace` (worktree with
//! set-up, commit, integrate, clean) and the same git commands run directly as the
//! floor, alternating the two so host noise hits both alike. Each agent edits its own
//! file; the second and later agents are rebased onto the tip (not fast-forwarded).
//!
//! Prints one JSON object: per step, the median milliseconds of orch and of the floor.
//!
//! `bench_workspace --dir DIR [--files 20000] [--mb 200] [--agents 4]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use orch::workspace::{
    BaseChoice, CleanForce, CleanScope, CommitInfo, MergeMode, Workspace, clean,
};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0"])
        .args(args)
        .env("GIT_EDITOR", "true")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository of `files` text files, about `bytes` in all, in 100 directories.
fn generate(root: &Path, files: usize, bytes: usize) {
    if root.join(".git").exists() {
        return;
    }
    std::fs::create_dir_all(root).expect("create repo dir");
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["config", "user.name", "Bench"]);
    git(root, &["config", "user.email", "bench@localhost"]);
    let per_file = bytes / files.max(1);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let words = [
        "alpha", "beta", "gamma", "delta", "fn", "let", "return", "struct", "impl", "match",
    ];
    for i in 0..files {
        let dir = root.join(format!("src/d{:02}", i % 100));
        std::fs::create_dir_all(&dir).expect("create dir");
        let mut text = String::with_capacity(per_file + 64);
        while text.len() < per_file {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(words[(seed % 10) as usize]);
            text.push_str(&format!("{}", seed % 1000));
            text.push(if seed % 9 == 0 { '\n' } else { ' ' });
        }
        text.push('\n');
        std::fs::write(dir.join(format!("f{i:05}.txt")), text).expect("write file");
    }
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "generated"]);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Samples {
    create: Vec<f64>,
    commit: Vec<f64>,
    integrate: Vec<f64>,
    clean: Vec<f64>,
}

fn edit(path: &Path, agent: usize) {
    std::fs::write(
        path.join(format!("src/d{:02}/agent{agent}.txt", agent % 100)),
        format!("work of agent {agent}\n"),
    )
    .expect("write agent file");
}

fn orch_round(root: &Path, session: &str, agents: usize, s: &mut Samples) {
    let (ws, _) = Workspace::prepare(root, session, BaseChoice::Head).expect("prepare");
    let mut worktrees = Vec::new();
    for a in 0..agents {
        let t = Instant::now();
        let wt = ws.create_agent(&format!("a{a}")).expect("create");
        s.create.push(ms(t));
        edit(&wt.path, a);
        worktrees.push(wt);
    }
    for wt in &mut worktrees {
        let t = Instant::now();
        let info = CommitInfo {
            role: "Bench".into(),
            summary: String::new(),
        };
        ws.commit_agent(wt, &info).expect("commit");
        s.commit.push(ms(t));
        let t = Instant::now();
        ws.integrate(wt, MergeMode::Rebase).expect("integrate");
        s.integrate.push(ms(t));
    }
    let t = Instant::now();
    clean(
        root,
        &CleanScope::Session(session.into()),
        CleanForce::Refuse,
    )
    .expect("clean");
    s.clean.push(ms(t) / agents as f64);
}

fn floor_round(root: &Path, session: &str, agents: usize, s: &mut Samples) {
    let run = format!("floor/{session}");
    git(root, &["branch", &run, "HEAD"]);
    let mut paths: Vec<(PathBuf, String)> = Vec::new();
    for a in 0..agents {
        let path = root.join(format!(".orch/floor/{session}/a{a}"));
        let branch = format!("floor-agent/{session}/a{a}");
        let t = Instant::now();
        let tip = git(root, &["rev-parse", &run]);
        git(
            root,
            &[
                "worktree",
                "add",
                "--quiet",
                "-b",
                &branch,
                path.to_str().unwrap_or_default(),
                &tip,
            ],
        );
        s.create.push(ms(t));
        edit(&path, a);
        paths.push((path, branch));
    }
    for (path, _) in &paths {
        let t = Instant::now();
        git(path, &["add", "-A"]);
        git(path, &["commit", "-q", "-m", "agent work"]);
        s.commit.push(ms(t));
        let t = Instant::now();
        let tip = git(root, &["rev-parse", &run]);
        git(path, &["rebase", "--quiet", &tip]);
        let new = git(path, &["rev-parse", "HEAD"]);
        git(
            root,
            &["update-ref", &format!("refs/heads/{run}"), &new, &tip],
        );
        s.integrate.push(ms(t));
    }
    let t = Instant::now();
    for (path, branch) in &paths {
        git(
            root,
            &[
                "worktree",
                "remove",
                "--force",
                path.to_str().unwrap_or_default(),
            ],
        );
        git(root, &["branch", "-D", "-q", branch]);
    }
    git(root, &["branch", "-D", "-q", &run]);
    s.clean.push(ms(t) / agents as f64);
}

fn main() {
    let dir = PathBuf::from(arg("--dir", "/tmp/orch-bench-workspace"));
    let files: usize = arg("--files", "20000").parse().unwrap_or(20000);
    let mb: usize = arg("--mb", "200").parse().unwrap_or(200);
    let agents: usize = arg("--agents", "4").parse().unwrap_or(4);
    let rounds: usize = arg("--rounds", "2").parse().unwrap_or(2);
    let root = dir.join("repo");
    let t = Instant::now();
    generate(&root, files, mb * 1024 * 1024);
    let generated_ms = ms(t);
    let (mut orch_s, mut floor_s) = (Samples::default(), Samples::default());
    for r in 0..rounds {
        orch_round(&root, &format!("bench-{r}"), agents, &mut orch_s);
        floor_round(&root, &format!("bench-{r}"), agents, &mut floor_s);
    }
    let t = Instant::now();
    let (ws, _) =
        Workspace::prepare(&root, "bench-prepare", BaseChoice::Snapshot).expect("prepare");
    let prepare_ms = ms(t);
    drop(ws);
    clean(
        &root,
        &CleanScope::Session("bench-prepare".into()),
        CleanForce::Force,
    )
    .expect("clean");
    let step = |o: &Vec<f64>, f: &Vec<f64>| {
        let (o, f) = (median(o.clone()), median(f.clone()));
        serde_json::json!({"orch_ms": o, "floor_ms": f, "ratio": if f > 0.0 { o / f } else { 0.0 }})
    };
    let total_o = median(orch_s.create.clone())
        + median(orch_s.commit.clone())
        + median(orch_s.integrate.clone())
        + median(orch_s.clean.clone());
    let total_f = median(floor_s.create.clone())
        + median(floor_s.commit.clone())
        + median(floor_s.integrate.clone())
        + median(floor_s.clean.clone());
    println!(
        "{}",
        serde_json::json!({
            "files": files, "mb": mb, "agents": agents, "rounds": rounds,
            "generate_ms": generated_ms,
            "prepare_head_clean_tree_snapshot_ms": prepare_ms,
            "create": step(&orch_s.create, &floor_s.create),
            "commit": step(&orch_s.commit, &floor_s.commit),
            "integrate": step(&orch_s.integrate, &floor_s.integrate),
            "clean_per_agent": step(&orch_s.clean, &floor_s.clean),
            "per_agent_total": {"orch_ms": total_o, "floor_ms": total_f, "ratio": if total_f > 0.0 { total_o / total_f } else { 0.0 }},
        })
    );
}
