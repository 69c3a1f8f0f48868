//! What a resumed run (`launch resume`) takes from its stored session.
//!
//! A run is deterministic given its agents' answers: prompts, blueprints and waves all
//! follow from them. So a resumed run plays the same script again, and each turn it
//! reaches is looked up here by agent and turn number:
//! - a turn that finished is not run again: its stored answer is given back (and its
//!   usage counted toward the budgets, not written again);
//! - a turn that a stop or crash cut off continues on its conversation (the thread the
//!   backend reported for it), with a prompt that says it was interrupted and what it
//!   had done so far;
//! - any other turn runs as new.
//!
//! An agent that finished successfully is not redone at all: its turns are given back
//! and its gates, review and merge are not repeated. Codex reports a thread's usage
//! cumulatively; the sum of the stored turns of a thread is the baseline a continued
//! thread's next turn counts from, so no token is counted twice.
//!
//! Before it starts, `launch resume` checks the links of every stored row it read; the
//! whole chain is checked alongside the run (a million events take seconds), and
//! `StoreCheck` holds its verdict: nothing is merged, and no agent succeeds, before
//! it is in.
//!
//! Owns that lookup, the interrupted-turn prompt and the verdict's hand-over. Reading
//! the store is `audit::resume`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;

use crate::agent::event::{AgentEvent, Usage};
use crate::events::event::{AgentStatus, TurnRecord};

/// The verdict on a resumed run's stored chain, checked alongside the run: `Err` names
/// the first problems.
#[derive(Clone, Debug)]
pub struct StoreCheck {
    verdict: watch::Receiver<Option<Result<(), String>>>,
    go: Arc<Go>,
}

/// Where the check sends its verdict.
pub type StoreVerdict = watch::Sender<Option<Result<(), String>>>;

/// When the check begins: once the run's first turn is under way (a resumed run's
/// start, which the user waits for, does not share the machine with it), once its
/// verdict is wanted, or after `StoreCheck::AT_THE_LATEST`, whichever comes first.
#[derive(Debug, Default)]
pub struct Go {
    now: std::sync::Mutex<bool>,
    ready: std::sync::Condvar,
}

impl Go {
    fn open(&self) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.ready.notify_all();
    }

    /// Blocks until the check may begin (at most `limit`).
    pub fn wait(&self, limit: std::time::Duration) {
        let now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .ready
            .wait_timeout_while(now, limit, |now| !*now)
            .unwrap_or_else(|e| e.into_inner());
    }
}

impl StoreCheck {
    /// The longest a check waits for the run's first turn before it begins.
    pub const AT_THE_LATEST: std::time::Duration = std::time::Duration::from_millis(250);

    pub fn new() -> (StoreVerdict, StoreCheck) {
        let (tx, rx) = watch::channel(None);
        (
            tx,
            StoreCheck {
                verdict: rx,
                go: Arc::default(),
            },
        )
    }

    /// What the check waits on before it begins.
    pub fn go(&self) -> Arc<Go> {
        self.go.clone()
    }

    /// The run's first turn is under way: the check may begin.
    pub fn begin(&self) {
        self.go.open();
    }

    /// Waits for the verdict (the check begins now if it had not); a check that ended
    /// without one is a failure.
    pub async fn verdict(&self) -> Result<(), String> {
        self.go.open();
        self.settled().await
    }

    /// Waits for the verdict without making the check begin.
    pub async fn settled(&self) -> Result<(), String> {
        let mut rx = self.verdict.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(verdict) => verdict.clone().unwrap_or(Ok(())),
            Err(_) => Err("the check of the audit store ended without a verdict".into()),
        }
    }
}

/// A turn that was started and never finished successfully.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CutTurn {
    /// Attempts made so far (the continuation is the next one).
    pub attempts: u32,
    /// The conversation the backend reported for it (`None`: none was opened).
    pub thread_id: Option<String>,
    /// What it did before it was cut off, one line each, oldest first.
    pub so_far: Vec<String>,
    /// `seq` of its last `turn_started` (its events come after).
    pub started_seq: i64,
}

