//! Tamper evidence beyond the file: a run's head is anchored in the project's git
//! repository (`refs/orch/audit/<session>`), so cutting the end of a run off (rows and
//! events files alike) or rewriting it with every hash recomputed fails `verify`; a
//! finished run without an anchor is a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use orch::audit::schema::{CHUNK_SIZE, EventRowRef, event_digest, event_line, events_file, hex};

use crate::repo::TestRepo;
use crate::support::*;

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git")
}

/// A finished demo run in a real git repository; returns the store and the session.
fn anchored_run(repo: &TestRepo) -> Option<(PathBuf, String)> {
    // TestRepo is a real git repository with one commit.
    let root = repo.root();
    // Shared: the chain's last rows are then the run's own (no agent patches).
    let out = repo.demo("delay=0", &["--isolation", "shared"]);
    assert_ok(&out);
    let session = only_session(repo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("audit anchor: refs/orch/audit/{session} -> seq ")),
        "the anchor is printed at the end of the run: {stderr}"
    );
    let blob = git(
        &root,
        &["cat-file", "-p", &format!("refs/orch/audit/{session}")],
    );
    let anchor: serde_json::Value = serde_json::from_slice(&blob.stdout).unwrap();
    assert_eq!(anchor["session"], session.as_str());
    assert!(anchor["seq"].as_i64().unwrap() > 10);
    // Nothing of the user's changed: still the one commit, nothing staged or changed.
    let count = git(&root, &["rev-list", "--count", "HEAD"]);
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "1");
    let status = git(&root, &["status", "--porcelain"]);
    assert!(
        status.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let db = repo_db(repo);
    let verify = orch_audit(&db, &["verify"]);
    assert_ok(&verify);
    assert!(
        !String::from_utf8_lossy(&verify.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    Some((db, session))
}

async fn open(db: &Path) -> (libsql::Database, libsql::Connection) {
    let database = libsql::Builder::new_local(db).build().await.unwrap();
    let conn = database.connect().unwrap();
    (database, conn)
}

/// The run's last `n` rows, newest first: (seq, agent, turn, ts, kind, payload).
type Row = (i64, Option<String>, Option<i64>, i64, String, String);

async fn last_rows(conn: &libsql::Connection, session: &str, n: i64) -> Vec<Row> {
    let mut rows = conn
        .query(
            "SELECT seq, agent, turn, ts, kind, payload FROM events WHERE run = ?1 ORDER BY seq DESC LIMIT ?2",
            (session, n),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().await.unwrap() {
        let agent = match r.get_value(1).unwrap() {
            libsql::Value::Text(t) => Some(t),
            _ => None,
        };
        let turn = match r.get_value(2).unwrap() {
            libsql::Value::Integer(t) => Some(t),
            _ => None,
        };
        out.push((
            r.get::<i64>(0).unwrap(),
            agent,
            turn,
            r.get::<i64>(3).unwrap(),
            r.get::<String>(4).unwrap(),
            r.get::<String>(5).unwrap(),
        ));
    }
    out
}

/// Replaces an AgentFS file's bytes (chunks and size), as a careful forger would.
async fn rewrite_file(conn: &libsql::Connection, path: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let ino = orch::audit::fs::resolve(conn, path).await.unwrap().unwrap();
    let mut rows = conn
        .query(
            "SELECT data FROM fs_data WHERE ino = ?1 ORDER BY chunk_index",
            [ino],
        )
        .await
        .unwrap();
    let mut bytes = Vec::new();
    while let Some(r) = rows.next().await.unwrap() {
        if let libsql::Value::Blob(b) = r.get_value(0).unwrap() {
            bytes.extend(b);
        }
    }
    drop(rows);
    edit(&mut bytes);
    conn.execute("DELETE FROM fs_data WHERE ino = ?1", [ino])
        .await
        .unwrap();
    for (i, chunk) in bytes.chunks(CHUNK_SIZE).enumerate() {
        conn.execute(
            "INSERT INTO fs_data (ino, chunk_index, data) VALUES (?1, ?2, ?3)",
            (ino, i as i64, chunk.to_vec()),
        )
        .await
        .unwrap();
    }
    conn.execute(
        "UPDATE fs_inode SET size = ?1 WHERE ino = ?2",
        (bytes.len() as i64, ino),
    )
    .await
    .unwrap();
}

fn line_of(row: &Row) -> String {
    let (seq, agent, turn, ts, kind, payload) = row;
    event_line(*seq, *ts, agent.as_deref(), *turn, kind, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_end_off_a_run_consistently_fails_verify() {
    let repo = TestRepo::new();
    let Some((db, session)) = anchored_run(&repo) else {
        return;
    };
    {
        let (_database, conn) = open(&db).await;
        let rows = last_rows(&conn, &session, 3).await;
        for row in &rows {
            let line = line_of(row);
            rewrite_file(&conn, &events_file(&session, row.1.as_deref()), |bytes| {
                assert!(
                    bytes.ends_with(line.as_bytes()),
                    "the row's line ends its file"
                );
                bytes.truncate(bytes.len() - line.len());
            })
            .await;
            conn.execute(
                "DELETE FROM events WHERE run = ?1 AND seq = ?2",
                (session.as_str(), row.0),
            )
            .await
            .unwrap();
        }
        // The last files rows (the run's head in kv_store, the last tool call) and the
        // rows they vouched for, together.
        let mut last = conn
            .query(
                "SELECT seq, path FROM files WHERE run = ?1 ORDER BY seq DESC LIMIT 2",
                [session.as_str()],
            )
            .await
            .unwrap();
        let mut cut = Vec::new();
        while let Some(row) = last.next().await.unwrap() {
            cut.push((row.get::<i64>(0).unwrap(), row.get::<String>(1).unwrap()));
        }
        drop(last);
        assert!(cut[0].1.starts_with("kv_store/"), "{cut:?}");
        assert!(cut[1].1.starts_with("tool_calls/"), "{cut:?}");
        for (seq, path) in cut {
            if let Some(key) = path.strip_prefix("kv_store/") {
                conn.execute("DELETE FROM kv_store WHERE key = ?1", [key])
                    .await
                    .unwrap();
            }
            if let Some(id) = path.strip_prefix("tool_calls/") {
                conn.execute(&format!("DELETE FROM tool_calls WHERE id = {id}"), ())
                    .await
                    .unwrap();
            }
            conn.execute(
                "DELETE FROM files WHERE run = ?1 AND seq = ?2",
                (session.as_str(), seq),
            )
            .await
            .unwrap();
        }
    }
    let verify = orch_audit(&db, &["verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    assert!(
        stdout(&verify).contains("events rows were removed from the end"),
        "{}",
        stdout(&verify)
    );
    assert!(
        stdout(&verify).contains("files rows were removed from the end"),
        "{}",
        stdout(&verify)
    );

    // Without the anchor the cut cannot be seen, and verify says so.
    let root = repo.root();
    let name = format!("refs/orch/audit/{session}");
    assert!(git(&root, &["update-ref", "-d", &name]).status.success());
    let verify = orch_audit(&db, &["verify"]);
    assert_ok(&verify);
    assert!(
        String::from_utf8_lossy(&verify.stderr).contains(&format!("has no anchor {name} in")),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_a_run_with_recomputed_hashes_fails_verify() {
    let repo = TestRepo::new();
    let Some((db, session)) = anchored_run(&repo) else {
        return;
    };
    {
        let (_database, conn) = open(&db).await;
        let rows = last_rows(&conn, &session, 2).await;
        let (last, before) = (&rows[0], &rows[1]);
        let mut prev_rows = conn
            .query(
                "SELECT hash FROM events WHERE run = ?1 AND seq = ?2",
                (session.as_str(), before.0),
            )
            .await
            .unwrap();
        let prev: String = prev_rows.next().await.unwrap().unwrap().get(0).unwrap();
        drop(prev_rows);
        // The last event says something else; its hash is recomputed from the one
        // before, and its line in the events file matches: the chain alone is intact.
        let forged: Row = (
            last.0,
            last.1.clone(),
            last.2,
            last.3,
            last.4.clone(),
            last.5.replace("succeeded", "stopped"),
        );
        assert_ne!(forged.5, last.5, "the forgery changes something");
        let hash = hex(&event_digest(
            &mut Vec::new(),
            &prev,
            &EventRowRef {
                run: &session,
                seq: forged.0,
                agent: forged.1.as_deref(),
                turn: forged.2,
                ts: forged.3,
                kind: &forged.4,
                payload: &forged.5,
            },
        ));
        let (old_line, new_line) = (line_of(last), line_of(&forged));
        rewrite_file(&conn, &events_file(&session, last.1.as_deref()), |bytes| {
            bytes.truncate(bytes.len() - old_line.len());
            bytes.extend_from_slice(new_line.as_bytes());
        })
        .await;
        conn.execute(
            "UPDATE events SET payload = ?1, hash = ?2 WHERE run = ?3 AND seq = ?4",
            (forged.5.as_str(), hash.as_str(), session.as_str(), forged.0),
        )
        .await
        .unwrap();
    }
    let verify = orch_audit(&db, &["verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    assert!(
        stdout(&verify).contains("differs from its anchor"),
        "{}",
        stdout(&verify)
    );
}

/// An interrupt summary anchors the run as far as it got, while it is paused.
#[test]
fn a_pause_anchors_the_run_so_far() {
    let repo = TestRepo::new();
    let root = repo.root();
    let mut launch = repo.launch();
    launch
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
            "--demo-scenario",
            "delay=500",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let run = ChildGuard(launch.spawn().unwrap());
    let db = repo_db(&repo);
    let runs = || json(&orch_audit(&db, &["runs", "--json"]));
    assert!(
        wait_until(std::time::Duration::from_secs(60), || {
            std::fs::metadata(&db).is_ok()
                && orch_audit(&db, &["runs", "--json"]).status.success()
                && runs()[0]["events"].as_i64().unwrap_or(0) >= 3
        }),
        "the run never got going"
    );
    nix::sys::signal::kill(run.pid(), nix::sys::signal::Signal::SIGUSR1).unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(30), || runs()[0]["status"]
            == "paused"),
        "the run did not pause: {}",
        runs()
    );
    let session = runs()[0]["session"].as_str().unwrap().to_owned();
    let name = format!("refs/orch/audit/{session}");
    let mut anchor = serde_json::Value::Null;
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            let blob = git(&root, &["cat-file", "-p", &name]);
            anchor = serde_json::from_slice(&blob.stdout).unwrap_or_default();
            !anchor.is_null()
        }),
        "no anchor while paused"
    );
    let events = runs()[0]["events"].as_i64().unwrap();
    assert_eq!(
        anchor["seq"].as_i64(),
        Some(events),
        "the paused run's head"
    );
    assert_ok(&orch_audit(&db, &["verify"]));
}
