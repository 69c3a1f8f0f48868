//! `--mux tmux` on a real private tmux server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::mux::{AgentPane, TmuxClient, TmuxPane, agent_pane, placement_for_slot, plan_layout};

use crate::support::{
    HOSTILE_NAMES, Reaper, append_line, marker_script, read_marker, require_tool, wait_for,
};

const WAIT: Duration = Duration::from_secs(20);

/// Kills the private server (and every session on it) when the test ends, pass or fail.
struct ServerGuard(TmuxClient);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill_server();
    }
}

fn tmux_client(bin: &Path, tmp: &Path, socket: &str) -> TmuxClient {
    TmuxClient::new(bin, socket)
        .with_env("TMUX_TMPDIR", tmp)
        .with_env("HOME", tmp)
        .with_env("TERM", "xterm-256color")
}

/// A project root whose path tries to break shell and tmux-format quoting.
fn hostile_root(tmp: &Path) -> PathBuf {
    let root = tmp.join("pro'ject $(x) #{session_name} `y`;");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    root
}

fn pane_titled<'a>(panes: &'a [TmuxPane], title: &str) -> Result<&'a TmuxPane, String> {
    panes
        .iter()
        .find(|pane| pane.title == title)
        .ok_or_else(|| format!("no pane titled {title:?} in {panes:#?}"))
}

fn wait_for_text(client: &TmuxClient, pane_id: &str, text: &str) {
    wait_for(&format!("{text:?} in pane {pane_id}"), WAIT, || {
        let screen = client.capture_pane(pane_id).map_err(|e| e.to_string())?;
        if screen.contains(text) {
            Ok(())
        } else {
            Err(screen)
        }
    });
}

#[test]
fn tmux_session_shows_every_agent_log_and_ctrl_s_runs_the_interrupt_command() {
    let Some(bin) = require_tool("tmux", "ORCH_TMUX_BIN", &[]) else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("orch-tmux")
        .tempdir()
        .unwrap();
    let _reaper = Reaper::new(tmp.path());
    let root = hostile_root(tmp.path());
    let session = "run-20261122-101010-t001";
    let inner = ServerGuard(tmux_client(&bin, tmp.path(), "orch-inner"));
    let client = &inner.0;

    // A stale session of the same name is removed first.
    assert!(!client.remove_stale_session(session).unwrap());

    let agents: Vec<AgentPane> = HOSTILE_NAMES[..5]
        .iter()
        .enumerate()
        .map(|(i, name)| AgentPane::new(*name, root.join(format!("logs/a{i}.log"))))
        .collect();
    // The orchestrator creates logs before the panes start; one stays missing here to
    // show `tail -F` picks it up late (it retries about once a second).
    for agent in &agents[1..] {
        std::fs::write(&agent.log, "").unwrap();
    }
    let timeline = root.join("logs/timeline.log");
    std::fs::write(&timeline, "").unwrap();
    let plan = plan_layout(&agents, &timeline, None);
    let marker = tmp.path().join("interrupt-marker");
    let script = marker_script(tmp.path(), &marker);
    let interrupt = orch::mux::interrupt_argv(&script, session, &root).unwrap();
    client
        .create_session(session, &plan, &root, &interrupt)
        .unwrap();

    let panes = client.list_panes(session).unwrap();
    let windows: Vec<(usize, &str)> = {
        let mut w: Vec<(usize, &str)> = panes
            .iter()
            .map(|p| (p.window_index, p.window_name.as_str()))
            .collect();
        w.dedup();
        w
    };
    assert_eq!(
        windows,
        [(0, "core-logs"), (1, "spawned-agents")],
        "{panes:#?}"
    );
    assert_eq!(panes.iter().filter(|p| p.window_index == 0).count(), 4);
    assert_eq!(panes.iter().filter(|p| p.window_index == 1).count(), 2);
    for name in &HOSTILE_NAMES[..5] {
        pane_titled(&panes, name).unwrap();
    }

    // Every pane tails its log as lines arrive (the logs did not exist at start: -F).
    for (i, name) in HOSTILE_NAMES[..5].iter().enumerate() {
        append_line(
            &root.join(format!("logs/a{i}.log")),
            &format!("line from agent {i} ✓"),
        );
        let pane = pane_titled(&panes, name).unwrap();
        wait_for_text(client, &pane.pane_id, &format!("line from agent {i} ✓"));
    }
    append_line(&timeline, "timeline: run started");
    wait_for_text(
        client,
        &pane_titled(&panes, "timeline").unwrap().pane_id,
        "timeline: run started",
    );

    // Agents spawned mid-run: slots 5..=8; slot 8 opens `agent-logs-1`.
    for (slot, name) in HOSTILE_NAMES.iter().enumerate().skip(5) {
        let log = root.join(format!("logs/a{slot}.log"));
        let placement = placement_for_slot(slot);
        std::fs::write(&log, "").unwrap();
        let pane = agent_pane(slot, &AgentPane::new(*name, &log));
        let pane_id = client.add_pane(session, &placement, &root, &pane).unwrap();
        append_line(&log, &format!("late agent {slot} here"));
        wait_for_text(client, &pane_id, &format!("late agent {slot} here"));
    }
    let panes = client.list_panes(session).unwrap();
    let count = |w: usize| panes.iter().filter(|p| p.window_index == w).count();
    assert_eq!((count(0), count(1), count(2)), (4, 5, 1), "{panes:#?}");
    assert_eq!(
        pane_titled(&panes, "ninth").unwrap().window_name,
        "agent-logs-1"
    );
    for name in HOSTILE_NAMES {
        pane_titled(&panes, name).unwrap();
    }

    // Ctrl+S typed through a real client: an outer tmux runs `tmux attach` in a pane.
    let outer = ServerGuard(tmux_client(&bin, tmp.path(), "orch-outer"));
    let mut attach = vec![
        "env".to_owned(),
        "-u".to_owned(),
        "TMUX".to_owned(),
        bin.display().to_string(),
    ];
    attach.extend(
        client
            .attach_argv(session)
            .iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    let mut outer_args = vec![
        "new-session",
        "-d",
        "-s",
        "outer",
        "-x",
        "200",
        "-y",
        "50",
        "--",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    outer_args.extend(attach);
    let status = outer.0.command(&outer_args).status().unwrap();
    assert!(status.success());
    wait_for("a client attached to the inner session", WAIT, || {
        let out = client
            .command(["list-clients"])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.trim().is_empty() {
            Err(text)
        } else {
            Ok(())
        }
    });
    let status = outer
        .0
        .command(["send-keys", "-t", "=outer:", "C-s"])
        .status()
        .unwrap();
    assert!(status.success());
    let recorded = wait_for("the Ctrl+S command to run", WAIT, || {
        read_marker(&marker).ok_or_else(|| "no marker yet".to_owned())
    });
    assert_eq!(
        recorded, interrupt,
        "the bound command must get its argv unchanged"
    );

    // The pane did not get XOFF: the focused pane keeps showing new lines.
    let first = pane_titled(&panes, HOSTILE_NAMES[0])
        .unwrap()
        .pane_id
        .clone();
    append_line(&agents[0].log, "still flowing after Ctrl+S");
    wait_for_text(client, &first, "still flowing after Ctrl+S");
    assert!(
        !Path::new("/tmp/orch-pwned").exists(),
        "a name was executed"
    );
}
