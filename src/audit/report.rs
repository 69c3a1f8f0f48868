//! The audit-store side of `orch-audit report`: a few kind-filtered queries (served by
//! the `(run, kind, seq)` index) fold a run into a `RunReport`. Streamed agent events
//! are never read, so the cost grows with agents and turns, not with events. Only the
//! fields the report shows are extracted from turn records; one response per agent is
//! read whole, and a patch only up to `PATCH_SHOWN`.

use std::collections::HashMap;

use libsql::Value;
use serde_json::Value as Json;

use crate::audit::error::AuditError;
use crate::audit::fs::resolve;
use crate::audit::reader::{AuditReader, collect, get, opt_int, opt_text};
use crate::audit::schema::CHUNK_SIZE;
use crate::status::report_model::{
    Clipped, ReportAgent, ReportMark, ReportPause, ReportSpan, ReportTurn, ReportWave, RunReport,
};

/// Bytes of an agent's final answer the report shows.
pub const ANSWER_SHOWN: usize = 8 * 1024;
/// Bytes of an agent's `changes.patch` the report shows.
pub const PATCH_SHOWN: usize = 200 * 1024;
/// Event kinds that record an agent's changes being committed or merged, when the run
/// has a workspace step that writes them.
const MERGE_KINDS: [&str; 2] = ["changes_committed", "agent_merged"];

/// Folds the run `session` into the report's data model.
pub async fn load_report(reader: &AuditReader, session: &str) -> Result<RunReport, AuditError> {
    let run = reader.run(session).await?;
    let mut report = RunReport {
        session: run.session.clone(),
        status: run.status.clone(),
        backend: run.backend,
        prompt: run.prompt,
        started_at_ms: run.started_at_ms,
        events: run.events,
        ..RunReport::default()
    };
    let mut agents = Agents::default();

    for (_, ts, _, p) in of_kind(reader, session, "wave_scheduled").await? {
        report.waves.push(ReportWave {
            wave: int(&p, "wave"),
            kind: text(&p, "wave_kind"),
            agents: names(&p, "agents"),
            scheduled_at_ms: ts,
        });
    }
    for (_, _, agent, p) in of_kind(reader, session, "agent_started").await? {
        let a = agents.get(&agent.unwrap_or_default());
        a.role = text(&p, "role");
        a.kind = text(&p, "agent_kind");
        a.wave = int(&p, "wave");
        a.depends_on = names(&p, "depends_on");
    }
    // A blocked agent never starts: its blueprint entry says what it waited for.
    for (_, _, _, p) in of_kind(reader, session, "blueprint_accepted").await? {
        for entry in p
            .get("agents")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let id = text(entry, "id");
            if let Some(a) = agents.find(&id)
                && a.depends_on.is_empty()
            {
                a.depends_on = names(entry, "depends_on");
            }
        }
    }
    for (_, _, agent, p) in of_kind(reader, session, "worktree_ready").await? {
        let branch = p
            .get("branch")
            .and_then(Json::as_str)
            .unwrap_or("read-only");
        agents.get(&agent.unwrap_or_default()).branch = Some(branch.to_owned());
    }
    let mut tiers = crate::audit::show::TierTotals::new();
    let last_success = load_turns(reader, session, &mut agents, &mut tiers).await?;
    report.tiers = crate::audit::show::tier_list(tiers);
    for (_, _, agent, p) in of_kind(reader, session, "feature_updated").await? {
        crate::audit::show::fold_feature(&mut report.features, agent.as_deref(), &p);
    }
    for (_, _, agent, p) in of_kind(reader, session, "agent_finished").await? {
        let a = agents.get(&agent.unwrap_or_default());
        let status = p.get("status").cloned().unwrap_or(Json::Null);
        a.status = text(&status, "status");
        a.status_detail = match a.status.as_str() {
            "failed" => text(&status, "reason"),
            "blocked" => text(&status, "by"),
            _ => String::new(),
        };
        if a.role.is_empty() {
            a.role = text(&p, "role");
            a.kind = text(&p, "agent_kind");
            a.wave = int(&p, "wave");
        }
    }
    load_parks(reader, session, &mut agents).await?;
    for kind in MERGE_KINDS {
        for (_, ts, agent, p) in of_kind(reader, session, kind).await? {
            let mark = ReportMark {
                at_ms: ts,
                kind: kind.to_owned(),
                label: mark_label(&p),
            };
            agents.get(&agent.unwrap_or_default()).merges.push(mark);
        }
    }
    load_pauses(reader, session, &mut report).await?;
    report.finished_at_ms = of_kind(reader, session, "run_finished")
        .await?
        .last()
        .map(|row| row.1);

    let unfinished = if matches!(run.status.as_str(), "running" | "paused") {
        "running"
    } else {
        "unfinished"
    };
    for a in &mut agents.list {
        if a.status.is_empty() {
            a.status = unfinished.to_owned();
        }
        if let Some(&seq) = last_success.get(&a.id) {
            a.final_answer = response(reader, session, seq).await?;
        }
        a.patch = patch(reader, session, &a.id).await?;
    }
    report.agents = agents.list;
    Ok(report)
}

