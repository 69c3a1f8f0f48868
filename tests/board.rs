//! The status board through the real binaries: `launch status --watch` in a real tmux
//! pane during a demo run (read with `capture-pane`) shows each agent's state change,
//! and its keys pause, resume and quit; afterwards `launch status` reads the finished
//! run from the audit store.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TestRepo;

const WAIT: Duration = Duration::from_secs(60);

/// A private tmux server (its own socket under the test's temp dir), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).arg("-f").arg("/dev/null");
        cmd.stdin(Stdio::null());
        cmd
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "board"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "board", keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "board"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if start.elapsed() > WAIT => panic!("timed out waiting for {what}:\n{last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The row of `agent` on a captured screen.
fn row<'a>(screen: &'a str, agent: &str) -> Option<&'a str> {
    screen.lines().find(|line| {
        line.trim_start_matches([' ', '└'])
            .split_whitespace()
            .next()
            == Some(agent)
    })
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn start_demo(repo: &TestRepo) -> Child {
    repo.demo_command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start launch")
}

/// `launch status --watch` in a detached tmux session, with the test's private
/// environment (the same as `TestRepo::launch`).
fn board_in_tmux(repo: &TestRepo) -> Tmux {
    let tmux = Tmux {
        socket: repo.dir.path().join("tmux.sock"),
    };
    let launch = repo.launch();
    let mut cmd = tmux.cmd();
    cmd.args([
        "new-session",
        "-d",
        "-s",
        "board",
        "-x",
        "160",
        "-y",
        "16",
        "-c",
    ])
    .arg(repo.root());
    for (key, value) in launch.get_envs() {
        if let Some(value) = value {
            let mut pair = key.to_os_string();
            pair.push("=");
            pair.push(value);
            cmd.arg("-e").arg(pair);
        }
    }
    cmd.arg(launch.get_program()).args(["status", "--watch"]);
    let status = cmd.status().expect("tmux new-session");
    assert!(status.success());
    tmux
}

fn wait_for_socket(root: &Path) {
    wait_for("the run's control socket", || {
        let runs = root.join(".orch/runs");
        let found = std::fs::read_dir(&runs)
            .map(|rd| rd.flatten().any(|e| e.path().join("control.path").exists()))
            .unwrap_or(false);
        found
            .then_some(())
            .ok_or_else(|| "no control.path yet".into())
    });
}

#[test]
fn the_board_follows_a_demo_run_in_tmux_and_its_keys_pause_resume_and_quit() {
    if !tmux_available() {
        panic!("tmux is required for this test (scripts/test.sh installs it)");
    }
    let repo = TestRepo::new();
    let mut run = start_demo(&repo);
    wait_for_socket(&repo.root());
    let tmux = board_in_tmux(&repo);

    // Live: the core agents go from running to succeeded, in their pane.
    wait_for("the planner running", || {
        let screen = tmux.screen();
        row(&screen, "planner")
            .is_some_and(|r| r.contains("running turn") || r.contains("succeeded"))
            .then_some(())
            .ok_or(screen)
    });
    wait_for("the planner succeeded and the researcher under it", || {
        let screen = tmux.screen();
        let ok = row(&screen, "planner").is_some_and(|r| r.contains("succeeded"))
            && screen.contains("└ researcher");
        ok.then_some(()).ok_or(screen)
    });

    // p pauses the run: the header says so and no agent starts while it is paused.
    tmux.keys("p");
    wait_for("the run paused", || {
        let screen = tmux.screen();
        screen
            .lines()
            .next()
            .is_some_and(|header| header.contains(" · paused · "))
            .then_some(())
            .ok_or(screen)
    });
    let paused = tmux.screen();
    std::thread::sleep(Duration::from_millis(1500));
    let still = tmux.screen();
    assert!(
        still
            .lines()
            .next()
            .unwrap_or_default()
            .contains(" · paused · "),
        "{still}"
    );
    let running_rows = |screen: &str| {
        screen
            .lines()
            // The keys line may quote the answer to `p`; only agent rows count.
            .filter(|l| l.contains("running turn") && !l.contains("q quit"))
            .count()
    };
    assert_eq!(running_rows(&still), 0, "paused, yet a turn runs:\n{still}");
    assert!(
        still.lines().any(|l| l.contains(" paused ")),
        "the agent between turns shows paused:\n{still}"
    );
    assert_eq!(
        paused.lines().filter(|l| l.contains("succeeded")).count(),
        still.lines().filter(|l| l.contains("succeeded")).count()
    );

    // r resumes; the blueprint's agents appear with their branches, and the run ends.
    tmux.keys("r");
    wait_for("the run to succeed", || {
        let screen = tmux.screen();
        let header = screen.lines().next().unwrap_or_default().to_owned();
        let ok = header.contains(" · succeeded · ")
            && ["backend-api", "frontend-ui", "integration-tests"]
                .iter()
                .all(|a| row(&screen, a).is_some_and(|r| r.contains("succeeded")))
            && row(&screen, "backend-api").is_some_and(|r| r.contains("orch-agent/…/backend-api"));
        ok.then_some(()).ok_or(screen)
    });
    assert!(run.wait().expect("launch").success());

    // q quits the board (its pane, the session's only one, closes).
    assert!(tmux.alive());
    tmux.keys("q");
    wait_for("the board to quit", || {
        (!tmux.alive()).then_some(()).ok_or_else(|| tmux.screen())
    });

    // Afterwards the board comes from the audit store.
    let out = repo.launch().args(["status"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().unwrap().contains(" · succeeded · "),
        "{text}"
    );
    for agent in [
        "planner",
        "researcher",
        "builder",
        "backend-api",
        "frontend-ui",
        "integration-tests",
    ] {
        assert!(
            row(&text, agent).is_some_and(|r| r.contains("succeeded")),
            "{agent}:\n{text}"
        );
    }
    let out = repo.launch().args(["status", "--json"]).output().unwrap();
    let board: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(board["state"], "succeeded");
    assert_eq!(board["live"], false);
    let backend = board["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "backend-api")
        .unwrap();
    assert!(backend["files_changed"].as_u64().unwrap() > 0, "{backend}");
    // The stored board knows each agent's branch too.
    assert!(
        backend["branch"]
            .as_str()
            .is_some_and(|b| b.starts_with("orch-agent/") && b.ends_with("/backend-api")),
        "{backend}"
    );
    let planner = board["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "planner")
        .unwrap();
    assert_eq!(planner["branch"], "read-only", "{planner}");
}

#[test]
fn status_without_a_run_or_a_terminal_says_what_to_do() {
    let repo = TestRepo::new();
    let out = repo.launch().args(["status"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no run found"), "{stderr}");

    let out = repo
        .launch()
        .args(["--prompt", "Ship it", "--backend", "demo", "--mux", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = repo.launch().args(["status", "--watch"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}
