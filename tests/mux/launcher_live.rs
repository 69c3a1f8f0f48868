//! The real `launch` binary in Zellij and tmux: a demo run whose panes (agents spawned
//! mid-run included) show their logs, Ctrl+S typed through `launch attach` in an outer
//! tmux pausing the run, `launch ctl resume` finishing it; and the clear outcomes of a
//! stale session, a missing zellij binary and a directory outside any repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use orch::mux::{TmuxClient, ZellijClient, placement_for_slot};

use crate::support::{Reaper, require_tool, wait_for};

/// A demo run with mid-run agents takes about 30 s at this delay; CI machines are slow.
const RUN_WAIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(45);
const DELAY: &str = "delay=250,waves=2";

/// A private repo, home and tool environment for one test.
struct Sandbox {
    // Declared first, so it stops leftover processes before `tmp` is deleted.
    _reaper: Reaper,
    tmp: tempfile::TempDir,
    env: Vec<(String, String)>,
    root: PathBuf,
}

impl Sandbox {
    fn new(zellij: Option<&Path>) -> Self {
        Self::with_root_len(zellij, None)
    }

    /// A sandbox whose repository root is `root_len` bytes long (`None`: short).
    fn with_root_len(zellij: Option<&Path>, root_len: Option<usize>) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("orch-ln")
            .tempdir()
            .unwrap();
        let mut root = tmp.path().join("repo");
        if let Some(len) = root_len {
            while root.as_os_str().len() + 51 < len {
                root.push("d".repeat(50));
            }
            let rest = len - root.as_os_str().len() - 1;
            root.push("r".repeat(rest));
            assert_eq!(root.as_os_str().len(), len);
        }
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(tmp.path().join("home")).unwrap();
        crate::repo::init_git_repo(&root, &tmp.path().join("home"));
        let mut env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("TERM".to_owned(), "xterm-256color".to_owned()),
            ("SHELL".to_owned(), "/bin/sh".to_owned()),
        ];
        for (var, sub) in [
            ("HOME", "home"),
            ("XDG_CONFIG_HOME", "home/.config"),
            ("XDG_DATA_HOME", "home/.local/share"),
            ("XDG_STATE_HOME", "home/.local/state"),
            ("XDG_CACHE_HOME", "home/.cache"),
            ("XDG_RUNTIME_DIR", "home/run"),
            ("TMPDIR", "tmp"),
            ("TMUX_TMPDIR", "tmux"),
            ("ZELLIJ_SOCKET_DIR", "zj"),
            ("CODEX_HOME", "home/.codex"),
        ] {
            let dir = tmp.path().join(sub);
            std::fs::create_dir_all(&dir).unwrap();
            // Private, like a login session's: the control socket goes there.
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            env.push((var.to_owned(), dir.display().to_string()));
        }
        if let Some(bin) = zellij {
            env.push(("ORCH_ZELLIJ_BIN".to_owned(), bin.display().to_string()));
        }
        Sandbox {
            _reaper: Reaper::new(tmp.path()),
            tmp,
            env,
            root,
        }
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn run_dir(&self, session: &str) -> PathBuf {
        self.root().join(".orch/runs").join(session)
    }

    /// `launch <args>` in the repo, private environment, no terminal.
    fn launch(&self, args: &[&str]) -> Output {
        self.launch_in(&self.root(), args)
    }

    fn launch_in(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_launch"))
            .current_dir(dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The argv an outer terminal runs for `launch attach --session S`.
    fn attach_argv(&self, session: &str) -> Vec<String> {
        let mut argv = vec!["env".to_owned(), "-i".to_owned()];
        argv.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.extend(
            [
                env!("CARGO_BIN_EXE_launch"),
                "attach",
                "--session",
                session,
                "--project-root",
            ]
            .map(str::to_owned),
        );
        argv.push(self.root().display().to_string());
        argv
    }

    fn zellij(&self, bin: &Path) -> ZellijClient {
        self.env
            .iter()
            .fold(ZellijClient::new(bin), |client, (k, v)| {
                client.with_env(k, v)
            })
    }

    fn tmux(&self, bin: &Path, socket: &str) -> TmuxClient {
        self.env
            .iter()
            .fold(TmuxClient::new(bin, socket), |client, (k, v)| {
                client.with_env(k, v)
            })
    }

    fn timeline(&self, session: &str) -> String {
        std::fs::read_to_string(self.run_dir(session).join("logs/timeline.log")).unwrap_or_default()
    }

    fn orchestrator_log(&self, session: &str) -> String {
        std::fs::read_to_string(self.run_dir(session).join("orchestrator.log")).unwrap_or_default()
    }

    fn state(&self, session: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.run_dir(session).join("state.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(value["status"].as_str()?.to_owned())
    }

    /// Agent ids with a pane, in slot order (`panes.json`).
    /// The pane title of `agent` in a demo run: its id, then its branch, or
    /// `read-only` for the agents that only read (the core ones and the autonomous one).
    fn pane_title(session: &str, agent: &str) -> String {
        match agent {
            "planner" | "researcher" | "builder" | "autonomous-orchestrator" => {
                format!("{agent} · read-only")
            }
            _ => format!("{agent} · orch-agent/{session}/{agent}"),
        }
    }

    fn pane_agents(&self, session: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.run_dir(session).join("panes.json")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn wait_until_finished(&self, session: &str) -> String {
        wait_for("the run to finish", RUN_WAIT, || {
            self.state(session).ok_or_else(|| self.timeline(session))
        })
    }
}

/// Stops the run, its Zellij or tmux session and the outer tmux when a test ends.
struct RunGuard<'a> {
    sandbox: &'a Sandbox,
    session: String,
    zellij: Option<ZellijClient>,
    tmux: Vec<TmuxClient>,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if self.sandbox.state(&self.session).is_none() {
            let _ = self
                .sandbox
                .launch(&["ctl", "stop", "--session", &self.session]);
        }
        for tmux in &self.tmux {
            let _ = tmux.kill_server();
        }
        if let Some(zellij) = &self.zellij {
            let _ = zellij.remove_stale_session(&orch::mux::mux_session_name(&self.session));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An outer terminal (tmux on its own socket) running `argv`; its screen stays readable
/// after `argv` exits (`remain-on-exit`), so a failure shows what the command printed.
fn outer_tmux(sandbox: &Sandbox, bin: &Path, argv: Vec<String>) -> TmuxClient {
    let outer = sandbox.tmux(bin, "orch-outer");
    let run = |args: Vec<String>| {
        let status = outer.command(&args).status().unwrap();
        assert!(status.success(), "outer tmux failed: {args:?}");
    };
    let words = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    run(words(&[
        "new-session",
        "-d",
        "-s",
        "outer",
        "-x",
        "170",
        "-y",
        "48",
        "--",
        "sleep",
        "600",
    ]));
    run(words(&["set-option", "-g", "remain-on-exit", "on"]));
    let mut respawn = words(&["respawn-pane", "-k", "-t", "=outer:", "--"]);
    respawn.extend(argv);
    run(respawn);
    outer
}

/// Zellij drops a client whose terminal reads too slowly ("lost connection to the zellij
/// server"), which a detached outer tmux on a loaded CI machine sometimes is; a user would
/// attach again, and so does the test.
fn reattach_if_dropped(outer: &TmuxClient, sandbox: &Sandbox, session: &str) {
    let dead = outer
        .list_panes("outer")
        .is_ok_and(|panes| panes.iter().any(|pane| pane.is_dead));
    if dead {
        let mut respawn: Vec<String> = ["respawn-pane", "-k", "-t", "=outer:", "--"]
            .map(str::to_owned)
            .to_vec();
        respawn.extend(sandbox.attach_argv(session));
        let _ = outer.command(&respawn).status();
    }
}

fn outer_screen(outer: &TmuxClient) -> Result<String, String> {
    outer.capture_pane("=outer:").map_err(|err| err.to_string())
}

/// Whether a pane's screen shows `text`; a narrow pane wraps lines, and a space at the
/// wrap point is not in the dump, so whitespace is ignored.
fn shows(screen: &str, text: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    squeeze(screen).contains(&squeeze(text))
}

/// The log line that ends an agent's log when it succeeded.
fn done_line(agent: &str) -> String {
    format!("── {agent} succeeded")
}

fn start_demo(sandbox: &Sandbox, mux: &str, session: &str) {
    let out = sandbox.launch(&[
        "--prompt",
        "Ship the MVP",
        "--backend",
        "demo",
        "--mux",
        mux,
        "--session",
        session,
        "--autonomous",
        "--demo-scenario",
        DELAY,
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "launch failed: {stderr}");
    assert!(
        stderr.contains(&format!("launch attach --session {session}")),
        "{stderr}"
    );
    assert!(stderr.contains("Ctrl+S"), "key help missing: {stderr}");
}

/// Ctrl+S in the outer terminal once the dynamic wave runs: the run pauses, the summary
/// is in `interrupt.log` and the timeline, nothing new starts.
fn ctrl_s_pauses(
    sandbox: &Sandbox,
    outer: &TmuxClient,
    session: &str,
    timeline_pane: &dyn Fn() -> Result<String, String>,
) {
    // Both parallel agents in a turn (each first sets up its worktree).
    wait_for("the dynamic wave", RUN_WAIT, || {
        let timeline = sandbox.timeline(session);
        if timeline.contains("turn_started backend-api")
            && timeline.contains("turn_started frontend-ui")
        {
            Ok(())
        } else {
            Err(timeline)
        }
    });
    wait_for("a client showing the session", WAIT, || {
        reattach_if_dropped(outer, sandbox, session);
        let screen = outer_screen(outer)?;
        screen.contains("core-logs").then_some(()).ok_or(screen)
    });
    outer
        .command(["send-keys", "-t", "=outer:", "C-s"])
        .status()
        .unwrap();
    let interrupt_log = sandbox.run_dir(session).join("logs/interrupt.log");
    // The log is appended as the summary is written: wait for its last line.
    let summary = wait_for("the interrupt summary", WAIT, || {
        let text = std::fs::read_to_string(&interrupt_log).map_err(|e| e.to_string())?;
        text.contains("stop for good")
            .then_some(text.clone())
            .ok_or(text)
    });
    assert!(summary.contains("requested by ctrl-s"), "{summary}");
    assert!(
        summary.contains("finished:  planner, researcher, builder"),
        "{summary}"
    );
    assert!(
        summary.contains("pending:   integration-tests"),
        "{summary}"
    );
    // In-flight turns finished before the summary was written.
    let timeline = sandbox.timeline(session);
    let paused = timeline
        .find("run_paused #1")
        .expect("run_paused in the timeline");
    for agent in ["backend-api", "frontend-ui"] {
        let finished = timeline
            .find(&format!("turn_finished {agent} "))
            .unwrap_or_else(|| panic!("{agent} never finished a turn:\n{timeline}"));
        assert!(
            finished < paused,
            "{agent}'s turn ended after the summary:\n{timeline}"
        );
    }
    // The summary shows in the timeline pane.
    wait_for("the summary in the timeline pane", WAIT, || {
        let screen = timeline_pane()?;
        shows(&screen, "pending:   integration-tests")
            .then_some(())
            .ok_or(screen)
    });
    // Paused: integration-tests (which waits for the wave) does not start.
    std::thread::sleep(Duration::from_millis(1500));
    let timeline = sandbox.timeline(session);
    assert!(
        !timeline.contains("agent_started integration-tests"),
        "an agent started while paused:\n{timeline}"
    );
    assert_eq!(sandbox.state(session), None, "the run ended while paused");
}

/// `launch ctl resume` finishes a paused run.
fn resume_finishes(sandbox: &Sandbox, session: &str) {
    let resume = sandbox.launch(&["ctl", "resume", "--session", session]);
    assert!(resume.status.success(), "{}", text(&resume.stderr));
    assert_eq!(sandbox.wait_until_finished(session), "succeeded");
}

#[test]
fn zellij_demo_run_shows_every_agent_and_ctrl_s_pauses_it() {
    let Some(zellij) = require_tool("zellij", "ORCH_ZELLIJ_BIN", &["/root/.cargo/bin/zellij"])
    else {
        return;
    };
    let Some(tmux) = require_tool("tmux", "ORCH_TMUX_BIN", &[]) else {
        return;
    };
    let sandbox = Sandbox::new(Some(&zellij));
    let session = "run-20261122-101010-zl01";
    let client = sandbox.zellij(&zellij);
    let mut guard = RunGuard {
        sandbox: &sandbox,
        session: session.to_owned(),
        zellij: Some(client.clone()),
        tmux: Vec::new(),
    };
    start_demo(&sandbox, "zellij", session);

    // The background session has the layout's panes before any client attaches.
    for agent in [
        "planner",
        "researcher",
        "builder",
        "autonomous-orchestrator",
        "timeline",
    ] {
        let title = if agent == "timeline" {
            agent.to_owned()
        } else {
            Sandbox::pane_title(session, agent)
        };
        wait_for(&format!("pane {title}"), WAIT, || {
            let panes = client.list_panes(session).map_err(|e| e.to_string())?;
            panes
                .iter()
                .any(|p| p.title == title && !p.is_plugin)
                .then_some(())
                .ok_or_else(|| format!("{panes:#?}"))
        });
    }

    let outer = outer_tmux(&sandbox, &tmux, sandbox.attach_argv(session));
    guard.tmux.push(outer.clone());
    wait_for("the zellij client to draw the session", WAIT, || {
        reattach_if_dropped(&outer, &sandbox, session);
        let screen = outer_screen(&outer)?;
        (screen.contains("core-logs") && screen.contains("planner"))
            .then_some(())
            .ok_or(screen)
    });
    let timeline_pane = || {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        let pane = panes
            .iter()
            .find(|p| p.title == "timeline" && !p.is_plugin)
            .ok_or_else(|| format!("no timeline pane: {panes:#?}"))?;
        client
            .dump_screen(session, &pane.pane_id())
            .map_err(|e| e.to_string())
    };
    ctrl_s_pauses(&sandbox, &outer, session, &timeline_pane);

    // Ctrl+Q quits Zellij (and its session); the run goes on, and `launch attach`
    // rebuilds the session with every pane known so far.
    outer
        .command(["send-keys", "-t", "=outer:", "C-q"])
        .status()
        .unwrap();
    wait_for("zellij to quit", WAIT, || {
        match client.session(session).map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(info) => Err(format!("{info:?}")),
        }
    });
    let status = sandbox.launch(&["ctl", "status", "--session", session]);
    assert!(
        text(&status.stdout).contains("mode: Paused"),
        "{}",
        text(&status.stdout)
    );
    // The same terminal runs `launch attach` again once the quit one has exited.
    wait_for("the quit client to exit", WAIT, || {
        let panes = outer.list_panes("outer").map_err(|e| e.to_string())?;
        panes
            .iter()
            .any(|pane| pane.is_dead)
            .then_some(())
            .ok_or_else(|| format!("{panes:?}"))
    });
    reattach_if_dropped(&outer, &sandbox, session);
    wait_for("the rebuilt session's mid-run panes", WAIT, || {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        let titles: Vec<&str> = panes.iter().map(|p| p.title.as_str()).collect();
        (titles.contains(&Sandbox::pane_title(session, "backend-api").as_str())
            && titles.contains(&Sandbox::pane_title(session, "frontend-ui").as_str()))
        .then_some(())
        .ok_or_else(|| format!("{titles:?}"))
    });
    resume_finishes(&sandbox, session);

    // Every agent, the ones spawned mid-run included, has a pane in its slot's tab that
    // shows its log.
    let agents = sandbox.pane_agents(session);
    assert!(
        agents.len() >= 9,
        "expected a third tab's worth: {agents:?}"
    );
    for (slot, agent) in agents.iter().enumerate() {
        let placement = placement_for_slot(slot);
        let line = done_line(agent);
        wait_for(&format!("{agent}'s pane to show {line:?}"), WAIT, || {
            reattach_if_dropped(&outer, &sandbox, session);
            let panes = client.list_panes(session).map_err(|e| e.to_string())?;
            let pane = panes
                .iter()
                .find(|p| p.title == Sandbox::pane_title(session, agent) && !p.is_plugin)
                .ok_or_else(|| {
                    format!(
                        "no pane {agent}: {panes:#?}\norchestrator.log:\n{}\nthe terminal:\n{}",
                        sandbox.orchestrator_log(session),
                        outer_screen(&outer).unwrap_or_else(|e| e)
                    )
                })?;
            assert_eq!(pane.tab_name.as_deref(), Some(placement.tab_name.as_str()));
            let screen = client
                .dump_screen(session, &pane.pane_id())
                .map_err(|e| e.to_string())?;
            shows(&screen, &line).then_some(()).ok_or(screen)
        });
    }
    let panes = client.list_panes(session).unwrap();
    let timeline = panes.iter().find(|p| p.title == "timeline").unwrap();
    let screen = client.dump_screen(session, &timeline.pane_id()).unwrap();
    // The timeline pane reads for people; timeline.log keeps the machine lines.
    assert!(screen.contains(" run succeeded in "), "{screen}");
    // The status board leads the spawned-agents tab and ends showing the run's end (the
    // pane is small: its first rows).
    let board = panes
        .iter()
        .find(|p| p.title == "board" && !p.is_plugin)
        .unwrap_or_else(|| panic!("no board pane: {panes:#?}"));
    assert_eq!(board.tab_name.as_deref(), Some("spawned-agents"));
    wait_for("the board to show the finished run", WAIT, || {
        let screen = client
            .dump_screen(session, &board.pane_id())
            .map_err(|e| e.to_string())?;
        (screen.contains(" · succeeded · ") && screen.contains("└ researcher"))
            .then_some(())
            .ok_or(screen)
    });
    let tabs: Vec<String> = client
        .list_tabs(session)
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(tabs, ["core-logs", "spawned-agents", "agent-logs-1"]);
    drop(guard);
}

#[test]
fn tmux_demo_run_shows_every_agent_and_ctrl_s_pauses_it() {
    let Some(tmux) = require_tool("tmux", "ORCH_TMUX_BIN", &[]) else {
        return;
    };
    let sandbox = Sandbox::new(None);
    let session = "run-20261122-101010-tm01";
    let client = sandbox.tmux(&tmux, &orch::mux::tmux_socket(session));
    let mut guard = RunGuard {
        sandbox: &sandbox,
        session: session.to_owned(),
        zellij: None,
        tmux: vec![client.clone()],
    };
    start_demo(&sandbox, "tmux", session);
    let outer = outer_tmux(&sandbox, &tmux, sandbox.attach_argv(session));
    guard.tmux.push(outer.clone());
    wait_for("the inner tmux to draw", WAIT, || {
        let screen = outer_screen(&outer)?;
        screen.contains("core-logs").then_some(()).ok_or(screen)
    });
    let timeline_pane = || {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        let pane = panes
            .iter()
            .find(|p| p.title == "timeline")
            .ok_or_else(|| format!("no timeline pane: {panes:#?}"))?;
        client
            .capture_pane(&pane.pane_id)
            .map_err(|e| e.to_string())
    };
    ctrl_s_pauses(&sandbox, &outer, session, &timeline_pane);
    resume_finishes(&sandbox, session);

    let agents = sandbox.pane_agents(session);
    assert!(agents.len() >= 9, "{agents:?}");
    for (slot, agent) in agents.iter().enumerate() {
        let placement = placement_for_slot(slot);
        let line = done_line(agent);
        wait_for(&format!("{agent}'s pane to show {line:?}"), WAIT, || {
            let panes = client.list_panes(session).map_err(|e| e.to_string())?;
            let title = Sandbox::pane_title(session, agent);
            let pane = panes.iter().find(|p| p.title == title).ok_or_else(|| {
                format!(
                    "no pane {agent}: {panes:#?}\norchestrator.log:\n{}",
                    sandbox.orchestrator_log(session)
                )
            })?;
            assert_eq!(pane.window_name, placement.tab_name);
            let screen = client
                .capture_pane(&pane.pane_id)
                .map_err(|e| e.to_string())?;
            shows(&screen, &line).then_some(()).ok_or(screen)
        });
    }
    drop(guard);
}

#[test]
fn a_stale_session_is_replaced_and_bad_setups_fail_clearly() {
    let Some(zellij) = require_tool("zellij", "ORCH_ZELLIJ_BIN", &["/root/.cargo/bin/zellij"])
    else {
        return;
    };
    let sandbox = Sandbox::new(Some(&zellij));
    let session = "run-20261122-101010-st01";
    let client = sandbox.zellij(&zellij);
    let guard = RunGuard {
        sandbox: &sandbox,
        session: session.to_owned(),
        zellij: Some(client.clone()),
        tmux: Vec::new(),
    };

    // A session of the same name left by someone else, with one unrelated pane.
    let layout = sandbox.tmp.path().join("stale.kdl");
    std::fs::write(
        &layout,
        "layout {\n    pane name=\"leftover\" command=\"cat\"\n}\n",
    )
    .unwrap();
    client.attach_create_background(session, &layout).unwrap();
    let out = sandbox.launch(&[
        "--prompt",
        "Ship the MVP",
        "--backend",
        "demo",
        "--session",
        session,
        "--demo-scenario",
        "delay=0",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "replaced a stale zellij session named `{session}`"
        )),
        "{stderr}"
    );
    wait_for("the run's own panes", WAIT, || {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        let titles: Vec<&str> = panes.iter().map(|p| p.title.as_str()).collect();
        (titles.contains(&Sandbox::pane_title(session, "planner").as_str())
            && !titles.contains(&"leftover"))
        .then_some(())
        .ok_or_else(|| format!("{titles:?}"))
    });
    assert_eq!(sandbox.wait_until_finished(session), "succeeded");
    drop(guard);

    // `launch attach` without a terminal says so.
    let out = sandbox.launch(&["attach", "--session", session]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("needs a terminal"));
}

#[test]
fn a_missing_zellij_or_a_directory_outside_a_repo_fails_before_anything_starts() {
    let missing = Path::new("/nonexistent/zellij-for-orch-tests");
    let sandbox = Sandbox::new(Some(missing));
    let out = sandbox.launch(&["--prompt", "Ship the MVP", "--backend", "demo"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cargo install --locked zellij"), "{stderr}");
    assert!(stderr.contains("ORCH_ZELLIJ_BIN"), "{stderr}");
    assert!(
        !sandbox.root().join(".orch").exists(),
        "a run directory was written although nothing could run"
    );

    let outside = sandbox.tmp.path().join("not-a-repo");
    std::fs::create_dir_all(&outside).unwrap();
    let headless = [
        "--prompt",
        "Ship the MVP",
        "--backend",
        "demo",
        "--mux",
        "none",
    ];
    let out = sandbox.launch_in(&outside, &headless);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not inside a git repository"), "{stderr}");
    assert!(!outside.join(".orch").exists());
    // Naming the directory is a choice the user made, but agents cannot get worktrees
    // there: it runs once they are told to share the directory.
    let named = [
        &headless[..],
        &["--project-root", ".", "--demo-scenario", "delay=0"],
    ]
    .concat();
    let out = sandbox.launch_in(&outside, &named);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--isolation shared"), "{stderr}");
    let shared = [&named[..], &["--isolation", "shared"]].concat();
    let out = sandbox.launch_in(&outside, &shared);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A demo run at a 200-byte project root with a 64-byte session name, in Zellij or
/// tmux: it starts, answers the command the Ctrl+S binding runs (`launch ctl interrupt
/// --session S --project-root R`), resumes and finishes.
fn long_paths_run(mux: &str, zellij: Option<&Path>, tmux: Option<&Path>) {
    let sandbox = Sandbox::with_root_len(zellij, Some(200));
    let session = format!("long-{}", "l".repeat(59));
    let mux_name = orch::mux::mux_session_name(&session);
    assert!(mux_name.len() <= orch::mux::MAX_SESSION_NAME);
    let guard = RunGuard {
        sandbox: &sandbox,
        session: session.clone(),
        zellij: zellij.map(|bin| sandbox.zellij(bin)),
        tmux: tmux
            .map(|bin| sandbox.tmux(bin, &orch::mux::tmux_socket(&mux_name)))
            .into_iter()
            .collect(),
    };
    let out = sandbox.launch(&[
        "--prompt",
        "Ship the MVP",
        "--backend",
        "demo",
        "--mux",
        mux,
        "--session",
        &session,
        "--demo-scenario",
        DELAY,
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "launch failed: {stderr}");
    assert!(
        stderr.contains(&format!("session `{mux_name}`")),
        "{stderr}"
    );
    wait_for("the dynamic wave", RUN_WAIT, || {
        let timeline = sandbox.timeline(&session);
        if timeline.contains("agent_started backend-api") {
            Ok(())
        } else {
            Err(format!(
                "{timeline}\n{}",
                sandbox.orchestrator_log(&session)
            ))
        }
    });
    // The control socket is at a short path in the private runtime dir.
    let record = sandbox.run_dir(&session).join("control.path");
    let socket = PathBuf::from(std::fs::read_to_string(&record).unwrap().trim());
    assert_eq!(
        socket.parent(),
        Some(sandbox.tmp.path().join("home/run/orch").as_path())
    );
    if let Some(bin) = tmux {
        let client = sandbox.tmux(bin, &orch::mux::tmux_socket(&mux_name));
        assert!(
            client.has_session(&mux_name).unwrap(),
            "no tmux session {mux_name}"
        );
    }
    if let Some(bin) = zellij {
        let client = sandbox.zellij(bin);
        assert!(
            client.session(&mux_name).unwrap().is_some(),
            "no zellij session {mux_name}"
        );
    }
    let root = sandbox.root().display().to_string();
    let elsewhere = sandbox.tmp.path().to_path_buf();
    let interrupt = sandbox.launch_in(
        &elsewhere,
        &[
            "ctl",
            "interrupt",
            "--session",
            &session,
            "--project-root",
            &root,
        ],
    );
    assert!(interrupt.status.success(), "{}", text(&interrupt.stderr));
    let interrupt_log = sandbox.run_dir(&session).join("logs/interrupt.log");
    wait_for("the interrupt summary", WAIT, || {
        let text = std::fs::read_to_string(&interrupt_log).map_err(|e| e.to_string())?;
        text.contains("requested by ctrl-s")
            .then_some(())
            .ok_or(text)
    });
    resume_finishes(&sandbox, &session);
    // The orchestrator took the launcher's claim over and released it at the end.
    let run_dir = sandbox.run_dir(&session);
    assert!(!run_dir.join("orchestrator.pid").exists());
    assert!(!run_dir.join("control.path").exists());
    drop(guard);
}

#[test]
fn a_200_byte_root_and_a_64_byte_session_run_in_tmux() {
    let Some(tmux) = require_tool("tmux", "ORCH_TMUX_BIN", &[]) else {
        return;
    };
    long_paths_run("tmux", None, Some(&tmux));
}

#[test]
fn a_200_byte_root_and_a_64_byte_session_run_in_zellij() {
    let Some(zellij) = require_tool("zellij", "ORCH_ZELLIJ_BIN", &["/root/.cargo/bin/zellij"])
    else {
        return;
    };
    long_paths_run("zellij", Some(&zellij), None);
}

/// A run whose orchestrator is killed with SIGKILL in its dynamic wave, its Zellij or
/// tmux session left behind: `launch resume --mux MUX` replaces that session, rebuilds
/// the panes of the agents known so far (the dynamic ones included) and finishes the
/// run from the audit store. `titles` lists the pane titles of the session.
fn killed_run_resumes(
    sandbox: &Sandbox,
    mux: &str,
    session: &str,
    titles: &dyn Fn() -> Result<Vec<String>, String>,
) {
    start_demo(sandbox, mux, session);
    wait_for("the dynamic wave", RUN_WAIT, || {
        let timeline = sandbox.timeline(session);
        (timeline.contains("turn_started backend-api")
            && timeline.contains("turn_started frontend-ui"))
        .then_some(())
        .ok_or(timeline)
    });
    let identity =
        std::fs::read_to_string(sandbox.run_dir(session).join("orchestrator.pid")).unwrap();
    let pid: i32 = identity.split_whitespace().next().unwrap().parse().unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(
        "the orchestrator to be gone",
        WAIT,
        || match nix::sys::signal::kill(pid, None) {
            Err(nix::errno::Errno::ESRCH) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(sandbox.state(session), None, "a killed run wrote its end");

    let out = sandbox.launch(&["resume", session, "--mux", mux]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("launch attach --session {session}")),
        "{stderr}"
    );
    assert_eq!(sandbox.wait_until_finished(session), "succeeded");
    for agent in ["planner", "builder", "backend-api", "frontend-ui"] {
        let title = Sandbox::pane_title(session, agent);
        wait_for(&format!("a pane for {agent}"), WAIT, || {
            let titles = titles()?;
            titles
                .contains(&title)
                .then_some(())
                .ok_or_else(|| format!("{titles:?}"))
        });
    }
    let timeline = sandbox.timeline(session);
    assert!(timeline.contains(" resumed"), "{timeline}");
    let verify = Command::new(env!("CARGO_BIN_EXE_orch-audit"))
        .current_dir(sandbox.root())
        .env_clear()
        .envs(sandbox.env.iter().map(|(k, v)| (k, v)))
        .args(["verify", session])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

#[test]
fn zellij_resume_after_a_killed_orchestrator_rebuilds_the_panes_and_finishes() {
    let Some(zellij) = require_tool("zellij", "ORCH_ZELLIJ_BIN", &["/root/.cargo/bin/zellij"])
    else {
        return;
    };
    let sandbox = Sandbox::new(Some(&zellij));
    let session = "run-20261122-101010-rs01";
    let client = sandbox.zellij(&zellij);
    let guard = RunGuard {
        sandbox: &sandbox,
        session: session.to_owned(),
        zellij: Some(client.clone()),
        tmux: Vec::new(),
    };
    killed_run_resumes(&sandbox, "zellij", session, &|| {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        Ok(panes.into_iter().map(|p| p.title).collect())
    });
    drop(guard);
}

#[test]
fn tmux_resume_after_a_killed_orchestrator_rebuilds_the_panes_and_finishes() {
    let Some(tmux) = require_tool("tmux", "ORCH_TMUX_BIN", &[]) else {
        return;
    };
    let sandbox = Sandbox::new(None);
    let session = "run-20261122-101010-rs02";
    let client = sandbox.tmux(&tmux, &orch::mux::tmux_socket(session));
    let guard = RunGuard {
        sandbox: &sandbox,
        session: session.to_owned(),
        zellij: None,
        tmux: vec![client.clone()],
    };
    killed_run_resumes(&sandbox, "tmux", session, &|| {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        Ok(panes.into_iter().map(|p| p.title).collect())
    });
    drop(guard);
}
