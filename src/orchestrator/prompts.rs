//! Every prompt the orchestrator sends, built by pure functions from run data.
//!
//! Owns wording and structure only: what earlier agents said, where their logs are,
//! the blueprint format, repair requests. Does not decide which turn runs when.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::agents::AgentSpec;

/// Longest output of an earlier agent quoted in a prompt; the rest is in its log.
const MAX_CONTEXT_CHARS: usize = 6000;

/// Run-wide facts every prompt may use.
pub struct PromptContext<'a> {
    pub task: &'a str,
    pub project_root: &'a Path,
    pub concise: bool,
    /// What the earlier run of a `launch continue` did, for the first agent's prompt.
    pub earlier: Option<&'a str>,
}

/// The final answer of an earlier agent, quoted as context.
pub struct PriorOutput<'a> {
    pub agent: &'a str,
    pub role: &'a str,
    pub text: &'a str,
    pub log: PathBuf,
}

fn quote(out: &mut String, prior: &PriorOutput) {
    let text = prior.text.trim();
    let _ = writeln!(out, "### {} ({})", prior.agent, prior.role);
    if text.chars().count() > MAX_CONTEXT_CHARS {
        let cut: String = text.chars().take(MAX_CONTEXT_CHARS).collect();
        let _ = writeln!(
            out,
            "{cut}\n[… truncated; the full text is in {}]",
            prior.log.display()
        );
    } else {
        let _ = writeln!(out, "{text}");
    }
    out.push('\n');
}

fn header(ctx: &PromptContext, id: &str, role: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "You are the {role} (agent `{id}`) in a squad of AI coding agents working in the repository at {}.\n",
        ctx.project_root.display()
    );
    let _ = writeln!(out, "## Task from the user\n{}\n", ctx.task.trim());
    out
}

fn concise_suffix(ctx: &PromptContext, out: &mut String) {
    if ctx.concise {
        out.push_str("\nAnswer in one sentence.\n");
    }
}

pub fn core_plan(ctx: &PromptContext, spec: &AgentSpec, prior: &[PriorOutput]) -> String {
    let mut out = header(ctx, &spec.id, &spec.role);
    // The first agent (the planner) is told what the run it follows up did.
    if let (Some(earlier), true) = (ctx.earlier, prior.is_empty()) {
        out.push_str(earlier.trim());
        out.push_str("\n\n");
    }
    if !prior.is_empty() {
        out.push_str("## What the agents before you concluded\n");
        for p in prior {
            quote(&mut out, p);
        }
    }
    let _ = writeln!(out, "## Your turn\n{}", spec.plan_prompt.trim());
    concise_suffix(ctx, &mut out);
    out
}

pub fn core_follow_up(spec: &AgentSpec) -> String {
    let mut out = spec.follow_up_prompt.trim().to_owned();
    out.push('\n');
    if !spec.rules.is_empty() {
        out.push_str("\nRules:\n");
        for rule in &spec.rules {
            let _ = writeln!(out, "- {}", rule.trim());
        }
    }
    if let Some(schema) = &spec.follow_up_schema {
        let _ = writeln!(
            out,
            "\nAnswer with JSON only, matching this JSON schema:\n{}",
            serde_json::to_string_pretty(schema).unwrap_or_default()
        );
    }
    out
}

/// How to write a blueprint; appended to the blueprint agent's answer turn.
pub fn blueprint_format(max_agents: u32, parallel: bool) -> String {
    let mut out = String::from(
        "\nAnswer with the blueprint as JSON only, in this exact shape:\n\
         {\"agents\":[{\"id\":\"api\",\"role\":\"API engineer\",\"prompt\":\"what this agent must do\",\"dependsOn\":[]},\n\
         {\"id\":\"tests\",\"role\":\"Test engineer\",\"prompt\":\"...\",\"dependsOn\":[\"api\"]}]}\n\
         - ids: lowercase letters, digits, `-` and `_`, unique, not used by an earlier agent\n\
         - dependsOn: ids of agents in this blueprint that must finish first; no cycles\n",
    );
    let _ = writeln!(
        out,
        "- at most {max_agents} agents; agents without dependencies run in parallel"
    );
    if parallel {
        let _ = writeln!(
            out,
            "- parallel mode: define {} independent specialists with empty dependsOn",
            max_agents.min(4)
        );
    }
    out
}

/// What the builder is told of tiers when its group routes `auto`.
pub const AUTO_TIER_NOTE: &str = "- tier (optional, per agent): \"fast\" for well-specified, mechanical work that a fast, cheaper model does well; \"strong\" (the default) for design and tricky changes\n";

/// `AUTO_TIER_NOTE` when the group routes `auto`.
pub fn tier_note(routing: crate::config::agents::Routing) -> &'static str {
    match routing {
        crate::config::agents::Routing::Auto => AUTO_TIER_NOTE,
        _ => "",
    }
}

pub fn repair(error: &str) -> String {
    format!(
        "Your blueprint was rejected: {error}.\n\
         Reply with the corrected blueprint as JSON only, nothing else."
    )
}

