//! Read-only queries behind `orch-audit`: runs, agents and turns of a run, events,
//! and the AgentFS tree. Opens its own connection; safe while a run is writing.

use libsql::{Connection, Row, Value, params_from_iter};
use serde::Serialize;

use crate::audit::error::AuditError;
use crate::audit::fs::resolve;
use crate::audit::owner::{OwnerState, RunOwner};
use crate::audit::schema::{S_IFDIR, S_IFMT};
use crate::audit::target::{AuditTarget, Store, open_existing};
use crate::audit::writer::SINK_FAILED;
use crate::events::event::TurnRecord;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RunSummary {
    pub session: String,
    pub started_at_ms: i64,
    /// running, paused, succeeded, failed, stopped, or crashed (running or paused, and
    /// its orchestrator on this host is gone). A run whose log or audit store could not
    /// be written (`sink_failed`) is failed whatever it recorded after.
    pub status: String,
    pub agents: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub events: i64,
    pub backend: String,
    pub prompt: String,
}

/// One stored event row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub ts_ms: i64,
    pub agent: Option<String>,
    pub turn: Option<i64>,
    pub kind: String,
    pub payload: serde_json::Value,
    pub hash: String,
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub agent: Option<String>,
    pub kind: Option<String>,
    pub since_ms: Option<i64>,
    pub after_seq: i64,
    pub limit: Option<i64>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: i64,
    pub is_dir: bool,
    pub size: i64,
    pub mtime: i64,
}

pub struct AuditReader {
    store: Store,
}

/// A column type we read (libsql's own conversion trait is not public).
pub(crate) trait Column: Sized {
    fn from_value(value: Value) -> Option<Self>;
}

impl Column for i64 {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Integer(n) => Some(n),
            Value::Real(f) => Some(f as i64),
            Value::Null => Some(0),
            _ => None,
        }
    }
}

impl Column for String {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Text(text) => Some(text),
            Value::Blob(bytes) => String::from_utf8(bytes).ok(),
            Value::Integer(n) => Some(n.to_string()),
            Value::Null => Some(String::new()),
            Value::Real(f) => Some(f.to_string()),
        }
    }
}

pub(crate) fn get<T: Column>(row: &Row, idx: i32) -> Result<T, AuditError> {
    let value = row.get_value(idx).map_err(AuditError::sql("read a row"))?;
    T::from_value(value).ok_or_else(|| AuditError::Malformed {
        detail: format!("column {idx} has an unexpected type"),
    })
}

pub(crate) fn opt_text(row: &Row, idx: i32) -> Result<Option<String>, AuditError> {
    match row.get_value(idx).map_err(AuditError::sql("read a row"))? {
        Value::Text(text) => Ok(Some(text)),
        _ => Ok(None),
    }
}

pub(crate) fn opt_int(row: &Row, idx: i32) -> Result<Option<i64>, AuditError> {
    match row.get_value(idx).map_err(AuditError::sql("read a row"))? {
        Value::Integer(n) => Ok(Some(n)),
        _ => Ok(None),
    }
}

