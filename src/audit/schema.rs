//! The store's schema: AgentFS (SPEC 0.4, as agentfs-sdk 0.6.4 creates it) plus our own
//! STRICT `runs`, `events` and `files` tables, and the hash chain over them.
//!
//! Owns the DDL, the constants every reader and writer agrees on, and the canonical
//! form of a row that its hash covers. No triggers, CHECK constraints, GENERATED
//! columns or FTS5: AgentFS readers refuse files that have them.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// AgentFS chunk size for `fs_data` (the SDK default; stored in `fs_config`).
pub const CHUNK_SIZE: usize = 4096;
/// AgentFS schema version we write (`fs_config.schema_version`).
pub const SCHEMA_VERSION: &str = "0.4";
/// The root directory inode.
pub const ROOT_INO: i64 = 1;
/// `S_IFDIR | 0o755`.
pub const DIR_MODE: i64 = 0o040755;
/// `S_IFREG | 0o644`.
pub const FILE_MODE: i64 = 0o100644;
pub const S_IFMT: i64 = 0o170000;
pub const S_IFDIR: i64 = 0o040000;
pub const S_IFREG: i64 = 0o100000;

/// Every statement is idempotent, so opening an existing store is harmless.
pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS fs_config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fs_inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    mode INTEGER NOT NULL,
    nlink INTEGER NOT NULL DEFAULT 0,
    uid INTEGER NOT NULL DEFAULT 0,
    gid INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    rdev INTEGER NOT NULL DEFAULT 0,
    atime_nsec INTEGER NOT NULL DEFAULT 0,
    mtime_nsec INTEGER NOT NULL DEFAULT 0,
    ctime_nsec INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fs_dentry (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    parent_ino INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    UNIQUE(parent_ino, name)
);
CREATE INDEX IF NOT EXISTS idx_fs_dentry_parent ON fs_dentry(parent_ino, name);
CREATE TABLE IF NOT EXISTS fs_data (
    ino INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (ino, chunk_index)
);
CREATE TABLE IF NOT EXISTS fs_symlink (
    ino INTEGER PRIMARY KEY,
    target TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv_store (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at INTEGER DEFAULT (unixepoch()),
    updated_at INTEGER DEFAULT (unixepoch())
);
CREATE INDEX IF NOT EXISTS idx_kv_store_created_at ON kv_store(created_at);
CREATE TABLE IF NOT EXISTS tool_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    parameters TEXT,
    result TEXT,
    error TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    started_at INTEGER NOT NULL,
    completed_at INTEGER,
    duration_ms INTEGER
);
CREATE INDEX IF NOT EXISTS idx_tool_calls_name ON tool_calls(name);
CREATE INDEX IF NOT EXISTS idx_tool_calls_started_at ON tool_calls(started_at);
CREATE TABLE IF NOT EXISTS runs (
    session TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    backend TEXT NOT NULL,
    project_root TEXT NOT NULL,
    hash TEXT NOT NULL,
    host TEXT,
    boot_id TEXT,
    pid INTEGER,
    pid_start INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS orch_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS events (
    run TEXT NOT NULL,
    seq INTEGER NOT NULL,
    agent TEXT,
    turn INTEGER,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) STRICT;
CREATE INDEX IF NOT EXISTS idx_events_kind ON events(run, kind, seq);
CREATE TABLE IF NOT EXISTS files (
    run TEXT NOT NULL,
    seq INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) STRICT;
INSERT OR IGNORE INTO fs_config (key, value) VALUES ('chunk_size', '4096');
INSERT OR IGNORE INTO fs_config (key, value) VALUES ('schema_version', '0.4');
";

/// The chain of `files` rows of a run starts from this value.
pub fn files_genesis() -> String {
    hex(&Sha256::digest(b"orch-audit files v1"))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    hex_into(bytes, &mut out);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Length-prefixed fields, so no two different rows share a canonical form.
fn field(hasher: &mut Sha256, value: &[u8]) {
    hasher.update((value.len() as u64).to_le_bytes());
    hasher.update(value);
}

#[cfg(test)]
fn opt_field(hasher: &mut Sha256, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            hasher.update([1u8]);
            field(hasher, v);
        }
        None => hasher.update([0u8]),
    }
}

