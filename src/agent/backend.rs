//! The `Backend` trait: one agent turn in, a stream of `AgentEvent`s and a result out.
//!
//! Owns the request/result types shared by every backend. Does not own retries or
//! fallbacks (the orchestrator's turn runner decides those from `TurnOutcome`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::agent::event::{AgentEvent, TurnOutcome, Usage};
use crate::agent::permissions::Permissions;
use crate::events::event::NoticeLevel;
use crate::events::{EventBus, OrchEventKind};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which turn of an agent this is. Audit paths use the wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TurnKind {
    Plan,
    FollowUp,
}

impl TurnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnKind::Plan => "plan",
            TurnKind::FollowUp => "follow-up",
        }
    }
}

/// Where an agent came from; decides tags and what the demo backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Defined in the agents config (planner, researcher, builder...).
    Core,
    /// From the builder's blueprint.
    Dynamic,
    /// Continuation implementers after a straight-chain blueprint.
    Continuation,
    /// The autonomous orchestrator that plans further waves.
    AutonomousOrchestrator,
    /// Builder-only agents from an autonomous or relay wave.
    Autonomous,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Core => "core",
            AgentKind::Dynamic => "dynamic",
            AgentKind::Continuation => "continuation",
            AgentKind::AutonomousOrchestrator => "autonomous_orchestrator",
            AgentKind::Autonomous => "autonomous",
        }
    }
}

/// What shape of answer the orchestrator needs from this turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expects {
    /// Free text.
    Text,
    /// A blueprint JSON object `{"agents":[...]}`.
    Blueprint,
    /// Free text ending with a relay handoff note.
    HandoffNote,
    /// A reviewer's verdict JSON object `{"verdict": "pass" | "fail", "points": [...]}`.
    Verdict,
}

/// `history` as text for a backend that did not hear it: `heading`, then each message
/// (`--- user:` / `--- you:`), then `--- now:` before the new prompt.
pub fn transcript(history: &[ChatMessage], heading: &str) -> String {
    let mut out = format!("{heading}\n");
    for m in history {
        let who = match m.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "you",
        };
        out.push_str(&format!("--- {who}:\n{}\n", m.content));
    }
    out.push_str("--- now:\n");
    out
}

/// One message of a conversation, for backends that resend history (HTTP APIs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    User,
    Assistant,
}

/// Everything a backend needs to run one turn.
#[derive(Clone, Debug)]
pub struct TurnRequest {
    pub agent: String,
    pub role: String,
    pub agent_kind: AgentKind,
    pub kind: TurnKind,
    pub expects: Expects,
    /// 1-based count of turns this agent has run, this one included.
    pub turn: u32,
    /// 1 for the first try of the turn, 2 for its first retry…
    pub attempt: u32,
    /// The turn asks the agent to repair its invalid blueprint.
    pub repair: bool,
    /// The wave this agent belongs to (0 for core agents).
    pub wave: u32,
    pub prompt: String,
    /// Thread/session id to resume (CLI backends).
    pub resume: Option<String>,
    /// Earlier messages of this agent's conversation (HTTP backends resend them).
    pub history: Vec<ChatMessage>,
    pub model: Option<String>,
    /// What the agent may do without asking (CLI backends map it to their flags).
    pub permissions: Permissions,
    pub cwd: PathBuf,
    /// Fires when the user stops the run: the backend ends the turn (stops the agent's
    /// process group, drops the request) and returns `TurnOutcome::Interrupted`.
    pub stop: StopSignal,
}

/// The sending half of a `StopSignal`: `stop` fires every clone of its signal.
/// Dropping it without calling `stop` does not stop anything.
#[derive(Clone, Debug)]
pub struct StopHandle(std::sync::Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Fires the signal; later calls do nothing.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// Tells a running turn that the user stopped the run. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// A handle and the signal it fires.
    pub fn pair() -> (StopHandle, StopSignal) {
        let (tx, rx) = watch::channel(false);
        (StopHandle(std::sync::Arc::new(tx)), StopSignal(rx))
    }

    /// A signal that never fires (tests, one-off turns).
    pub fn never() -> StopSignal {
        StopSignal::pair().1
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal fired; never when its handle is dropped unfired.
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs `work` until it ends or the signal fires (`None`): dropping `work` is how
    /// backends without a process (HTTP, demo) end a stopped turn.
    pub async fn or_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut signal = self.clone();
        tokio::select! {
            biased;
            _ = signal.stopped() => None,
            value = work => Some(value),
        }
    }
}

/// A signal fired when the watched value turns true (for a run that keeps its own
/// `watch::Sender<bool>`: `sender.subscribe().into()`).
impl From<watch::Receiver<bool>> for StopSignal {
    fn from(receiver: watch::Receiver<bool>) -> Self {
        StopSignal(receiver)
    }
}

/// The message of a turn ended by `StopSignal`.
pub const STOPPED_BY_USER: &str = "stopped by the user";

/// Runs a backend's turn until it ends or the request's stop signal fires; then the
/// turn is dropped (an HTTP request is cancelled with it) and reported interrupted.
/// For backends without a process of their own (HTTP APIs, demo).
pub async fn until_stopped(
    request: &TurnRequest,
    events: &TurnEvents,
    turn: impl Future<Output = Result<TurnResult, BackendError>>,
) -> Result<TurnResult, BackendError> {
    if let Some(result) = request.stop.or_stopped(turn).await {
        return result;
    }
    let outcome = TurnOutcome::Interrupted {
        message: STOPPED_BY_USER.into(),
    };
    events
        .emit(AgentEvent::Finished {
            outcome: outcome.clone(),
        })
        .await;
    Ok(TurnResult {
        thread_id: request.resume.clone(),
        response: String::new(),
        usage: Usage::default(),
        outcome,
    })
}

