//! Errors of the audit store: opening, writing, reading and verifying it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("failed to open the audit store at `{}`", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: libsql::Error,
    },
    #[error("no audit store at `{}`; run `launch` there first, or pass --audit-path / --audit-url", path.display())]
    Missing { path: PathBuf },
    #[error("failed to connect to the audit server `{url}`")]
    Remote {
        url: String,
        #[source]
        source: libsql::Error,
    },
    #[error("failed to create the audit store `{}` (readable by its owner only)", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the directory `{}` for the audit store", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {action} in the audit store")]
    Sql {
        action: &'static str,
        #[source]
        source: libsql::Error,
    },
    #[error("the audit store holds no run `{session}`; `orch-audit runs` lists the runs it has")]
    UnknownSession { session: String },
    #[error("no such path `{path}` in the audit store; `orch-audit ls /` shows what is there")]
    UnknownPath { path: String },
    #[error("`{path}` is a directory; use `orch-audit ls {path}`")]
    IsDirectory { path: String },
    #[error("the audit store is malformed: {detail}")]
    Malformed { detail: String },
    #[error(
        "`{store}` is not an orch audit store ({detail}); orch leaves it untouched: move it away, or pass --audit-path to use another file"
    )]
    Foreign { store: String, detail: String },
    #[error(
        "the audit store `{store}` has version {version}, newer than this orch understands ({known}); use a newer orch, or pass --audit-path to use another file"
    )]
    NewerStore {
        store: String,
        version: i64,
        known: i64,
    },
    #[error("the audit writer stopped: {detail}")]
    WriterGone { detail: String },
    #[error("failed to start the audit writer thread")]
    Spawn(#[source] std::io::Error),
    #[error("failed to read memory artifacts from `{}`", path.display())]
    MemoryDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AuditError {
    /// Wraps a libsql error with what we were doing when it happened.
    pub fn sql(action: &'static str) -> impl FnOnce(libsql::Error) -> AuditError {
        move |source| AuditError::Sql { action, source }
    }
}

/// The error and its sources, for a one-line message.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
