//! `orch-audit verify`: recomputes the hash chains of `events` and `files`, checks that
//! every AgentFS file matches what the chains vouch for, and checks the AgentFS
//! invariants readers rely on. Names the first bad row of each kind.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use libsql::{Connection, Row, Rows, Value, ValueType};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::anchor::{self, AnchorLookup};
use crate::audit::error::AuditError;
use crate::audit::fs::resolve;
use crate::audit::reader::{collect, get, opt_int, opt_text};
use crate::audit::schema::{
    ByAgent, CHUNK_SIZE, DIR_MODE, EventRowRef, KV_ROW, ROOT_INO, S_IFDIR, S_IFMT, S_IFREG,
    SCHEMA_VERSION, TOOL_CALL_ROW, ToolCallRef, event_digest, events_file, file_hash,
    files_genesis, head_key, hex, hex_into, kv_canonical, run_hash, tool_call_canonical,
    write_event_line,
};

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub runs: i64,
    pub events: i64,
    pub files: i64,
    pub problems: Vec<String>,
    /// What could not be checked (a finished run without an anchor): not a failure.
    pub warnings: Vec<String>,
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
    verify_events(conn, session, &sessions, &mut report, true).await?;
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

/// The hash chain of one run's `events` rows only, in one read transaction: what
/// `launch resume` relies on (the rows it reads are in that chain). Skips the AgentFS
/// mirrors and invariants that `verify` also checks.
pub async fn verify_run_chain(
    conn: &Connection,
    session: &str,
) -> Result<VerifyReport, AuditError> {
    conn.execute("BEGIN", ())
        .await
        .map_err(AuditError::sql("begin a read transaction"))?;
    let mut report = VerifyReport::default();
    let result = verify_events(
        conn,
        Some(session),
        &[session.to_owned()],
        &mut report,
        false,
    )
    .await;
    let _ = conn.execute("ROLLBACK", ()).await;
    result.map(|()| report)
}

/// The links of chosen rows of one run's chain, in one read transaction: each row of
/// `seqs` against the row before it (the `runs` row before seq 1), and the row after it
/// against it. A row changed in place, or changed with its own hash recomputed, breaks
/// one of those two links. What `launch resume` checks before it uses the rows it read;
/// the whole chain (`verify_run_chain`) is checked alongside the resumed run.
pub async fn verify_rows(
    conn: &Connection,
    session: &str,
    seqs: &[i64],
) -> Result<Vec<String>, AuditError> {
    let mut seqs: Vec<i64> = seqs.to_vec();
    seqs.sort_unstable();
    seqs.dedup();
    // Each row with its neighbours, as a few ranges.
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &seq in &seqs {
        let (from, to) = ((seq - 1).max(1), seq + 1);
        match ranges.last_mut() {
            Some(last) if from <= last.1 + 1 => last.1 = last.1.max(to),
            _ => ranges.push((from, to)),
        }
    }
    conn.execute("BEGIN", ())
        .await
        .map_err(AuditError::sql("begin a read transaction"))?;
    let result = check_ranges(conn, session, &seqs, &ranges).await;
    let _ = conn.execute("ROLLBACK", ()).await;
    result
}

async fn check_ranges(
    conn: &Connection,
    session: &str,
    seqs: &[i64],
    ranges: &[(i64, i64)],
) -> Result<Vec<String>, AuditError> {
    let mut problems = Vec::new();
    let Some((start, stored)) = run_start(conn, session).await? else {
        return Err(AuditError::UnknownSession {
            session: session.to_owned(),
        });
    };
    if start != stored {
        problems.push(format!(
            "runs row `{session}`: hash does not match its content"
        ));
    }
    let (mut buf, mut computed) = (Vec::new(), String::new());
    let mut found = 0;
    for &(from, to) in ranges {
        let mut rows = conn
            .query(
                "SELECT seq, agent, turn, ts, kind, payload, hash FROM events WHERE run = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
                (session, from, to),
            )
            .await
            .map_err(AuditError::sql("read events"))?;
        // The hash of the row before, when it is the one just read.
        let mut prev: Option<(i64, String)> = (from == 1).then(|| (0, start.clone()));
        while let Some(r) = rows.next().await.map_err(AuditError::sql("read events"))? {
            let seq: i64 = get(&r, 0)?;
            let hash = str_col(&r, 6)?;
            let read = seqs.binary_search(&seq).is_ok();
            found += usize::from(read);
            // A row read, or the one after it.
            let wanted = read || seqs.binary_search(&(seq - 1)).is_ok();
            match &prev {
                Some((p, prev_hash)) if *p == seq - 1 => {
                    let row = EventRowRef {
                        run: session,
                        seq,
                        agent: opt_str(&r, 1)?,
                        turn: opt_int(&r, 2)?,
                        ts: get(&r, 3)?,
                        kind: str_col(&r, 4)?,
                        payload: str_col(&r, 5)?,
                    };
                    hex_into(&event_digest(&mut buf, prev_hash, &row), &mut computed);
                    if wanted && computed != hash {
                        problems.push(format!(
                            "events row run=`{session}` seq={seq}: hash chain broken, the row was changed"
                        ));
                    }
                }
                _ if read => problems.push(format!(
                    "events row run=`{session}` seq={seq}: the row before it is missing"
                )),
                _ => {}
            }
            prev = Some((seq, hash.to_owned()));
        }
        if problems.len() >= 5 {
            return Ok(problems);
        }
    }
    if found < seqs.len() {
        problems.push(format!(
            "events of run `{session}`: {} row(s) read a moment ago are gone",
            seqs.len() - found
        ));
    }
    Ok(problems)
}

