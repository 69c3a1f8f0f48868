//! The timeline for people (`logs/timeline.txt`, the `timeline` pane): one short line
//! per step of the run, such as `14:17:30 backend-api succeeded in 1.1 s · 287 in / 91
//! out`. `timeline.log` keeps the machine form, one `key=value` line per event, and the
//! audit store keeps every event whole.
//!
//! Owns only wording; remembers when the run and each agent started, for durations.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::agent::event::AgentEvent;
use crate::events::event::{AgentStatus, NoticeLevel, OrchEvent, OrchEventKind, RetryDecision};
use crate::events::render::review_line;
use crate::events::render::{clock, count, duration, gate_verdict, indented_interrupt, one_line};

#[derive(Default)]
pub struct Story {
    run_started: Option<SystemTime>,
    agents_started: HashMap<String, SystemTime>,
}

fn since(start: Option<&SystemTime>, at: SystemTime) -> String {
    start
        .and_then(|s| at.duration_since(*s).ok())
        .map(|d| duration(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        .unwrap_or_else(|| "?".into())
}

fn tokens(input: u64, output: u64) -> String {
    format!("{} in / {} out", count(input), count(output))
}

fn names(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        one_line(&items.join(", "), 400)
    }
}

impl Story {
    /// The line (or lines) for `event`, clock first; `None` for what only an agent's
    /// own log shows (its streamed events).
    pub fn line(&mut self, event: &OrchEvent) -> Option<String> {
        let at = event.at;
        let text = match &event.kind {
            OrchEventKind::RunStarted {
                session,
                backend,
                prompt,
                ..
            } => {
                self.run_started = Some(at);
                format!(
                    "run {session} started on {backend}: {}",
                    one_line(prompt, 200)
                )
            }
            OrchEventKind::GroupStarted { group } => format!("group {group}"),
            OrchEventKind::WaveScheduled { wave, kind, agents } => {
                format!("wave {wave} ({}): {}", kind.as_str(), names(agents))
            }
            OrchEventKind::AgentStarted {
                agent, depends_on, ..
            } => {
                self.agents_started.insert(agent.clone(), at);
                if depends_on.is_empty() {
                    format!("{agent} started")
                } else {
                    format!("{agent} started (after {})", names(depends_on))
                }
            }
            OrchEventKind::WorktreeReady { agent, branch, .. } => match branch {
                Some(branch) => format!("{agent} works on {}", one_line(branch, 200)),
                None => return None,
            },
            OrchEventKind::TurnStarted {
                agent,
                turn,
                attempt,
                kind,
                ..
            } => {
                // Each agent's own log has its turns; here only retries.
                if *attempt > 1 {
                    format!("{agent} {} turn {turn}, attempt {attempt}", kind.as_str())
                } else {
                    return None;
                }
            }
            OrchEventKind::TurnRetrying {
                agent,
                turn,
                decision,
                message,
                ..
            } => {
                let what = match decision {
                    RetryDecision::Retry { delay_ms, .. } => {
                        format!("tries again in {}", duration(*delay_ms))
                    }
                    RetryDecision::Park { delay_ms } => {
                        format!("waits {} for its usage limit", duration(*delay_ms))
                    }
                    RetryDecision::Fallback { to } => format!("moves to {to}"),
                    RetryDecision::GiveUp => "gives up".into(),
                };
                format!(
                    "{agent} turn {turn} failed ({}); {what}",
                    one_line(message, 200)
                )
            }
            OrchEventKind::TurnFinished(record) if !record.outcome.is_success() => format!(
                "{} turn {} {} after {}",
                record.agent,
                record.turn,
                record.outcome.label(),
                duration(record.duration_ms())
            ),
            OrchEventKind::TurnFinished(_) => return None,
            OrchEventKind::AgentFinished {
                agent,
                status,
                usage,
                ..
            } => {
                let took = since(self.agents_started.get(agent), at);
                let spent = tokens(usage.input_tokens, usage.output_tokens);
                match status {
                    AgentStatus::Succeeded => format!("{agent} succeeded in {took} · {spent}"),
                    AgentStatus::Failed { reason } => {
                        format!("{agent} FAILED after {took}: {}", one_line(reason, 300))
                    }
                    AgentStatus::Blocked { by } => format!("{agent} blocked: {by} did not succeed"),
                    AgentStatus::Stopped => format!("{agent} stopped after {took}"),
                }
            }
            OrchEventKind::ChangesCommitted(changes) => format!(
                "{} committed {} file{}",
                changes.agent,
                changes.files.len(),
                if changes.files.len() == 1 { "" } else { "s" }
            ),
            OrchEventKind::AgentMerged {
                agent,
                run_branch,
                fast_forward,
                ..
            } => format!(
                "{agent} merged into {run_branch}{}",
                if *fast_forward { "" } else { " (rebased)" }
            ),
            OrchEventKind::MergeConflict {
                agent,
                paths,
                resolving,
                ..
            } => format!(
                "{agent} conflicts with the run branch in {}{}",
                names(paths),
                if *resolving { "; it resolves them" } else { "" }
            ),
            OrchEventKind::FeatureUpdated {
                agent,
                feature,
                status,
                attempts,
                reason,
                ..
            } => format!(
                "{agent}: {}",
                crate::events::render::feature_line(feature, *status, *attempts, reason.as_deref())
            ),
            OrchEventKind::ReviewFinished {
                agent,
                reviewer,
                round,
                passed,
                points,
                ..
            } => review_line(agent, reviewer, *round, *passed, points),
            OrchEventKind::GateFinished {
                agent,
                command,
                passed,
                exit_code,
                timed_out,
                duration_ms,
                ..
            } => {
                format!(
                    "{agent} gate `{}` {} in {}",
                    one_line(command, 120),
                    gate_verdict(*passed, *exit_code, *timed_out),
                    duration(*duration_ms)
                )
            }
            OrchEventKind::BlueprintAccepted {
                source,
                wave,
                agents,
            } => format!(
                "{source}'s blueprint: {} agent{} for wave {wave}",
                agents.len(),
                if agents.len() == 1 { "" } else { "s" }
            ),
            OrchEventKind::BlueprintRejected {
                source,
                attempt,
                error,
            } => format!(
                "{source}'s blueprint was refused (attempt {attempt}): {}",
                one_line(error, 300)
            ),
            OrchEventKind::Notice { level, message } => {
                let prefix = match level {
                    NoticeLevel::Info => "",
                    NoticeLevel::Warning => "warning: ",
                    NoticeLevel::Error => "error: ",
                };
                format!("{prefix}{}", one_line(message, 1000))
            }
            OrchEventKind::PauseRequested { source } => format!("pause asked for ({source})"),
            OrchEventKind::RunPaused(summary) => format!("paused{}", indented_interrupt(summary)),
            OrchEventKind::RunResumed => "resumed".into(),
            OrchEventKind::StopRequested { source } => format!("stop asked for ({source})"),
            OrchEventKind::TaskRevised { revision, diff, .. } => {
                let (added, removed) = diff_counts(diff);
                format!(
                    "the task file changed (revision {revision}: +{added} −{removed} lines); the next wave is planned with it"
                )
            }
            OrchEventKind::RunFinished {
                status,
                usage,
                failed,
            } => {
                let took = since(self.run_started.as_ref(), at);
                let spent = tokens(usage.input_tokens, usage.output_tokens);
                if failed.is_empty() {
                    format!("run {} in {took} · {spent}", status.as_str())
                } else {
                    format!(
                        "run {} in {took} · {spent} · not done: {}",
                        status.as_str(),
                        names(failed)
                    )
                }
            }
            OrchEventKind::Agent {
                agent,
                event: AgentEvent::PermissionDenied { tool, .. },
                ..
            } => format!("{agent} was refused `{}`", one_line(tool, 120)),
            OrchEventKind::Agent { .. } => return None,
        };
        let mut clock = clock(at);
        clock.truncate(8); // HH:MM:SS
        Some(format!("{clock} {text}\n"))
    }
}

/// Lines added and removed in a unified diff.
fn diff_counts(diff: &str) -> (usize, usize) {
    let mut counts = (0, 0);
    for line in diff.lines() {
        if line.starts_with('+') && !line.starts_with("+++") {
            counts.0 += 1;
        } else if line.starts_with('-') && !line.starts_with("---") {
            counts.1 += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agent::backend::AgentKind;
    use crate::agent::event::Usage;
    use crate::events::event::RunStatus;

    fn at(ms: u64, kind: OrchEventKind) -> OrchEvent {
        OrchEvent {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_000 + ms),
            kind,
        }
    }

    #[test]
    fn agents_and_the_run_read_as_sentences_with_durations_and_tokens() {
        let mut story = Story::default();
        let lines: Vec<String> = [
            at(
                0,
                OrchEventKind::RunStarted {
                    session: "run-a".into(),
                    prompt: "Ship\nthe MVP".into(),
                    backend: "codex".into(),
                    project_root: "/r".into(),
                    groups: vec![],
                    config: None,
                    resumed: false,
                    parent: None,
                },
            ),
            at(
                100,
                OrchEventKind::AgentStarted {
                    agent: "backend-api".into(),
                    role: "API".into(),
                    kind: AgentKind::Dynamic,
                    wave: 1,
                    depends_on: vec!["planner".into()],
                },
            ),
            at(
                1_200,
                OrchEventKind::AgentFinished {
                    agent: "backend-api".into(),
                    role: "API".into(),
                    kind: AgentKind::Dynamic,
                    wave: 1,
                    status: AgentStatus::Succeeded,
                    usage: Usage {
                        input_tokens: 287,
                        output_tokens: 91,
                        ..Usage::default()
                    },
                },
            ),
            at(
                5_500,
                OrchEventKind::RunFinished {
                    status: RunStatus::Failed,
                    usage: Usage {
                        input_tokens: 12_345,
                        output_tokens: 678,
                        ..Usage::default()
                    },
                    failed: vec!["tests".into()],
                },
            ),
        ]
        .iter()
        .filter_map(|e| story.line(e))
        .map(|line| line.split_once(' ').unwrap().1.to_owned())
        .collect();
        assert_eq!(
            lines,
            [
                "run run-a started on codex: Ship ⏎ the MVP\n",
                "backend-api started (after planner)\n",
                "backend-api succeeded in 1.1s · 287 in / 91 out\n",
                "run failed in 5.5s · 12.3k in / 678 out · not done: tests\n",
            ]
        );
    }
}
