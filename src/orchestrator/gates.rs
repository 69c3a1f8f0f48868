//! Gates: shell commands that decide whether an agent's work is done.
//!
//! After an agent's final turn, each of its gates (`--gate`, the file's top-level
//! `gate` nodes, its own) runs in its worktree, in order, until one fails. A failure
//! gets a fix turn on the agent's own conversation that quotes the command, its exit
//! code and the end of its output; then the gates run again. After the last allowed run
//! (the largest `max-attempts` of its gates) still fails, the agent fails, naming the
//! gate. Every run is a `gate_finished` event (agent log, timeline, audit store).
//!
//! Then the agent's work is merged into the run branch; when that merge brought other
//! agents' work in, the gates run again on the result in the agent's worktree, and a
//! failure there is this agent's, with the same fix turns (and the fix merged in turn).
//!
//! A gate runs as `sh -c COMMAND` (the command is one argument, never pasted into
//! another command line) in its own process group, with the run's environment; at its
//! time limit, or when the run stops, the whole group is killed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::agent::backend::{Expects, TurnKind};
use crate::config::agents::GateSpec;
use crate::events::event::OrchEventKind;
use crate::orchestrator::agents::AgentJob;
use crate::orchestrator::lifecycle::AgentLifecycle;
use crate::orchestrator::turn::{RunContext, TurnError, TurnPurpose};

/// Bytes of a gate's output kept (its end: that is where a test run says what failed).
const OUTPUT_TAIL: usize = 8 * 1024;

/// How one gate run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GateRun {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration: Duration,
    pub output_tail: String,
}

impl GateRun {
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    fn verdict(&self) -> String {
        match (self.timed_out, self.exit_code) {
            (true, _) => format!("timed out after {:.0} s", self.duration.as_secs_f64()),
            (false, Some(code)) => format!("exit code {code}"),
            (false, None) => "killed by a signal".into(),
        }
    }
}

/// How many times an agent's work is integrated while the gates on the integrated tip
/// keep asking for fixes.
const MAX_INTEGRATIONS: u32 = 3;

/// The agent's gates, then its integration into the run branch; when the merge brought
/// other agents' work in, the gates run again on that integrated tip (in the agent's
/// worktree, which the merge left there), a failure there is this agent's, with the same
/// fix turns, and the fix is integrated in turn. Returns the agent's final answer.
pub(crate) async fn check_and_integrate(
    shared: &RunContext,
    job: &mut AgentJob,
    answer: String,
) -> Result<String, TurnError> {
    shared.feature_verifying(&job.conversation).await;
    let (answer, _) = check(shared, job, answer, false).await?;
    let mut answer = crate::orchestrator::review::review(shared, job, answer).await?;
    for _ in 0..MAX_INTEGRATIONS {
        if !shared.integrate(&mut job.conversation, &answer).await? {
            return Ok(answer);
        }
        let (checked, fixed) = check(shared, job, answer, true).await?;
        answer = checked;
        if !fixed {
            return Ok(answer);
        }
    }
    Err(TurnError::Failed(format!(
        "the gates on the integrated run branch still needed fixes after {MAX_INTEGRATIONS} integrations"
    )))
}

/// The gates again after a reviewer's fix turn; returns the agent's final answer.
pub(crate) async fn recheck(
    shared: &RunContext,
    job: &mut AgentJob,
    answer: String,
) -> Result<String, TurnError> {
    check(shared, job, answer, false)
        .await
        .map(|(answer, _)| answer)
}