/// Plan turn of a specialist from a blueprint (or a continuation/autonomous wave).
pub fn specialist_plan(
    ctx: &PromptContext,
    id: &str,
    role: &str,
    assignment: &str,
    core_logs: &[(String, PathBuf)],
    prior: &[PriorOutput],
    handoff_notes: &[(String, String)],
) -> String {
    let mut out = header(ctx, id, role);
    let _ = writeln!(out, "## Your assignment\n{}\n", assignment.trim());
    if !core_logs.is_empty() {
        out.push_str("## Logs of the planning agents (read them for the plan and research)\n");
        for (agent, log) in core_logs {
            let _ = writeln!(out, "- {agent}: {}", log.display());
        }
        out.push('\n');
    }
    if !prior.is_empty() {
        out.push_str("## Work that finished before yours\n");
        for p in prior {
            quote(&mut out, p);
        }
    }
    if !handoff_notes.is_empty() {
        out.push_str("## Handoff notes from the previous wave\n");
        for (from, note) in handoff_notes {
            let _ = writeln!(out, "- from {from}: {}", note.trim());
        }
        out.push('\n');
    }
    out.push_str("## Your turn\nOutline how you will carry out your assignment: the files you will change and how you will check your work. Do not change files yet.\n");
    concise_suffix(ctx, &mut out);
    out
}

pub const HANDOFF_MARKER: &str = "HANDOFF NOTE:";

pub fn specialist_follow_up(relay: bool) -> String {
    let mut out = String::from(
        "Now carry out your assignment in the repository. Then report what you changed, \
         which commands you ran to check it, and anything left undone.\n",
    );
    if relay {
        let _ = writeln!(
            out,
            "End your answer with a line starting with `{HANDOFF_MARKER}` followed by what the next wave must know."
        );
    }
    out
}

/// The handoff note at the end of an answer, if the agent wrote one.
pub fn extract_handoff_note(answer: &str) -> Option<String> {
    let at = answer.rfind(HANDOFF_MARKER)?;
    let note = answer[at + HANDOFF_MARKER.len()..].trim();
    (!note.is_empty()).then(|| note.to_owned())
}

pub fn continuation(chain: &[String], core_logs: &[(String, PathBuf)], max: u32) -> String {
    let mut out = format!(
        "Your blueprint was a straight chain ({}), and it has finished. Propose up to {max} \
         continuation implementers that carry the work further. Their prompts must name the \
         chain they continue and point to these logs:\n",
        chain.join(" → ")
    );
    for (agent, log) in core_logs {
        let _ = writeln!(out, "- {agent}: {}", log.display());
    }
    out.push_str(&blueprint_format(max, false));
    out.push_str("Answer {\"agents\":[]} if nothing is left to do.\n");
    out
}

/// The autonomous orchestrator's prompt after wave `wave`. `revised_from`: the task's
/// text when the last wave was planned, if the task file changed since.
pub fn autonomous(
    ctx: &PromptContext,
    wave: u32,
    outputs: &[PriorOutput],
    max_agents: u32,
    relay: bool,
    revised_from: Option<&str>,
) -> String {
    let mut out = header(ctx, "autonomous-orchestrator", "Autonomous orchestrator");
    if let Some(before) = revised_from {
        let _ = writeln!(
            out,
            "## The task changed while the squad worked
The user edited the task file. Before, it said:

{}

Now it says what \"Task from the user\" above says. Plan for the task as it is now: keep what the earlier waves did that still serves it, and do not redo what it no longer asks for.\n",
            before.trim()
        );
    }
    let _ = writeln!(
        out,
        "## Wave {wave} has finished. What its agents reported\n"
    );
    for p in outputs {
        let _ = writeln!(out, "(log: {})", p.log.display());
        quote(&mut out, p);
    }
    out.push_str(
        "## Your turn\nDecide whether another wave of builder agents is needed to finish the task. \
         If it is, define it (implementers only: no planners or researchers). If the task is done, \
         answer {\"agents\":[]}.\n",
    );
    if relay {
        out.push_str("This is a relay: the next wave receives the handoff notes of this one.\n");
    }
    out.push_str(&blueprint_format(max_agents, false));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_notes_are_taken_from_the_last_marker() {
        assert_eq!(
            extract_handoff_note(
                "did things\nHANDOFF NOTE: old\nmore\nHANDOFF NOTE: run the migrations first"
            )
            .as_deref(),
            Some("run the migrations first")
        );
        assert_eq!(extract_handoff_note("no note here"), None);
        assert_eq!(extract_handoff_note("HANDOFF NOTE:   "), None);
    }

    #[test]
    fn long_prior_outputs_are_cut_and_point_to_the_log() {
        let ctx = PromptContext {
            task: "ship",
            project_root: Path::new("/repo"),
            concise: false,
            earlier: None,
        };
        let spec = {
            let mut s = AgentSpec::new("builder", "Builder");
            s.plan_prompt = "split the work".into();
            s
        };
        let long = "x".repeat(MAX_CONTEXT_CHARS + 10);
        let prior = [PriorOutput {
            agent: "planner",
            role: "Planner",
            text: &long,
            log: PathBuf::from("/l/planner.log"),
        }];
        let prompt = core_plan(&ctx, &spec, &prior);
        assert!(prompt.contains("[… truncated; the full text is in /l/planner.log]"));
        assert!(prompt.contains("## Task from the user\nship"));
        assert!(prompt.ends_with("## Your turn\nsplit the work\n"));
    }
}
