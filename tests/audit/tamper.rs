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
    verify_args_fail_with(db, &["verify", SESSION], needle);
}

/// `verify` of every run (one pass over the table) names the problem too.
fn verify_all_fails_with(db: &Path, needle: &str) {
    verify_args_fail_with(db, &["verify"], needle);
}

fn verify_args_fail_with(db: &Path, args: &[&str], needle: &str) {
    let untouched = orch_audit(db, args);
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
    let copy = copy_of(&db, "copy.db");
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
    // The run's own row: its events are vouched for by nothing.
    let runless = copy_of(&db, "runless.db");
    sqlite(
        &runless,
        &format!("DELETE FROM runs WHERE session='{SESSION}'"),
    );
    verify_all_fails_with(
        &runless,
        &format!("events rows of run `{SESSION}` have no runs row"),
    );
}

/// A row taken out and put back unchanged lands after its successors: the chain no
/// longer reads in order, for one run or for every run.
#[tokio::test]
async fn a_row_removed_and_put_back_is_noticed() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    sqlite(
        &db,
        &format!(
            "CREATE TABLE moved AS SELECT * FROM events WHERE run='{SESSION}' AND seq=3; \
             DELETE FROM events WHERE run='{SESSION}' AND seq=3; \
             INSERT INTO events SELECT * FROM moved; DROP TABLE moved;"
        ),
    );
    verify_fails_with(&db, &format!("events row run=`{SESSION}` seq=4"));
    verify_all_fails_with(&db, &format!("events row run=`{SESSION}` seq=4"));
}

/// Bytes cut from or added to the end of an events file are named.
#[tokio::test]
async fn a_cut_or_extended_events_file_is_named() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let ino = "(SELECT ino FROM fs_dentry WHERE name='planner.jsonl')";
    let last = format!("(SELECT MAX(chunk_index) FROM fs_data WHERE ino={ino})");
    let extended = copy_of(&db, "extended.db");
    sqlite(
        &db,
        &format!(
            "UPDATE fs_data SET data = substr(data, 1, length(data) - 1) WHERE ino={ino} AND chunk_index={last}; \
             UPDATE fs_inode SET size = size - 1 WHERE ino={ino};"
        ),
    );
    verify_fails_with(
        &db,
        &format!("file `/runs/{SESSION}/events/planner.jsonl` (ino"),
    );
    sqlite(
        &extended,
        &format!(
            "INSERT INTO fs_data (ino, chunk_index, data) SELECT {ino}, {last} + 1, X'7B7D0A'; \
             UPDATE fs_inode SET size = size + 3 WHERE ino={ino};"
        ),
    );
    verify_fails_with(&extended, "3 bytes after the last event row");
    verify_all_fails_with(&extended, "3 bytes after the last event row");
}