/// The hash of a `runs` row; it is also where the run's event chain starts.
pub fn run_hash(
    session: &str,
    started_at_ms: i64,
    prompt: &str,
    backend: &str,
    project_root: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"orch-audit run v1");
    field(&mut h, session.as_bytes());
    field(&mut h, &started_at_ms.to_le_bytes());
    field(&mut h, prompt.as_bytes());
    field(&mut h, backend.as_bytes());
    field(&mut h, project_root.as_bytes());
    hex(&h.finalize())
}

/// One `events` row as the chain sees it.
#[derive(Clone, Copy, Debug)]
pub struct EventRowRef<'a> {
    pub run: &'a str,
    pub seq: i64,
    pub agent: Option<&'a str>,
    pub turn: Option<i64>,
    pub ts: i64,
    pub kind: &'a str,
    pub payload: &'a str,
}

/// `H(prev_hash || canonical row)`, as stored. The writer and `verify` use
/// `event_digest` with a reused buffer; this is the plain form the tests check.
#[cfg(test)]
pub fn event_hash(prev: &str, row: &EventRowRef<'_>) -> String {
    hex(&event_digest(&mut Vec::new(), prev, row))
}

/// `event_hash` as raw bytes, gathering the canonical row in `buf` (cleared first) so
/// the writer and `verify` reuse one buffer instead of allocating per row. One hasher
/// update per row is also measurably cheaper than sixteen small ones.
pub fn event_digest(buf: &mut Vec<u8>, prev: &str, row: &EventRowRef<'_>) -> [u8; 32] {
    buf.clear();
    let put = |buf: &mut Vec<u8>, value: &[u8]| {
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        buf.extend_from_slice(value);
    };
    put(buf, prev.as_bytes());
    put(buf, row.run.as_bytes());
    put(buf, &row.seq.to_le_bytes());
    match row.agent {
        Some(agent) => {
            buf.push(1);
            put(buf, agent.as_bytes());
        }
        None => buf.push(0),
    }
    match row.turn {
        Some(turn) => {
            buf.push(1);
            put(buf, &turn.to_le_bytes());
        }
        None => buf.push(0),
    }
    put(buf, &row.ts.to_le_bytes());
    put(buf, row.kind.as_bytes());
    put(buf, row.payload.as_bytes());
    Sha256::digest(&buf[..]).into()
}

/// Lower-case hex of a digest into `out` (cleared first).
pub fn hex_into(bytes: &[u8], out: &mut String) {
    out.clear();
    out.reserve(bytes.len() * 2);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
}

/// `H(prev_hash || canonical row)` for a `files` row (a whole file written once).
pub fn file_hash(prev: &str, run: &str, seq: i64, path: &str, size: i64, sha256: &str) -> String {
    let mut h = Sha256::new();
    field(&mut h, prev.as_bytes());
    field(&mut h, run.as_bytes());
    field(&mut h, &seq.to_le_bytes());
    field(&mut h, path.as_bytes());
    field(&mut h, &size.to_le_bytes());
    field(&mut h, sha256.as_bytes());
    hex(&h.finalize())
}

/// Prefix of the `files` rows that vouch for a `tool_calls` row (`tool_calls/<id>`):
/// not an AgentFS path, so it never names a file.
pub const TOOL_CALL_ROW: &str = "tool_calls/";

/// Prefix of the `files` rows that vouch for a `kv_store` row (`kv_store/<key>`); a
/// key written again is vouched for by its latest row.
pub const KV_ROW: &str = "kv_store/";

/// The `kv_store` key where a run's head is kept for AgentFS tools.
pub fn head_key(session: &str) -> String {
    format!("orch:run:{session}")
}

/// The canonical bytes of a `kv_store` row (its timestamps are AgentFS's own).
pub fn kv_canonical(key: &str, value: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(b"orch-audit kv v1");
    for field in [key, value] {
        buf.extend_from_slice(&(field.len() as u64).to_le_bytes());
        buf.extend_from_slice(field.as_bytes());
    }
    buf
}

