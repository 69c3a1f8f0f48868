//! Reviews: after an agent's gates pass, each of its review steps (`review` in
//! orch.kdl: the agent's own, else its group's, else the file's) asks a reviewer, a
//! read-only turn on any backend and model, to judge the agent's task and diff.
//!
//! The reviewer answers a verdict, `{"verdict": "pass" | "fail", "points": [{"point",
//! "pass", "note"}]}`, validated like a blueprint: an invalid one gets one repair turn
//! on the reviewer's conversation. A failed verdict goes back to the agent as a fix turn
//! quoting the failed points; its gates run again, then the reviewer looks again, up to
//! the step's `max-rounds` reviews. A reviewer that still fails the work then, or gives
//! no valid verdict, pauses the run: the agent needs the user (`needs-you`), and `launch
//! ctl resume` has the reviewer look again (at what the user may have changed).
//!
//! The reviewer's turns are turns of the reviewed agent (tagged `review`): they are
//! paused, counted and budgeted with it, and appear in its log and the store.

use serde_json::Value;

use crate::agent::backend::{Expects, TurnKind};
use crate::agent::event::Usage;
use crate::agent::permissions::Permissions;
use crate::config::agents::ReviewSpec;
use crate::events::event::{NoticeLevel, OrchEventKind, ReviewPoint};
use crate::orchestrator::agents::AgentJob;
use crate::orchestrator::blueprint::candidates;
use crate::orchestrator::lifecycle::AgentLifecycle;
use crate::orchestrator::turn::{Conversation, RunContext, TurnError, TurnPurpose};

/// Bytes of the agent's patch a reviewer is shown; the rest it reads in the worktree.
const PATCH_LIMIT: usize = 48 * 1024;
/// Characters of the agent's task and answer quoted to the reviewer.
const TASK_LIMIT: usize = 6000;
const ANSWER_LIMIT: usize = 2000;

/// A reviewer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub passed: bool,
    pub points: Vec<ReviewPoint>,
}

impl Verdict {
    fn failed(&self) -> impl Iterator<Item = &ReviewPoint> {
        self.points.iter().filter(|p| !p.pass)
    }
}

/// Reads a verdict out of a reviewer's answer (bare JSON, a fenced block, or the
/// outermost braces), or says what is wrong with it.
pub(crate) fn parse_verdict(text: &str) -> Result<Verdict, String> {
    let mut first_error = None;
    let mut value = None;
    for candidate in candidates(text) {
        match serde_json::from_str::<Value>(candidate) {
            Ok(v) if v.is_object() => {
                value = Some(v);
                break;
            }
            Ok(_) => {
                first_error.get_or_insert_with(|| "the answer is JSON but not an object".into());
            }
            Err(e) => {
                first_error.get_or_insert_with(|| format!("no JSON object found ({e})"));
            }
        }
    }
    let value =
        value.ok_or_else(|| first_error.unwrap_or_else(|| "the answer is empty".to_owned()))?;
    let passed = match value.get("verdict").and_then(Value::as_str).map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("pass") => true,
        Some(v) if v.eq_ignore_ascii_case("fail") => false,
        Some(other) => {
            return Err(format!(
                "`verdict` must be \"pass\" or \"fail\", found {:?}",
                other
            ));
        }
        None => return Err("no string `verdict` found".into()),
    };
    let items = value
        .get("points")
        .and_then(Value::as_array)
        .ok_or("no `points` list found")?;
    let mut points = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let point = item
            .get("point")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("points[{i}] has no string `point`"))?;
        let pass = item
            .get("pass")
            .and_then(Value::as_bool)
            .ok_or_else(|| format!("points[{i}] has no #true/#false `pass`"))?;
        let note = match item.get("note") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(note)) => note.trim().to_owned(),
            Some(_) => return Err(format!("`note` of points[{i}] must be a string")),
        };
        points.push(ReviewPoint {
            point: point.to_owned(),
            pass,
            note,
        });
    }
    let first_failed = points.iter().find(|p| !p.pass).map(|p| p.point.clone());
    match (passed, first_failed) {
        (true, Some(point)) => Err(format!("the verdict is \"pass\" but point {point:?} fails")),
        (false, None) => Err(
            "the verdict is \"fail\" but no point fails: name the failed points with \"pass\": false"
                .into(),
        ),
        _ => Ok(Verdict { passed, points }),
    }
}

