//! Memory artifacts: one JSON document per agent turn under `/memory/artifacts` (or a
//! plain directory given by `--memory-dir`), listed by `memory inspect` and summarized
//! by `memory condense`, which only ever appends summaries with `relatedArtifacts`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use libsql::Connection;
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::error::AuditError;
use crate::audit::fs::FsWriter;
use crate::audit::reader::{AuditReader, collect, get};
use crate::audit::record::{ARTIFACTS_DIR, artifact_stamp, to_bytes};
use crate::audit::schema::{file_hash, files_genesis, sha256_hex};

/// The `files` chain that condensed summaries are recorded in.
pub const MEMORY_RUN: &str = "memory";

/// Where artifacts are read from and summaries written to.
pub enum MemorySource<'a> {
    Store(&'a AuditReader),
    Dir(PathBuf),
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Artifact {
    /// AgentFS path, or file path for a memory directory.
    pub path: String,
    pub document: Value,
}

impl Artifact {
    pub fn str_field(&self, key: &str) -> &str {
        self.document.get(key).and_then(Value::as_str).unwrap_or("")
    }

    pub fn created_at_ms(&self) -> u64 {
        self.document
            .get("created_at_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    pub fn is_summary(&self) -> bool {
        self.str_field("kind") == "summary"
    }
}

/// Every artifact, oldest first (names start with a sortable timestamp).
pub async fn load(source: &MemorySource<'_>) -> Result<Vec<Artifact>, AuditError> {
    let mut out = Vec::new();
    match source {
        MemorySource::Store(reader) => {
            let entries = match reader.ls(ARTIFACTS_DIR).await {
                Ok(entries) => entries,
                Err(AuditError::UnknownPath { .. }) => return Ok(out),
                Err(err) => return Err(err),
            };
            for entry in entries
                .into_iter()
                .filter(|e| !e.is_dir && e.name.ends_with(".json"))
            {
                let path = format!("{ARTIFACTS_DIR}/{}", entry.name);
                let bytes = reader.cat(&path).await?;
                if let Ok(document) = serde_json::from_slice(&bytes) {
                    out.push(Artifact { path, document });
                }
            }
        }
        MemorySource::Dir(dir) => {
            let read = |source| AuditError::MemoryDir {
                path: dir.clone(),
                source,
            };
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(err) => return Err(read(err)),
            };
            let mut names: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            names.sort();
            for path in names {
                let bytes = std::fs::read(&path).map_err(read)?;
                if let Ok(document) = serde_json::from_slice(&bytes) {
                    out.push(Artifact {
                        path: path.display().to_string(),
                        document,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.rsplit('/').next().cmp(&b.path.rsplit('/').next()));
    Ok(out)
}

/// The summaries `condense` would append: groups of at least `min_group_size` turn
/// artifacts older than `cutoff_ms`, by agent and type, not covered by a summary yet.
pub fn plan_condense(
    artifacts: &[Artifact],
    cutoff_ms: u64,
    min_group_size: usize,
    now_ms: u64,
) -> Vec<Value> {
    let covered: HashSet<&str> = artifacts
        .iter()
        .filter(|a| a.is_summary())
        .filter_map(|a| a.document.get("relatedArtifacts").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut groups: BTreeMap<(String, String), Vec<&Artifact>> = BTreeMap::new();
    for artifact in artifacts {
        if artifact.is_summary()
            || artifact.created_at_ms() >= cutoff_ms
            || covered.contains(artifact.path.as_str())
        {
            continue;
        }
        let key = (
            artifact.str_field("agent").to_owned(),
            artifact.str_field("type").to_owned(),
        );
        groups.entry(key).or_default().push(artifact);
    }
    groups
        .into_iter()
        .filter(|(_, members)| members.len() >= min_group_size.max(1))
        .map(|((agent, kind), members)| summary_document(&agent, &kind, &members, now_ms))
        .collect()
}

fn summary_document(agent: &str, kind: &str, members: &[&Artifact], now_ms: u64) -> Value {
    let mut tags: Vec<String> = vec!["condensed".into()];
    let mut usage = [0u64; 4];
    let mut points = Vec::new();
    for member in members {
        for tag in member
            .document
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_owned());
            }
        }
        for (slot, key) in usage.iter_mut().zip([
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_output_tokens",
        ]) {
            *slot += member
                .document
                .get("usage")
                .and_then(|u| u.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        let first_line = member
            .str_field("response")
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        points.push(format!(
            "{} ({}): {}",
            member.str_field("session"),
            artifact_stamp(member.created_at_ms()),
            truncate(first_line, 160)
        ));
    }
    json!({
        "kind": "summary",
        "created_at_ms": now_ms,
        "agent": agent,
        "role": members.first().map(|m| m.str_field("role")).unwrap_or(""),
        "type": "summary",
        "summarizes_type": kind,
        "tags": tags,
        "summary": points.join("\n"),
        "usage": {"input_tokens": usage[0], "cached_input_tokens": usage[1], "output_tokens": usage[2], "reasoning_output_tokens": usage[3]},
        "from_ms": members.first().map(|m| m.created_at_ms()),
        "to_ms": members.last().map(|m| m.created_at_ms()),
        "relatedArtifacts": members.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
    })
}

pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn summary_name(document: &Value, index: usize) -> String {
    let now = document
        .get("created_at_ms")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let agent = document
        .get("agent")
        .and_then(Value::as_str)
        .unwrap_or("agent");
    let kind = document
        .get("summarizes_type")
        .and_then(Value::as_str)
        .unwrap_or("turns");
    format!(
        "{}__summary-{agent}-{kind}-{index}.json",
        artifact_stamp(now)
    )
}

/// Appends summaries; returns their paths. Never removes or rewrites an artifact.
pub async fn append_summaries(
    source: &MemorySource<'_>,
    summaries: &[Value],
) -> Result<Vec<String>, AuditError> {
    let mut paths = Vec::new();
    match source {
        MemorySource::Dir(dir) => {
            let err = |source| AuditError::MemoryDir {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(err)?;
            for (i, summary) in summaries.iter().enumerate() {
                let path = dir.join(summary_name(summary, i));
                write_new(&path, &to_bytes(summary)).map_err(err)?;
                paths.push(path.display().to_string());
            }
        }
        MemorySource::Store(reader) => {
            let conn = reader.conn();
            conn.execute("BEGIN IMMEDIATE", ())
                .await
                .map_err(AuditError::sql("begin a transaction"))?;
            match append_in_store(conn, summaries, &mut paths).await {
                Ok(()) => {
                    conn.execute("COMMIT", ())
                        .await
                        .map_err(AuditError::sql("commit summaries"))?;
                }
                Err(err) => {
                    let _ = conn.execute("ROLLBACK", ()).await;
                    return Err(err);
                }
            }
        }
    }
    Ok(paths)
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)
}

async fn append_in_store(
    conn: &Connection,
    summaries: &[Value],
    paths: &mut Vec<String>,
) -> Result<(), AuditError> {
    let last = collect(
        conn,
        "SELECT seq, hash FROM files WHERE run = ?1 ORDER BY seq DESC LIMIT 1",
        vec![MEMORY_RUN.into()],
        |r| Ok((get::<i64>(r, 0)?, get::<String>(r, 1)?)),
    )
    .await?;
    let (mut seq, mut prev) = last.into_iter().next().unwrap_or((0, files_genesis()));
    let mut fs = FsWriter::default();
    fs.begin();
    for (i, summary) in summaries.iter().enumerate() {
        let path = format!("{ARTIFACTS_DIR}/{}", summary_name(summary, i));
        let bytes = to_bytes(summary);
        let path = fs.create_file(conn, &path, &bytes).await?;
        seq += 1;
        let sha = sha256_hex(&bytes);
        let hash = file_hash(&prev, MEMORY_RUN, seq, &path, bytes.len() as i64, &sha);
        conn.execute(
            "INSERT INTO files (run, seq, path, size, sha256, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (MEMORY_RUN, seq, path.as_str(), bytes.len() as i64, sha.as_str(), hash.as_str()),
        )
        .await
        .map_err(AuditError::sql("record a summary"))?;
        prev = hash;
        paths.push(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(path: &str, agent: &str, at: u64) -> Artifact {
        Artifact {
            path: path.into(),
            document: json!({"kind": "turn", "agent": agent, "type": "plan", "created_at_ms": at, "tags": ["relay"], "response": "did it", "usage": {"input_tokens": 5}}),
        }
    }

    #[test]
    fn condense_groups_old_artifacts_and_skips_covered_ones() {
        let artifacts = vec![
            turn("/a1", "planner", 10),
            turn("/a2", "planner", 20),
            turn("/b1", "builder", 10),
            turn("/a3", "planner", 5_000),
        ];
        let plan = plan_condense(&artifacts, 1_000, 2, 9_999);
        assert_eq!(plan.len(), 1, "builder has one old artifact, a3 is too new");
        assert_eq!(plan[0]["relatedArtifacts"], json!(["/a1", "/a2"]));
        assert_eq!(plan[0]["usage"]["input_tokens"], 10);
        let mut with_summary = artifacts.clone();
        with_summary.push(Artifact {
            path: "/s".into(),
            document: plan[0].clone(),
        });
        assert!(
            plan_condense(&with_summary, 1_000, 2, 9_999).is_empty(),
            "condense is idempotent"
        );
    }
}