/// One `tool_calls` row as the `files` chain sees it.
#[derive(Clone, Copy, Debug)]
pub struct ToolCallRef<'a> {
    pub id: i64,
    pub name: &'a str,
    pub parameters: Option<&'a str>,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    pub status: &'a str,
    pub started_at: i64,
    pub completed_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// The canonical bytes of a `tool_calls` row: its `files` row holds their size and
/// SHA-256, so a changed, removed or replaced row breaks `verify`.
pub fn tool_call_canonical(row: &ToolCallRef<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    let put = |buf: &mut Vec<u8>, value: &[u8]| {
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        buf.extend_from_slice(value);
    };
    let opt = |buf: &mut Vec<u8>, value: Option<&[u8]>| match value {
        Some(value) => {
            buf.push(1);
            put(buf, value);
        }
        None => buf.push(0),
    };
    buf.extend_from_slice(b"orch-audit tool_call v1");
    put(&mut buf, &row.id.to_le_bytes());
    put(&mut buf, row.name.as_bytes());
    opt(&mut buf, row.parameters.map(str::as_bytes));
    opt(&mut buf, row.result.map(str::as_bytes));
    opt(&mut buf, row.error.map(str::as_bytes));
    put(&mut buf, row.status.as_bytes());
    put(&mut buf, &row.started_at.to_le_bytes());
    opt(
        &mut buf,
        row.completed_at
            .map(i64::to_le_bytes)
            .as_ref()
            .map(|b| b.as_slice()),
    );
    opt(
        &mut buf,
        row.duration_ms
            .map(i64::to_le_bytes)
            .as_ref()
            .map(|b| b.as_slice()),
    );
    buf
}

/// The line an event gets in its `/runs/<session>/events/<agent>.jsonl` file. Built
/// from the stored row's text, so `verify` can rebuild every file byte for byte.
pub fn event_line(
    seq: i64,
    ts: i64,
    agent: Option<&str>,
    turn: Option<i64>,
    kind: &str,
    payload: &str,
) -> String {
    let mut out = Vec::new();
    write_event_line(&mut out, seq, ts, agent, turn, kind, payload);
    String::from_utf8(out).unwrap_or_default()
}