/// Agents in the order the run first named them.
#[derive(Default)]
struct Agents {
    list: Vec<ReportAgent>,
    index: HashMap<String, usize>,
}

impl Agents {
    fn get(&mut self, id: &str) -> &mut ReportAgent {
        let next = self.list.len();
        let at = *self.index.entry(id.to_owned()).or_insert(next);
        if at == next {
            self.list.push(ReportAgent {
                id: id.to_owned(),
                ..ReportAgent::default()
            });
        }
        &mut self.list[at]
    }

    fn find(&mut self, id: &str) -> Option<&mut ReportAgent> {
        self.index.get(id).map(|&at| &mut self.list[at])
    }
}

/// `(seq, ts, agent, payload)` of every event of one kind, in order.
async fn of_kind(
    reader: &AuditReader,
    session: &str,
    kind: &str,
) -> Result<Vec<(i64, i64, Option<String>, Json)>, AuditError> {
    collect(
        reader.conn(),
        "SELECT seq, ts, agent, payload FROM events WHERE run = ?1 AND kind = ?2 ORDER BY seq",
        vec![
            Value::Text(session.to_owned()),
            Value::Text(kind.to_owned()),
        ],
        |r| {
            let payload: String = get(r, 3)?;
            Ok((
                get(r, 0)?,
                get(r, 1)?,
                opt_text(r, 2)?,
                serde_json::from_str(&payload).unwrap_or(Json::Null),
            ))
        },
    )
    .await
}

/// Adds every finished turn to its agent; returns each agent's last completed turn's seq.
async fn load_turns(
    reader: &AuditReader,
    session: &str,
    agents: &mut Agents,
    tiers: &mut crate::audit::show::TierTotals,
) -> Result<HashMap<String, i64>, AuditError> {
    let rows = collect(
        reader.conn(),
        "SELECT seq, agent, \
           json_extract(payload, '$.turn'), json_extract(payload, '$.attempt'), \
           json_extract(payload, '$.kind'), json_extract(payload, '$.outcome.status'), \
           json_extract(payload, '$.started_at_ms'), json_extract(payload, '$.finished_at_ms'), \
           json_extract(payload, '$.usage.input_tokens'), \
           json_extract(payload, '$.usage.cached_input_tokens'), \
           json_extract(payload, '$.usage.output_tokens'), \
           json_extract(payload, '$.backend'), json_extract(payload, '$.model'), \
           json_extract(payload, '$.cost_usd'), json_extract(payload, '$.tags') \
         FROM events WHERE run = ?1 AND kind = 'turn_finished' ORDER BY seq",
        vec![Value::Text(session.to_owned())],
        |r| {
            let cost = match r.get_value(13).map_err(AuditError::sql("read a row"))? {
                Value::Real(c) => Some(c),
                Value::Integer(c) => Some(c as f64),
                _ => None,
            };
            Ok((
                get::<i64>(r, 0)?,
                opt_text(r, 1)?.unwrap_or_default(),
                ReportTurn {
                    turn: opt_int(r, 2)?.unwrap_or(0) as u32,
                    attempt: opt_int(r, 3)?.unwrap_or(1).max(1) as u32,
                    kind: opt_text(r, 4)?.unwrap_or_default(),
                    outcome: opt_text(r, 5)?.unwrap_or_default(),
                    started_at_ms: opt_int(r, 6)?.unwrap_or(0),
                    finished_at_ms: opt_int(r, 7)?.unwrap_or(0),
                    input_tokens: opt_int(r, 8)?.unwrap_or(0).max(0) as u64,
                    output_tokens: opt_int(r, 10)?.unwrap_or(0).max(0) as u64,
                },
                opt_int(r, 9)?.unwrap_or(0).max(0) as u64,
                (opt_text(r, 11)?, opt_text(r, 12)?),
                (cost, opt_text(r, 14)?),
            ))
        },
    )
    .await?;
    let mut last_success = HashMap::new();
    for (seq, agent, turn, cached, (backend, model), (cost, tags)) in rows {
        let tags: Vec<String> = tags
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        crate::audit::show::add_tier_turn(
            tiers,
            tags.iter().map(String::as_str),
            (turn.input_tokens, turn.output_tokens),
            cost,
        );
        let a = agents.get(&agent);
        a.input_tokens += turn.input_tokens;
        a.cached_input_tokens += cached;
        a.output_tokens += turn.output_tokens;
        if let Some(cost) = cost {
            a.cost_usd = Some(a.cost_usd.unwrap_or(0.0) + cost);
        }
        if let Some(backend) = backend {
            a.backend = backend;
        }
        a.model = model.unwrap_or_default();
        if turn.is_success() {
            last_success.insert(agent, seq);
        }
        a.turns.push(turn);
    }
    Ok(last_success)
}

