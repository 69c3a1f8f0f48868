//! Text output of `orch-audit` (the `--json` forms serialize the reader types as-is).

use std::fmt::Write as _;

use serde_json::Value;

use crate::audit::memory::{Artifact, truncate};
use crate::audit::reader::{DirEntry, EventRow, RunSummary};
use crate::events::event::TurnRecord;
use crate::events::render::duration;

/// `2026-11-22 10:10:10Z` for milliseconds since the epoch.
pub fn time_of(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => ms.to_string(),
    }
}

pub fn runs(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<28} {:<21} {:<10} {:>6} {:>12} {:>12} {:>8}\n",
        "SESSION", "STARTED", "STATUS", "AGENTS", "IN TOKENS", "OUT TOKENS", "EVENTS"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<28} {:<21} {:<10} {:>6} {:>12} {:>12} {:>8}",
            r.session,
            time_of(r.started_at_ms),
            r.status,
            r.agents,
            r.input_tokens,
            r.output_tokens,
            r.events
        );
    }
    out
}

pub fn turn_line(t: &TurnRecord, content: bool) -> String {
    let mut line = format!(
        "{:<24} {:03}-{:<9} {:<11} {:>8}  in {:>8}  out {:>7}  {}",
        t.agent,
        t.turn,
        t.kind.as_str(),
        t.outcome.label(),
        duration(t.duration_ms()),
        t.usage.input_tokens,
        t.usage.output_tokens,
        t.backend
    );
    if content {
        let _ = write!(
            line,
            "\n--- prompt ---\n{}\n--- response ---\n{}\n",
            t.prompt, t.response
        );
    } else if !t.response.is_empty() {
        let first = t
            .response
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let _ = write!(line, "\n    {}", truncate(first.trim(), 100));
    }
    line
}

pub fn event_line(e: &EventRow) -> String {
    let who = match (&e.agent, e.turn) {
        (Some(agent), Some(turn)) => format!("{agent}#{turn}"),
        (Some(agent), None) => agent.clone(),
        _ => "-".into(),
    };
    format!(
        "{:>6} {} {:<24} {:<16} {}",
        e.seq,
        time_of(e.ts_ms),
        who,
        e.kind,
        summary(&e.payload)
    )
}

/// The most telling field of a payload, on one line.
fn summary(payload: &Value) -> String {
    let text = ["text", "command", "message", "path", "name", "status"]
        .iter()
        .find_map(|key| payload.get(key).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| payload.to_string());
    truncate(&text.replace('\n', " "), 120)
}

pub fn dir_entries(entries: &[DirEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = writeln!(
            out,
            "{} {:>10} {}{}",
            if e.is_dir { "d" } else { "-" },
            e.size,
            e.name,
            if e.is_dir { "/" } else { "" }
        );
    }
    out
}

pub fn artifact(a: &Artifact, content: bool) -> String {
    let tags: Vec<&str> = a
        .document
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = format!(
        "{}  {} {} [{}]\n  {}",
        time_of(a.created_at_ms() as i64),
        a.str_field("agent"),
        a.str_field("type"),
        tags.join(","),
        a.path
    );
    if a.is_summary() {
        let _ = write!(
            out,
            "\n  summarizes {} artifacts",
            a.document
                .get("relatedArtifacts")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        );
    }
    if content {
        for key in ["prompt", "response", "summary"] {
            if let Some(text) = a.document.get(key).and_then(Value::as_str) {
                let _ = write!(out, "\n--- {key} ---\n{text}");
            }
        }
    }
    out.push('\n');
    out
}