/// A run's chain start as its `runs` row's content gives it, and the hash stored there;
/// `None` when there is no such run.
async fn run_start(
    conn: &Connection,
    session: &str,
) -> Result<Option<(String, String)>, AuditError> {
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
    Ok(run
        .into_iter()
        .next()
        .map(|(started, prompt, backend, root, stored)| {
            (run_hash(session, started, &prompt, &backend, &root), stored)
        }))
}

/// Each run's head against its anchor outside the store (`refs/orch/audit/<session>`
/// in the project's git repository, see `anchor`): a store cut short at the end (rows
/// and events files alike) or rewritten with every later hash recomputed no longer
/// reaches the anchored head. `repo` is the repository to look in when the run's own
/// project root is not a directory here. A finished run without an anchor in a git
/// repository is a warning.
pub async fn check_anchors(
    conn: &Connection,
    repo: Option<&Path>,
    session: Option<&str>,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let runs = collect(
        conn,
        "SELECT session, project_root FROM runs WHERE ?1 IS NULL OR session = ?1 ORDER BY started_at_ms",
        vec![session.map_or(Value::Null, |s| Value::Text(s.to_owned()))],
        |r| Ok((get::<String>(r, 0)?, get::<String>(r, 1)?)),
    )
    .await?;
    for (session, root) in runs {
        let root = PathBuf::from(&root);
        let Some(repo) = (if root.is_dir() {
            Some(root.as_path())
        } else {
            repo
        }) else {
            continue;
        };
        let name = anchor::ref_name(&session);
        match anchor::read(repo, &session) {
            Ok(AnchorLookup::NoRepository) => {}
            Ok(AnchorLookup::Missing) => {
                // A run still being written has no anchor yet; any other run should
                // (its end, or its last rows, may be gone: nothing here can tell).
                let alive = crate::audit::owner::load(conn, &session).await?.state()
                    == crate::audit::owner::OwnerState::Alive;
                if !alive {
                    report.warnings.push(format!(
                        "run `{session}` has no anchor {name} in `{}`: its end cannot be checked",
                        repo.display()
                    ));
                }
            }
            Ok(AnchorLookup::Found(found)) => {
                if found.session != session {
                    report.problems.push(format!(
                        "anchor {name} is for run `{}`, not `{session}`",
                        found.session
                    ));
                    continue;
                }
                check_head(
                    conn,
                    &session,
                    &name,
                    "events",
                    found.seq,
                    &found.hash,
                    report,
                )
                .await?;
                check_head(
                    conn,
                    &session,
                    &name,
                    "files",
                    found.files_seq,
                    &found.files_hash,
                    report,
                )
                .await?;
            }
            Err(err) => report.warnings.push(format!(
                "run `{session}`: its anchor cannot be checked: {err}"
            )),
        }
    }
    Ok(())
}

