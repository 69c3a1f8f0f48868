//! Human-readable lines for events: per-agent log lines, timeline lines, summaries.
//!
//! Pure functions, shared by the log-file sinks and `--stream`. Every line is made safe
//! for a terminal pane: newlines become ` ⏎ `, control characters are escaped (an agent
//! cannot move the cursor or recolor a pane), and very long lines are cut with a note
//! that the full text is in the audit store.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

use crate::agent::event::{AgentEvent, ItemStatus, TurnOutcome, Usage};
use crate::events::event::{
    AgentStatus, InterruptSummary, OrchEvent, OrchEventKind, RetryDecision,
};

/// Longest text kept on one log line; the audit store keeps the whole text.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

pub fn timestamp(at: SystemTime) -> String {
    let dt = OffsetDateTime::from(at);
    dt.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// `HH:MM:SS.mmm` in UTC, the time on every log line.
pub fn clock(at: SystemTime) -> String {
    let mut out = String::with_capacity(12);
    push_clock(&mut out, at);
    out
}

/// Appends `clock(at)` to `out`. Every log line starts with one, so the digits are
/// written directly rather than through a format description.
pub fn push_clock(out: &mut String, at: SystemTime) {
    let Ok(since) = at.duration_since(UNIX_EPOCH) else {
        let dt = OffsetDateTime::from(at);
        let text = dt
            .format(format_description!(
                "[hour]:[minute]:[second].[subsecond digits:3]"
            ))
            .unwrap_or_default();
        out.push_str(&text);
        return;
    };
    let of_day = since.as_secs() % 86_400;
    let millis = since.subsec_millis();
    let digit = |n: u64| char::from(b'0' + (n % 10) as u8);
    for (i, part) in [of_day / 3600, of_day / 60 % 60, of_day % 60]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(':');
        }
        out.push(digit(part / 10));
        out.push(digit(part));
    }
    out.push('.');
    let millis = u64::from(millis);
    out.extend([digit(millis / 100), digit(millis / 10), digit(millis)]);
}

/// `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// `950`, `12.3k`, `4.5M`.
pub fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Makes text safe and single-line for a log pane, cut at `max` bytes.
pub fn one_line(text: &str, max: usize) -> String {
    let trimmed = text.trim_end();
    let mut out = String::with_capacity(trimmed.len().min(max) + 16);
    let mut rest = trimmed;
    while out.len() < max {
        // Copy the run up to the next byte that may need escaping in one go: ASCII
        // controls, DEL, and 0xC2, which starts the C1 controls (U+0080..U+009F).
        let plain = rest
            .bytes()
            .position(|b| b < 0x20 || b == 0x7f || b == 0xc2)
            .unwrap_or(rest.len());
        if plain > 0 {
            // As one char at a time would: the last char may cross `max`.
            let mut take = plain.min(max - out.len());
            while !rest.is_char_boundary(take) {
                take += 1;
            }
            out.push_str(&rest[..take]);
            rest = &rest[take..];
            continue;
        }
        let Some(c) = rest.chars().next() else {
            break;
        };
        rest = &rest[c.len_utf8()..];
        push_escaped(&mut out, c);
    }
    if !rest.is_empty() {
        let _ = write!(out, " … [{} more bytes in the audit store]", rest.len());
    }
    out
}

/// One char as a log pane shows it: newlines as ` ⏎ `, control characters escaped.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str(" ⏎ "),
        '\r' => {}
        '\t' => out.push(' '),
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

fn usage_text(usage: &Usage) -> String {
    if usage.cached_input_tokens > 0 {
        format!(
            "{} in ({} cached) / {} out",
            usage.input_tokens, usage.cached_input_tokens, usage.output_tokens
        )
    } else {
        format!("{} in / {} out", usage.input_tokens, usage.output_tokens)
    }
}

fn status_text(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::InProgress => "running",
        ItemStatus::Completed => "done",
        ItemStatus::Failed => "failed",
    }
}

