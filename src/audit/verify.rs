//! `orch-audit verify`: recomputes the hash chains of `events` and `files`, checks that
//! every AgentFS file matches what the chains vouch for, and checks the AgentFS
//! invariants readers rely on. Names the first bad row of each kind.

use std::collections::{HashMap, HashSet};

use libsql::{Connection, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::error::AuditError;
use crate::audit::fs::resolve;
use crate::audit::reader::{collect, get, opt_int, opt_text, read_inode};
use crate::audit::schema::{
    CHUNK_SIZE, DIR_MODE, EventRowRef, ROOT_INO, S_IFDIR, S_IFMT, S_IFREG, SCHEMA_VERSION,
    event_hash, event_line, events_file, file_hash, files_genesis, hex, run_hash,
};

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub runs: i64,
    pub events: i64,
    pub files: i64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies one run, or every run (and every `files` chain) when `session` is `None`.
/// Runs in one read transaction: a run writing meanwhile cannot make the rows and the
/// files it reads disagree.
pub async fn verify(conn: &Connection, session: Option<&str>) -> Result<VerifyReport, AuditError> {
    conn.execute("BEGIN", ())
        .await
        .map_err(AuditError::sql("begin a read transaction"))?;
    let result = verify_snapshot(conn, session).await;
    let _ = conn.execute("ROLLBACK", ()).await;
    result
}

async fn verify_snapshot(
    conn: &Connection,
    session: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    check_agentfs(conn, &mut report).await?;
    let sessions = match session {
        Some(s) => {
            let found = collect(
                conn,
                "SELECT session FROM runs WHERE session = ?1",
                vec![Value::Text(s.to_owned())],
                |r| get::<String>(r, 0),
            )
            .await?;
            if found.is_empty() {
                return Err(AuditError::UnknownSession {
                    session: s.to_owned(),
                });
            }
            found
        }
        None => {
            collect(
                conn,
                "SELECT session FROM runs ORDER BY started_at_ms",
                vec![],
                |r| get::<String>(r, 0),
            )
            .await?
        }
    };
    for s in &sessions {
        report.runs += 1;
        verify_events(conn, s, &mut report).await?;
    }
    let file_runs = match session {
        Some(s) => vec![s.to_owned()],
        None => {
            collect(
                conn,
                "SELECT DISTINCT run FROM files ORDER BY run",
                vec![],
                |r| get::<String>(r, 0),
            )
            .await?
        }
    };
    for run in &file_runs {
        verify_files(conn, run, &mut report).await?;
    }
    check_accounted(conn, session, &mut report).await?;
    Ok(report)
}

/// Every file of ours (under `/runs` and `/memory/artifacts`) must be vouched for by a
/// `files` row or by `events` rows; otherwise the row that did was removed.
async fn check_accounted(
    conn: &Connection,
    session: Option<&str>,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let mut known: HashSet<String> = collect(conn, "SELECT path FROM files", vec![], |r| {
        get::<String>(r, 0)
    })
    .await?
    .into_iter()
    .collect();
    let pairs = collect(
        conn,
        "SELECT DISTINCT run, agent FROM events",
        vec![],
        |r| Ok((get::<String>(r, 0)?, opt_text(r, 1)?)),
    )
    .await?;
    known.extend(
        pairs
            .iter()
            .map(|(run, agent)| events_file(run, agent.as_deref())),
    );
    let files = collect(
        conn,
        "WITH RECURSIVE tree(ino, path) AS (SELECT ?1, '' UNION ALL \
         SELECT d.ino, tree.path || '/' || d.name FROM fs_dentry d JOIN tree ON d.parent_ino = tree.ino) \
         SELECT tree.ino, tree.path FROM tree JOIN fs_inode i ON i.ino = tree.ino WHERE (i.mode & ?2) = ?3 ORDER BY tree.path",
        vec![Value::Integer(ROOT_INO), Value::Integer(S_IFMT), Value::Integer(S_IFREG)],
        |r| Ok((get::<i64>(r, 0)?, get::<String>(r, 1)?)),
    )
    .await?;
    let scope = session.map(|s| format!("/runs/{s}/"));
    for (ino, path) in files {
        let ours = match &scope {
            Some(prefix) => path.starts_with(prefix.as_str()),
            None => path.starts_with("/runs/") || path.starts_with("/memory/artifacts/"),
        };
        if ours && !known.contains(&path) {
            report.problems.push(format!(
                "file `{path}` (ino {ino}) is not vouched for by any events or files row: a row was removed"
            ));
        }
    }
    Ok(())
}

/// Per events file: running hash and size of the lines the rows say it holds.
#[derive(Default)]
struct Expected {
    hasher: Sha256,
    size: i64,
}

async fn verify_events(
    conn: &Connection,
    session: &str,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let run = collect(
        conn,
        "SELECT started_at_ms, prompt, backend, project_root, hash FROM runs WHERE session = ?1",
        vec![Value::Text(session.to_owned())],
        |r| {
            Ok((
                get::<i64>(r, 0)?,
                get::<String>(r, 1)?,
                get::<String>(r, 2)?,
                get::<String>(r, 3)?,
                get::<String>(r, 4)?,
            ))
        },
    )
    .await?;
    let Some((started, prompt, backend, root, stored)) = run.into_iter().next() else {
        return Ok(());
    };
    let start = run_hash(session, started, &prompt, &backend, &root);
    if start != stored {
        report.problems.push(format!(
            "runs row `{session}`: hash does not match its content"
        ));
    }
    let mut prev = start;
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let mut first_bad: Option<String> = None;
    let mut rows = conn
        .query("SELECT rowid, seq, agent, turn, ts, kind, payload, hash FROM events WHERE run = ?1 ORDER BY seq", [session])
        .await
        .map_err(AuditError::sql("read events"))?;
    let mut want_seq = 1;
    while let Some(r) = rows.next().await.map_err(AuditError::sql("read events"))? {
        report.events += 1;
        let (rowid, seq): (i64, i64) = (get(&r, 0)?, get(&r, 1)?);
        let (agent, turn) = (opt_text(&r, 2)?, opt_int(&r, 3)?);
        let (ts, kind, payload, hash): (i64, String, String, String) =
            (get(&r, 4)?, get(&r, 5)?, get(&r, 6)?, get(&r, 7)?);
        let row = EventRowRef {
            run: session,
            seq,
            agent: agent.as_deref(),
            turn,
            ts,
            kind: &kind,
            payload: &payload,
        };
        let computed = event_hash(&prev, &row);
        if first_bad.is_none() {
            if seq != want_seq {
                first_bad = Some(format!(
                    "events row run=`{session}` seq={seq} (rowid {rowid}): expected seq {want_seq}, a row is missing"
                ));
            } else if computed != hash {
                first_bad = Some(format!(
                    "events row run=`{session}` seq={seq} (rowid {rowid}): hash chain broken, the row was changed"
                ));
            }
        }
        want_seq = seq + 1;
        prev = hash;
        let line = event_line(seq, ts, agent.as_deref(), turn, &kind, &payload);
        let file = expected
            .entry(events_file(session, agent.as_deref()))
            .or_default();
        file.hasher.update(line.as_bytes());
        file.size += line.len() as i64;
    }
    if let Some(problem) = first_bad {
        report.problems.push(problem);
    }
    let mut paths: Vec<_> = expected.into_iter().collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, want) in paths {
        let want_hash = hex(&want.hasher.finalize());
        let Some(ino) = resolve(conn, &path).await? else {
            report.problems.push(format!(
                "file `{path}` is missing ({} bytes of events expected)",
                want.size
            ));
            continue;
        };
        if hash_inode(conn, ino).await? != (want.size, want_hash) {
            // Rare path: load the file to name the first line that differs.
            let content = read_inode(conn, ino).await?;
            report
                .problems
                .push(describe_events_file_mismatch(conn, session, &path, ino, &content).await?);
        }
    }
    Ok(())
}