/// Runs the agent's gates, with fix turns; returns the agent's final answer (the last
/// fix turn's, if there was one) and whether there was a fix turn. `integrated`: the
/// worktree holds the run branch's tip after a merge that brought others' work in; a
/// gate that the fix turns cannot mend there pauses the run for the user (the work of
/// several agents meets there), who lets the gates run again with `ctl resume`.
async fn check(
    shared: &RunContext,
    job: &mut AgentJob,
    answer: String,
    integrated: bool,
) -> Result<(String, bool), TurnError> {
    let conversation = &job.conversation;
    let gates = shared.config.gates_for(
        &conversation.id,
        conversation.kind,
        &conversation.backend,
        &conversation.group,
    );
    let Some(max_runs) = gates.iter().map(|g| g.max_attempts).max() else {
        return Ok((answer, false));
    };
    let mut answer = answer;
    let mut fixed = false;
    let mut run = 0;
    loop {
        run += 1;
        let Some((gate, result)) = run_all(shared, job, &gates, run).await? else {
            return Ok((answer, fixed));
        };
        if run % max_runs == 0 {
            let reason = format!(
                "gate `{}` still fails{} after {max_runs} run(s) ({}): {}",
                gate.command,
                if integrated {
                    " on the integrated run branch"
                } else {
                    ""
                },
                result.verdict(),
                last_lines(&result.output_tail, 5)
            );
            if !integrated {
                return Err(TurnError::Failed(reason));
            }
            shared.still_failing(&job.conversation.id, reason).await?;
            continue;
        }
        let mut prompt = fix_prompt(&gate, &result, run % max_runs, max_runs);
        let escalated = !integrated && escalate(shared, job, "its gate failed").await;
        if escalated {
            prompt = take_over_prompt(job, &prompt);
        }
        if integrated {
            prompt.insert_str(
                0,
                "Your work was merged into the run branch together with other agents' work, and the result does not pass its gate. Your working directory now holds that merged state.\n\n",
            );
        }
        let turn = shared
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
                &["gate-fix"],
            )
            .await?;
        job.conversation.fixes += 1;
        answer = turn.response;
        fixed = true;
    }
}

/// `routing "fast-first"`: an agent on the fast tier whose check failed (`why`) moves
/// to the strong tier, on a new conversation; says so. False when it is not on the
/// fast tier of such a group.
pub(crate) async fn escalate(shared: &RunContext, job: &mut AgentJob, why: &str) -> bool {
    let conversation = &mut job.conversation;
    let Some(group) = shared
        .config
        .agents
        .groups
        .iter()
        .find(|g| g.name == conversation.group)
    else {
        return false;
    };
    if group.tiers.routing != crate::config::agents::Routing::FastFirst
        || !conversation.tags.iter().any(|t| t == "tier:fast")
    {
        return false;
    }
    let from = conversation
        .model
        .clone()
        .unwrap_or_else(|| conversation.backend.clone());
    crate::orchestrator::jobs::set_tier(conversation, &group.tiers, false, &shared.config.backend);
    conversation.resume = None;
    conversation.history.clear();
    let to = conversation
        .model
        .clone()
        .or_else(|| shared.config.model.clone())
        .unwrap_or_else(|| conversation.backend.clone());
    shared
        .bus
        .publish(OrchEventKind::Notice {
            level: crate::events::event::NoticeLevel::Info,
            message: format!(
                "`{}` moves from the fast tier ({from}) to the strong tier ({to}) on a new conversation: {why} (routing fast-first)",
                conversation.id
            ),
        })
        .await;
    true
}

/// The first prompt of the strong tier's conversation that takes over an agent's work:
/// its assignment as first given, then what failed.
pub(crate) fn take_over_prompt(job: &AgentJob, failure: &str) -> String {
    let assignment = job.turns.first().map(|t| t.prompt.as_str()).unwrap_or("");
    format!(
        "{}\n\n## You take over\nA faster model worked on this assignment before you, in this working directory, and its work did not pass. Make it pass.\n\n{failure}",
        assignment.trim_end()
    )
}

/// Runs every gate in order; the first that fails, with how, or `None` when all pass.
async fn run_all(
    shared: &RunContext,
    job: &AgentJob,
    gates: &[GateSpec],
    run: u32,
) -> Result<Option<(GateSpec, GateRun)>, TurnError> {
    let cwd = shared.workdir(&job.conversation);
    shared
        .link
        .progress(&job.conversation.id, AgentLifecycle::Gating { run });
    for gate in gates {
        let result = tokio::select! {
            result = run_gate(&gate.command, &cwd, Duration::from_secs(gate.timeout_s)) => result,
            _ = shared.stopped() => return Err(TurnError::Stopped),
        };
        let result = match result {
            Ok(result) => result,
            Err(err) => {
                return Err(TurnError::Failed(format!(
                    "gate `{}` could not be started in {}: {err}",
                    gate.command,
                    cwd.display()
                )));
            }
        };
        shared
            .bus
            .publish(OrchEventKind::GateFinished {
                agent: job.conversation.id.clone(),
                command: gate.command.clone(),
                attempt: run,
                passed: result.passed(),
                exit_code: result.exit_code,
                timed_out: result.timed_out,
                duration_ms: result.duration.as_millis() as u64,
                output_tail: result.output_tail.clone(),
            })
            .await;
        if !result.passed() {
            return Ok(Some((gate.clone(), result)));
        }
    }
    Ok(None)
}

