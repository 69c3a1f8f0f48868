//! Changing one byte of a stored event, turn file or events file makes `verify` fail
//! and name the row or file; redacted secrets never reach the file.

use std::path::Path;
use std::process::Command;

use orch::audit::AuditTarget;

use crate::support::*;

const SESSION: &str = "run-20261122-111111-beef";

async fn fresh_store(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("audit.db");
    simulate_run(AuditTarget::Local(db.clone()), SESSION, &Shape::default()).await;
    db
}

fn sqlite(db: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        output.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn has_sqlite3() -> bool {
    Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn verify_fails_with(db: &Path, needle: &str) {
    let untouched = orch_audit(db, &["verify", SESSION]);
    assert_eq!(
        untouched.status.code(),
        Some(1),
        "verify must fail: {}",
        stdout(&untouched)
    );
    assert!(
        stdout(&untouched).contains(needle),
        "expected `{needle}` in:\n{}",
        stdout(&untouched)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_byte_in_an_event_row_is_named() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    assert!(orch_audit(&db, &["verify"]).status.success());
    // Change exactly one byte of the payload of event 17 (a streamed agent event).
    let before = sqlite(
        &db,
        &format!("SELECT payload FROM events WHERE run='{SESSION}' AND seq=17"),
    );
    sqlite(
        &db,
        &format!(
            "UPDATE events SET payload = substr(payload, 1, 20) || 'Z' || substr(payload, 22) WHERE run='{SESSION}' AND seq=17"
        ),
    );
    assert_ne!(
        before,
        sqlite(
            &db,
            &format!("SELECT payload FROM events WHERE run='{SESSION}' AND seq=17")
        )
    );
    verify_fails_with(&db, &format!("events row run=`{SESSION}` seq=17"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_byte_in_a_turn_file_is_named() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let path = format!("/runs/{SESSION}/agents/builder/002-follow-up.json");
    let ino = sqlite(
        &db,
        "SELECT d.ino FROM fs_dentry d JOIN fs_dentry p ON p.ino = d.parent_ino JOIN fs_dentry g ON g.ino = p.parent_ino \
         WHERE d.name='002-follow-up.json' AND p.name='builder' AND g.name='agents'",
    );
    // Same length, one byte different, still a BLOB: only the content hash can tell.
    sqlite(
        &db,
        &format!(
            "UPDATE fs_data SET data = CAST(substr(data, 1, 99) || 'X' || substr(data, 101) AS BLOB) WHERE ino={ino} AND chunk_index=1"
        ),
    );
    verify_fails_with(
        &db,
        &format!("file `{path}` (ino {ino}): content does not match files row"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_byte_in_an_events_file_names_the_event() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let ino = sqlite(
        &db,
        "SELECT ino FROM fs_dentry WHERE name='researcher.jsonl'",
    );
    sqlite(
        &db,
        &format!(
            "UPDATE fs_data SET data = CAST(substr(data, 1, 9) || '9' || substr(data, 11) AS BLOB) WHERE ino={ino} AND chunk_index=0"
        ),
    );
    verify_fails_with(
        &db,
        &format!(
            "file `/runs/{SESSION}/events/researcher.jsonl` (ino {ino}): the line of events row seq="
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_reach_the_store_in_clear_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("audit.db-wal")) {
        bytes.extend(wal);
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("redacted"), "the store holds redaction markers");
    assert!(
        contains("thread-planner"),
        "the store is readable as bytes (no compression hides secrets)"
    );
    for secret in [
        PLANTED_KEY,
        PLANTED_ENV_VALUE,
        "abcdefghijklmnopqrstuvwxyz012345",
    ] {
        assert!(!contains(secret), "`{secret}` is in the audit file");
    }
    let exported = stdout(&orch_audit(&db, &["export", SESSION, "--format", "jsonl"]));
    assert!(
        !exported.contains(PLANTED_KEY) && exported.contains("[redacted:ORCH_TEST_SERVICE_TOKEN]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_rows_are_noticed() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    // The last turn file's row: the file is still there, nothing vouches for it.
    sqlite(
        &db,
        &format!(
            "DELETE FROM files WHERE run='{SESSION}' AND seq=(SELECT MAX(seq) FROM files WHERE run='{SESSION}')"
        ),
    );
    verify_fails_with(&db, "is not vouched for by any events or files row");
    // Every event row of the run: its events files are left over.
    sqlite(&copy, &format!("DELETE FROM events WHERE run='{SESSION}'"));
    verify_fails_with(
        &copy,
        &format!("file `/runs/{SESSION}/events/planner.jsonl`"),
    );
}
