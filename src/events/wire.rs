//! The persisted form of events (tier 3): versioned, flat, JSON payloads.
//!
//! `encode` is a pure function from a domain event; the audit store and `--json`
//! outputs use it. Field names are snake_case and never change meaning within a version.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::events::event::{OrchEvent, OrchEventKind};

pub const WIRE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub v: u32,
    pub ts_ms: u64,
    pub agent: Option<String>,
    pub turn: Option<u32>,
    pub kind: String,
    pub payload: Value,
}

pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub fn encode(event: &OrchEvent) -> WireEvent {
    let (agent, turn, kind, payload): (Option<&str>, Option<u32>, &str, Value) = match &event.kind {
        OrchEventKind::RunStarted {
            session,
            prompt,
            backend,
            project_root,
            groups,
            config,
            resumed,
            parent,
        } => (
            None,
            None,
            "run_started",
            json!({"session": session, "prompt": prompt, "backend": backend,
                   "project_root": project_root, "groups": groups, "config": config,
                   "resumed": resumed, "parent": parent}),
        ),
        OrchEventKind::GroupStarted { group } => {
            (None, None, "group_started", json!({"group": group}))
        }
        OrchEventKind::WaveScheduled { wave, kind, agents } => (
            None,
            None,
            "wave_scheduled",
            json!({"wave": wave, "wave_kind": kind, "agents": agents}),
        ),
        OrchEventKind::AgentStarted {
            agent,
            role,
            kind,
            wave,
            depends_on,
        } => (
            Some(agent),
            None,
            "agent_started",
            json!({"role": role, "agent_kind": kind, "wave": wave, "depends_on": depends_on}),
        ),
        OrchEventKind::TurnStarted {
            agent,
            turn,
            attempt,
            kind,
            backend,
            model,
            prompt,
            purpose,
        } => (
            Some(agent),
            Some(*turn),
            "turn_started",
            json!({"attempt": attempt, "turn_kind": kind, "backend": backend, "model": model, "prompt": prompt,
                "purpose": purpose}),
        ),
        OrchEventKind::Agent { agent, turn, event } => {
            (Some(agent), Some(*turn), event.kind(), to_value(event))
        }
        OrchEventKind::TurnRetrying {
            agent,
            turn,
            class,
            decision,
            message,
        } => (
            Some(agent),
            Some(*turn),
            "turn_retrying",
            json!({"class": class, "decision": decision, "message": message}),
        ),
        OrchEventKind::TurnFinished(record) => (
            Some(&record.agent),
            Some(record.turn),
            "turn_finished",
            to_value(record),
        ),
        OrchEventKind::AgentFinished {
            agent,
            role,
            kind,
            wave,
            status,
            usage,
        } => (
            Some(agent),
            None,
            "agent_finished",
            json!({"role": role, "agent_kind": kind, "wave": wave, "status": status, "usage": usage}),
        ),
        OrchEventKind::BlueprintAccepted {
            source,
            wave,
            agents,
        } => (
            Some(source),
            None,
            "blueprint_accepted",
            json!({"wave": wave, "agents": agents}),
        ),
        OrchEventKind::BlueprintRejected {
            source,
            attempt,
            error,
        } => (
            Some(source),
            None,
            "blueprint_rejected",
            json!({"attempt": attempt, "error": error}),
        ),
        OrchEventKind::Notice { level, message } => (
            None,
            None,
            "notice",
            json!({"level": level, "message": message}),
        ),
        OrchEventKind::WorktreeReady {
            agent,
            path,
            branch,
            base,
        } => (
            Some(agent),
            None,
            "worktree_ready",
            json!({"path": path, "branch": branch, "base": base}),
        ),
        OrchEventKind::ChangesCommitted(changes) => {
            let mut payload = to_value(changes);
            if let serde_json::Value::Object(map) = &mut payload {
                map.insert("patch_bytes".into(), json!(changes.patch.len()));
                map.insert(
                    "patch_sha256".into(),
                    json!(crate::events::wire::sha256_hex(changes.patch.as_bytes())),
                );
            }
            (Some(&changes.agent), None, "changes_committed", payload)
        }
        OrchEventKind::AgentMerged {
            agent,
            run_branch,
            tip,
            commits,
            fast_forward,
        } => (
            Some(agent),
            None,
            "agent_merged",
            json!({"run_branch": run_branch, "tip": tip, "commits": commits, "fast_forward": fast_forward}),
        ),
        OrchEventKind::GateFinished {
            agent,
            command,
            attempt,
            passed,
            exit_code,
            timed_out,
            duration_ms,
            output_tail,
        } => (
            Some(agent),
            None,
            "gate_finished",
            json!({"command": command, "attempt": attempt, "passed": passed, "exit_code": exit_code,
                "timed_out": timed_out, "duration_ms": duration_ms, "output_tail": output_tail}),
        ),
        OrchEventKind::ReviewFinished {
            agent,
            reviewer,
            backend,
            model,
            round,
            passed,
            points,
        } => (
            Some(agent),
            None,
            "review_finished",
            json!({"reviewer": reviewer, "backend": backend, "model": model, "round": round,
                "passed": passed, "points": points}),
        ),
        OrchEventKind::MergeConflict {
            agent,
            paths,
            other_side,
            resolving,
        } => (
            Some(agent),
            None,
            "merge_conflict",
            json!({"paths": paths, "other_side": other_side, "resolving": resolving}),
        ),
        OrchEventKind::PauseRequested { source } => {
            (None, None, "pause_requested", json!({"source": source}))
        }
        OrchEventKind::RunPaused(summary) => (None, None, "run_paused", to_value(summary)),
        OrchEventKind::RunResumed => (None, None, "run_resumed", json!({})),
        OrchEventKind::StopRequested { source } => {
            (None, None, "stop_requested", json!({"source": source}))
        }
        OrchEventKind::FeatureUpdated {
            feature,
            agent,
            track,
            status,
            attempts,
            reason,
        } => (
            Some(agent),
            None,
            "feature_updated",
            json!({"feature": feature, "track": track, "status": status, "attempts": attempts,
                "reason": reason}),
        ),
        OrchEventKind::TaskRevised {
            revision,
            sha256,
            diff,
            text,
        } => (
            None,
            None,
            "task_revised",
            json!({"revision": revision, "sha256": sha256, "diff": diff, "text": text}),
        ),
        OrchEventKind::RunFinished {
            status,
            usage,
            failed,
        } => (
            None,
            None,
            "run_finished",
            json!({"status": status, "usage": usage, "failed": failed}),
        ),
    };
    WireEvent {
        v: WIRE_VERSION,
        ts_ms: millis(event.at),
        agent: agent.map(str::to_owned),
        turn,
        kind: kind.to_owned(),
        payload,
    }
}

/// Hex SHA-256 of `bytes` (what a stored patch is named by in its event).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::event::AgentEvent;

    #[test]
    fn agent_events_keep_their_own_kind_and_round_trip() {
        let event = OrchEvent {
            at: UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            kind: OrchEventKind::Agent {
                agent: "planner".into(),
                turn: 2,
                event: AgentEvent::Message {
                    text: "done".into(),
                },
            },
        };
        let wire = encode(&event);
        assert_eq!(wire.kind, "message");
        assert_eq!(wire.ts_ms, 1_700_000_000_123);
        assert_eq!(wire.agent.as_deref(), Some("planner"));
        assert_eq!(wire.turn, Some(2));
        let text = serde_json::to_string(&wire).unwrap();
        assert_eq!(serde_json::from_str::<WireEvent>(&text).unwrap(), wire);
        let back: AgentEvent = serde_json::from_value(wire.payload).unwrap();
        assert_eq!(
            back,
            AgentEvent::Message {
                text: "done".into()
            }
        );
    }
}