/// Waits for a usage limit: `turn_retrying` events whose decision is `park`.
async fn load_parks(
    reader: &AuditReader,
    session: &str,
    agents: &mut Agents,
) -> Result<(), AuditError> {
    let rows = collect(
        reader.conn(),
        "SELECT agent, ts, json_extract(payload, '$.decision.delay_ms') FROM events \
         WHERE run = ?1 AND kind = 'turn_retrying' AND json_extract(payload, '$.decision.action') = 'park' \
         ORDER BY seq",
        vec![Value::Text(session.to_owned())],
        |r| Ok((opt_text(r, 0)?, get::<i64>(r, 1)?, get::<i64>(r, 2)?)),
    )
    .await?;
    for (agent, ts, delay) in rows {
        agents
            .get(&agent.unwrap_or_default())
            .parks
            .push(ReportSpan {
                start_ms: ts,
                end_ms: ts + delay.max(0),
            });
    }
    Ok(())
}

async fn load_pauses(
    reader: &AuditReader,
    session: &str,
    report: &mut RunReport,
) -> Result<(), AuditError> {
    let resumes: Vec<i64> = of_kind(reader, session, "run_resumed")
        .await?
        .into_iter()
        .map(|row| row.1)
        .collect();
    for (_, ts, _, p) in of_kind(reader, session, "run_paused").await? {
        report.pauses.push(ReportPause {
            number: int(&p, "number") as u32,
            paused_at_ms: ts,
            resumed_at_ms: resumes.iter().copied().find(|&r| r >= ts),
            requested_by: text(&p, "requested_by"),
            finished: names(&p, "finished"),
            failed: names(&p, "failed"),
            in_flight: names(&p, "in_flight"),
            pending: names(&p, "pending"),
            next_steps: names(&p, "next_steps"),
        });
    }
    Ok(())
}

/// The response of one turn record, cut to `ANSWER_SHOWN`.
async fn response(
    reader: &AuditReader,
    session: &str,
    seq: i64,
) -> Result<Option<Clipped>, AuditError> {
    let rows = collect(
        reader.conn(),
        "SELECT json_extract(payload, '$.response') FROM events WHERE run = ?1 AND seq = ?2",
        vec![Value::Text(session.to_owned()), Value::Integer(seq)],
        |r| opt_text(r, 0),
    )
    .await?;
    Ok(rows
        .into_iter()
        .flatten()
        .next()
        .map(|text| Clipped::of(&text, ANSWER_SHOWN)))
}

/// `/runs/<session>/agents/<agent>/changes.patch`, its first `PATCH_SHOWN` bytes.
async fn patch(
    reader: &AuditReader,
    session: &str,
    agent: &str,
) -> Result<Option<Clipped>, AuditError> {
    let path = format!("/runs/{session}/agents/{agent}/changes.patch");
    let Some(ino) = resolve(reader.conn(), &path).await? else {
        return Ok(None);
    };
    let size = collect(
        reader.conn(),
        "SELECT size FROM fs_inode WHERE ino = ?1",
        vec![Value::Integer(ino)],
        |r| get::<i64>(r, 0),
    )
    .await?;
    let chunks = collect(
        reader.conn(),
        "SELECT data FROM fs_data WHERE ino = ?1 AND chunk_index < ?2 ORDER BY chunk_index",
        vec![
            Value::Integer(ino),
            Value::Integer(PATCH_SHOWN.div_ceil(CHUNK_SIZE) as i64),
        ],
        |r| match r.get_value(0).map_err(AuditError::sql("read a chunk"))? {
            Value::Blob(bytes) => Ok(bytes),
            Value::Text(text) => Ok(text.into_bytes()),
            _ => Ok(Vec::new()),
        },
    )
    .await?;
    let mut bytes = chunks.concat();
    bytes.truncate(PATCH_SHOWN);
    let mut clipped = Clipped::of(&String::from_utf8_lossy(&bytes), PATCH_SHOWN);
    clipped.total_bytes = size.first().copied().unwrap_or(0).max(0) as u64;
    Ok(Some(clipped))
}

/// A short description of a commit or merge event, whatever fields it has.
fn mark_label(p: &Json) -> String {
    let parts: Vec<String> = ["commit", "sha", "branch", "into", "message", "files"]
        .iter()
        .filter_map(|key| match p.get(*key)? {
            Json::String(s) => Some(format!("{key} {s}")),
            Json::Null => None,
            other => Some(format!("{key} {other}")),
        })
        .collect();
    let label = if parts.is_empty() {
        p.to_string()
    } else {
        parts.join(", ")
    };
    crate::audit::memory::truncate(&label, 300)
}

fn text(p: &Json, key: &str) -> String {
    p.get(key).and_then(Json::as_str).unwrap_or("").to_owned()
}

fn int(p: &Json, key: &str) -> i64 {
    p.get(key).and_then(Json::as_i64).unwrap_or(0)
}

fn names(p: &Json, key: &str) -> Vec<String> {
    p.get(key)
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .map(str::to_owned)
        .collect()
}
