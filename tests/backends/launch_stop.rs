//! Stopping agents through the real `launch` binary, with a stand-in `codex` that
//! ignores SIGTERM and has started a child (`sleep 120 &`): `launch ctl stop` ends both
//! within the grace + 2 s and `launch` exits 130; after `kill -9` of `launch`, its
//! watchdog leaves no process of the agent's group alive 10 s later.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestRepo, read, wait_for};

const GRACE: Duration = Duration::from_secs(1);

const ORCH_KDL: &str = r#"
process {
    kill-grace-ms 1000
}
agent "solo" {
    role "Solo"
    plan-prompt "Outline the plan."
    follow-up-prompt "Write the final plan."
}
"#;

/// A `codex` that ignores SIGTERM (so do its children: the disposition is inherited),
/// starts `sleep 120`, records both pids and its process group, and never answers.
const STUBBORN_CODEX: &str = r#"#!/bin/sh
trap '' TERM
sleep 120 &
echo $! >> "$PIDS/children"
echo $$ >> "$PIDS/agents"
echo '{"type":"thread.started","thread_id":"t-stubborn"}'
while :; do sleep 1; done
"#;

struct Setup {
    repo: TestRepo,
    pids: PathBuf,
}

fn setup() -> Setup {
    setup_with(ORCH_KDL)
}

fn setup_with(orch_kdl: &str) -> Setup {
    let repo = TestRepo::new();
    std::fs::write(repo.root().join("orch.kdl"), orch_kdl).unwrap();
    let bin = repo.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let codex = bin.join("codex");
    std::fs::write(&codex, STUBBORN_CODEX).unwrap();
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pids = repo.dir.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    Setup { repo, pids }
}

fn start(setup: &Setup, session: &str) -> Child {
    let mut cmd = setup.repo.launch();
    cmd.args([
        "--prompt",
        "Ship it",
        "--backend",
        "codex",
        "--mux",
        "none",
        "--session",
        session,
    ])
    .env("ORCH_CODEX_BIN", setup.repo.dir.path().join("bin/codex"))
    .env("PIDS", &setup.pids)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(setup.repo.dir.path().join("launch.stderr")).unwrap());
    cmd.spawn().expect("spawn launch")
}

fn pids(file: &Path) -> Vec<i32> {
    read(file)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until the agent and its child are running; returns (agent, child).
fn agent_started(setup: &Setup) -> (i32, i32) {
    wait_for("the agent and its child", Duration::from_secs(30), || {
        !pids(&setup.pids.join("agents")).is_empty()
            && !pids(&setup.pids.join("children")).is_empty()
    });
    (
        pids(&setup.pids.join("agents"))[0],
        pids(&setup.pids.join("children"))[0],
    )
}

/// Processes (not zombies) whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let rest: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            rest.first() != Some(&"Z") && rest.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn ctl_stop_ends_an_agent_that_ignores_sigterm_and_its_child_then_launch_exits_130() {
    let setup = setup();
    let mut launch = start(&setup, "stubborn-stop");
    let (agent, child) = agent_started(&setup);
    assert!(is_running(agent) && is_running(child));
    let stopped_at = Instant::now();
    let ctl = setup
        .repo
        .launch()
        .args(["ctl", "stop", "--session", "stubborn-stop"])
        .output()
        .expect("run launch ctl stop");
    assert!(
        ctl.status.success(),
        "ctl stop: {}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let status = wait_child(&mut launch, GRACE + Duration::from_secs(2));
    let took = stopped_at.elapsed();
    let stderr = read(&setup.repo.dir.path().join("launch.stderr"));
    let Some(status) = status else {
        let _ = launch.kill();
        panic!("launch still runs {took:?} after `ctl stop`; stderr: {stderr}");
    };
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(
        took >= GRACE,
        "the agent was killed before its grace ({took:?})"
    );
    assert!(!is_running(agent), "the agent outlived `launch`");
    assert!(
        group_members(agent).is_empty() && !is_running(child),
        "the agent's child outlived `launch`"
    );
}

#[test]
fn kill_9_of_launch_leaves_no_process_of_the_agents_group_10_s_later() {
    let setup = setup();
    let mut launch = start(&setup, "stubborn-kill");
    let (agent, child) = agent_started(&setup);
    launch.kill().expect("kill -9 launch");
    let _ = launch.wait();
    let killed_at = Instant::now();
    while killed_at.elapsed() < Duration::from_secs(10)
        && (!group_members(agent).is_empty() || is_running(child))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        group_members(agent).is_empty(),
        "processes of the agent's group survive 10 s after kill -9 of launch: {:?}",
        group_members(agent)
    );
    assert!(!is_running(child), "the agent's child survived");
}

#[test]
fn the_third_interrupt_exits_at_once_while_a_stop_waits_out_its_grace() {
    // A 60 s grace: the stop of the second interrupt would wait that long for the
    // stubborn agent; the third interrupt must not.
    let setup = setup_with(&ORCH_KDL.replace("kill-grace-ms 1000", "kill-grace-ms 60000"));
    let mut launch = start(&setup, "third-interrupt");
    let (agent, child) = agent_started(&setup);
    let pid = nix::unistd::Pid::from_raw(launch.id() as i32);
    let interrupt = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    interrupt();
    wait_for("the pause", Duration::from_secs(10), || {
        read(&setup.repo.dir.path().join("launch.stderr")).contains("pausing")
    });
    interrupt();
    wait_for("the stop", Duration::from_secs(10), || {
        read(&setup.repo.dir.path().join("launch.stderr")).contains("stopping")
    });
    let third = Instant::now();
    interrupt();
    let status = wait_child(&mut launch, Duration::from_secs(1));
    let stderr = read(&setup.repo.dir.path().join("launch.stderr"));
    let Some(status) = status else {
        let _ = launch.kill();
        panic!("launch still runs 1 s after the third interrupt; stderr: {stderr}");
    };
    assert!(third.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    // The watchdog ends the agent's group, child included.
    wait_for("the agent's group to end", Duration::from_secs(10), || {
        group_members(agent).is_empty() && !is_running(child)
    });
}
