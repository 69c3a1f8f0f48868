//! A scripted squad for end-to-end runs of `launch` against the model server: which
//! agent and turn a request belongs to, what each agent answers (the builder answers
//! with a blueprint of three dynamic agents), and the books of usage sent per agent.

use std::collections::BTreeMap;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orch::agent::Usage;
use serde_json::Value;

use crate::support::model_server::Request;

/// Every agent of the squad: the core three, then the blueprint's parallel pair and
/// their dependant.
pub const SQUAD: [&str; 6] = ["planner", "researcher", "builder", "api", "docs", "review"];

/// The builder's final answer, fenced as a model would write it.
pub const BLUEPRINT: &str = "Here is the blueprint.\n```json\n{\"agents\":[\
{\"id\":\"api\",\"role\":\"API engineer\",\"prompt\":\"Add the endpoint.\",\"dependsOn\":[]},\
{\"id\":\"docs\",\"role\":\"Docs writer\",\"prompt\":\"Update README.md and record a check in ran.txt.\",\"dependsOn\":[]},\
{\"id\":\"review\",\"role\":\"Reviewer\",\"prompt\":\"Review the work of api and docs.\",\"dependsOn\":[\"api\",\"docs\"]}]}\n```\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Plan,
    FollowUp,
}

/// Which agent a request is for, and which of its turns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub agent: String,
    pub phase: Phase,
}

/// The agent id in "… (agent `ID`) …", the marker our prompts and system prompts carry.
pub fn agent_marker(text: &str) -> Option<String> {
    let start = text.find("(agent `")? + "(agent `".len();
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_string())
}

fn user_texts(req: &Request) -> Vec<String> {
    let items = req
        .body
        .get("input")
        .or_else(|| req.body.get("messages"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    items
        .iter()
        .filter(|item| item.get("role").and_then(Value::as_str) == Some("user"))
        .map(|item| match item.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        })
        .collect()
}

/// Routes a Responses API request from the Codex CLI. Codex resends the whole thread:
/// the agent is named by the plan prompt in it, and the turn is a follow-up when the
/// newest user message is not that plan prompt.
pub fn route_codex(req: &Request) -> Option<Route> {
    let texts = user_texts(req);
    let agent = texts.iter().find_map(|t| agent_marker(t))?;
    let phase = if agent_marker(&req.last_user_text()).is_some() {
        Phase::Plan
    } else {
        Phase::FollowUp
    };
    Some(Route { agent, phase })
}

/// Routes an HTTP backend request: the system prompt names the agent, the number of
/// user messages in the resent conversation gives the turn.
pub fn route_http(req: &Request) -> Option<Route> {
    let system = match req.body.get("system") {
        Some(Value::String(system)) => system.clone(),
        _ => req
            .body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("system"))
            .and_then(|m| m.get("content").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string(),
    };
    let agent = agent_marker(&system)?;
    let phase = match req.user_messages() {
        1 => Phase::Plan,
        _ => Phase::FollowUp,
    };
    Some(Route { agent, phase })
}

/// What an agent answers (its last message of the turn).
pub fn answer(route: &Route) -> String {
    match (route.agent.as_str(), route.phase) {
        ("builder", Phase::FollowUp) => BLUEPRINT.to_string(),
        (agent, Phase::Plan) => format!("{agent}: plan outlined"),
        (agent, Phase::FollowUp) => format!("{agent}: done"),
    }
}

/// Distinct usage for the `n`th reply, so a lost or double-counted reply shows.
pub fn usage_n(n: u64) -> Usage {
    Usage {
        input_tokens: 1000 + 37 * n,
        cached_input_tokens: 100 + 3 * n,
        output_tokens: 50 + 11 * n,
        reasoning_output_tokens: n,
    }
}

/// Usage the server sent, per agent, and a counter for distinct replies.
#[derive(Clone, Default)]
pub struct Books(Arc<Mutex<(u64, BTreeMap<String, Usage>)>>);

impl Books {
    /// The number and usage of the next reply to `agent`, booked as sent.
    pub fn next(&self, agent: &str) -> (u64, Usage) {
        let mut books = self.0.lock().unwrap();
        books.0 += 1;
        let usage = usage_n(books.0);
        books.1.entry(agent.to_string()).or_default().add(&usage);
        (books.0, usage)
    }

    pub fn per_agent(&self) -> BTreeMap<String, Usage> {
        self.0.lock().unwrap().1.clone()
    }
}

/// Rows of the `--metrics` table: name → (input, cached, output); the cost column is
/// left out.
pub fn metrics_rows(stderr: &str) -> BTreeMap<String, (u64, u64, u64)> {
    let mut rows = BTreeMap::new();
    for line in stderr.lines() {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        // The last column is the cost: `$0.0123`, or `-` without a price.
        if words
            .last()
            .is_some_and(|w| *w == "-" || w.starts_with('$'))
        {
            words.pop();
        }
        if words.len() < 4 || words[0] == "agent" {
            continue;
        }
        let n = words.len();
        let nums: Vec<u64> = words[n - 3..]
            .iter()
            .filter_map(|w| w.parse().ok())
            .collect();
        if nums.len() != 3 {
            continue;
        }
        let name = if words[0] == "(run" {
            "(run total)".to_string()
        } else {
            words[0].to_string()
        };
        rows.insert(name, (nums[0], nums[1], nums[2]));
    }
    rows
}

/// Checks that `--metrics` printed, per agent and for the run, what the server sent.
pub fn assert_metrics_match(stderr: &str, books: &Books) {
    let rows = metrics_rows(stderr);
    let sent = books.per_agent();
    let mut total = Usage::default();
    for (agent, usage) in &sent {
        total.add(usage);
        assert_eq!(
            rows.get(agent),
            Some(&(
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens
            )),
            "--metrics row of `{agent}` differs from what the server sent\n{stderr}"
        );
    }
    assert_eq!(
        rows.get("(run total)"),
        Some(&(
            total.input_tokens,
            total.cached_input_tokens,
            total.output_tokens
        )),
        "--metrics run total differs from what the server sent\n{stderr}"
    );
}

/// Runs `launch` to its end, killing it (and failing) after `limit`.
pub fn run_bounded(mut cmd: std::process::Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child: Child = cmd.spawn().expect("spawn launch");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let start = Instant::now();
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("wait for launch"),
        Err(_) => {
            // Agents die with `launch` (parent-death signal); the reader thread then ends.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let output = rx.recv_timeout(Duration::from_secs(10));
            panic!(
                "launch did not finish within {limit:?} ({:?} elapsed); stderr: {}",
                start.elapsed(),
                output
                    .ok()
                    .and_then(Result::ok)
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        }
    }
}