/// Runs the agent's review steps in order, with fix turns; returns the agent's final
/// answer (its last fix turn's, if any).
pub(crate) async fn review(
    shared: &RunContext,
    job: &mut AgentJob,
    answer: String,
) -> Result<String, TurnError> {
    let c = &job.conversation;
    let steps = shared.feature_reviews(
        &c.id,
        shared
            .config
            .reviews_for(&c.id, c.kind, &c.backend, &c.group),
    );
    let mut answer = answer;
    for step in steps {
        answer = review_step(shared, job, &step, answer).await?;
    }
    Ok(answer)
}

async fn review_step(
    shared: &RunContext,
    job: &mut AgentJob,
    step: &ReviewSpec,
    mut answer: String,
) -> Result<String, TurnError> {
    let id = job.conversation.id.clone();
    let mut reviewer = reviewer_conversation(&job.conversation, step);
    let task = job
        .conversation
        .history
        .first()
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let mut round = 0;
    // Rounds since the run last asked the user.
    let mut since_asked = 0;
    loop {
        round += 1;
        since_asked += 1;
        shared.link.progress(
            &id,
            AgentLifecycle::Reviewing {
                round,
                reviewer: step.name.clone(),
            },
        );
        let work = shared.work_for_review(&job.conversation, &answer).await?;
        let prompt = review_prompt(&job.conversation, step, &task, &answer, &work, round);
        let verdict = match ask(shared, job, &mut reviewer, &prompt).await? {
            Ok(verdict) => verdict,
            Err(error) => {
                let reason = format!(
                    "reviewer `{}` gave no valid verdict after one repair turn: {error}",
                    step.name
                );
                shared.still_failing(&id, reason).await?;
                since_asked = 0;
                continue;
            }
        };
        shared
            .bus
            .publish(OrchEventKind::ReviewFinished {
                agent: id.clone(),
                reviewer: step.name.clone(),
                backend: reviewer.backend.clone(),
                model: reviewer.model.clone(),
                round,
                passed: verdict.passed,
                points: verdict.points.clone(),
            })
            .await;
        if verdict.passed {
            return Ok(answer);
        }
        if since_asked >= step.max_rounds {
            let failed: Vec<&str> = verdict.failed().map(|p| p.point.as_str()).collect();
            let reason = format!(
                "reviewer `{}` still fails its work after {} round(s): {}",
                step.name,
                step.max_rounds,
                failed.join("; ")
            );
            shared.still_failing(&id, reason).await?;
            since_asked = 0;
            continue;
        }
        let mut prompt = fix_prompt(step, &verdict, since_asked);
        let reason = format!("reviewer `{}` failed its work", step.name);
        let escalated = crate::orchestrator::gates::escalate(shared, job, &reason).await;
        if escalated {
            prompt = crate::orchestrator::gates::take_over_prompt(job, &prompt);
        }
        let fixed = shared
            .run_turn(
                &mut job.conversation,
                if escalated {
                    TurnKind::Plan
                } else {
                    TurnKind::FollowUp
                },
                Expects::Text,
                TurnPurpose::Repair,
                &prompt,
                &["review-fix"],
            )
            .await?;
        job.conversation.fixes += 1;
        answer = fixed.response;
        // The fix must still pass the gates before the reviewer looks again.
        answer = crate::orchestrator::gates::recheck(shared, job, answer).await?;
    }
}

/// The reviewer's conversation: the reviewed agent's id (its turns are the agent's),
/// the step's backend and model, read-only, in the agent's worktree.
fn reviewer_conversation(agent: &Conversation, step: &ReviewSpec) -> Conversation {
    Conversation {
        id: agent.id.clone(),
        role: format!("reviewer {}", step.name),
        kind: agent.kind,
        group: agent.group.clone(),
        wave: agent.wave,
        backend: step
            .backend
            .clone()
            .unwrap_or_else(|| agent.backend.clone()),
        model: step.model.clone(),
        fallback: Vec::new(),
        tags: vec!["review".to_owned()],
        resume: None,
        history: Vec::new(),
        turns: agent.turns,
        usage: Usage::default(),
        cost_micros: Some(0),
        worktree: agent.worktree.clone(),
        permissions: Some(Permissions::ReadOnly),
        failures: 0,
        fixes: 0,
    }
}