/// A copy of the store beside it, to tamper with separately.
fn copy_of(db: &Path, name: &str) -> std::path::PathBuf {
    let copy = db.with_file_name(name);
    std::fs::copy(db, &copy).unwrap();
    copy
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// One byte of `bytes` changed: the middle-most ASCII letter or digit becomes another
/// one, so the text stays valid UTF-8 (and JSON) and keeps its length.
fn one_byte_changed(bytes: &[u8]) -> Vec<u8> {
    let mid = bytes.len() / 2;
    let at = (0..bytes.len())
        .map(|i| {
            if i % 2 == 0 {
                mid + i / 2
            } else {
                mid.wrapping_sub(i / 2 + 1)
            }
        })
        .find(|&i| bytes.get(i).is_some_and(u8::is_ascii_alphanumeric))
        .expect("an ASCII letter or digit to change");
    let mut changed = bytes.to_vec();
    changed[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
    changed
}

/// A fresh copy of the demo run's store, tampered with by `sql`, must fail `verify`
/// naming `needle`.
fn tampered_copy_fails(db: &Path, dir: &Path, case: &str, sql: &str, needle: &str) {
    let copy = dir.join(format!("{case}.db"));
    std::fs::copy(db, &copy).unwrap();
    let before = orch_audit(&copy, &["verify"]);
    assert!(
        before.status.success(),
        "{case}: untouched copy: {}",
        stdout(&before)
    );
    sqlite(&copy, sql);
    let after = orch_audit(&copy, &["verify"]);
    assert_eq!(
        after.status.code(),
        Some(1),
        "{case}: verify must fail after `{sql}`: {}",
        stdout(&after)
    );
    assert!(
        stdout(&after).contains(needle),
        "{case}: expected `{needle}` in:\n{}",
        stdout(&after)
    );
    let json_report = json_verify(&copy);
    assert!(!json_report["problems"].as_array().unwrap().is_empty());
}

fn json_verify(db: &Path) -> serde_json::Value {
    let out = orch_audit(db, &["verify", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

#[test]
fn one_changed_byte_in_any_event_kind_or_turn_file_of_a_demo_run_is_named() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let repo = crate::repo::TestRepo::new();
    let out = demo_launch(
        &repo,
        "delay=1,events=3,fail=frontend-ui:transient",
        &["--prompt", "Ship the MVP"],
    )
    .output()
    .unwrap();
    assert_ok(&out);
    let db = repo_db(&repo);
    let session = only_session(&repo);
    let work = repo.dir.path().join("tamper");
    std::fs::create_dir(&work).unwrap();

    // The first row of every kind the run stored: one byte of its payload.
    let kinds = sqlite(
        &db,
        &format!(
            "SELECT kind, MIN(seq) FROM events WHERE run='{session}' GROUP BY kind ORDER BY 2"
        ),
    );
    let kinds: Vec<(String, i64)> = kinds
        .lines()
        .map(|l| {
            let (kind, seq) = l.split_once('|').unwrap();
            (kind.to_owned(), seq.parse().unwrap())
        })
        .collect();
    for kind in [
        "run_started",
        "agent_started",
        "turn_started",
        "message",
        "tool_call",
        "turn_retrying",
        "turn_finished",
        "blueprint_accepted",
        "run_finished",
    ] {
        assert!(
            kinds.iter().any(|(k, _)| k == kind),
            "no `{kind}` in {kinds:?}"
        );
    }
    for (kind, seq) in &kinds {
        let payload = unhex(&sqlite(
            &db,
            &format!("SELECT hex(payload) FROM events WHERE run='{session}' AND seq={seq}"),
        ));
        let changed = one_byte_changed(&payload);
        tampered_copy_fails(
            &db,
            &work,
            kind,
            &format!(
                "UPDATE events SET payload = CAST(X'{}' AS TEXT) WHERE run='{session}' AND seq={seq}",
                hex(&changed)
            ),
            &format!("events row run=`{session}` seq={seq} "),
        );
    }
    // The other columns of an event row: its agent, its time.
    let (_, seq) = kinds.iter().find(|(k, _)| k == "message").unwrap();
    let agent = sqlite(
        &db,
        &format!("SELECT agent FROM events WHERE run='{session}' AND seq={seq}"),
    );
    let changed = String::from_utf8(one_byte_changed(agent.as_bytes())).unwrap();
    tampered_copy_fails(
        &db,
        &work,
        "agent-column",
        &format!("UPDATE events SET agent = '{changed}' WHERE run='{session}' AND seq={seq}"),
        &format!("events row run=`{session}` seq={seq} "),
    );
    tampered_copy_fails(
        &db,
        &work,
        "ts-column",
        &format!("UPDATE events SET ts = ts + 1 WHERE run='{session}' AND seq={seq}"),
        &format!("events row run=`{session}` seq={seq} "),
    );

    // Every turn file: one byte of one of its chunks.
    let turn_files = sqlite(
        &db,
        &format!(
            "SELECT path FROM files WHERE run='{session}' AND path LIKE '/runs/%/agents/%' ORDER BY seq"
        ),
    );
    let turn_files: Vec<&str> = turn_files.lines().collect();
    assert!(turn_files.len() >= 12, "{turn_files:?}");
    for (i, path) in turn_files.iter().enumerate() {
        let listed = json(&orch_audit(&db, &["ls", path, "--json"]));
        let ino = listed[0]["ino"].as_i64().unwrap();
        let chunks: i64 = sqlite(
            &db,
            &format!("SELECT COUNT(*) FROM fs_data WHERE ino={ino}"),
        )
        .parse()
        .unwrap();
        let chunk = i as i64 % chunks;
        let data = unhex(&sqlite(
            &db,
            &format!("SELECT hex(data) FROM fs_data WHERE ino={ino} AND chunk_index={chunk}"),
        ));
        let changed = one_byte_changed(&data);
        tampered_copy_fails(
            &db,
            &work,
            &format!("turn-file-{i}"),
            &format!(
                "UPDATE fs_data SET data = X'{}' WHERE ino={ino} AND chunk_index={chunk}",
                hex(&changed)
            ),
            &format!("file `{path}` (ino {ino}): content does not match files row"),
        );
    }
}

/// `tool_calls` rows are covered by the `files` chain: a changed or removed row fails
/// `verify`, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_removed_tool_call_row_is_named() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    assert_eq!(
        sqlite(&db, "SELECT COUNT(*) FROM tool_calls"),
        sqlite(
            &db,
            "SELECT COUNT(*) FROM files WHERE path LIKE 'tool_calls/%'"
        ),
        "every tool call is vouched for"
    );
    tampered_copy_fails(
        &db,
        dir.path(),
        "tool-call-changed",
        "UPDATE tool_calls SET status = 'error' WHERE id = 2",
        "tool_calls row id=2: content does not match",
    );
    tampered_copy_fails(
        &db,
        dir.path(),
        "tool-call-removed",
        "DELETE FROM tool_calls WHERE id = 1",
        "tool_calls row id=1 is missing",
    );
}

/// The run's head kept in `kv_store` is covered too: changed, removed, or left without
/// the `files` row that vouched for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_removed_kv_store_row_is_named() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let key = format!("orch:run:{SESSION}");
    assert!(
        sqlite(
            &db,
            &format!("SELECT value FROM kv_store WHERE key = '{key}'")
        )
        .contains("\"seq\"")
    );
    tampered_copy_fails(
        &db,
        dir.path(),
        "kv-changed",
        &format!("UPDATE kv_store SET value = '{{}}' WHERE key = '{key}'"),
        &format!("kv_store row `{key}` does not match"),
    );
    tampered_copy_fails(
        &db,
        dir.path(),
        "kv-removed",
        &format!("DELETE FROM kv_store WHERE key = '{key}'"),
        &format!("kv_store row `{key}` is missing"),
    );
    tampered_copy_fails(
        &db,
        dir.path(),
        "kv-unvouched",
        &format!("DELETE FROM files WHERE run = '{SESSION}' AND path = 'kv_store/{key}'"),
        &format!("kv_store row `{key}` is not vouched for"),
    );
}

/// `launch resume` checks the links of the rows it reads before it uses them: a row
/// changed in place is caught through its own link and through the next row's, a row
/// taken out through the one after it; rows far from those read are left to `verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_links_of_the_rows_a_resume_reads_catch_a_changed_or_missing_row() {
    if !has_sqlite3() {
        return skip_or_fail("sqlite3");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_store(dir.path()).await;
    let check = |seqs: Vec<i64>| {
        let db = db.clone();
        async move {
            let reader = orch::audit::reader::AuditReader::open(&AuditTarget::Local(db))
                .await
                .unwrap();
            orch::audit::verify::verify_rows(reader.conn(), SESSION, &seqs)
                .await
                .unwrap()
        }
    };
    assert_eq!(check(vec![1, 16, 17, 40]).await, Vec::<String>::new());
    sqlite(
        &db,
        &format!(
            "UPDATE events SET payload = substr(payload, 1, 20) || 'Z' || substr(payload, 22) WHERE run='{SESSION}' AND seq=17"
        ),
    );
    let changed = format!("events row run=`{SESSION}` seq=17: hash chain broken");
    assert!(check(vec![17]).await[0].contains(&changed));
    assert!(check(vec![16]).await[0].contains(&changed));
    assert_eq!(check(vec![5, 30]).await, Vec::<String>::new());
    // Its hash changed too: the next row's link breaks.
    sqlite(
        &db,
        &format!(
            "UPDATE events SET hash = '00' || substr(hash, 3) WHERE run='{SESSION}' AND seq=17"
        ),
    );
    assert!(check(vec![16]).await[0].contains(&changed));
    assert!(check(vec![18]).await[0].contains("seq=18: hash chain broken"));
    sqlite(
        &db,
        &format!("DELETE FROM events WHERE run='{SESSION}' AND seq=20"),
    );
    assert!(check(vec![21]).await[0].contains("seq=21: the row before it is missing"));
    assert!(check(vec![20]).await[0].contains("read a moment ago are gone"));
}