/// Finds the first line of an events file that differs from its row.
async fn describe_events_file_mismatch(
    conn: &Connection,
    session: &str,
    path: &str,
    ino: i64,
    content: &[u8],
) -> Result<String, AuditError> {
    let mut rows = conn
        .query(
            "SELECT seq, agent, turn, ts, kind, payload FROM events WHERE run = ?1 ORDER BY seq",
            [session],
        )
        .await
        .map_err(AuditError::sql("read events"))?;
    let mut offset = 0usize;
    while let Some(r) = rows.next().await.map_err(AuditError::sql("read events"))? {
        let (seq, agent, turn) = (get::<i64>(&r, 0)?, opt_text(&r, 1)?, opt_int(&r, 2)?);
        if events_file(session, agent.as_deref()) != path {
            continue;
        }
        let line = event_line(
            seq,
            get(&r, 3)?,
            agent.as_deref(),
            turn,
            &get::<String>(&r, 4)?,
            &get::<String>(&r, 5)?,
        );
        let end = offset + line.len();
        if content.get(offset..end) != Some(line.as_bytes()) {
            return Ok(format!(
                "file `{path}` (ino {ino}): the line of events row seq={seq} at byte {offset} does not match the row"
            ));
        }
        offset = end;
    }
    Ok(format!(
        "file `{path}` (ino {ino}): {} bytes after the last event row",
        content.len().saturating_sub(offset)
    ))
}