/// One review turn, and one repair turn if its verdict is invalid. The outer error
/// ends the agent (stopped, or the reviewer's backend failed); the inner one is a
/// verdict still invalid after the repair.
async fn ask(
    shared: &RunContext,
    job: &mut AgentJob,
    reviewer: &mut Conversation,
    prompt: &str,
) -> Result<Result<Verdict, String>, TurnError> {
    let kind = if reviewer.history.is_empty() {
        TurnKind::Plan
    } else {
        TurnKind::FollowUp
    };
    let text = reviewer_turn(
        shared,
        job,
        reviewer,
        kind,
        TurnPurpose::Planned,
        prompt,
        &[],
    )
    .await?;
    let error = match parse_verdict(&text) {
        Ok(verdict) => return Ok(Ok(verdict)),
        Err(error) => error,
    };
    shared
        .notice(
            NoticeLevel::Warning,
            format!(
                "the verdict of `{}`'s {} is not valid: {error}; it gets one repair turn",
                job.conversation.id, reviewer.role
            ),
        )
        .await;
    let text = reviewer_turn(
        shared,
        job,
        reviewer,
        TurnKind::FollowUp,
        TurnPurpose::Repair,
        &repair_prompt(&error),
        &["repair"],
    )
    .await?;
    Ok(parse_verdict(&text))
}

/// A turn of the reviewer: numbered after the agent's turns, its usage and cost the
/// agent's.
async fn reviewer_turn(
    shared: &RunContext,
    job: &mut AgentJob,
    reviewer: &mut Conversation,
    kind: TurnKind,
    purpose: TurnPurpose,
    prompt: &str,
    tags: &[&str],
) -> Result<String, TurnError> {
    let agent = &mut job.conversation;
    reviewer.turns = agent.turns;
    reviewer.usage = Usage::default();
    reviewer.cost_micros = Some(0);
    let result = shared
        .run_turn(reviewer, kind, Expects::Verdict, purpose, prompt, tags)
        .await;
    agent.turns = reviewer.turns;
    agent.usage.add(&reviewer.usage);
    agent.cost_micros = match (agent.cost_micros, reviewer.cost_micros) {
        (Some(total), Some(cost)) => Some(total + cost),
        _ => None,
    };
    Ok(result?.response)
}

/// What the reviewer is shown of the agent's work.
pub(crate) struct WorkForReview {
    /// `git diff --stat` of its work since its base, or why there is none.
    pub diffstat: String,
    pub patch: String,
    pub files: usize,
}

fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… {} more bytes: read the files in the working directory]",
        &text[..end],
        text.len() - end
    )
}

fn review_prompt(
    agent: &Conversation,
    step: &ReviewSpec,
    task: &str,
    answer: &str,
    work: &WorkForReview,
    round: u32,
) -> String {
    let mut out = if round == 1 {
        format!(
            "You review the work of agent `{}` ({}). Its working directory is yours: read its files and run read-only commands (tests, linters) as you need, but change nothing.\n\n## Its task\n{}\n\n## What it says it did\n{}\n",
            agent.id,
            agent.role,
            bounded(task.trim(), TASK_LIMIT),
            bounded(answer.trim(), ANSWER_LIMIT)
        )
    } else {
        format!(
            "Agent `{}` worked on the points you failed (review {round}). What it says it changed:\n{}\n",
            agent.id,
            bounded(answer.trim(), ANSWER_LIMIT)
        )
    };
    out.push_str(&format!(
        "\n## Its changes ({} file{})\n{}\n",
        work.files,
        if work.files == 1 { "" } else { "s" },
        work.diffstat.trim_end()
    ));
    if !work.patch.is_empty() {
        out.push_str(&format!(
            "\n```diff\n{}\n```\n",
            bounded(work.patch.trim_end(), PATCH_LIMIT)
        ));
    }
    out.push_str("\n## What to check\n");
    if step.instructions.is_empty() {
        out.push_str("Does the change do what the task asks, completely and correctly? Is it tested? Does it break or leave out anything the task implies?\n");
    } else {
        out.push_str(&format!("{}\n", step.instructions));
    }
    out.push_str(VERDICT_FORMAT);
    out
}

