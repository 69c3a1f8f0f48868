//! The built-in `demo` backend: deterministic, no network; files are written only in
//! an orch worktree (`demo_files`).
//!
//! It answers like a real squad (a plan, research, a valid blueprint with a parallel
//! pair and a dependant, specialist output) with realistic event streams and small
//! delays, so a newcomer sees the whole run on a fresh machine. Tests make it
//! misbehave through a scenario (`--demo-scenario`), a comma-separated list of:
//! - `delay=MS`: pause between events (default 120)
//! - `events=N`: N extra streamed events per turn (for event-counting tests), tool
//!   calls whose arguments count up (`{"step":0}`, `{"step":1}`...)
//! - `gap=MS`: pause between those extra events (default 0), for a wave that streams
//!   slowly enough to be interrupted mid-turn
//! - `blueprint=KIND`: `chain`, or a broken answer every time: `bad-json`, `cycle`,
//!   `unknown-dep`, `duplicate-id`, `evil-id`, `too-many`; `KIND-once` breaks only
//!   the first answer, so the repair turn succeeds
//! - `crash=AGENT`: that agent's first turn dies mid-stream
//! - `clash` / `clash=stubborn`: every specialist also writes the same line of
//!   `demo/CLASH.md`, so parallel agents conflict in the merge queue; the agent's
//!   resolve turn keeps both sides (`stubborn`: leaves the conflict as it is)
//! - `panic=AGENT`: the task running that agent's first turn panics (a bug in orch or
//!   a backend), which the run must survive
//! - `huge=AGENT`: that agent writes a 10 MB line
//! - `fail=AGENT:CLASS[:N]`: its first N (default 1) turns fail with `transient`,
//!   `usage-limit` or `terminal`
//! - `waves=N`: the autonomous orchestrator plans N more waves (default 1)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::backend::{
    AgentKind, Backend, BackendError, BoxFuture, Expects, TurnEvents, TurnKind, TurnRequest,
    TurnResult,
};
use crate::agent::event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DemoBlueprint {
    Valid,
    Chain,
    Broken { kind: String, once: bool },
}

/// Whether specialists write a line that conflicts between parallel agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DemoClash {
    None,
    /// They clash, and a resolve turn keeps both sides.
    Resolve,
    /// They clash, and a resolve turn leaves the conflict.
    Stubborn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DemoFailure {
    Transient,
    UsageLimit,
    Terminal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoScenario {
    pub delay_ms: u64,
    pub extra_events: u32,
    pub event_gap_ms: u64,
    pub blueprint: DemoBlueprint,
    pub crash: Vec<String>,
    pub panic: Vec<String>,
    pub clash: DemoClash,
    pub huge: Vec<String>,
    pub fail: Vec<(String, DemoFailure, u32)>,
    pub waves: u32,
}

impl Default for DemoScenario {
    fn default() -> Self {
        DemoScenario {
            delay_ms: 120,
            extra_events: 0,
            event_gap_ms: 0,
            blueprint: DemoBlueprint::Valid,
            crash: Vec::new(),
            panic: Vec::new(),
            clash: DemoClash::None,
            huge: Vec::new(),
            fail: Vec::new(),
            waves: 1,
        }
    }
}

const BROKEN_KINDS: &[&str] = &[
    "bad-json",
    "cycle",
    "unknown-dep",
    "duplicate-id",
    "evil-id",
    "too-many",
];

impl DemoScenario {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut scenario = DemoScenario::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not KEY=VALUE"))?;
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("`{item}`: `{v}` is not a number"))
            };
            match key {
                "delay" => scenario.delay_ms = number(value)?,
                "events" => scenario.extra_events = number(value)? as u32,
                "gap" => scenario.event_gap_ms = number(value)?,
                "waves" => scenario.waves = number(value)? as u32,
                "crash" => scenario.crash.push(value.to_owned()),
                "panic" => scenario.panic.push(value.to_owned()),
                "clash" => {
                    scenario.clash = match value {
                        "" | "resolve" => DemoClash::Resolve,
                        "stubborn" => DemoClash::Stubborn,
                        other => {
                            return Err(format!("unknown clash `{other}`: resolve or stubborn"));
                        }
                    }
                }
                "huge" => scenario.huge.push(value.to_owned()),
                "blueprint" => {
                    let (kind, once) = match value.strip_suffix("-once") {
                        Some(kind) => (kind, true),
                        None => (value, false),
                    };
                    scenario.blueprint = match kind {
                        "valid" => DemoBlueprint::Valid,
                        "chain" => DemoBlueprint::Chain,
                        k if BROKEN_KINDS.contains(&k) => DemoBlueprint::Broken {
                            kind: k.to_owned(),
                            once,
                        },
                        other => {
                            return Err(format!(
                                "unknown blueprint kind `{other}` (valid, chain, {})",
                                BROKEN_KINDS.join(", ")
                            ));
                        }
                    };
                }
                "fail" => {
                    let mut parts = value.split(':');
                    let agent = parts.next().unwrap_or_default().to_owned();
                    let class = match parts.next() {
                        Some("transient") => DemoFailure::Transient,
                        Some("usage-limit") => DemoFailure::UsageLimit,
                        Some("terminal") => DemoFailure::Terminal,
                        other => {
                            return Err(format!(
                                "`{item}`: unknown failure `{}`",
                                other.unwrap_or("")
                            ));
                        }
                    };
                    let times = parts.next().map(number).transpose()?.unwrap_or(1) as u32;
                    scenario.fail.push((agent, class, times));
                }
                other => return Err(format!("unknown scenario item `{other}`")),
            }
        }
        Ok(scenario)
    }
}