/// The turn a resumed run reaches, as the store knows it.
#[derive(Debug)]
pub enum Replayed<'a> {
    Done(&'a TurnRecord),
    Cut(&'a CutTurn),
    New,
}

/// The stored session of a resumed run (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Replay {
    done: HashMap<(String, u32), TurnRecord>,
    cut: HashMap<(String, u32), CutTurn>,
    finished: HashSet<String>,
    thread_usage: HashMap<String, Usage>,
    /// The task file's last stored revision: its number and text.
    task: Option<(u32, String)>,
}

/// Longest list of earlier actions quoted in an interrupted turn's prompt.
const MAX_SO_FAR: usize = 40;

impl Replay {
    /// Folds a session's stored events in `seq` order: `(seq, kind, agent, turn,
    /// payload)` of `turn_started`, `started`, `turn_finished` and `agent_finished` rows
    /// (others are ignored).
    pub fn from_rows<'a>(
        rows: impl IntoIterator<
            Item = (
                i64,
                &'a str,
                Option<&'a str>,
                Option<u32>,
                &'a serde_json::Value,
            ),
        >,
    ) -> Replay {
        let mut replay = Replay::default();
        for (seq, kind, agent, turn, payload) in rows {
            if kind == "task_revised" {
                let revision = payload.get("revision").and_then(serde_json::Value::as_u64);
                let text = payload.get("text").and_then(serde_json::Value::as_str);
                if let (Some(revision), Some(text)) = (revision, text) {
                    replay.task = Some((revision as u32, text.to_owned()));
                }
                continue;
            }
            let Some(agent) = agent else { continue };
            match (kind, turn) {
                ("turn_started", Some(turn)) => {
                    let attempt = payload
                        .get("attempt")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(1) as u32;
                    let key = (agent.to_owned(), turn);
                    replay.done.remove(&key);
                    let cut = replay.cut.entry(key).or_default();
                    cut.attempts = cut.attempts.max(attempt);
                    cut.started_seq = seq;
                    cut.so_far.clear();
                }
                ("started", Some(turn)) => {
                    if let Ok(AgentEvent::Started {
                        thread_id: Some(thread),
                    }) = serde_json::from_value::<AgentEvent>(payload.clone())
                        && let Some(cut) = replay.cut.get_mut(&(agent.to_owned(), turn))
                    {
                        cut.thread_id = Some(thread);
                    }
                }
                ("turn_finished", Some(turn)) => {
                    let Ok(record) = serde_json::from_value::<TurnRecord>(payload.clone()) else {
                        continue;
                    };
                    if let Some(thread) = &record.thread_id {
                        replay
                            .thread_usage
                            .entry(thread.clone())
                            .or_default()
                            .add(&record.usage);
                    }
                    let key = (agent.to_owned(), turn);
                    if record.outcome.is_success() {
                        replay.cut.remove(&key);
                        replay.done.insert(key, record);
                    } else if let Some(cut) = replay.cut.get_mut(&key) {
                        cut.attempts = cut.attempts.max(record.attempt);
                        if record.thread_id.is_some() {
                            cut.thread_id = record.thread_id.clone();
                        }
                    }
                }
                ("agent_finished", _) => {
                    let succeeded = payload
                        .get("status")
                        .cloned()
                        .and_then(|s| serde_json::from_value::<AgentStatus>(s).ok())
                        == Some(AgentStatus::Succeeded);
                    if succeeded {
                        replay.finished.insert(agent.to_owned());
                    } else {
                        replay.finished.remove(agent);
                    }
                }
                _ => {}
            }
        }
        replay
    }

    /// The task file's last revision the stored run had (number, text), if it changed.
    pub fn task(&self) -> Option<&(u32, String)> {
        self.task.as_ref()
    }

    /// The turns that were cut off, to read what each had done (`note_done`).
    pub fn cut_turns(&self) -> impl Iterator<Item = (&str, u32, i64)> {
        self.cut
            .iter()
            .map(|((agent, turn), cut)| (agent.as_str(), *turn, cut.started_seq))
    }

    /// Records what a cut-off turn did before it stopped (from its stored events).
    pub fn note_done(&mut self, agent: &str, turn: u32, event: &AgentEvent) {
        let Some(cut) = self.cut.get_mut(&(agent.to_owned(), turn)) else {
            return;
        };
        let one = |text: &str| crate::events::render::one_line(text, 200);
        let line = match event {
            AgentEvent::Command {
                command, exit_code, ..
            } => match exit_code {
                Some(code) => format!("ran `{}` (exit {code})", one(command)),
                None => format!("started `{}`", one(command)),
            },
            AgentEvent::FileChange { path, change, .. } => {
                format!("{change} {}", one(path))
            }
            AgentEvent::ToolCall { name, .. } => format!("called {}", one(name)),
            AgentEvent::Message { text } => format!("said: {}", one(text)),
            _ => return,
        };
        cut.so_far.push(line);
        if cut.so_far.len() > MAX_SO_FAR {
            cut.so_far.remove(0);
        }
    }

    pub fn turn(&self, agent: &str, turn: u32) -> Replayed<'_> {
        let key = (agent.to_owned(), turn);
        if let Some(record) = self.done.get(&key) {
            Replayed::Done(record)
        } else if let Some(cut) = self.cut.get(&key) {
            Replayed::Cut(cut)
        } else {
            Replayed::New
        }
    }

    /// The agent ended successfully in the stored run.
    pub fn agent_finished(&self, agent: &str) -> bool {
        self.finished.contains(agent)
    }

    /// Tokens the stored turns of `thread` used in all.
    pub fn thread_usage(&self, thread: &str) -> Option<Usage> {
        self.thread_usage.get(thread).copied()
    }

    /// How many stored turns finished, and how many were cut off.
    pub fn counts(&self) -> (usize, usize) {
        (self.done.len(), self.cut.len())
    }
}