const VERDICT_FORMAT: &str = "\nAnswer with only this JSON object, no other text:\n{\"verdict\": \"pass\" or \"fail\", \"points\": [{\"point\": \"<what you checked>\", \"pass\": true or false, \"note\": \"<why; for a failed point, what to change>\"}]}\nThe verdict is \"fail\" exactly when at least one point fails.\n";

fn repair_prompt(error: &str) -> String {
    format!("Your verdict could not be read: {error}.{VERDICT_FORMAT}")
}

/// The agent's fix turn: the reviewer's failed points.
fn fix_prompt(step: &ReviewSpec, verdict: &Verdict, round: u32) -> String {
    let mut out = format!(
        "A reviewer ({}) does not accept your work yet (review {round} of {}). The points it failed:\n",
        step.name, step.max_rounds
    );
    for point in verdict.failed() {
        if point.note.is_empty() {
            out.push_str(&format!("- {}\n", point.point));
        } else {
            out.push_str(&format!("- {}: {}\n", point.point, point.note));
        }
    }
    out.push_str("\nFix your work so that these points pass, then answer with one sentence saying what you changed. orch runs your gates and the review again when you are done.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_verdict_bare_or_fenced() {
        let v = parse_verdict(r#"{"verdict":"pass","points":[{"point":"tests","pass":true}]}"#)
            .unwrap();
        assert!(v.passed);
        assert_eq!(v.points[0].note, "");
        let v = parse_verdict(
            "Here it is:\n```json\n{\"verdict\": \"FAIL\", \"points\": [{\"point\": \"tests\", \"pass\": false, \"note\": \"none added\"}, {\"point\": \"api\", \"pass\": true}]}\n```",
        )
        .unwrap();
        assert!(!v.passed);
        assert_eq!(v.failed().count(), 1);
        assert_eq!(v.points[0].note, "none added");
    }

    #[test]
    fn rejects_malformed_and_inconsistent_verdicts() {
        let cases = [
            ("looks good to me", "no JSON object"),
            (
                r#"{"verdict":"maybe","points":[]}"#,
                "must be \"pass\" or \"fail\"",
            ),
            (r#"{"points":[]}"#, "no string `verdict`"),
            (r#"{"verdict":"pass"}"#, "no `points` list"),
            (
                r#"{"verdict":"pass","points":[{"pass":true}]}"#,
                "points[0] has no string `point`",
            ),
            (
                r#"{"verdict":"pass","points":[{"point":"x","pass":"yes"}]}"#,
                "no #true/#false `pass`",
            ),
            (
                r#"{"verdict":"pass","points":[{"point":"x","pass":false}]}"#,
                "but point \"x\" fails",
            ),
            (
                r#"{"verdict":"fail","points":[{"point":"x","pass":true}]}"#,
                "no point fails",
            ),
            (r#"[1,2]"#, "not an object"),
        ];
        for (text, wanted) in cases {
            let error = parse_verdict(text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn the_fix_prompt_quotes_the_failed_points_only() {
        let step = ReviewSpec {
            name: "critic".into(),
            backend: Some("claude".into()),
            model: None,
            instructions: String::new(),
            max_rounds: 3,
        };
        let verdict = parse_verdict(
            r#"{"verdict":"fail","points":[{"point":"tests","pass":false,"note":"add one for empty input"},{"point":"style","pass":true}]}"#,
        )
        .unwrap();
        let prompt = fix_prompt(&step, &verdict, 1);
        assert!(prompt.contains("(critic)"), "{prompt}");
        assert!(prompt.contains("review 1 of 3"), "{prompt}");
        assert!(
            prompt.contains("- tests: add one for empty input"),
            "{prompt}"
        );
        assert!(!prompt.contains("style"), "{prompt}");
    }

    #[test]
    fn a_long_patch_is_cut_on_a_character_boundary() {
        let text = "é".repeat(100);
        let cut = bounded(&text, 51);
        assert!(cut.starts_with(&"é".repeat(25)));
        assert!(cut.contains("more bytes"));
    }
}
