//! Zellij: generated layouts and config checked by the real binary, a live background
//! session tailing logs, and Ctrl+S typed through a real client driven by an outer tmux.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::mux::{
    AgentPane, PaneInfo, ZellijClient, agent_pane, interrupt_argv, placement_for_slot, plan_layout,
    write_zellij_config_dir, zellij_layout,
};

use crate::support::{
    HOSTILE_NAMES, Reaper, append_line, marker_script, read_marker, require_tool, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn zellij_bin() -> Option<PathBuf> {
    require_tool("zellij", "ORCH_ZELLIJ_BIN", &["/root/.cargo/bin/zellij"])
}

/// A client whose every file lives under `tmp`: HOME, XDG dirs, the socket dir.
fn hermetic_client(bin: &Path, tmp: &Path, config_dir: &Path) -> ZellijClient {
    let mut client = ZellijClient::new(bin).with_config_dir(config_dir);
    for (var, sub) in [
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "xdg/config"),
        ("XDG_DATA_HOME", "xdg/data"),
        ("XDG_CACHE_HOME", "xdg/cache"),
        ("XDG_STATE_HOME", "xdg/state"),
        ("XDG_RUNTIME_DIR", "xdg/run"),
        ("TMPDIR", "tmp"),
        ("ZELLIJ_SOCKET_DIR", "s"),
    ] {
        let dir = tmp.join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        client = client.with_env(var, dir);
    }
    client
        .with_env("TERM", "xterm-256color")
        .with_env("SHELL", "/bin/sh")
}

fn hostile_agents(root: &Path, n: usize) -> Vec<AgentPane> {
    (0..n)
        .map(|i| {
            AgentPane::new(
                HOSTILE_NAMES[i % HOSTILE_NAMES.len()],
                root.join(format!("logs/a{i}.log")),
            )
        })
        .collect()
}

/// A root path that tries to break KDL and shell quoting.
fn hostile_root(tmp: &Path) -> PathBuf {
    let root = tmp.join("pro\"ject 'x' $(y) {z}");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    root
}

#[test]
fn generated_layouts_and_config_pass_zellij_setup_check() {
    let Some(bin) = zellij_bin() else { return };
    let tmp = tempfile::Builder::new()
        .prefix("orch-zj")
        .tempdir()
        .unwrap();
    let _reaper = Reaper::new(tmp.path());
    let root = hostile_root(tmp.path());
    let config_dir = tmp.path().join("zellij");
    let launch = tmp.path().join("bin dir/launch \"x\"");
    let argv = interrupt_argv(&launch, "run-20261122-101010-abcd", &root).unwrap();
    write_zellij_config_dir(&config_dir, &argv).unwrap();
    let client = hermetic_client(&bin, tmp.path(), &config_dir);

    for n in [1, 4, 5, 9, 13] {
        let plan = plan_layout(
            &hostile_agents(&root, n),
            &root.join("logs/timeline.log"),
            None,
        );
        let file = tmp.path().join(format!("layout-{n}.kdl"));
        std::fs::write(&file, zellij_layout(&plan, &root).unwrap()).unwrap();
        client
            .check_layout(&file)
            .unwrap_or_else(|err| panic!("layout for {n} agents: {err}"));
    }

    // The check must be able to fail: a v2-only layout is refused by Zellij 0.45.
    let broken = tmp.path().join("broken.kdl");
    std::fs::write(&broken, "layout {\n    pane borderless=#true\n}\n").unwrap();
    assert!(
        client.check_layout(&broken).is_err(),
        "setup --check accepted a broken layout"
    );

    // …and a broken config dir is reported too (Zellij would silently use defaults).
    let bad_dir = tmp.path().join("bad-zellij");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::write(bad_dir.join("config.kdl"), "show_startup_tips #false\n").unwrap();
    let bad_client = hermetic_client(&bin, tmp.path(), &bad_dir);
    let good = tmp.path().join("layout-1.kdl");
    assert!(
        bad_client.check_layout(&good).is_err(),
        "setup --check accepted a broken config"
    );
}