pub struct DemoBackend {
    scenario: DemoScenario,
    /// Blueprints answered and turns failed so far, per agent.
    state: Mutex<HashMap<String, (u32, u32)>>,
}

impl DemoBackend {
    pub fn new(scenario: DemoScenario) -> Self {
        DemoBackend {
            scenario,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn bump(&self, agent: &str, blueprint: bool) -> (u32, u32) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = state.entry(agent.to_owned()).or_default();
        if blueprint {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
        *entry
    }
}

fn task_line(prompt: &str) -> String {
    let after = prompt
        .split("## Task from the user\n")
        .nth(1)
        .unwrap_or(prompt);
    after
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

fn agent_json(id: &str, role: &str, prompt: &str, deps: &[&str]) -> serde_json::Value {
    serde_json::json!({"id": id, "role": role, "prompt": prompt, "dependsOn": deps})
}

fn blueprint_answer(scenario: &DemoScenario, request: &TurnRequest, nth: u32) -> String {
    if request.agent_kind == AgentKind::AutonomousOrchestrator {
        let agents = if nth <= scenario.waves {
            vec![agent_json(
                &format!("polish-{nth}"),
                "Polisher",
                "Tighten error messages and docs left rough by the last wave.",
                &[],
            )]
        } else {
            Vec::new()
        };
        return serde_json::json!({ "agents": agents }).to_string();
    }
    if nth > 1 && !request.repair {
        // A second blueprint from the same agent: the straight-chain continuation.
        let agents = vec![agent_json(
            "chain-followup",
            "Implementer",
            "Continue the chain schema → api → docs: add the examples its logs call for.",
            &[],
        )];
        return serde_json::json!({ "agents": agents }).to_string();
    }
    let broken = match &scenario.blueprint {
        DemoBlueprint::Broken { kind, once } if !(*once && request.repair) => Some(kind.as_str()),
        _ => None,
    };
    let agents = match broken {
        Some("bad-json") => return "Here you go: {\"agents\": [ {\"id\": \"api\", ".into(),
        Some("cycle") => vec![
            agent_json("api", "API engineer", "Build the API.", &["tests"]),
            agent_json("tests", "Test engineer", "Test the API.", &["api"]),
        ],
        Some("unknown-dep") => vec![agent_json(
            "api",
            "API engineer",
            "Build the API.",
            &["database"],
        )],
        Some("duplicate-id") => vec![
            agent_json("api", "API engineer", "Build the API.", &[]),
            agent_json("api", "API engineer", "Build it again.", &[]),
        ],
        Some("evil-id") => vec![agent_json(
            "../evil",
            "Intruder",
            "Write outside the run.",
            &[],
        )],
        Some(_) => (1..=9)
            .map(|i| agent_json(&format!("agent-{i}"), "Worker", "Work.", &[]))
            .collect(),
        None if scenario.blueprint == DemoBlueprint::Chain => vec![
            agent_json("schema", "Data modeller", "Define the schema.", &[]),
            agent_json(
                "api",
                "API engineer",
                "Build the API on the schema.",
                &["schema"],
            ),
            agent_json("docs", "Writer", "Document the API.", &["api"]),
        ],
        None => vec![
            agent_json(
                "backend-api",
                "API engineer",
                "Implement the HTTP API the plan describes.",
                &[],
            ),
            agent_json(
                "frontend-ui",
                "UI engineer",
                "Build the screens that call the API.",
                &[],
            ),
            agent_json(
                "integration-tests",
                "Test engineer",
                "Write end-to-end tests over API and UI.",
                &["backend-api", "frontend-ui"],
            ),
        ],
    };
    let json =
        serde_json::to_string_pretty(&serde_json::json!({ "agents": agents })).unwrap_or_default();
    format!("```json\n{json}\n```")
}

/// A reviewer's verdict: the demo's work always passes.
fn verdict_answer(request: &TurnRequest) -> String {
    let verdict = serde_json::json!({
        "verdict": "pass",
        "points": [
            {"point": "the change does what the task asks", "pass": true, "note": format!("reviewed by {}", request.role)},
            {"point": "the change comes with a test", "pass": true, "note": ""},
        ],
    });
    format!("```json\n{verdict}\n```")
}

fn text_answer(request: &TurnRequest) -> String {
    let task = task_line(&request.prompt);
    let mut text = match (request.agent_kind, request.kind) {
        (_, TurnKind::Plan) => format!(
            "Plan for {} ({}): 1. read the code the task touches; 2. make the change; 3. run the tests. Task: {task}",
            request.agent, request.role
        ),
        (AgentKind::Core, TurnKind::FollowUp) => format!(
            "{} findings: the task is `{task}`; build with `cargo build`, test with `cargo test`; touch src/lib.rs and tests/.",
            request.role
        ),
        (_, TurnKind::FollowUp) => format!(
            "Done: {} wrote demo/{}.py and its test, and ran the tests (12 passed).",
            request.agent,
            request.agent.replace('-', "_")
        ),
    };
    if request.expects == Expects::HandoffNote {
        text.push_str(&format!(
            "\nHANDOFF NOTE: {} is finished; build on demo/{}.py.",
            request.agent,
            request.agent.replace('-', "_")
        ));
    }
    text
}

impl Backend for DemoBackend {
    fn name(&self) -> &str {
        "demo"
    }

    fn mini_model(&self) -> Option<String> {
        Some("demo-mini".into())
    }

    fn turn<'a>(
        &'a self,
        request: &'a TurnRequest,
        events: &'a TurnEvents,
    ) -> BoxFuture<'a, Result<TurnResult, BackendError>> {
        let turn = async move {
            let scenario = &self.scenario;
            let step = Duration::from_millis(scenario.delay_ms);
            let thread_id = request
                .resume
                .clone()
                .unwrap_or_else(|| format!("demo-thread-{}", request.agent));
            events
                .emit(AgentEvent::Started {
                    thread_id: Some(thread_id.clone()),
                })
                .await;
            tokio::time::sleep(step).await;
            events
                .emit(AgentEvent::Reasoning {
                    text: format!(
                        "Reading the {} prompt ({} chars).",
                        request.kind.as_str(),
                        request.prompt.len()
                    ),
                })
                .await;

            let (_, failed_so_far) = self.bump(&request.agent, false);
            if let Some((_, class, times)) =
                scenario.fail.iter().find(|(a, _, _)| a == &request.agent)
            {
                if failed_so_far <= *times {
                    let (class, message) = match class {
                        DemoFailure::Transient => (
                            FailureClass::Transient {
                                retry_after_secs: Some(0),
                            },
                            "503 overloaded (demo scenario)",
                        ),
                        DemoFailure::UsageLimit => (
                            FailureClass::UsageLimit {
                                resets_in_secs: Some(1),
                            },
                            "usage limit reached; resets in 1s (demo scenario)",
                        ),
                        DemoFailure::Terminal => {
                            (FailureClass::Terminal, "401 unauthorized (demo scenario)")
                        }
                    };
                    let outcome = TurnOutcome::Failed {
                        class,
                        message: message.into(),
                    };
                    events
                        .emit(AgentEvent::Error {
                            message: message.into(),
                        })
                        .await;
                    events
                        .emit(AgentEvent::Finished {
                            outcome: outcome.clone(),
                        })
                        .await;
                    return Ok(TurnResult {
                        thread_id: Some(thread_id),
                        response: String::new(),
                        usage: Usage::default(),
                        outcome,
                    });
                }
            }
            tokio::time::sleep(step).await;
            let command = if request.kind == TurnKind::Plan {
                "rg --files src tests"
            } else {
                "cargo test"
            };
            events
                .emit(AgentEvent::Command {
                    id: Some("cmd-1".into()),
                    command: command.into(),
                    status: ItemStatus::InProgress,
                    exit_code: None,
                    output: None,
                })
                .await;
            if scenario.panic.contains(&request.agent) && request.turn == 1 {
                panic!("demo scenario panic in agent `{}`", request.agent);
            }
            if scenario.crash.contains(&request.agent) && request.turn == 1 {
                // The stream just ends: no completion, no final event.
                return Ok(TurnResult {
                    thread_id: Some(thread_id),
                    response: String::new(),
                    usage: Usage::default(),
                    outcome: TurnOutcome::Interrupted {
                        message: "the agent process exited mid-turn (demo scenario crash)".into(),
                    },
                });
            }
            tokio::time::sleep(step).await;
            events
                .emit(AgentEvent::Command {
                    id: Some("cmd-1".into()),
                    command: command.into(),
                    status: ItemStatus::Completed,
                    exit_code: Some(0),
                    output: Some(if request.kind == TurnKind::Plan {
                        "src/lib.rs\nsrc/main.rs\ntests/api.rs".into()
                    } else {
                        "test result: ok. 12 passed; 0 failed".into()
                    }),
                })
                .await;
            let gap = Duration::from_millis(scenario.event_gap_ms);
            for i in 0..scenario.extra_events {
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                events
                    .emit(AgentEvent::ToolCall {
                        id: Some(format!("tool-{i}")),
                        name: "todo_list".into(),
                        arguments: format!("{{\"step\":{i}}}"),
                        status: ItemStatus::Completed,
                        result: None,
                    })
                    .await;
            }
            // A reviewer, or an agent that may not change files, writes nothing.
            if request.kind == TurnKind::FollowUp
                && request.agent_kind != AgentKind::Core
                && request.expects != Expects::Verdict
                && request.permissions != crate::agent::permissions::Permissions::ReadOnly
            {
                tokio::time::sleep(step).await;
                let cwd = request.cwd.clone();
                let agent = request.agent.clone();
                let clash = scenario.clash;
                let written = tokio::task::spawn_blocking(move || {
                    crate::agent::demo_files::write_agent_files(&cwd, &agent, clash)
                })
                .await
                .unwrap_or_else(|e| Some(Err(format!("the demo file writer panicked: {e}"))));
                match written {
                    Some(Ok(files)) => {
                        for (path, change) in files {
                            events
                                .emit(AgentEvent::FileChange {
                                    path,
                                    change,
                                    status: ItemStatus::Completed,
                                })
                                .await;
                        }
                    }
                    Some(Err(message)) => {
                        events.emit(AgentEvent::Error { message }).await;
                    }
                    // Not in an orch worktree: nothing is written, nothing reported.
                    None => {}
                }
            }
            tokio::time::sleep(step).await;
            let response = if request.expects == Expects::Blueprint {
                let (nth, _) = self.bump(&request.agent, true);
                blueprint_answer(scenario, request, nth)
            } else if request.expects == Expects::Verdict {
                verdict_answer(request)
            } else {
                text_answer(request)
            };
            events
                .emit(AgentEvent::Message {
                    text: response.clone(),
                })
                .await;
            if scenario.huge.contains(&request.agent) {
                events
                    .emit(AgentEvent::Message {
                        text: "x".repeat(10 * 1024 * 1024),
                    })
                    .await;
            }
            let input = (request.prompt.len() / 4) as u64 + 50;
            let usage = Usage {
                input_tokens: input,
                cached_input_tokens: if request.resume.is_some() {
                    input / 3
                } else {
                    0
                },
                output_tokens: (response.len() / 4) as u64 + 20,
                reasoning_output_tokens: 8,
            };
            events.emit(AgentEvent::Usage(usage)).await;
            events
                .emit(AgentEvent::Finished {
                    outcome: TurnOutcome::Completed,
                })
                .await;
            Ok(TurnResult {
                thread_id: Some(thread_id),
                response,
                usage,
                outcome: TurnOutcome::Completed,
            })
        };
        Box::pin(crate::agent::backend::until_stopped(request, events, turn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_reject_unknown_items() {
        let s = DemoScenario::parse(
            "delay=5, blueprint=cycle-once, crash=api, fail=ui:transient:2, waves=2, events=7, gap=3",
        )
        .unwrap();
        assert_eq!(s.delay_ms, 5);
        assert_eq!((s.extra_events, s.event_gap_ms), (7, 3));
        assert_eq!(
            s.blueprint,
            DemoBlueprint::Broken {
                kind: "cycle".into(),
                once: true
            }
        );
        assert_eq!(s.crash, ["api"]);
        assert_eq!(s.fail, [("ui".to_string(), DemoFailure::Transient, 2)]);
        assert!(DemoScenario::parse("blueprint=nope").is_err());
        assert!(DemoScenario::parse("speed=9").is_err());
        assert_eq!(DemoScenario::parse("").unwrap(), DemoScenario::default());
    }
}
