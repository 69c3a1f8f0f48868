//! Where the store lives (a local file or a libSQL server) and how a connection to it
//! is opened: WAL and the schema for the writer, plain connections for readers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libsql::{Builder, Connection, Database};

use crate::audit::error::AuditError;
use crate::audit::schema::DDL;
use crate::audit::version;

/// A local database file, or a libSQL server (sqld, Turso) reached over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AuditTarget {
    Local(PathBuf),
    /// `http://`, `https://` or `libsql://` URL and its auth token (may be empty). The
    /// token is never serialized: it travels in the environment (`ORCH_AUDIT_TOKEN`).
    Remote {
        url: String,
        #[serde(skip)]
        token: String,
    },
}

impl AuditTarget {
    pub fn is_remote(&self) -> bool {
        matches!(self, AuditTarget::Remote { .. })
    }

    /// For messages: the path or URL.
    pub fn describe(&self) -> String {
        match self {
            AuditTarget::Local(path) => path.display().to_string(),
            AuditTarget::Remote { url, .. } => url.clone(),
        }
    }
}

/// An open database and one connection to it. The `Database` must outlive the
/// connection, so both are kept.
pub struct Store {
    _db: Database,
    pub conn: Connection,
    pub remote: bool,
}

async fn build(target: &AuditTarget) -> Result<Store, AuditError> {
    match target {
        AuditTarget::Local(path) => {
            let db = Builder::new_local(path)
                .build()
                .await
                .map_err(|source| AuditError::Open {
                    path: path.clone(),
                    source,
                })?;
            let conn = db.connect().map_err(|source| AuditError::Open {
                path: path.clone(),
                source,
            })?;
            conn.busy_timeout(Duration::from_secs(10))
                .map_err(|source| AuditError::Open {
                    path: path.clone(),
                    source,
                })?;
            Ok(Store {
                _db: db,
                conn,
                remote: false,
            })
        }
        AuditTarget::Remote { url, token } => {
            let remote_err = |source| AuditError::Remote {
                url: url.clone(),
                source,
            };
            let db = Builder::new_remote(url.clone(), token.clone())
                .build()
                .await
                .map_err(remote_err)?;
            let conn = db.connect().map_err(|source| AuditError::Remote {
                url: url.clone(),
                source,
            })?;
            Ok(Store {
                _db: db,
                conn,
                remote: true,
            })
        }
    }
}

/// Opens the store for writing: creates the file and its directory if needed, checks
/// that the file is an orch store (or empty, or AgentFS's) of a version this build
/// knows before changing anything, turns on WAL and creates or migrates the schema.
pub async fn open_for_writing(target: &AuditTarget) -> Result<Store, AuditError> {
    if let AuditTarget::Local(path) = target {
        create_parent(path)?;
    }
    let store = build(target).await?;
    let kind = version::inspect(&store.conn, &target.describe()).await?;
    version::check_known(kind, &target.describe())?;
    if !store.remote {
        pragma(&store.conn, "PRAGMA journal_mode=WAL")
            .await
            .map_err(AuditError::sql("turn on WAL"))?;
        // WAL + NORMAL survives a killed process; only a power cut may lose the last commit.
        store
            .conn
            .execute("PRAGMA synchronous=NORMAL", ())
            .await
            .map_err(AuditError::sql("set synchronous"))?;
        // Statement journals (a multi-row INSERT inside the writer's transaction needs
        // one) stay in memory instead of spilling to a temporary file past 64 KiB.
        store
            .conn
            .execute("PRAGMA temp_store=MEMORY", ())
            .await
            .map_err(AuditError::sql("set temp_store"))?;
    }
    // One transaction, so two runs starting together do not both migrate.
    if !store.remote {
        store
            .conn
            .execute("BEGIN IMMEDIATE", ())
            .await
            .map_err(AuditError::sql("begin creating the schema"))?;
    }
    let created = async {
        store
            .conn
            .execute_batch(DDL)
            .await
            .map_err(AuditError::sql("create the schema"))?;
        version::migrate(&store.conn).await
    }
    .await;
    if !store.remote {
        if created.is_err() {
            let _ = store.conn.execute("ROLLBACK", ()).await;
        } else {
            store
                .conn
                .execute("COMMIT", ())
                .await
                .map_err(AuditError::sql("commit the schema"))?;
        }
    }
    created?;
    Ok(store)
}

/// Runs a pragma that may answer with rows (`journal_mode`, `wal_checkpoint`,
/// `wal_autocheckpoint`), which `execute` refuses, and reads them all.
pub async fn pragma(conn: &Connection, sql: &str) -> Result<(), libsql::Error> {
    let mut rows = conn.query(sql, ()).await?;
    while rows.next().await?.is_some() {}
    Ok(())
}

/// Opens an existing store for reading (and for `memory condense`, which appends).
pub async fn open_existing(target: &AuditTarget) -> Result<Store, AuditError> {
    if let AuditTarget::Local(path) = target
        && !path.exists()
    {
        return Err(AuditError::Missing { path: path.clone() });
    }
    let store = build(target).await?;
    let kind = version::inspect(&store.conn, &target.describe()).await?;
    version::check_known(kind, &target.describe())?;
    Ok(store)
}

/// Creates the store's directory (0700) and the store itself, empty and 0600, before
/// SQLite opens it: its -wal and -shm files copy the store's mode.
fn create_parent(path: &Path) -> Result<(), AuditError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        crate::private_fs::create_dir_all(dir).map_err(|source| AuditError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    crate::private_fs::touch(path).map_err(|source| AuditError::CreateFile {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn setting(conn: &Connection, name: &str) -> String {
        let mut rows = conn.query(&format!("PRAGMA {name}"), ()).await.unwrap();
        let row = rows.next().await.unwrap().unwrap();
        match row.get_value(0).unwrap() {
            libsql::Value::Integer(n) => n.to_string(),
            libsql::Value::Text(text) => text,
            other => panic!("PRAGMA {name}: {other:?}"),
        }
    }

    /// The writer's connection: WAL, NORMAL syncs, and statement journals in memory
    /// (a multi-row INSERT in a transaction otherwise spills one to a file in /var/tmp).
    #[tokio::test]
    async fn a_local_store_opens_for_writing_with_the_writers_settings() {
        let dir = tempfile::tempdir().unwrap();
        let target = AuditTarget::Local(dir.path().join("nested/audit.db"));
        let store = open_for_writing(&target).await.unwrap();
        assert_eq!(setting(&store.conn, "journal_mode").await, "wal");
        assert_eq!(setting(&store.conn, "synchronous").await, "1");
        assert_eq!(setting(&store.conn, "temp_store").await, "2");
    }
}
