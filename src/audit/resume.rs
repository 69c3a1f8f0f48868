//! Reading what `launch resume` and `launch continue` need from the audit store: a
//! run's state and config, its turns (`orchestrator::replay`), and, for a follow-up
//! run, its task, plan and final answers.
//!
//! Each read is one indexed query (`events(run, kind, seq)`), plus one short range scan
//! per cut-off turn from its start: a store of a million events answers in
//! milliseconds.

use libsql::Value;

use crate::agent::event::{AgentEvent, ItemStatus};
use crate::audit::error::AuditError;
use crate::audit::reader::{AuditReader, RunSummary, collect, get, opt_int, opt_text};
use crate::events::event::TurnRecord;
use crate::orchestrator::replay::Replay;

/// A stored run, as `launch resume` finds it.
pub struct StoredRun {
    pub summary: RunSummary,
    /// The config it last started with (redacted), `None` for runs of older versions.
    pub config: Option<serde_json::Value>,
    /// The `seq` of the event that config was read from.
    pub config_seq: Option<i64>,
}

/// The run's summary and the config of its last start.
pub async fn stored_run(reader: &AuditReader, session: &str) -> Result<StoredRun, AuditError> {
    let summary = reader.run(session).await?;
    let started = collect(
        reader.conn(),
        "SELECT seq, payload FROM events WHERE run = ?1 AND kind = 'run_started' ORDER BY seq DESC LIMIT 1",
        vec![Value::Text(session.to_owned())],
        |r| Ok((get::<i64>(r, 0)?, get::<String>(r, 1)?)),
    )
    .await?
    .into_iter()
    .next();
    let config_seq = started.as_ref().map(|(seq, _)| *seq);
    let config = started
        .and_then(|(_, payload)| serde_json::from_str::<serde_json::Value>(&payload).ok())
        .and_then(|mut payload| payload.get_mut("config").map(serde_json::Value::take))
        .filter(|config| !config.is_null());
    Ok(StoredRun {
        summary,
        config,
        config_seq,
    })
}

/// The turns of a stored run, folded for a resumed run, and the `seq` of every event
/// that was read (`verify::verify_rows` checks them before they are used).
pub async fn replay(reader: &AuditReader, session: &str) -> Result<(Replay, Vec<i64>), AuditError> {
    // No ORDER BY: with one, SQLite walks every row of the run in `seq` order instead of
    // the short ranges of the kind index (370 ms against 2 ms on a million events).
    let mut rows = collect(
        reader.conn(),
        "SELECT seq, kind, agent, turn, payload FROM events WHERE run = ?1 \
         AND kind IN ('turn_started', 'started', 'turn_finished', 'agent_finished', 'task_revised')",
        vec![Value::Text(session.to_owned())],
        |r| {
            Ok((
                get::<i64>(r, 0)?,
                get::<String>(r, 1)?,
                opt_text(r, 2)?,
                opt_int(r, 3)?.map(|t| t as u32),
                serde_json::from_str::<serde_json::Value>(&get::<String>(r, 4)?)
                    .unwrap_or_default(),
            ))
        },
    )
    .await?;
    rows.sort_by_key(|row| row.0);
    let mut read: Vec<i64> = rows.iter().map(|row| row.0).collect();
    let mut replay = Replay::from_rows(rows.iter().map(|(seq, kind, agent, turn, payload)| {
        (*seq, kind.as_str(), agent.as_deref(), *turn, payload)
    }));
    let cut: Vec<(String, u32, i64)> = replay
        .cut_turns()
        .map(|(agent, turn, seq)| (agent.to_owned(), turn, seq))
        .collect();
    for (agent, turn, seq) in cut {
        let events = collect(
            reader.conn(),
            "SELECT seq, payload FROM events WHERE run = ?1 AND seq > ?2 AND agent = ?3 AND turn = ?4 \
             AND kind IN ('command', 'file_change', 'tool_call', 'message') ORDER BY seq",
            vec![
                Value::Text(session.to_owned()),
                Value::Integer(seq),
                Value::Text(agent.clone()),
                Value::Integer(i64::from(turn)),
            ],
            |r| Ok((get::<i64>(r, 0)?, get::<String>(r, 1)?)),
        )
        .await?;
        for (seq, payload) in events {
            read.push(seq);
            match serde_json::from_str::<AgentEvent>(&payload) {
                Ok(
                    AgentEvent::Command {
                        status: ItemStatus::InProgress,
                        ..
                    }
                    | AgentEvent::FileChange {
                        status: ItemStatus::InProgress,
                        ..
                    },
                ) => {}
                Ok(event) => replay.note_done(&agent, turn, &event),
                Err(_) => {}
            }
        }
    }
    Ok((replay, read))
}

/// Longest answer of an earlier run quoted to a follow-up run's planner.
const MAX_QUOTED: usize = 4000;

/// What a follow-up run's planner is told of the run it continues: its task, its
/// plan (the planner's last answer) and each agent's final answer.
pub async fn parent_context(reader: &AuditReader, session: &str) -> Result<String, AuditError> {
    let summary = reader.run(session).await?;
    let mut last: Vec<(String, String, String)> = Vec::new();
    for record in reader.turns(session, None).await? {
        if !record.outcome.is_success() || record.tags.iter().any(|t| t == "review") {
            continue;
        }
        let TurnRecord {
            agent,
            role,
            response,
            ..
        } = record;
        match last.iter_mut().find(|(a, _, _)| *a == agent) {
            Some(entry) => entry.2 = response,
            None => last.push((agent, role, response)),
        }
    }
    let mut out = format!(
        "## The earlier run this one continues ({session})\nIts task was:\n{}\n",
        summary.prompt.trim()
    );
    if let Some((_, _, plan)) = last.iter().find(|(a, _, _)| a == "planner") {
        out.push_str(&format!(
            "\n### Its plan (the planner's answer)\n{}\n",
            quote(plan)
        ));
    }
    out.push_str("\n### Its agents' final answers\n");
    for (agent, role, answer) in last.iter().filter(|(a, _, _)| a != "planner") {
        out.push_str(&format!("#### {agent} ({role})\n{}\n", quote(answer)));
    }
    out.push_str(&format!(
        "\nIts work is in this run's starting point (branch orch/{session}). Build on it.\n"
    ));
    Ok(out)
}

fn quote(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() > MAX_QUOTED {
        let cut: String = text.chars().take(MAX_QUOTED).collect();
        format!("{cut}\n[… truncated]")
    } else {
        text.to_owned()
    }
}