/// Deletes the session (killing it if needed) when the test ends, pass or fail.
struct SessionGuard {
    client: ZellijClient,
    session: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let _ = self.client.remove_stale_session(&self.session);
    }
}

/// Stops an outer tmux server (and the zellij client running in it).
struct TmuxGuard(orch::mux::TmuxClient);

impl Drop for TmuxGuard {
    fn drop(&mut self) {
        let _ = self.0.kill_server();
    }
}

fn pane_titled(panes: &[PaneInfo], title: &str) -> Result<PaneInfo, String> {
    panes
        .iter()
        .find(|pane| pane.title == title && !pane.is_plugin)
        .cloned()
        .ok_or_else(|| format!("no pane titled {title:?} in {panes:#?}"))
}

fn wait_for_pane(client: &ZellijClient, session: &str, title: &str) -> PaneInfo {
    wait_for(&format!("pane {title:?}"), WAIT, || {
        let panes = client.list_panes(session).map_err(|e| e.to_string())?;
        pane_titled(&panes, title)
    })
}

fn wait_for_text(client: &ZellijClient, session: &str, pane: &PaneInfo, text: &str) {
    let id = pane.pane_id();
    wait_for(&format!("{text:?} in pane {id}"), WAIT, || {
        let screen = client
            .dump_screen(session, &id)
            .map_err(|e| e.to_string())?;
        if screen.contains(text) {
            Ok(())
        } else {
            Err(screen)
        }
    });
}