/// The prompt of a cut-off turn's continuation: it was interrupted, what it had done,
/// then the turn's own request again.
pub fn interrupted_prompt(cut: &CutTurn, prompt: &str) -> String {
    let mut out = String::from(
        "This turn was interrupted before you finished it (the run was stopped or crashed, or the turn failed); the run has now resumed.\n",
    );
    if cut.so_far.is_empty() {
        out.push_str("Nothing you did in it was recorded.\n");
    } else {
        out.push_str("What you had done in it so far:\n");
        for line in &cut.so_far {
            out.push_str("- ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(
        "Check the state of your working directory, keep what is done, and finish the turn. Its request was:\n\n",
    );
    out.push_str(prompt);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_chain_check_begins_with_the_first_turn_or_when_its_verdict_is_wanted() {
        use std::time::{Duration, Instant};
        let (verdict, check) = StoreCheck::new();
        let go = check.go();
        // Nothing asked: it waits, at most as long as it is told.
        let waited = Instant::now();
        go.wait(Duration::from_millis(30));
        assert!(waited.elapsed() >= Duration::from_millis(30));
        // The first turn: it begins at once.
        check.begin();
        let waited = Instant::now();
        go.wait(Duration::from_secs(30));
        assert!(waited.elapsed() < Duration::from_secs(10));
        // Waiting for the verdict does not hurry it; asking for it does.
        let (verdict2, check2) = StoreCheck::new();
        let go2 = check2.go();
        let watcher = {
            let check2 = check2.clone();
            tokio::spawn(async move { check2.settled().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !*go2.now.lock().unwrap(),
            "a watcher does not start the check"
        );
        let asking = {
            let check2 = check2.clone();
            tokio::spawn(async move { check2.verdict().await })
        };
        let started = tokio::task::spawn_blocking(move || {
            go2.wait(Duration::from_secs(30));
            *go2.now.lock().unwrap()
        });
        assert!(
            started.await.unwrap(),
            "asked for its verdict, the check began"
        );
        verdict2.send_replace(Some(Err("broken".into())));
        assert_eq!(asking.await.unwrap(), Err("broken".into()));
        assert_eq!(watcher.await.unwrap(), Err("broken".into()));
        verdict.send_replace(Some(Ok(())));
        assert_eq!(check.verdict().await, Ok(()));
    }
    use serde_json::json;

    fn record(
        agent: &str,
        turn: u32,
        outcome: serde_json::Value,
        thread: &str,
    ) -> serde_json::Value {
        json!({"agent": agent, "role": "r", "agent_kind": "dynamic", "wave": 1, "turn": turn,
            "attempt": 1, "kind": "plan", "prompt": "p", "response": format!("answer {turn}"),
            "usage": {"input_tokens": 10, "cached_input_tokens": 0, "output_tokens": 5, "reasoning_output_tokens": 0},
            "started_at_ms": 1, "finished_at_ms": 2, "backend": "codex", "model": null,
            "thread_id": thread, "outcome": outcome, "tags": []})
    }

    #[test]
    fn finished_cut_and_new_turns_are_told_apart() {
        let started = json!({"attempt": 1});
        let retry = json!({"attempt": 2});
        let thread = json!({"type": "started", "thread_id": "t-1"});
        let done = record("api", 1, json!({"status": "completed"}), "t-1");
        let failed = record(
            "ui",
            1,
            json!({"status": "failed", "class": {"kind": "terminal"}, "message": "x"}),
            "t-2",
        );
        let finished = json!({"status": {"status": "succeeded"}});
        let rows = vec![
            (1, "turn_started", Some("api"), Some(1), &started),
            (2, "started", Some("api"), Some(1), &thread),
            (3, "turn_finished", Some("api"), Some(1), &done),
            (4, "agent_finished", Some("api"), None, &finished),
            (5, "turn_started", Some("ui"), Some(1), &started),
            (6, "turn_finished", Some("ui"), Some(1), &failed),
            (7, "turn_started", Some("ui"), Some(1), &retry),
            (8, "turn_started", Some("api"), Some(2), &started),
            (9, "started", Some("api"), Some(2), &thread),
        ];
        let replay = Replay::from_rows(rows);
        assert!(matches!(replay.turn("api", 1), Replayed::Done(r) if r.response == "answer 1"));
        let Replayed::Cut(ui) = replay.turn("ui", 1) else {
            panic!("ui 1 is cut")
        };
        assert_eq!((ui.attempts, ui.thread_id.as_deref()), (2, Some("t-2")));
        let Replayed::Cut(api) = replay.turn("api", 2) else {
            panic!("api 2 is cut")
        };
        assert_eq!(
            (api.thread_id.as_deref(), api.started_seq),
            (Some("t-1"), 8)
        );
        assert!(matches!(replay.turn("api", 3), Replayed::New));
        assert!(replay.agent_finished("api") && !replay.agent_finished("ui"));
        assert_eq!(replay.thread_usage("t-1").unwrap().input_tokens, 10);
        assert_eq!(replay.thread_usage("t-2").unwrap().output_tokens, 5);
        assert_eq!(replay.counts(), (1, 2));
    }

    #[test]
    fn the_interrupted_prompt_says_what_was_done_then_asks_again() {
        let mut replay = Replay::from_rows(vec![(
            1,
            "turn_started",
            Some("api"),
            Some(1),
            &json!({"attempt": 1}),
        )]);
        replay.note_done(
            "api",
            1,
            &AgentEvent::Command {
                id: None,
                command: "cargo test".into(),
                status: crate::agent::event::ItemStatus::Completed,
                exit_code: Some(0),
                output: None,
            },
        );
        replay.note_done("api", 1, &AgentEvent::Reasoning { text: "hm".into() });
        let Replayed::Cut(cut) = replay.turn("api", 1) else {
            panic!()
        };
        let prompt = interrupted_prompt(cut, "Build the API.");
        assert!(prompt.contains("interrupted"), "{prompt}");
        assert!(prompt.contains("- ran `cargo test` (exit 0)\n"), "{prompt}");
        assert!(!prompt.contains("hm"), "{prompt}");
        assert!(prompt.ends_with("Build the API."), "{prompt}");
    }
}
