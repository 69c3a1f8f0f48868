//! Is a database file an orch store, and which version? Checked before anything is
//! written to it: a file that is not ours (other tables, or a table of ours with other
//! columns) is refused untouched, with no table added and no journal-mode change, and
//! a store newer than this build is refused rather than misread.
//!
//! Owns `STORE_VERSION`, the `orch_meta` table that records it, and the migration of
//! older stores. AgentFS's own `fs_config.schema_version` is left alone: AgentFS
//! readers check it.

use libsql::Connection;

use crate::audit::error::AuditError;
use crate::audit::reader::{collect, get};

/// The layout of our own tables this build writes. 1: `runs`, `events`, `files`
/// (no `orch_meta`); 2: `orch_meta`, and `runs` records its owner.
pub const STORE_VERSION: i64 = 2;

/// AgentFS's tables (any `fs_*` table is AgentFS's too).
const AGENTFS_TABLES: &[&str] = &["kv_store", "tool_calls"];

/// Columns a table of ours must have for the file to be ours.
const OWN_TABLES: &[(&str, &[&str])] = &[
    (
        "runs",
        &[
            "session",
            "started_at_ms",
            "prompt",
            "backend",
            "project_root",
            "hash",
        ],
    ),
    (
        "events",
        &[
            "run", "seq", "agent", "turn", "ts", "kind", "payload", "hash",
        ],
    ),
    ("files", &["run", "seq", "path", "size", "sha256", "hash"]),
    ("orch_meta", &["key", "value"]),
    ("fs_config", &["key", "value"]),
];

/// Columns version 2 added to `runs`.
const RUNS_OWNER_COLUMNS: &[(&str, &str)] = &[
    ("host", "TEXT"),
    ("boot_id", "TEXT"),
    ("pid", "INTEGER"),
    ("pid_start", "INTEGER"),
];

/// What a database holds, as far as orch is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// No tables: a new file, ours to set up.
    Empty,
    /// AgentFS tables only (a file an AgentFS tool made): ours to add to.
    AgentFs,
    Orch {
        version: i64,
    },
}

/// Reads what the file holds, writing nothing. `describe` names it in errors.
pub async fn inspect(conn: &Connection, describe: &str) -> Result<StoreKind, AuditError> {
    let foreign = |detail: String| AuditError::Foreign {
        store: describe.to_owned(),
        detail,
    };
    // Names compare as SQLite compares identifiers: a libSQL server stores `key` as
    // `KEY`.
    let tables = collect(
        conn,
        "SELECT lower(name) FROM sqlite_master WHERE type = 'table'",
        vec![],
        |r| get::<String>(r, 0),
    )
    .await
    .map_err(|err| foreign(crate::audit::error::error_chain(&err)))?;
    if tables.is_empty() {
        return Ok(StoreKind::Empty);
    }
    let unknown: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|name| {
            !name.starts_with("sqlite_")
                && !name.starts_with("fs_")
                && !AGENTFS_TABLES.contains(name)
                && !OWN_TABLES.iter().any(|(own, _)| own == name)
        })
        .collect();
    if !unknown.is_empty() {
        return Err(foreign(format!(
            "it holds tables orch does not write: {}",
            unknown.join(", ")
        )));
    }
    for (table, want) in OWN_TABLES {
        if !tables.iter().any(|t| t == table) {
            continue;
        }
        let columns = columns(conn, table).await?;
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|c| !columns.iter().any(|have| have.eq_ignore_ascii_case(c)))
            .collect();
        if !missing.is_empty() {
            return Err(foreign(format!(
                "its `{table}` table is not orch's (no column {})",
                missing.join(", ")
            )));
        }
    }
    let has = |name: &str| tables.iter().any(|t| t == name);
    if has("orch_meta") {
        let version = collect(
            conn,
            "SELECT value FROM orch_meta WHERE key = 'schema_version'",
            vec![],
            |r| get::<String>(r, 0),
        )
        .await?;
        let version = version
            .first()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| foreign("its orch_meta holds no schema_version".to_owned()))?;
        return Ok(StoreKind::Orch { version });
    }
    if has("runs") || has("events") || has("files") {
        if !(has("runs") && has("events")) {
            return Err(foreign(
                "it holds some of orch's tables but not `runs` and `events`".to_owned(),
            ));
        }
        return Ok(StoreKind::Orch { version: 1 });
    }
    Ok(StoreKind::AgentFs)
}

/// Refuses a store newer than this build.
pub fn check_known(kind: StoreKind, describe: &str) -> Result<(), AuditError> {
    match kind {
        StoreKind::Orch { version } if version > STORE_VERSION => Err(AuditError::NewerStore {
            store: describe.to_owned(),
            version,
            known: STORE_VERSION,
        }),
        _ => Ok(()),
    }
}

/// `table` is one of our own names (never input): a libSQL server does not bind a
/// parameter inside `pragma_table_info`.
async fn columns(conn: &Connection, table: &'static str) -> Result<Vec<String>, AuditError> {
    collect(
        conn,
        &format!("SELECT name FROM pragma_table_info('{table}')"),
        vec![],
        |r| get::<String>(r, 0),
    )
    .await
}

/// Brings a store created by `DDL` (or an older one) to `STORE_VERSION`. Idempotent;
/// the writer runs it inside the transaction that creates the schema.
pub async fn migrate(conn: &Connection) -> Result<(), AuditError> {
    let have = columns(conn, "runs").await?;
    for (name, kind) in RUNS_OWNER_COLUMNS {
        if !have.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            conn.execute(&format!("ALTER TABLE runs ADD COLUMN {name} {kind}"), ())
                .await
                .map_err(AuditError::sql("add a column to `runs`"))?;
        }
    }
    conn.execute(
        "INSERT OR REPLACE INTO orch_meta (key, value) VALUES ('schema_version', ?1)",
        [STORE_VERSION.to_string()],
    )
    .await
    .map_err(AuditError::sql("record the store's version"))?;
    Ok(())
}