#[test]
fn zellij_session_shows_every_agent_log_and_ctrl_s_runs_the_interrupt_command() {
    let Some(bin) = zellij_bin() else { return };
    let Some(tmux) = require_tool("tmux", "ORCH_TMUX_BIN", &[]) else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("orch-zj")
        .tempdir()
        .unwrap();
    let _reaper = Reaper::new(tmp.path());
    let root = hostile_root(tmp.path());
    let session = "run-20261122-101010-z001";
    let config_dir = tmp.path().join("zellij");
    let marker = tmp.path().join("interrupt-marker");
    let script = marker_script(tmp.path(), &marker);
    let interrupt = interrupt_argv(&script, session, &root).unwrap();
    write_zellij_config_dir(&config_dir, &interrupt).unwrap();
    let client = hermetic_client(&bin, tmp.path(), &config_dir);
    assert_eq!(client.remove_stale_session(session).unwrap(), None);

    let agents = hostile_agents(&root, 5);
    for agent in &agents[1..] {
        std::fs::write(&agent.log, "").unwrap(); // agents[0] stays missing: `tail -F`
    }
    let timeline = root.join("logs/timeline.log");
    std::fs::write(&timeline, "").unwrap();
    let plan = plan_layout(&agents, &timeline, None);
    let layout = tmp.path().join("layout.kdl");
    std::fs::write(&layout, zellij_layout(&plan, &root).unwrap()).unwrap();

    client.attach_create_background(session, &layout).unwrap();
    let _session = SessionGuard {
        client: client.clone(),
        session: session.to_owned(),
    };

    for (i, agent) in agents.iter().enumerate() {
        let pane = wait_for_pane(&client, session, &agent.name);
        assert_eq!(
            pane.tab_name.as_deref(),
            Some(if i < 4 { "core-logs" } else { "spawned-agents" })
        );
        append_line(&agent.log, &format!("line from agent {i} ✓"));
        wait_for_text(&client, session, &pane, &format!("line from agent {i} ✓"));
    }
    let timeline_pane = wait_for_pane(&client, session, "timeline");
    assert_eq!(timeline_pane.tab_name.as_deref(), Some("spawned-agents"));
    append_line(&timeline, "timeline: run started");
    wait_for_text(&client, session, &timeline_pane, "timeline: run started");

    // Without an attached client Zellij cannot lay out a new tab: a clear error, no
    // silently lost pane.
    assert_eq!(client.attached_clients(session).unwrap(), 0);
    let ninth = agent_pane(8, &AgentPane::new("ninth", root.join("logs/a8.log")));
    let err = client
        .add_agent_pane(session, &placement_for_slot(8), &ninth, &root)
        .unwrap_err();
    assert!(
        matches!(err, orch::mux::MuxError::NoClientForNewTab { .. }),
        "{err:?}"
    );

    // A real client: an outer tmux runs `zellij attach` in a pane (Ctrl+S is typed there).
    let outer = TmuxGuard(
        orch::mux::TmuxClient::new(&tmux, "orch-outer-zj").with_env("TMUX_TMPDIR", tmp.path()),
    );
    let mut attach: Vec<String> = vec![
        "env".into(),
        "-u".into(),
        "TMUX".into(),
        "-u".into(),
        "ZELLIJ".into(),
    ];
    attach.extend(
        client
            .env
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())),
    );
    attach.push(bin.display().to_string());
    attach.extend(
        client
            .attach_argv(session)
            .iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    let mut outer_args: Vec<String> = [
        "new-session",
        "-d",
        "-s",
        "outer",
        "-x",
        "160",
        "-y",
        "45",
        "--",
    ]
    .map(str::to_owned)
    .to_vec();
    outer_args.extend(attach);
    assert!(outer.0.command(&outer_args).status().unwrap().success());
    wait_for("the zellij client to draw the session", WAIT, || {
        let out = outer
            .0
            .command(["capture-pane", "-p", "-t", "=outer:"])
            .output()
            .map_err(|e| e.to_string())?;
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if screen.contains("core-logs") && screen.contains("line from agent 1") {
            Ok(())
        } else {
            Err(screen)
        }
    });
    // Agents spawned mid-run: slots 5..=8; slot 8 opens `agent-logs-1`. A client is
    // attached by now, as in real use: Zellij 0.45 cannot lay out a new tab in a session
    // with no client (0x0 viewport, "Not enough room for panes").
    for (slot, name) in HOSTILE_NAMES.iter().enumerate().skip(5) {
        let log = root.join(format!("logs/a{slot}.log"));
        std::fs::write(&log, "").unwrap();
        let placement = placement_for_slot(slot);
        let planned = agent_pane(slot, &AgentPane::new(*name, &log));
        client
            .add_agent_pane(session, &placement, &planned, &root)
            .unwrap();
        let pane = wait_for_pane(&client, session, name);
        assert_eq!(
            pane.tab_name.as_deref(),
            Some(placement.tab_name.as_str()),
            "{name}"
        );
        append_line(&log, &format!("late agent {slot} here"));
        wait_for_text(&client, session, &pane, &format!("late agent {slot} here"));
    }
    let tabs = client.list_tabs(session).unwrap();
    let names: Vec<&str> = tabs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["core-logs", "spawned-agents", "agent-logs-1"]);
    let active: Vec<&str> = tabs
        .iter()
        .filter(|t| t.active)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        active,
        ["core-logs"],
        "adding panes must not move the user's focus"
    );

    assert!(
        outer
            .0
            .command(["send-keys", "-t", "=outer:", "C-s"])
            .status()
            .unwrap()
            .success()
    );
    let recorded = wait_for("the Ctrl+S command to run", WAIT, || {
        read_marker(&marker).ok_or_else(|| "no marker yet".to_owned())
    });
    assert_eq!(
        recorded, interrupt,
        "the bound command must get its argv unchanged"
    );

    // The focused pane did not get XOFF: it keeps showing new lines.
    let first = wait_for_pane(&client, session, &agents[0].name);
    append_line(&agents[0].log, "still flowing after Ctrl+S");
    wait_for_text(&client, session, &first, "still flowing after Ctrl+S");

    // A stale session of the same name is removed before a new run takes the name.
    let removed = client.remove_stale_session(session).unwrap();
    assert_eq!(removed, Some(orch::mux::SessionState::Running));
    assert_eq!(client.session(session).unwrap(), None);
    assert!(
        !Path::new("/tmp/orch-pwned").exists(),
        "a name was executed"
    );
}