/// The row `seq` of a run's `table` chain (`events` or `files`) must exist and carry
/// the anchored hash.
async fn check_head(
    conn: &Connection,
    session: &str,
    name: &str,
    table: &'static str,
    seq: i64,
    hash: &str,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    if seq == 0 {
        return Ok(());
    }
    let run = || Value::Text(session.to_owned());
    let at = collect(
        conn,
        &format!("SELECT hash FROM {table} WHERE run = ?1 AND seq = ?2"),
        vec![run(), Value::Integer(seq)],
        |r| get::<String>(r, 0),
    )
    .await?;
    match at.first() {
        None => {
            let head = collect(
                conn,
                &format!("SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE run = ?1"),
                vec![run()],
                |r| get::<i64>(r, 0),
            )
            .await?;
            report.problems.push(format!(
                "run `{session}` ends at {table} seq {} but its anchor {name} names seq {seq}: {table} rows were removed from the end",
                head.first().copied().unwrap_or(0),
            ));
        }
        Some(stored) if stored != hash => report.problems.push(format!(
            "{table} row run=`{session}` seq={seq}: hash {stored} differs from its anchor {name} ({hash}): the chain was rewritten"
        )),
        Some(_) => {}
    }
    Ok(())
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
    // Each run's head in kv_store is vouched for by its files row.
    let heads = collect(
        conn,
        "SELECT key FROM kv_store WHERE key LIKE 'orch:run:%' AND (?1 IS NULL OR key = ?1) ORDER BY key",
        vec![session.map_or(Value::Null, |s| Value::Text(head_key(s)))],
        |r| get::<String>(r, 0),
    )
    .await?;
    for key in heads {
        if !known.contains(&format!("{KV_ROW}{key}")) {
            report.problems.push(format!(
                "kv_store row `{key}` is not vouched for by any events or files row: a row was removed"
            ));
        }
    }
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

/// One events file, compared chunk by chunk with the lines its rows produce, as the
/// rows stream by: no second pass and no hashing of either side.
struct FileCheck {
    path: String,
    /// `None`: the file is missing.
    ino: Option<i64>,
    chunks: Option<Rows>,
    chunk: Vec<u8>,
    pos: usize,
    /// Bytes the rows have accounted for so far.
    offset: usize,
    problem: Option<String>,
}

impl FileCheck {
    async fn open(conn: &Connection, path: String) -> Result<FileCheck, AuditError> {
        let ino = resolve(conn, &path).await?;
        let chunks = match ino {
            Some(ino) => Some(
                conn.query(
                    "SELECT data FROM fs_data WHERE ino = ?1 ORDER BY chunk_index",
                    [ino],
                )
                .await
                .map_err(AuditError::sql("read a file"))?,
            ),
            None => None,
        };
        Ok(FileCheck {
            path,
            ino,
            chunks,
            chunk: Vec::new(),
            pos: 0,
            offset: 0,
            problem: None,
        })
    }

    /// The next chunk, or `None` at the end of the file.
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, AuditError> {
        let Some(rows) = self.chunks.as_mut() else {
            return Ok(None);
        };
        match rows.next().await.map_err(AuditError::sql("read a file"))? {
            Some(row) => Ok(Some(
                match row.get_value(0).map_err(AuditError::sql("read a file"))? {
                    Value::Blob(bytes) => bytes,
                    Value::Text(text) => text.into_bytes(),
                    _ => Vec::new(),
                },
            )),
            None => Ok(None),
        }
    }

    /// The file must continue with `line`, the line of events row `seq`.
    async fn expect(&mut self, line: &[u8], seq: i64) -> Result<(), AuditError> {
        let at = self.offset;
        self.offset += line.len();
        if self.problem.is_some() || self.ino.is_none() {
            return Ok(());
        }
        let mut rest = line;
        while !rest.is_empty() {
            if self.pos == self.chunk.len() {
                match self.next_chunk().await? {
                    Some(chunk) => (self.chunk, self.pos) = (chunk, 0),
                    None => break,
                }
                continue;
            }
            let n = rest.len().min(self.chunk.len() - self.pos);
            if self.chunk[self.pos..self.pos + n] != rest[..n] {
                break;
            }
            self.pos += n;
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            self.problem = Some(format!(
                "file `{}` (ino {}): the line of events row seq={seq} at byte {at} does not match the row",
                self.path,
                self.ino.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// What is wrong with the file once every row has been seen, if anything.
    async fn finish(mut self) -> Result<Option<String>, AuditError> {
        let Some(ino) = self.ino else {
            return Ok(Some(format!(
                "file `{}` is missing ({} bytes of events expected)",
                self.path, self.offset
            )));
        };
        if self.problem.is_some() {
            return Ok(self.problem);
        }
        let mut extra = self.chunk.len() - self.pos;
        while let Some(chunk) = self.next_chunk().await? {
            extra += chunk.len();
        }
        Ok((extra > 0).then(|| {
            format!(
                "file `{}` (ino {ino}): {extra} bytes after the last event row",
                self.path
            )
        }))
    }
}

/// A text column that may be NULL, borrowed from the row.
fn opt_str(row: &Row, idx: i32) -> Result<Option<&str>, AuditError> {
    match row
        .column_type(idx)
        .map_err(AuditError::sql("read a row"))?
    {
        ValueType::Null => Ok(None),
        _ => row
            .get_str(idx)
            .map(Some)
            .map_err(AuditError::sql("read a row")),
    }
}

fn str_col(row: &Row, idx: i32) -> Result<&str, AuditError> {
    row.get_str(idx).map_err(AuditError::sql("read a row"))
}

/// The chain and events files of one run, checked as its rows stream by.
struct RunCheck {
    prev: String,
    want_seq: i64,
    /// Rows are appended, so a run's rowids grow with its seq.
    last_rowid: i64,
    first_bad: Option<String>,
    files: Vec<FileCheck>,
    file_of_path: HashMap<String, usize>,
    file_of_agent: ByAgent<usize>,
}

/// Checks the `events` rows of `sessions` (every run when `only` is `None`): each run's
/// hash chain from its `runs` row, and every events file against the rows' lines.
async fn verify_events(
    conn: &Connection,
    only: Option<&str>,
    sessions: &[String],
    report: &mut VerifyReport,
    mirrors: bool,
) -> Result<(), AuditError> {
    let mut runs: HashMap<String, RunCheck> = HashMap::new();
    for session in sessions {
        report.runs += 1;
        let Some((start, stored)) = run_start(conn, session).await? else {
            continue;
        };
        if start != stored {
            report.problems.push(format!(
                "runs row `{session}`: hash does not match its content"
            ));
        }
        runs.insert(
            session.clone(),
            RunCheck {
                prev: start,
                want_seq: 1,
                last_rowid: i64::MIN,
                first_bad: None,
                files: Vec::new(),
                file_of_path: HashMap::new(),
                file_of_agent: ByAgent::default(),
            },
        );
    }
    // Every run at once: one pass over the table in insertion order, which is each
    // run's seq order (the writer appends). One run: its own rows, through the index.
    let mut rows = match only {
        Some(session) => conn
            .query(
                "SELECT rowid, run, seq, agent, turn, ts, kind, payload, hash FROM events WHERE run = ?1 ORDER BY seq",
                [session],
            )
            .await,
        None => conn
            .query(
                "SELECT rowid, run, seq, agent, turn, ts, kind, payload, hash FROM events ORDER BY rowid",
                (),
            )
            .await,
    }
    .map_err(AuditError::sql("read events"))?;
    let (mut hash_buf, mut computed, mut line) = (Vec::new(), String::new(), Vec::new());
    let mut orphans: Vec<String> = Vec::new();
    while let Some(r) = rows.next().await.map_err(AuditError::sql("read events"))? {
        report.events += 1;
        let session = str_col(&r, 1)?;
        let Some(run) = runs.get_mut(session) else {
            if !orphans.iter().any(|o| o == session) {
                orphans.push(session.to_owned());
            }
            continue;
        };
        let (rowid, seq): (i64, i64) = (get(&r, 0)?, get(&r, 2)?);
        let (agent, turn) = (opt_str(&r, 3)?, opt_int(&r, 4)?);
        let ts: i64 = get(&r, 5)?;
        let (kind, payload, hash) = (str_col(&r, 6)?, str_col(&r, 7)?, str_col(&r, 8)?);
        let row = EventRowRef {
            run: session,
            seq,
            agent,
            turn,
            ts,
            kind,
            payload,
        };
        hex_into(&event_digest(&mut hash_buf, &run.prev, &row), &mut computed);
        if run.first_bad.is_none() {
            let want_seq = run.want_seq;
            if seq != want_seq {
                run.first_bad = Some(format!(
                    "events row run=`{session}` seq={seq} (rowid {rowid}): expected seq {want_seq}, a row is missing"
                ));
            } else if computed != hash {
                run.first_bad = Some(format!(
                    "events row run=`{session}` seq={seq} (rowid {rowid}): hash chain broken, the row was changed"
                ));
            } else if rowid < run.last_rowid {
                run.first_bad = Some(format!(
                    "events row run=`{session}` seq={seq} (rowid {rowid}): stored before the row ahead of it, a row was removed and put back"
                ));
            }
        }
        run.want_seq = seq + 1;
        run.last_rowid = rowid;
        run.prev.clear();
        run.prev.push_str(hash);
        if !mirrors {
            continue;
        }
        line.clear();
        write_event_line(&mut line, seq, ts, agent, turn, kind, payload);
        let index = match run.file_of_agent.get(agent) {
            Some(index) => *index,
            None => {
                let path = events_file(session, agent);
                let index = match run.file_of_path.get(&path) {
                    Some(index) => *index,
                    None => {
                        run.files.push(FileCheck::open(conn, path.clone()).await?);
                        run.file_of_path.insert(path, run.files.len() - 1);
                        run.files.len() - 1
                    }
                };
                *run.file_of_agent.get_or_insert_with(agent, || index)
            }
        };
        run.files[index].expect(&line, seq).await?;
    }
    for session in orphans {
        report.problems.push(format!(
            "events rows of run `{session}` have no runs row: the runs row was removed"
        ));
    }
    for session in sessions {
        let Some(mut run) = runs.remove(session) else {
            continue;
        };
        if let Some(problem) = run.first_bad.take() {
            report.problems.push(problem);
        }
        run.files.sort_by(|a, b| a.path.cmp(&b.path));
        for file in run.files {
            if let Some(problem) = file.finish().await? {
                report.problems.push(problem);
            }
        }
    }
    Ok(())
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
    // A key written again is vouched for by its latest row only.
    let mut kv_rows: HashMap<String, (i64, i64, String)> = HashMap::new();
    for (want_seq, (rowid, seq, path, size, sha, hash)) in (1..).zip(rows) {
        report.files += 1;
        if !chain_reported
            && (seq != want_seq || file_hash(&prev, run, seq, &path, size, &sha) != hash)
        {
            report.problems.push(format!("files row run=`{run}` seq={seq} (rowid {rowid}) for `{path}`: hash chain broken, the row was changed or removed"));
            chain_reported = true;
        }
        prev = hash;
        if let Some(key) = path.strip_prefix(KV_ROW) {
            kv_rows.insert(key.to_owned(), (seq, size, sha));
            continue;
        }
        if let Some(id) = path.strip_prefix(TOOL_CALL_ROW) {
            if let Some(problem) = check_tool_call(conn, id, size, &sha).await? {
                report
                    .problems
                    .push(format!("{problem} (files row run=`{run}` seq={seq})"));
            }
            continue;
        }
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
    let mut keys: Vec<_> = kv_rows.into_iter().collect();
    keys.sort();
    for (key, (seq, size, sha)) in keys {
        let values = collect(
            conn,
            "SELECT value FROM kv_store WHERE key = ?1",
            vec![Value::Text(key.clone())],
            |r| get::<String>(r, 0),
        )
        .await?;
        let problem = match values.first() {
            None => Some("is missing"),
            Some(value) => {
                let canonical = kv_canonical(&key, value);
                (canonical.len() as i64 != size || hex(&Sha256::digest(&canonical)) != sha)
                    .then_some("does not match what the chain recorded")
            }
        };
        if let Some(problem) = problem {
            report.problems.push(format!(
                "kv_store row `{key}` {problem} (files row run=`{run}` seq={seq})"
            ));
        }
    }
    Ok(())
}

/// A `tool_calls` row against the size and SHA-256 of its canonical form.
async fn check_tool_call(
    conn: &Connection,
    id: &str,
    size: i64,
    sha: &str,
) -> Result<Option<String>, AuditError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(Some(format!(
            "`{TOOL_CALL_ROW}{id}` names no tool_calls row"
        )));
    };
    let rows = collect(
        conn,
        "SELECT name, parameters, result, error, status, started_at, completed_at, duration_ms FROM tool_calls WHERE id = ?1",
        vec![Value::Integer(id)],
        |r| {
            let row = (
                get::<String>(r, 0)?,
                opt_text(r, 1)?,
                opt_text(r, 2)?,
                opt_text(r, 3)?,
                get::<String>(r, 4)?,
                get::<i64>(r, 5)?,
                opt_int(r, 6)?,
                opt_int(r, 7)?,
            );
            Ok(row)
        },
    )
    .await?;
    let Some((name, parameters, result, error, status, started_at, completed_at, duration_ms)) =
        rows.into_iter().next()
    else {
        return Ok(Some(format!("tool_calls row id={id} is missing")));
    };
    let canonical = tool_call_canonical(&ToolCallRef {
        id,
        name: &name,
        parameters: parameters.as_deref(),
        result: result.as_deref(),
        error: error.as_deref(),
        status: &status,
        started_at,
        completed_at,
        duration_ms,
    });
    if canonical.len() as i64 != size || hex(&Sha256::digest(&canonical)) != sha {
        return Ok(Some(format!(
            "tool_calls row id={id}: content does not match what the chain recorded"
        )));
    }
    Ok(None)
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