/// The fix turn's prompt: the command, how it failed and the end of its output.
fn fix_prompt(gate: &GateSpec, result: &GateRun, run: u32, max_runs: u32) -> String {
    format!(
        "Your work does not pass its gate yet (run {run} of {max_runs}).\n\nThe command `{}` ended with {} in your working directory. The end of its output:\n\n```\n{}\n```\n\nFix your work so that this command passes, then answer with one sentence saying what you changed. orch runs the gate again when you are done.\n",
        gate.command,
        result.verdict(),
        result.output_tail.trim_end()
    )
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" ⏎ ")
}

/// Runs `sh -c command` in `cwd`: its exit, whether it hit `limit`, and the end of its
/// output (stdout, then stderr). The whole process group is killed at the limit, and
/// whatever the command left running in it is killed once it exits.
pub(crate) async fn run_gate(
    command: &str,
    cwd: &Path,
    limit: Duration,
) -> std::io::Result<GateRun> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let out = child.stdout.take().map(|s| tokio::spawn(tail(s)));
    let err = child.stderr.take().map(|s| tokio::spawn(tail(s)));
    let (status, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            (child.wait().await.ok(), true)
        }
    };
    let duration = started.elapsed();
    if let Some(pgid) = pgid {
        // Processes the command left behind in its group (`cmd &`).
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let mut output = Vec::new();
    for task in [out, err].into_iter().flatten() {
        // Bounded: a process outside the group may still hold the pipe open.
        if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(2), task).await {
            output.extend_from_slice(&bytes);
        }
    }
    let start = output.len().saturating_sub(OUTPUT_TAIL);
    Ok(GateRun {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        duration,
        output_tail: String::from_utf8_lossy(&output[start..]).into_owned(),
    })
}

/// Reads a pipe to its end, keeping its last `OUTPUT_TAIL` bytes.
async fn tail(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut kept_now = Vec::new();
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept_now.extend_from_slice(&buf[..n]);
        if kept_now.len() > 2 * OUTPUT_TAIL {
            kept_now.drain(..kept_now.len() - OUTPUT_TAIL);
        }
    }
    let start = kept_now.len().saturating_sub(OUTPUT_TAIL);
    kept_now.split_off(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_passing_and_a_failing_gate_with_the_tail_of_their_output() {
        let dir = tempfile::tempdir().unwrap();
        let ok = run_gate("echo fine; true", dir.path(), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(ok.passed());
        assert_eq!(ok.output_tail, "fine\n");
        let bad = run_gate(
            "seq 1 100000; echo broken >&2; exit 3",
            dir.path(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert!(!bad.passed());
        assert_eq!(bad.exit_code, Some(3));
        assert!(bad.output_tail.len() <= OUTPUT_TAIL);
        assert!(bad.output_tail.ends_with("broken\n"), "{}", bad.output_tail);
        assert!(bad.output_tail.contains("100000\n"));
    }

    #[tokio::test]
    async fn a_gate_past_its_limit_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let command = format!("sleep 60 & echo $! > '{}'; wait", pid_file.display());
        let run = run_gate(&command, dir.path(), Duration::from_millis(500))
            .await
            .unwrap();
        assert!(run.timed_out && !run.passed());
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed (SIGKILL to its group, which the kernel delivers on its own time), so
        // soon gone, or a zombie until init reaps it.
        let dead = |state: &str| {
            state.is_empty()
                || state
                    .rsplit(')')
                    .next()
                    .unwrap_or_default()
                    .trim_start()
                    .starts_with(['Z', 'X'])
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut state;
        loop {
            state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            if dead(&state) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dead(&state), "{state}");
    }

    #[test]
    fn the_fix_prompt_quotes_the_command_its_exit_and_output() {
        let gate = GateSpec::new("cargo test");
        let run = GateRun {
            exit_code: Some(101),
            timed_out: false,
            duration: Duration::from_secs(2),
            output_tail: "test parser ... FAILED\n".into(),
        };
        let prompt = fix_prompt(&gate, &run, 1, 3);
        assert!(prompt.contains("`cargo test`"));
        assert!(prompt.contains("exit code 101"));
        assert!(prompt.contains("test parser ... FAILED"));
        assert!(prompt.contains("run 1 of 3"));
    }
}