impl TurnRequest {
    /// The system prompt of backends that take one (the HTTP APIs): who the agent is,
    /// so the role holds on every turn, and that its tool calls are not executed.
    pub fn system_prompt(&self) -> String {
        format!(
            "You are the {} (agent `{}`) in a squad of AI coding agents working in the repository at {}. \
             Your answers are read by the orchestrator and by the agents after you. \
             Tools are not executed here: say exactly which files to change and how.",
            self.role,
            self.agent,
            self.cwd.display()
        )
    }
}

/// What a backend reports when a turn ends (successfully or not).
#[derive(Clone, Debug, PartialEq)]
pub struct TurnResult {
    pub thread_id: Option<String>,
    /// The final assistant text of the turn.
    pub response: String,
    pub usage: Usage,
    pub outcome: TurnOutcome,
}

/// A backend could not even start the turn (missing binary, bad configuration).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("`{program}` was not found{hint}")]
    ProgramNotFound { program: String, hint: String },
    /// The OS refused to start the program; `reason` is its error (E2BIG, EACCES...).
    #[error("failed to start `{program}`: {reason}")]
    Spawn {
        program: String,
        reason: std::io::Error,
    },
    #[error("backend `{backend}` is not configured: {reason}")]
    NotConfigured { backend: String, reason: String },
    #[error("backend `{backend}` is not available in this build yet")]
    Unavailable { backend: String },
}

/// Where a backend sends the events of the turn it is running.
#[derive(Clone)]
pub struct TurnEvents {
    bus: EventBus,
    agent: String,
    turn: u32,
    /// `PermissionDenied` events published so far (shared by clones).
    denials: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TurnEvents {
    pub fn new(bus: EventBus, agent: String, turn: u32) -> Self {
        TurnEvents {
            bus,
            agent,
            turn,
            denials: Default::default(),
        }
    }

    /// How many `PermissionDenied` events went out through these events.
    pub fn denials(&self) -> usize {
        self.denials.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes a run-level notice (shown in the timeline and stored).
    pub async fn notice(&self, level: NoticeLevel, message: String) {
        self.bus
            .publish(OrchEventKind::Notice { level, message })
            .await;
    }

    /// Publishes one event; waits when the sinks are behind (backpressure, flat memory).
    pub async fn emit(&self, event: AgentEvent) {
        self.emit_all(std::iter::once(event)).await;
    }

    /// Publishes events together, in order (one read of the agent's output).
    pub async fn emit_all(&self, events: impl IntoIterator<Item = AgentEvent>) {
        let denials = &self.denials;
        self.bus
            .publish_all(
                events
                    .into_iter()
                    .inspect(|event| {
                        if matches!(event, AgentEvent::PermissionDenied { .. }) {
                            denials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    })
                    .map(|event| OrchEventKind::Agent {
                        agent: self.agent.clone(),
                        turn: self.turn,
                        event,
                    }),
            )
            .await;
    }

    pub fn agent(&self) -> &str {
        &self.agent
    }
}

/// An agent runtime: a CLI (codex, claude, gemini), an HTTP API, or the built-in demo.
pub trait Backend: Send + Sync {
    /// The name users type after `--backend`.
    fn name(&self) -> &str;

    /// The cheapest model of this backend, used for every turn under `--mini`.
    fn mini_model(&self) -> Option<String>;

    /// Tells the backend what an earlier run's turns of `thread` used in all, before a
    /// resumed run continues it: a backend that reports a thread's usage cumulatively
    /// (Codex) counts the next turn from there, not from zero.
    fn seed_thread(&self, _thread_id: &str, _usage: crate::agent::event::Usage) {}

    /// Why this backend's agents that may change files cannot run, when it knows so
    /// before any turn (an HTTP backend whose acting CLI is missing). Said at start.
    fn cannot_act(&self) -> Option<String> {
        None
    }

    /// Runs one turn, streaming events to `events`. When `request.stop` fires, the
    /// turn ends in order (a CLI's process group gets SIGTERM, the grace, SIGKILL and
    /// is reaped; an HTTP request is dropped) and returns `TurnOutcome::Interrupted`.
    /// Dropping the future instead kills at once (SIGKILL to the group).
    fn turn<'a>(
        &'a self,
        request: &'a TurnRequest,
        events: &'a TurnEvents,
    ) -> BoxFuture<'a, Result<TurnResult, BackendError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stop_reaches_every_clone_and_a_dropped_handle_is_no_stop() {
        let (handle, signal) = StopSignal::pair();
        let mut clone = signal.clone();
        assert!(!signal.is_stopped());
        handle.stop();
        handle.stop();
        assert!(signal.is_stopped());
        tokio::time::timeout(Duration::from_secs(1), clone.stopped())
            .await
            .expect("a fired signal resolves");

        let (handle, mut signal) = StopSignal::pair();
        drop(handle);
        assert!(!signal.is_stopped());
        let waited = tokio::time::timeout(Duration::from_millis(100), signal.stopped()).await;
        assert!(waited.is_err(), "a dropped handle stopped the turn");
        assert!(StopSignal::never().or_stopped(async { 7 }).await == Some(7));

        let sender = watch::Sender::new(false);
        let signal = StopSignal::from(sender.subscribe());
        sender.send_replace(true);
        assert!(
            signal
                .or_stopped(std::future::pending::<()>())
                .await
                .is_none()
        );
    }
}
