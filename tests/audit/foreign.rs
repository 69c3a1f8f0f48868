//! `.orch/audit.db` that is not an orch store is refused and left byte for byte as it
//! was; a store newer than this build is refused; an older one is migrated.

use std::path::Path;
use std::process::Command;

use crate::repo::TestRepo;
use crate::support::*;

fn sqlite(db: &Path, sql: &str) -> Option<String> {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().ok()?;
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn has_sqlite3() -> bool {
    Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn quick_run(repo: &TestRepo) -> std::process::Output {
    repo.demo("delay=0", &[])
}

/// Launch and orch-audit both refuse the file, and it is unchanged afterwards.
fn refused_untouched(setup: &str, needle: &str) {
    let repo = TestRepo::new();
    let db = repo_db(&repo);
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    sqlite(&db, setup).unwrap();
    let before = std::fs::read(&db).unwrap();
    let out = quick_run(&repo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a foreign store must be refused");
    assert!(
        stderr.contains("is not an orch audit store") && stderr.contains(needle),
        "the refusal says why: {stderr}"
    );
    let read = orch_audit(&db, &["runs"]);
    assert_eq!(read.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&read.stderr).contains("is not an orch audit store"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "byte-identical");
    for side in ["audit.db-wal", "audit.db-shm", "audit.db-journal"] {
        assert!(!db.with_file_name(side).exists(), "{side} was created");
    }
    assert_eq!(sqlite(&db, "PRAGMA journal_mode").unwrap(), "delete");
}

#[test]
fn a_file_with_other_tables_is_refused_untouched() {
    if !has_sqlite3() {
        skip_or_fail("sqlite3");
        return;
    }
    refused_untouched(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('mine');",
        "notes",
    );
}

#[test]
fn a_file_with_a_conflicting_events_table_is_refused_untouched() {
    if !has_sqlite3() {
        skip_or_fail("sqlite3");
        return;
    }
    refused_untouched(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO events (body) VALUES ('x');",
        "`events`",
    );
}

#[test]
fn a_newer_store_is_refused_and_an_older_one_is_migrated() {
    if !has_sqlite3() {
        skip_or_fail("sqlite3");
        return;
    }
    let repo = TestRepo::new();
    let db = repo_db(&repo);
    assert_ok(&quick_run(&repo));
    assert_eq!(
        sqlite(
            &db,
            "SELECT value FROM orch_meta WHERE key = 'schema_version'"
        )
        .unwrap(),
        "2"
    );

    // A store as version 1 wrote it: no orch_meta, no owner columns.
    sqlite(
        &db,
        "DROP TABLE orch_meta; ALTER TABLE runs DROP COLUMN host; ALTER TABLE runs DROP COLUMN boot_id; \
         ALTER TABLE runs DROP COLUMN pid; ALTER TABLE runs DROP COLUMN pid_start;",
    )
    .unwrap();
    let old = orch_audit(&db, &["runs", "--json"]);
    assert_ok(&old);
    assert_eq!(json(&old)[0]["status"], "succeeded");
    assert_ok(&quick_run(&repo));
    let runs = json(&orch_audit(&db, &["runs", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_ok(&orch_audit(&db, &["verify"]));
    assert_eq!(
        sqlite(
            &db,
            "SELECT value FROM orch_meta WHERE key = 'schema_version'"
        )
        .unwrap(),
        "2"
    );

    // A store from a newer orch.
    sqlite(
        &db,
        "UPDATE orch_meta SET value = '99' WHERE key = 'schema_version'",
    )
    .unwrap();
    let before = std::fs::read(&db).unwrap();
    let out = quick_run(&repo);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("version 99, newer"), "{stderr}");
    let read = orch_audit(&db, &["runs"]);
    assert_eq!(read.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&read.stderr).contains("newer"));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}