/// `event_line`, appended to `out` without intermediate strings (the writer's and
/// `verify`'s path: one line per event).
pub fn write_event_line(
    out: &mut Vec<u8>,
    seq: i64,
    ts: i64,
    agent: Option<&str>,
    turn: Option<i64>,
    kind: &str,
    payload: &str,
) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(digits.format(seq).as_bytes());
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(digits.format(ts).as_bytes());
    out.extend_from_slice(b",\"agent\":");
    // Writing to a Vec cannot fail, and a `&str` always serializes.
    match agent {
        Some(agent) => {
            let _ = serde_json::to_writer(&mut *out, agent);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"turn\":");
    match turn {
        Some(turn) => out.extend_from_slice(digits.format(turn).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"kind\":");
    let _ = serde_json::to_writer(&mut *out, kind);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(b"}\n");
}

/// The events file an event belongs to: its agent's, or the run's `timeline.jsonl`
/// (`timeline` is reserved and never an agent id).
pub fn events_file(session: &str, agent: Option<&str>) -> String {
    match agent.filter(|a| crate::agent::id::is_valid_agent_id(a)) {
        Some(agent) => format!("/runs/{session}/events/{agent}.jsonl"),
        None => format!("/runs/{session}/events/timeline.jsonl"),
    }
}

/// One value per events-file owner: each agent, or the run's timeline (`None`). Looked
/// up by `Option<&str>` without allocating, which a `HashMap<Option<String>, _>` keyed
/// by owned ids cannot do; the writer and `verify` look one up for every event.
#[derive(Debug)]
pub struct ByAgent<T> {
    items: Vec<T>,
    timeline: Option<usize>,
    agents: HashMap<String, usize>,
}

impl<T> Default for ByAgent<T> {
    fn default() -> Self {
        ByAgent {
            items: Vec::new(),
            timeline: None,
            agents: HashMap::new(),
        }
    }
}

impl<T> ByAgent<T> {
    pub fn get(&self, agent: Option<&str>) -> Option<&T> {
        let index = match agent {
            None => self.timeline?,
            Some(agent) => *self.agents.get(agent)?,
        };
        self.items.get(index)
    }

    pub fn get_or_insert_with(&mut self, agent: Option<&str>, make: impl FnOnce() -> T) -> &mut T {
        let known = match agent {
            None => self.timeline,
            Some(agent) => self.agents.get(agent).copied(),
        };
        let index = match known {
            Some(index) => index,
            None => {
                self.items.push(make());
                let index = self.items.len() - 1;
                match agent {
                    None => self.timeline = Some(index),
                    Some(agent) => {
                        self.agents.insert(agent.to_owned(), index);
                    }
                }
                index
            }
        };
        &mut self.items[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hash_covers_every_field_and_the_previous_hash() {
        let row = EventRowRef {
            run: "r",
            seq: 1,
            agent: Some("a"),
            turn: Some(1),
            ts: 5,
            kind: "message",
            payload: "{}",
        };
        let base = event_hash("p", &row);
        assert_ne!(base, event_hash("q", &row));
        assert_ne!(base, event_hash("p", &EventRowRef { agent: None, ..row }));
        assert_ne!(base, event_hash("p", &EventRowRef { turn: None, ..row }));
        assert_ne!(
            base,
            event_hash(
                "p",
                &EventRowRef {
                    payload: "{ }",
                    ..row
                }
            )
        );
        assert_eq!(base, event_hash("p", &row));
    }

    /// The chain must not change with how the bytes reach the hasher: stores written
    /// before stay verifiable.
    #[test]
    fn event_hash_matches_the_field_by_field_form() {
        let streamed = |prev: &str, row: &EventRowRef<'_>| {
            let mut h = Sha256::new();
            field(&mut h, prev.as_bytes());
            field(&mut h, row.run.as_bytes());
            field(&mut h, &row.seq.to_le_bytes());
            opt_field(&mut h, row.agent.map(str::as_bytes));
            opt_field(
                &mut h,
                row.turn
                    .map(i64::to_le_bytes)
                    .as_ref()
                    .map(|b| b.as_slice()),
            );
            field(&mut h, &row.ts.to_le_bytes());
            field(&mut h, row.kind.as_bytes());
            field(&mut h, row.payload.as_bytes());
            hex(&h.finalize())
        };
        let row = EventRowRef {
            run: "run-1",
            seq: 42,
            agent: Some("builder"),
            turn: Some(2),
            ts: 1_700_000_000_123,
            kind: "command",
            payload: r#"{"command":"cargo test"}"#,
        };
        for row in [
            row,
            EventRowRef { agent: None, ..row },
            EventRowRef { turn: None, ..row },
        ] {
            assert_eq!(event_hash("prev", &row), streamed("prev", &row));
        }
    }

    /// Lines are part of what `verify` compares byte for byte: their form never changes.
    #[test]
    fn event_lines_keep_their_exact_form() {
        assert_eq!(
            event_line(3, 10, Some("planner"), None, "message", r#"{"text":"hi"}"#),
            "{\"seq\":3,\"ts_ms\":10,\"agent\":\"planner\",\"turn\":null,\"kind\":\"message\",\"payload\":{\"text\":\"hi\"}}\n"
        );
        assert_eq!(
            event_line(-1, 0, None, Some(7), "a\"b", "null"),
            "{\"seq\":-1,\"ts_ms\":0,\"agent\":null,\"turn\":7,\"kind\":\"a\\\"b\",\"payload\":null}\n"
        );
    }

    #[test]
    fn by_agent_keeps_the_timeline_apart_from_every_agent() {
        let mut map = ByAgent::default();
        assert_eq!(map.get(None), None);
        *map.get_or_insert_with(Some("a"), || 1) += 10;
        map.get_or_insert_with(None, || 2);
        assert_eq!(*map.get_or_insert_with(Some("a"), || 99), 11);
        assert_eq!(map.get(None), Some(&2));
        assert_eq!(map.get(Some("b")), None);
    }

    #[test]
    fn event_lines_are_json_and_keep_the_payload_verbatim() {
        let line = event_line(3, 10, Some("planner"), None, "message", r#"{"text":"hi"}"#);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["payload"]["text"], "hi");
        assert_eq!(value["turn"], serde_json::Value::Null);
        assert_eq!(
            events_file("s", Some("../x")),
            "/runs/s/events/timeline.jsonl"
        );
    }
}