async fn verify_files(
    conn: &Connection,
    run: &str,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let rows = collect(
        conn,
        "SELECT rowid, seq, path, size, sha256, hash FROM files WHERE run = ?1 ORDER BY seq",
        vec![Value::Text(run.to_owned())],
        |r| {
            Ok((
                get::<i64>(r, 0)?,
                get::<i64>(r, 1)?,
                get::<String>(r, 2)?,
                get::<i64>(r, 3)?,
                get::<String>(r, 4)?,
                get::<String>(r, 5)?,
            ))
        },
    )
    .await?;
    let mut prev = files_genesis();
    let mut chain_reported = false;
    for (want_seq, (rowid, seq, path, size, sha, hash)) in (1..).zip(rows) {
        report.files += 1;
        if !chain_reported
            && (seq != want_seq || file_hash(&prev, run, seq, &path, size, &sha) != hash)
        {
            report.problems.push(format!("files row run=`{run}` seq={seq} (rowid {rowid}) for `{path}`: hash chain broken, the row was changed or removed"));
            chain_reported = true;
        }
        prev = hash;
        match resolve(conn, &path).await? {
            None => report.problems.push(format!(
                "file `{path}` (files row run=`{run}` seq={seq}) is missing"
            )),
            Some(ino) => {
                if hash_inode(conn, ino).await? != (size, sha) {
                    report.problems.push(format!("file `{path}` (ino {ino}): content does not match files row run=`{run}` seq={seq} (rowid {rowid})"));
                }
            }
        }
    }
    Ok(())
}

/// Size and SHA-256 of a file, streamed chunk by chunk (memory stays flat).
async fn hash_inode(conn: &Connection, ino: i64) -> Result<(i64, String), AuditError> {
    let mut rows = conn
        .query(
            "SELECT data FROM fs_data WHERE ino = ?1 ORDER BY chunk_index",
            [ino],
        )
        .await
        .map_err(AuditError::sql("read a file"))?;
    let (mut hasher, mut size) = (Sha256::new(), 0i64);
    while let Some(row) = rows.next().await.map_err(AuditError::sql("read a file"))? {
        let bytes = match row.get_value(0).map_err(AuditError::sql("read a file"))? {
            Value::Blob(bytes) => bytes,
            Value::Text(text) => text.into_bytes(),
            _ => Vec::new(),
        };
        size += bytes.len() as i64;
        hasher.update(&bytes);
    }
    Ok((size, hex(&hasher.finalize())))
}