/// Runs a query and collects its rows through `map`.
pub(crate) async fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    mut map: impl FnMut(&Row) -> Result<T, AuditError>,
) -> Result<Vec<T>, AuditError> {
    let mut rows = conn
        .query(sql, params_from_iter(params))
        .await
        .map_err(AuditError::sql("query"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.map_err(AuditError::sql("read rows"))? {
        out.push(map(&row)?);
    }
    Ok(out)
}

impl AuditReader {
    pub async fn open(target: &AuditTarget) -> Result<AuditReader, AuditError> {
        Ok(AuditReader {
            store: open_existing(target).await?,
        })
    }

    pub fn conn(&self) -> &Connection {
        &self.store.conn
    }

    /// Every run, newest first.
    pub async fn runs(&self) -> Result<Vec<RunSummary>, AuditError> {
        let sessions = collect(
            self.conn(),
            "SELECT session FROM runs ORDER BY started_at_ms DESC, session DESC",
            vec![],
            |r| get::<String>(r, 0),
        )
        .await?;
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            out.push(self.run(&session).await?);
        }
        Ok(out)
    }

    pub async fn run(&self, session: &str) -> Result<RunSummary, AuditError> {
        let s = || vec![Value::Text(session.to_owned())];
        let base = collect(
            self.conn(),
            "SELECT started_at_ms, backend, prompt FROM runs WHERE session = ?1",
            s(),
            |r| {
                Ok((
                    get::<i64>(r, 0)?,
                    get::<String>(r, 1)?,
                    get::<String>(r, 2)?,
                ))
            },
        )
        .await?;
        let Some((started_at_ms, backend, prompt)) = base.into_iter().next() else {
            return Err(AuditError::UnknownSession {
                session: session.to_owned(),
            });
        };
        let last = collect(
            self.conn(),
            // The last of three kinds, each found through the kind index: `kind IN (…)
            // ORDER BY seq DESC LIMIT 1` walks the run's rows backwards instead, every
            // one of them in a crashed run that has none (0.3 s on a million events).
            "SELECT kind, payload FROM events WHERE run = ?1 AND seq = (SELECT MAX(s) FROM ( \
             SELECT MAX(seq) AS s FROM events WHERE run = ?1 AND kind = 'run_finished' \
             UNION ALL SELECT MAX(seq) FROM events WHERE run = ?1 AND kind = 'run_paused' \
             UNION ALL SELECT MAX(seq) FROM events WHERE run = ?1 AND kind = 'run_resumed'))",
            s(),
            |r| Ok((get::<String>(r, 0)?, get::<String>(r, 1)?)),
        )
        .await?;
        let sink_failed = collect(
            self.conn(),
            "SELECT 1 FROM events WHERE run = ?1 AND kind = ?2 LIMIT 1",
            vec![
                Value::Text(session.to_owned()),
                Value::Text(SINK_FAILED.to_owned()),
            ],
            |_| Ok(()),
        )
        .await?;
        let mut status = match last.first() {
            Some((kind, payload)) if kind == "run_finished" => {
                serde_json::from_str::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v["status"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "finished".into())
            }
            Some((kind, _)) if kind == "run_paused" => "paused".into(),
            _ => "running".into(),
        };
        if !sink_failed.is_empty() {
            status = "failed".into();
        } else if (status == "running" || status == "paused")
            && self.owner(session).await?.state() == OwnerState::Gone
        {
            status = "crashed".into();
        }
        let agents = collect(
            self.conn(),
            "SELECT COUNT(DISTINCT agent) FROM events WHERE run = ?1 AND kind = 'agent_started'",
            s(),
            |r| get::<i64>(r, 0),
        )
        .await?;
        let tokens = collect(
            self.conn(),
            "SELECT COALESCE(SUM(json_extract(payload, '$.usage.input_tokens')), 0), COALESCE(SUM(json_extract(payload, '$.usage.output_tokens')), 0) \
             FROM events WHERE run = ?1 AND kind = 'turn_finished'",
            s(),
            |r| Ok((get::<i64>(r, 0)?, get::<i64>(r, 1)?)),
        )
        .await?;
        let events = collect(
            self.conn(),
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run = ?1",
            s(),
            |r| get::<i64>(r, 0),
        )
        .await?;
        let (input_tokens, output_tokens) = tokens.first().copied().unwrap_or((0, 0));
        Ok(RunSummary {
            session: session.to_owned(),
            started_at_ms,
            status,
            agents: agents.first().copied().unwrap_or(0),
            input_tokens,
            output_tokens,
            events: events.first().copied().unwrap_or(0),
            backend,
            prompt,
        })
    }

    /// Who owns the run (recorded by its writer; empty for older stores).
    pub async fn owner(&self, session: &str) -> Result<RunOwner, AuditError> {
        crate::audit::owner::load(self.conn(), session).await
    }

    /// Events of a run in order, filtered.
    pub async fn events(
        &self,
        session: &str,
        filter: &EventFilter,
    ) -> Result<Vec<EventRow>, AuditError> {
        let mut sql = String::from(
            "SELECT seq, ts, agent, turn, kind, payload, hash FROM events WHERE run = ?1 AND seq > ?2",
        );
        let mut params = vec![
            Value::Text(session.to_owned()),
            Value::Integer(filter.after_seq),
        ];
        if let Some(agent) = &filter.agent {
            params.push(Value::Text(agent.clone()));
            sql.push_str(&format!(" AND agent = ?{}", params.len()));
        }
        if let Some(kind) = &filter.kind {
            params.push(Value::Text(kind.clone()));
            sql.push_str(&format!(" AND kind = ?{}", params.len()));
        }
        if let Some(since) = filter.since_ms {
            params.push(Value::Integer(since));
            sql.push_str(&format!(" AND ts >= ?{}", params.len()));
        }
        sql.push_str(" ORDER BY seq");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        collect(self.conn(), &sql, params, |r| {
            let payload: String = get(r, 5)?;
            Ok(EventRow {
                seq: get(r, 0)?,
                ts_ms: get(r, 1)?,
                agent: opt_text(r, 2)?,
                turn: opt_int(r, 3)?,
                kind: get(r, 4)?,
                payload: serde_json::from_str(&payload)
                    .unwrap_or(serde_json::Value::String(payload)),
                hash: get(r, 6)?,
            })
        })
        .await
    }

    /// The finished turns of a run, in order.
    pub async fn turns(
        &self,
        session: &str,
        agent: Option<&str>,
    ) -> Result<Vec<TurnRecord>, AuditError> {
        self.ensure_run(session).await?;
        let filter = EventFilter {
            agent: agent.map(str::to_owned),
            kind: Some("turn_finished".into()),
            ..EventFilter::default()
        };
        Ok(self
            .events(session, &filter)
            .await?
            .into_iter()
            .filter_map(|row| serde_json::from_value::<TurnRecord>(row.payload).ok())
            .collect())
    }

    pub async fn ensure_run(&self, session: &str) -> Result<(), AuditError> {
        let found = collect(
            self.conn(),
            "SELECT 1 FROM runs WHERE session = ?1",
            vec![Value::Text(session.to_owned())],
            |_| Ok(()),
        )
        .await?;
        if found.is_empty() {
            return Err(AuditError::UnknownSession {
                session: session.to_owned(),
            });
        }
        Ok(())
    }

    /// Entries of an AgentFS directory, sorted by name.
    pub async fn ls(&self, path: &str) -> Result<Vec<DirEntry>, AuditError> {
        let ino = resolve(self.conn(), path)
            .await?
            .ok_or_else(|| AuditError::UnknownPath {
                path: path.to_owned(),
            })?;
        let entries = collect(
            self.conn(),
            "SELECT d.name, d.ino, i.mode, i.size, i.mtime FROM fs_dentry d JOIN fs_inode i ON i.ino = d.ino WHERE d.parent_ino = ?1 ORDER BY d.name",
            vec![Value::Integer(ino)],
            |r| {
                Ok(DirEntry {
                    name: get(r, 0)?,
                    ino: get(r, 1)?,
                    is_dir: get::<i64>(r, 2)? & S_IFMT == S_IFDIR,
                    size: get(r, 3)?,
                    mtime: get(r, 4)?,
                })
            },
        )
        .await?;
        if entries.is_empty() && !self.is_dir(ino).await? {
            let name = path.rsplit('/').next().unwrap_or(path);
            let file = collect(
                self.conn(),
                "SELECT size, mtime FROM fs_inode WHERE ino = ?1",
                vec![Value::Integer(ino)],
                |r| {
                    Ok(DirEntry {
                        name: name.to_owned(),
                        ino,
                        is_dir: false,
                        size: get(r, 0)?,
                        mtime: get(r, 1)?,
                    })
                },
            )
            .await?;
            return Ok(file);
        }
        Ok(entries)
    }

    async fn is_dir(&self, ino: i64) -> Result<bool, AuditError> {
        let mode = collect(
            self.conn(),
            "SELECT mode FROM fs_inode WHERE ino = ?1",
            vec![Value::Integer(ino)],
            |r| get::<i64>(r, 0),
        )
        .await?;
        Ok(mode.first().is_some_and(|m| m & S_IFMT == S_IFDIR))
    }

    /// The bytes of an AgentFS file.
    pub async fn cat(&self, path: &str) -> Result<Vec<u8>, AuditError> {
        let ino = resolve(self.conn(), path)
            .await?
            .ok_or_else(|| AuditError::UnknownPath {
                path: path.to_owned(),
            })?;
        if self.is_dir(ino).await? {
            return Err(AuditError::IsDirectory {
                path: path.to_owned(),
            });
        }
        read_inode(self.conn(), ino).await
    }
}

/// Concatenates the chunks of a file.
pub async fn read_inode(conn: &Connection, ino: i64) -> Result<Vec<u8>, AuditError> {
    let chunks = collect(
        conn,
        "SELECT data FROM fs_data WHERE ino = ?1 ORDER BY chunk_index",
        vec![Value::Integer(ino)],
        |r| match r.get_value(0).map_err(AuditError::sql("read a chunk"))? {
            Value::Blob(bytes) => Ok(bytes),
            Value::Text(text) => Ok(text.into_bytes()),
            _ => Ok(Vec::new()),
        },
    )
    .await?;
    Ok(chunks.concat())
}