fn outcome_text(outcome: &TurnOutcome) -> String {
    match outcome {
        TurnOutcome::Completed => "completed".into(),
        TurnOutcome::Failed { class, message } => format!("failed ({}): {message}", class.label()),
        TurnOutcome::Interrupted { message } => format!("interrupted: {message}"),
    }
}

/// The body of a log line for one streamed agent event (without time or agent name).
pub fn agent_event_body(event: &AgentEvent) -> String {
    let max = MAX_LINE_BYTES;
    match event {
        AgentEvent::Started { thread_id } => match thread_id {
            Some(id) => format!("thread   {}", one_line(id, 200)),
            None => "thread   started".into(),
        },
        AgentEvent::Message { text } => format!("message  {}", one_line(text, max)),
        AgentEvent::Reasoning { text } => format!("thinking {}", one_line(text, max)),
        AgentEvent::Command {
            command,
            status,
            exit_code,
            output,
            ..
        } => {
            let mut line = format!("command  $ {}", one_line(command, 2000));
            match (status, exit_code) {
                (ItemStatus::InProgress, _) => line.push_str("  (running)"),
                (_, Some(code)) => {
                    let _ = write!(line, "  → exit {code}");
                }
                (status, None) => {
                    let _ = write!(line, "  → {}", status_text(*status));
                }
            }
            if let Some(output) = output.as_deref().filter(|o| !o.trim().is_empty()) {
                let _ = write!(line, "  | {}", one_line(output, max));
            }
            line
        }
        AgentEvent::FileChange {
            path,
            change,
            status,
        } => format!(
            "file     {} {} ({})",
            one_line(change, 40),
            one_line(path, 2000),
            status_text(*status)
        ),
        AgentEvent::ToolCall {
            name,
            arguments,
            status,
            result,
            ..
        } => {
            let mut line = format!(
                "tool     {}({}) {}",
                one_line(name, 200),
                one_line(arguments, 2000),
                status_text(*status)
            );
            if let Some(result) = result.as_deref().filter(|r| !r.trim().is_empty()) {
                let _ = write!(line, "  | {}", one_line(result, max));
            }
            line
        }
        AgentEvent::Usage(usage) => format!("tokens   {}", usage_text(usage)),
        AgentEvent::RateLimit {
            message,
            retry_after_secs,
            resets_at,
        } => {
            let mut line = format!("limit    {}", one_line(message, 2000));
            if let Some(secs) = retry_after_secs {
                let _ = write!(line, " (retry after {secs}s)");
            }
            if let Some(at) = resets_at {
                let _ = write!(line, " (resets at {})", one_line(at, 100));
            }
            line
        }
        AgentEvent::Error { message } => format!("error    {}", one_line(message, max)),
        AgentEvent::RawLine { text } => format!("output   {}", one_line(text, max)),
        AgentEvent::PermissionsSet { policy, flags } => {
            format!(
                "perms    {} ({})",
                one_line(policy, 40),
                one_line(flags, 400)
            )
        }
        AgentEvent::PermissionDenied { tool, detail } => format!(
            "denied   {}: {}",
            one_line(tool, 200),
            one_line(detail, max)
        ),
        AgentEvent::Finished { outcome } => {
            format!("finished {}", one_line(&outcome_text(outcome), 4000))
        }
    }
}

fn retry_text(decision: &RetryDecision) -> String {
    match decision {
        RetryDecision::Retry { attempt, delay_ms } => {
            format!(
                "retrying (attempt {attempt}) in {:.1}s",
                *delay_ms as f64 / 1000.0
            )
        }
        RetryDecision::Park { delay_ms } => format!(
            "parked until the usage limit resets in {:.0}s (not counted as an attempt)",
            *delay_ms as f64 / 1000.0
        ),
        RetryDecision::Fallback { to } => format!("falling back to backend `{to}`"),
        RetryDecision::GiveUp => "giving up".into(),
    }
}