/// The layout rules every AgentFS reader assumes.
async fn check_agentfs(conn: &Connection, report: &mut VerifyReport) -> Result<(), AuditError> {
    let config = collect(conn, "SELECT key, value FROM fs_config", vec![], |r| {
        Ok((get::<String>(r, 0)?, get::<String>(r, 1)?))
    })
    .await?;
    let value = |key: &str| {
        config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if value("chunk_size") != Some("4096") || CHUNK_SIZE != 4096 {
        report.problems.push(format!(
            "fs_config chunk_size is {:?}, expected \"4096\"",
            value("chunk_size")
        ));
    }
    if value("schema_version") != Some(SCHEMA_VERSION) {
        report.problems.push(format!(
            "fs_config schema_version is {:?}, expected \"{SCHEMA_VERSION}\"",
            value("schema_version")
        ));
    }
    let root = collect(
        conn,
        "SELECT mode FROM fs_inode WHERE ino = ?1",
        vec![Value::Integer(ROOT_INO)],
        |r| get::<i64>(r, 0),
    )
    .await?;
    if root.first() != Some(&DIR_MODE) {
        report.problems.push(format!(
            "root inode 1 has mode {:?}, expected 0o40755",
            root.first().map(|m| format!("{m:o}"))
        ));
    }
    let forbidden = collect(
        conn,
        "SELECT type, name FROM sqlite_master WHERE type = 'trigger' OR upper(sql) LIKE '%CHECK%(%' OR upper(sql) LIKE '%GENERATED%' OR upper(sql) LIKE '%FTS5%'",
        vec![],
        |r| Ok(format!("{} `{}`", get::<String>(r, 0)?, get::<String>(r, 1)?)),
    )
    .await?;
    for item in forbidden {
        report.problems.push(format!(
            "{item}: triggers, CHECK constraints, GENERATED columns and FTS5 break AgentFS readers"
        ));
    }
    let dangling = collect(
        conn,
        "SELECT d.id, d.name FROM fs_dentry d LEFT JOIN fs_inode i ON i.ino = d.ino LEFT JOIN fs_inode p ON p.ino = d.parent_ino \
         WHERE i.ino IS NULL OR p.ino IS NULL OR (p.mode & ?1) <> ?2 LIMIT 1",
        vec![Value::Integer(S_IFMT), Value::Integer(S_IFDIR)],
        |r| Ok(format!("fs_dentry row id={} (`{}`): its inode or parent directory is missing", get::<i64>(r, 0)?, get::<String>(r, 1)?)),
    )
    .await?;
    report.problems.extend(dangling);
    let sizes = collect(
        conn,
        "SELECT i.ino, i.size, COALESCE(SUM(length(d.data)), 0), COUNT(d.chunk_index), COALESCE(MAX(d.chunk_index), -1) \
         FROM fs_inode i LEFT JOIN fs_data d ON d.ino = i.ino WHERE (i.mode & ?1) = ?2 GROUP BY i.ino \
         HAVING i.size <> COALESCE(SUM(length(d.data)), 0) OR COUNT(d.chunk_index) <> COALESCE(MAX(d.chunk_index), -1) + 1 LIMIT 1",
        vec![Value::Integer(S_IFMT), Value::Integer(S_IFREG)],
        |r| Ok(format!("fs_inode ino={}: size {} but its chunks hold {} bytes in {} chunks", get::<i64>(r, 0)?, get::<i64>(r, 1)?, get::<i64>(r, 2)?, get::<i64>(r, 3)?)),
    )
    .await?;
    report.problems.extend(sizes);
    let chunks = collect(
        conn,
        "SELECT d.ino, d.chunk_index FROM fs_data d JOIN (SELECT ino, MAX(chunk_index) AS last FROM fs_data GROUP BY ino) l ON l.ino = d.ino \
         WHERE typeof(d.data) <> 'blob' OR length(d.data) = 0 OR length(d.data) > ?1 OR (d.chunk_index < l.last AND length(d.data) <> ?1) LIMIT 1",
        vec![Value::Integer(CHUNK_SIZE as i64)],
        |r| Ok(format!("fs_data row ino={} chunk_index={}: chunks must be BLOBs of exactly 4096 bytes except the last", get::<i64>(r, 0)?, get::<i64>(r, 1)?)),
    )
    .await?;
    report.problems.extend(chunks);
    Ok(())
}