/// The agent a line belongs to and its body, for per-agent logs. `None` when the
/// event is not about one agent.
pub fn agent_line(event: &OrchEvent) -> Option<(&str, String)> {
    let line = match &event.kind {
        OrchEventKind::AgentStarted {
            agent,
            role,
            kind,
            wave,
            depends_on,
        } => {
            let deps = if depends_on.is_empty() {
                "-".to_owned()
            } else {
                depends_on.join(", ")
            };
            let body = format!(
                "── {} started · {} · {} agent · wave {} · depends on {}",
                agent,
                one_line(role, 200),
                kind.as_str(),
                wave,
                deps
            );
            return Some((agent.as_str(), body));
        }
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
            agent,
            format!(
                "── turn {turn}{} {}{} · backend {backend}{} · prompt {} chars",
                attempt_text(*attempt),
                kind.as_str(),
                purpose
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default(),
                model
                    .as_deref()
                    .map(|m| format!(" · model {m}"))
                    .unwrap_or_default(),
                prompt.chars
            ),
        ),
        OrchEventKind::Agent { agent, event, .. } => (agent, agent_event_body(event)),
        OrchEventKind::TurnRetrying {
            agent,
            class,
            decision,
            message,
            ..
        } => (
            agent,
            format!(
                "retry    {} failure: {} → {}",
                class.label(),
                one_line(message, 2000),
                retry_text(decision)
            ),
        ),
        OrchEventKind::TurnFinished(record) => (
            &record.agent,
            format!(
                "── turn {}{} {} {} in {:.1}s · {}",
                record.turn,
                attempt_text(record.attempt),
                record.kind.as_str(),
                outcome_text(&record.outcome),
                record.duration_ms() as f64 / 1000.0,
                usage_text(&record.usage)
            ),
        ),
        OrchEventKind::AgentFinished {
            agent,
            status,
            usage,
            ..
        } => (
            agent,
            match status {
                AgentStatus::Succeeded => format!("── {agent} succeeded · {}", usage_text(usage)),
                AgentStatus::Failed { reason } => {
                    format!("── {agent} FAILED: {}", one_line(reason, 4000))
                }
                AgentStatus::Blocked { by } => {
                    format!("── {agent} blocked: dependency `{by}` did not succeed")
                }
                AgentStatus::Stopped => format!("── {agent} stopped"),
            },
        ),
        OrchEventKind::BlueprintAccepted {
            source,
            agents,
            wave,
        } => (
            source,
            format!(
                "blueprint accepted for wave {wave}: {}",
                agents
                    .iter()
                    .map(|a| if a.depends_on.is_empty() {
                        a.id.clone()
                    } else {
                        format!("{} (after {})", a.id, a.depends_on.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        OrchEventKind::BlueprintRejected {
            source,
            attempt,
            error,
        } => (
            source,
            format!(
                "blueprint rejected (attempt {attempt}): {}",
                one_line(error, 4000)
            ),
        ),
        OrchEventKind::WorktreeReady {
            agent,
            path,
            branch,
            base,
        } => (
            agent,
            match branch {
                Some(branch) => format!(
                    "── worktree {} on {} (from {})",
                    one_line(&path.display().to_string(), 400),
                    one_line(branch, 200),
                    short_oid(base)
                ),
                None => format!(
                    "── worktree {} (read-only, at {})",
                    one_line(&path.display().to_string(), 400),
                    short_oid(base)
                ),
            },
        ),
        OrchEventKind::ChangesCommitted(changes) => (
            &changes.agent,
            format!(
                "── committed {} file(s) in {} commit(s) on {}: {}",
                changes.files.len(),
                changes.commits.len(),
                one_line(&changes.branch, 200),
                one_line(
                    &changes
                        .files
                        .iter()
                        .map(|f| format!("{} {}", f.status, f.path))
                        .collect::<Vec<_>>()
                        .join(", "),
                    1000
                )
            ),
        ),
        OrchEventKind::FeatureUpdated {
            agent,
            feature,
            status,
            attempts,
            reason,
            ..
        } => (
            agent,
            format!(
                "── {}",
                feature_line(feature, *status, *attempts, reason.as_deref())
            ),
        ),
        OrchEventKind::ReviewFinished {
            agent,
            reviewer,
            round,
            passed,
            points,
            ..
        } => (
            agent,
            format!(
                "── {}",
                review_line(agent, reviewer, *round, *passed, points)
            ),
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
            agent,
            format!(
                "── gate {} (run {attempt}): {} in {:.1} s{}",
                one_line(command, 400),
                gate_verdict(*passed, *exit_code, *timed_out),
                *duration_ms as f64 / 1000.0,
                if *passed || output_tail.trim().is_empty() {
                    String::new()
                } else {
                    format!(" | {}", one_line(output_tail.trim(), 2000))
                }
            ),
        ),
        OrchEventKind::AgentMerged {
            agent,
            run_branch,
            tip,
            fast_forward,
            ..
        } => (
            agent,
            format!(
                "── merged into {} at {}{}",
                one_line(run_branch, 200),
                short_oid(tip),
                if *fast_forward { " (fast-forward)" } else { "" }
            ),
        ),
        OrchEventKind::MergeConflict {
            agent,
            paths,
            other_side,
            resolving,
        } => (
            agent,
            format!(
                "── merge conflict in {} with {}{}",
                one_line(&paths.join(", "), 1000),
                one_line(other_side, 400),
                if *resolving {
                    ": one turn to resolve it"
                } else {
                    ""
                }
            ),
        ),
        _ => return None,
    };
    Some((line.0.as_str(), line.1))
}

/// The first 10 characters of a commit id.
fn short_oid(oid: &str) -> &str {
    oid.get(..10).unwrap_or(oid)
}

/// One timeline line (without timestamp) for lifecycle events; `None` for streamed ones.
pub fn timeline_line(event: &OrchEvent) -> Option<String> {
    let line = match &event.kind {
        OrchEventKind::RunStarted {
            session,
            backend,
            groups,
            resumed,
            parent,
            ..
        } => {
            let mut line = format!(
                "run_started {session} backend={backend} groups={}",
                groups.join(",")
            );
            if *resumed {
                line.push_str(" resumed");
            }
            if let Some(parent) = parent {
                line.push_str(&format!(" continues={parent}"));
            }
            line
        }
        OrchEventKind::GroupStarted { group } => format!("group_started {group}"),
        OrchEventKind::WaveScheduled { wave, kind, agents } => format!(
            "wave_scheduled {wave} kind={} agents={}",
            kind.as_str(),
            agents.join(",")
        ),
        OrchEventKind::AgentStarted {
            agent,
            kind,
            wave,
            depends_on,
            ..
        } => format!(
            "agent_started {agent} kind={} wave={wave} depends_on={}",
            kind.as_str(),
            if depends_on.is_empty() {
                "-".into()
            } else {
                depends_on.join(",")
            }
        ),
        OrchEventKind::TurnStarted {
            agent,
            turn,
            attempt,
            kind,
            ..
        } => {
            format!(
                "turn_started {agent} turn={turn} attempt={attempt} kind={}",
                kind.as_str()
            )
        }
        OrchEventKind::TurnRetrying {
            agent,
            turn,
            class,
            decision,
            message,
        } => format!(
            "turn_retrying {agent} turn={turn} class={} decision={} message={}",
            class.label(),
            one_line(&retry_text(decision), 200),
            one_line(message, 400)
        ),
        OrchEventKind::TurnFinished(record) => format!(
            "turn_finished {} turn={} attempt={} kind={} outcome={} duration_ms={} tokens_in={} tokens_out={}",
            record.agent,
            record.turn,
            record.attempt,
            record.kind.as_str(),
            record.outcome.label(),
            record.duration_ms(),
            record.usage.input_tokens,
            record.usage.output_tokens
        ),
        OrchEventKind::AgentFinished { agent, status, .. } => match status {
            AgentStatus::Failed { reason } => {
                format!(
                    "agent_finished {agent} status=failed reason={}",
                    one_line(reason, 400)
                )
            }
            AgentStatus::Blocked { by } => format!("agent_finished {agent} status=blocked by={by}"),
            other => format!("agent_finished {agent} status={}", other.label()),
        },
        OrchEventKind::WorktreeReady {
            agent,
            branch,
            base,
            ..
        } => format!(
            "worktree_ready {agent} branch={} base={}",
            branch.as_deref().unwrap_or("-(read-only)"),
            short_oid(base)
        ),
        OrchEventKind::ChangesCommitted(changes) => format!(
            "changes_committed {} commits={} files={} head={}",
            changes.agent,
            changes.commits.len(),
            changes.files.len(),
            short_oid(&changes.head)
        ),
        OrchEventKind::FeatureUpdated {
            agent,
            feature,
            track,
            status,
            attempts,
            reason,
        } => {
            let mut text = format!(
                "feature_updated {agent} feature={} track={} status={} attempts={attempts}",
                one_line(feature, 200),
                one_line(track, 200),
                status.as_str()
            );
            if let Some(reason) = reason {
                text.push_str(&format!(" reason={}", one_line(reason, 400)));
            }
            text
        }
        OrchEventKind::ReviewFinished {
            agent,
            reviewer,
            round,
            passed,
            points,
            ..
        } => format!(
            "review_finished {agent} reviewer={reviewer} round={round} {} failed_points={}",
            if *passed { "passed" } else { "failed" },
            points.iter().filter(|p| !p.pass).count()
        ),
        OrchEventKind::GateFinished {
            agent,
            attempt,
            passed,
            exit_code,
            timed_out,
            ..
        } => format!(
            "gate_finished {agent} run={attempt} {}",
            gate_verdict(*passed, *exit_code, *timed_out).replace(' ', "_")
        ),
        OrchEventKind::AgentMerged {
            agent,
            run_branch,
            tip,
            commits,
            fast_forward,
        } => format!(
            "agent_merged {agent} into={} tip={} commits={commits} fast_forward={fast_forward}",
            one_line(run_branch, 200),
            short_oid(tip)
        ),
        OrchEventKind::MergeConflict {
            agent,
            paths,
            resolving,
            ..
        } => format!(
            "merge_conflict {agent} paths={} resolving={resolving}",
            one_line(&paths.join(","), 400)
        ),
        OrchEventKind::BlueprintAccepted {
            source,
            wave,
            agents,
        } => format!(
            "blueprint_accepted {source} wave={wave} agents={}",
            agents
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        OrchEventKind::BlueprintRejected {
            source,
            attempt,
            error,
        } => format!(
            "blueprint_rejected {source} attempt={attempt} error={}",
            one_line(error, 400)
        ),
        OrchEventKind::Notice { level, message } => {
            format!("{:?} {}", level, one_line(message, 1000)).to_lowercase_first()
        }
        OrchEventKind::PauseRequested { source } => format!("pause_requested source={source}"),
        OrchEventKind::RunPaused(summary) => {
            let mut text = format!(
                "run_paused #{} finished={} in_flight={} pending={} tokens={}",
                summary.number,
                list_or_dash(&summary.finished),
                list_or_dash(&summary.in_flight),
                list_or_dash(&summary.pending),
                summary.usage.total()
            );
            text.push_str(&indented_interrupt(summary));
            text
        }
        OrchEventKind::RunResumed => "run_resumed".into(),
        OrchEventKind::StopRequested { source } => format!("stop_requested source={source}"),
        OrchEventKind::TaskRevised {
            revision,
            sha256,
            diff,
            ..
        } => {
            let mut text = format!(
                "task_revised #{revision} sha256={}",
                sha256.get(..16).unwrap_or(sha256)
            );
            for line in diff.lines() {
                text.push_str("\n    ");
                text.push_str(line);
            }
            text
        }
        OrchEventKind::RunFinished {
            status,
            usage,
            failed,
        } => format!(
            "run_finished status={} tokens_in={} tokens_out={} failed={}",
            status.as_str(),
            usage.input_tokens,
            usage.output_tokens,
            list_or_dash(failed)
        ),
        OrchEventKind::Agent {
            agent,
            turn,
            event: AgentEvent::PermissionsSet { policy, .. },
        } => format!(
            "permissions_set {agent} turn={turn} policy={}",
            one_line(policy, 40)
        ),
        OrchEventKind::Agent {
            agent,
            turn,
            event: AgentEvent::PermissionDenied { tool, detail },
        } => format!(
            "permission_denied {agent} turn={turn} tool={} detail={}",
            one_line(tool, 200),
            one_line(detail, 400)
        ),
        OrchEventKind::Agent { .. } => return None,
    };
    Some(line)
}

trait LowercaseFirst {
    fn to_lowercase_first(self) -> String;
}

impl LowercaseFirst for String {
    fn to_lowercase_first(self) -> String {
        let mut chars = self.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => self,
        }
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// The interrupt summary on the lines after a timeline line, each indented four spaces.
pub fn indented_interrupt(summary: &InterruptSummary) -> String {
    let mut text = String::new();
    for line in interrupt_text(summary).lines() {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

/// The interrupt summary as a person reads it (interrupt.log, the timeline pane).
pub fn interrupt_text(summary: &InterruptSummary) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Interrupt #{} of {} (requested by {})",
        summary.number, summary.session, summary.requested_by
    );
    let section = |text: &mut String, title: &str, items: &[String]| {
        let _ = writeln!(
            text,
            "  {title:<10} {}",
            if items.is_empty() {
                "none".into()
            } else {
                items.join(", ")
            }
        );
    };
    section(&mut text, "finished:", &summary.finished);
    section(&mut text, "failed:", &summary.failed);
    section(&mut text, "in flight:", &summary.in_flight);
    section(&mut text, "pending:", &summary.pending);
    if !summary.started.is_empty() {
        section(&mut text, "started:", &summary.started);
    }
    let _ = writeln!(text, "  {:<10} {}", "tokens:", usage_text(&summary.usage));
    for step in &summary.next_steps {
        let _ = writeln!(text, "  next:      {step}");
    }
    text
}

/// ", attempt K" for a retry; nothing for the first try.
fn attempt_text(attempt: u32) -> String {
    if attempt > 1 {
        format!(" (attempt {attempt})")
    } else {
        String::new()
    }
}

/// "passed", "failed (exit 1)", "timed out", "failed (killed by a signal)".
pub(crate) fn gate_verdict(passed: bool, exit_code: Option<i32>, timed_out: bool) -> String {
    match (passed, exit_code, timed_out) {
        (true, _, _) => "passed".into(),
        (false, _, true) => "timed out".into(),
        (false, Some(code), _) => format!("failed (exit {code})"),
        (false, None, _) => "failed (killed by a signal)".into(),
    }
}

/// One review, for people: `writer review 1 by critic failed: 2 of 3 points (tests: none added; …)`.
/// A feature's status, for the agent's log and the story.
pub fn feature_line(
    feature: &str,
    status: crate::config::features::FeatureStatus,
    attempts: u32,
    reason: Option<&str>,
) -> String {
    use crate::config::features::FeatureStatus;
    let feature = one_line(feature, 200);
    match (status, reason) {
        (FeatureStatus::Verifying, _) => {
            format!("feature `{feature}`: verifying (attempt {attempts})")
        }
        (FeatureStatus::Failed, Some(reason)) => format!(
            "feature `{feature}` failed after {attempts} attempt(s): {}",
            one_line(reason, 400)
        ),
        (status, _) => format!(
            "feature `{feature}` {} after {attempts} attempt(s)",
            status.as_str()
        ),
    }
}

pub fn review_line(
    agent: &str,
    reviewer: &str,
    round: u32,
    passed: bool,
    points: &[crate::events::event::ReviewPoint],
) -> String {
    let failed: Vec<String> = points
        .iter()
        .filter(|p| !p.pass)
        .map(|p| {
            if p.note.trim().is_empty() {
                one_line(&p.point, 120)
            } else {
                format!("{}: {}", one_line(&p.point, 120), one_line(&p.note, 200))
            }
        })
        .collect();
    if passed {
        format!(
            "{agent} review {round} by {reviewer} passed ({} point{})",
            points.len(),
            if points.len() == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "{agent} review {round} by {reviewer} failed: {} of {} point{} ({})",
            failed.len(),
            points.len(),
            if points.len() == 1 { "" } else { "s" },
            failed.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_counts_read_short() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_340), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(count(950), "950");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(4_500_000), "4.5M");
    }

    #[test]
    fn the_policy_and_denials_show_in_the_agent_log_and_the_timeline() {
        let set = AgentEvent::PermissionsSet {
            policy: "read-only".into(),
            flags: "--sandbox read-only".into(),
        };
        assert_eq!(
            agent_event_body(&set),
            "perms    read-only (--sandbox read-only)"
        );
        let denied = AgentEvent::PermissionDenied {
            tool: "Bash".into(),
            detail: "python3 -c 1".into(),
        };
        assert_eq!(agent_event_body(&denied), "denied   Bash: python3 -c 1");
        let event = OrchEvent {
            at: SystemTime::UNIX_EPOCH,
            kind: OrchEventKind::Agent {
                agent: "api".into(),
                turn: 2,
                event: denied,
            },
        };
        assert_eq!(
            timeline_line(&event).as_deref(),
            Some("permission_denied api turn=2 tool=Bash detail=python3 -c 1")
        );
    }

    #[test]
    fn one_line_escapes_control_characters_and_newlines() {
        assert_eq!(
            one_line("a\nb\r\n\x1b[31mred", 100),
            "a ⏎ b ⏎ \\u{1b}[31mred"
        );
    }

    /// The char-by-char definition `one_line` must match, run-copying or not.
    fn one_line_reference(text: &str, max: usize) -> String {
        let mut out = String::new();
        let trimmed = text.trim_end();
        let mut consumed = 0;
        for c in trimmed.chars() {
            if out.len() >= max {
                break;
            }
            consumed += c.len_utf8();
            push_escaped(&mut out, c);
        }
        if consumed < trimmed.len() {
            let _ = write!(
                out,
                " … [{} more bytes in the audit store]",
                trimmed.len() - consumed
            );
        }
        out
    }

    #[test]
    fn one_line_matches_its_char_by_char_definition() {
        let texts = [
            "",
            "plain ascii text",
            "tab\there\r\nand a newline\n",
            "é→ü 😀 mixed widths",
            "\u{85}next-line \u{9f} and \u{a0}nbsp \u{b0}deg",
            "\x1b[31mred\x7f del\u{1}",
            "trailing spaces   \n\n",
        ];
        for text in texts {
            for max in 0..text.len() + 3 {
                assert_eq!(
                    one_line(text, max),
                    one_line_reference(text, max),
                    "{text:?} cut at {max}"
                );
            }
        }
    }

    #[test]
    fn the_clock_matches_the_formatted_time() {
        for secs in [0, 59, 3_599, 86_399, 86_400, 1_795_330_204, 4_102_444_799] {
            for nanos in [0, 999_999, 1_000_000, 123_456_789, 999_999_999] {
                let at = UNIX_EPOCH + std::time::Duration::new(secs, nanos);
                let expected = OffsetDateTime::from(at)
                    .format(format_description!(
                        "[hour]:[minute]:[second].[subsecond digits:3]"
                    ))
                    .unwrap();
                assert_eq!(clock(at), expected, "{secs}.{nanos:09}");
            }
        }
        let before_epoch = UNIX_EPOCH - std::time::Duration::from_millis(1500);
        assert_eq!(clock(before_epoch), "23:59:58.500");
    }

    #[test]
    fn one_line_cuts_long_text_on_a_char_boundary() {
        let text = "é".repeat(100);
        let line = one_line(&text, 11);
        assert!(line.starts_with("éééééé"), "{line}");
        assert!(
            line.ends_with("[188 more bytes in the audit store]"),
            "{line}"
        );
    }
}
