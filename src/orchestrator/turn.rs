//! Running one agent's turns: the pause gate, events, retries, parks and fallbacks,
//! and the turn record every attempt leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use crate::agent::backend::{
    AgentKind, Backend, BackendError, ChatMessage, ChatRole, Expects, TurnEvents, TurnKind,
    TurnRequest, TurnResult, transcript,
};
use crate::agent::event::{FailureClass, TurnOutcome, Usage};
use crate::config::Config;
use crate::events::EventBus;
use crate::events::event::{OrchEventKind, PromptStats, RetryDecision, TurnRecord};
use crate::events::wire::millis;
use crate::orchestrator::dispatcher::{RunEnded, RunLink};
use crate::orchestrator::isolation::Isolation;
use crate::orchestrator::lifecycle::AgentLifecycle;
use crate::orchestrator::replay::{Replayed, interrupted_prompt};
use crate::orchestrator::retry::{RetryPolicy, RetryState, decide};
use crate::workspace::AgentWorktree;

/// Makes a backend from its name (`codex`, `demo`...).
pub type BackendFactory = Box<dyn Fn(&str) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync>;

/// Builds backends by name on first use and shares them.
pub struct BackendSet {
    factory: BackendFactory,
    built: Mutex<HashMap<String, Arc<dyn Backend>>>,
}

impl BackendSet {
    pub fn new(
        factory: impl Fn(&str) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync + 'static,
    ) -> Self {
        BackendSet {
            factory: Box::new(factory),
            built: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn Backend>, BackendError> {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(backend) = built.get(name) {
            return Ok(backend.clone());
        }
        let backend = (self.factory)(name)?;
        built.insert(name.to_owned(), backend.clone());
        Ok(backend)
    }
}

/// What every agent task of a run shares: the run context.
pub struct RunContext {
    pub config: Arc<Config>,
    pub bus: EventBus,
    pub link: RunLink,
    pub backends: BackendSet,
    pub policy: RetryPolicy,
    /// Worktrees and the merge queue (`--isolation worktree`).
    pub isolation: Option<Isolation>,
    /// The stored session a resumed run plays again (`launch resume`).
    pub replay: Option<crate::orchestrator::replay::Replay>,
    /// A resumed run's stored chain, checked alongside it: merges and successes wait
    /// for its verdict (`None`: nothing to wait for, or `--force`).
    pub store_check: Option<crate::orchestrator::replay::StoreCheck>,
    stop: watch::Sender<bool>,
    /// A turn on a model without a price was said once.
    unpriced_said: std::sync::atomic::AtomicBool,
    /// `--features`: the statuses this run has given features so far.
    pub(crate) features_done: crate::orchestrator::features::FeaturesDone,
}

impl RunContext {
    pub fn new(
        config: Arc<Config>,
        bus: EventBus,
        link: RunLink,
        backends: BackendSet,
        policy: RetryPolicy,
        isolation: Option<Isolation>,
    ) -> Self {
        RunContext {
            config,
            bus,
            link,
            backends,
            policy,
            isolation,
            replay: None,
            store_check: None,
            stop: watch::Sender::new(false),
            unpriced_said: std::sync::atomic::AtomicBool::new(false),
            features_done: Default::default(),
        }
    }

    /// Waits until a resumed run's stored chain is known to verify; an agent's work is
    /// not merged, nor the agent successful, on a store that does not.
    pub(crate) async fn store_verified(&self) -> Result<(), TurnError> {
        match &self.store_check {
            None => Ok(()),
            Some(check) => check.verdict().await.map_err(|problem| {
                TurnError::Failed(format!(
                    "not taken: the audit store this run resumed from does not verify ({problem})"
                ))
            }),
        }
    }

    /// Ends every running turn (each backend stops its processes before it returns).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once the run is stopping.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// One agent's conversation: which backend holds it and how to continue it.
#[derive(Clone, Debug)]
pub struct Conversation {
    pub id: String,
    pub role: String,
    pub kind: AgentKind,
    /// The group it runs in.
    pub group: String,
    pub wave: u32,
    pub backend: String,
    pub model: Option<String>,
    pub fallback: Vec<String>,
    pub tags: Vec<String>,
    pub resume: Option<String>,
    pub history: Vec<ChatMessage>,
    /// Turns taken so far (retries of a turn are attempts, not turns).
    pub turns: u32,
    pub usage: Usage,
    /// What its turns cost, in micro-dollars; `None` once a turn's model had no price.
    pub cost_micros: Option<u64>,
    /// Its own worktree, once made (`--isolation worktree`).
    pub worktree: Option<AgentWorktree>,
    /// What its turns may do, when not what the config gives the agent (a reviewer's
    /// read-only turns in the reviewed agent's worktree).
    pub permissions: Option<crate::agent::permissions::Permissions>,
    /// Failed attempts in a row (for `retry { needs-you-after N }`).
    pub failures: u32,
    /// Fix turns taken after a failed gate or review (a feature's attempts).
    pub fixes: u32,
}

impl RunContext {
    /// The name the conversation's backend is built under: the backend's own, or, on a
    /// tier with its own base URL or key, one for that tier of its group.
    pub(crate) fn backend_key(&self, thread: &Conversation) -> String {
        let tier = tier_of(thread).and_then(|name| {
            let group = self
                .config
                .agents
                .groups
                .iter()
                .find(|g| g.name == thread.group)?;
            let tier = group.tiers.named(&name)?;
            let backend = tier.backend.as_deref().unwrap_or(&self.config.backend);
            // A fallback to another backend leaves the tier's endpoint behind.
            (tier.has_endpoint() && backend == thread.backend).then_some(name)
        });
        match tier {
            Some(tier) => {
                crate::config::agents::tier_backend_key(&thread.backend, &tier, &thread.group)
            }
            None => thread.backend.clone(),
        }
    }
}

/// The model tier a conversation is on (its `tier:` tag).
fn tier_of(thread: &Conversation) -> Option<String> {
    thread
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("tier:"))
        .map(str::to_owned)
}

/// Why a turn is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnPurpose {
    /// A planned turn of the agent.
    Planned,
    /// A repair of the agent's invalid blueprint.
    Repair,
}

/// What follows a failed attempt.
enum Next {
    Again,
    /// Again, on another backend (the conversation is replayed as a transcript).
    Moved,
    GiveUp,
}

/// Why an agent's turn did not produce an answer.
#[derive(Debug)]
pub enum TurnError {
    Stopped,
    Failed(String),
}

impl From<RunEnded> for TurnError {
    fn from(_: RunEnded) -> Self {
        TurnError::Stopped
    }
}

/// Why a turn is taken, for people: the reviewer's role for a reviewer's turn, then
/// what its tags say (`gate fix`, `review fix`, `merge resolve`, `repair`).
fn purpose_of(thread: &Conversation, extra_tags: &[&str]) -> Option<String> {
    let mut parts = Vec::new();
    if thread.tags.iter().any(|t| t == "review") {
        parts.push(thread.role.clone());
    }
    parts.extend(
        extra_tags
            .iter()
            .filter(|t| !t.starts_with("dynamic-"))
            .map(|t| t.replace('-', " ")),
    );
    (!parts.is_empty()).then(|| parts.join(", "))
}

impl RunContext {
    fn model_for(&self, thread: &Conversation, backend: &dyn Backend) -> Option<String> {
        if self.config.mini {
            if let Some(mini) = backend.mini_model() {
                return Some(mini);
            }
        }
        thread.model.clone().or_else(|| self.config.model.clone())
    }

    /// Runs one logical turn (with retries/fallbacks) and returns its final answer.
    pub async fn run_turn(
        &self,
        thread: &mut Conversation,
        kind: TurnKind,
        expects: Expects,
        purpose: TurnPurpose,
        prompt: &str,
        extra_tags: &[&str],
    ) -> Result<TurnResult, TurnError> {
        let mut state = RetryState::default();
        let mut moved_backend = false;
        thread.turns += 1;
        let turn = thread.turns;
        let mut attempt = 0;
        let mut prompt = prompt.to_owned();
        let mut extra_tags: Vec<&str> = extra_tags.to_vec();
        match self.replay.as_ref().map(|r| r.turn(&thread.id, turn)) {
            Some(Replayed::Done(record)) if record.role == thread.role && record.kind == kind => {
                return self.replayed(thread, record.clone()).await;
            }
            Some(Replayed::Cut(cut)) => {
                // The turn continues on its conversation, as its next attempt.
                attempt = cut.attempts;
                if cut.thread_id.is_some() {
                    thread.resume = cut.thread_id.clone();
                }
                if let (Some(thread_id), Ok(backend)) =
                    (&thread.resume, self.backends.get(&self.backend_key(thread)))
                    && let Some(usage) =
                        self.replay.as_ref().and_then(|r| r.thread_usage(thread_id))
                {
                    backend.seed_thread(thread_id, usage);
                }
                prompt = interrupted_prompt(cut, &prompt);
                extra_tags.push("resumed");
            }
            _ => {}
        }
        let prompt = prompt.as_str();
        let extra_tags = extra_tags.as_slice();
        loop {
            attempt += 1;
            // A reviewer's turn keeps the agent shown as under review.
            let review = expects == Expects::Verdict;
            self.link
                .turn_wanted(&thread.id, turn, attempt, review)
                .await?;
            let prompt_text = if moved_backend && !thread.history.is_empty() {
                format!(
                    "{}{prompt}",
                    transcript(
                        &thread.history,
                        "(This conversation moved to another backend. What was said so far:)"
                    )
                )
            } else {
                prompt.to_owned()
            };
            let backend = match self.backends.get(&self.backend_key(thread)) {
                Ok(backend) => backend,
                Err(err) => {
                    self.link
                        .turn_ended(&thread.id, tier_of(thread), Usage::default(), Some(0));
                    let message = err.to_string();
                    let outcome = TurnOutcome::Failed {
                        class: FailureClass::Terminal,
                        message: message.clone(),
                    };
                    match self
                        .after_failure(thread, (turn, attempt), &outcome, &mut state)
                        .await?
                    {
                        Next::Again => continue,
                        Next::Moved => {
                            moved_backend = true;
                            continue;
                        }
                        Next::GiveUp => return Err(TurnError::Failed(message)),
                    }
                }
            };
            let model = self.model_for(thread, backend.as_ref());
            let request = TurnRequest {
                agent: thread.id.clone(),
                role: thread.role.clone(),
                agent_kind: thread.kind,
                kind,
                expects,
                turn,
                attempt,
                repair: purpose == TurnPurpose::Repair,
                wave: thread.wave,
                prompt: prompt_text.clone(),
                resume: thread.resume.clone(),
                history: thread.history.clone(),
                model: model.clone(),
                permissions: thread.permissions.unwrap_or_else(|| {
                    self.config
                        .permissions_for(&thread.id, thread.kind, &thread.backend)
                }),
                cwd: self.workdir(thread),
                stop: self.stop.subscribe().into(),
            };
            self.bus
                .publish(OrchEventKind::TurnStarted {
                    agent: thread.id.clone(),
                    turn,
                    attempt,
                    kind,
                    backend: thread.backend.clone(),
                    model: model.clone(),
                    prompt: PromptStats::of(&prompt_text),
                    purpose: purpose_of(thread, extra_tags),
                })
                .await;
            let events = TurnEvents::new(self.bus.clone(), thread.id.clone(), turn);
            let started_at = SystemTime::now();
            // A stop ends the turn inside the backend (TERM, grace, KILL, reaped), which
            // then reports it interrupted; the turn is not dropped half-way.
            let result = backend.turn(&request, &events).await;
            let stopped = *self.stop.borrow()
                && !matches!(&result, Ok(result) if result.outcome.is_success());
            let result = match result {
                Ok(result) => result,
                Err(err) => TurnResult {
                    thread_id: None,
                    response: String::new(),
                    usage: Usage::default(),
                    outcome: TurnOutcome::Failed {
                        class: FailureClass::Terminal,
                        message: err.to_string(),
                    },
                },
            };
            thread.usage.add(&result.usage);
            // The demo backend costs nothing and needs no price.
            let cost = if thread.backend == "demo" && model.is_none() {
                Some(0)
            } else {
                self.config
                    .agents
                    .prices
                    .cost(model.as_deref(), &result.usage)
            };
            thread.cost_micros = match (thread.cost_micros, cost) {
                (Some(total), Some(cost)) => Some(total + cost),
                _ => None,
            };
            if cost.is_none()
                && !self
                    .unpriced_said
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                self.notice(
                    crate::events::NoticeLevel::Info,
                    format!(
                        "no price for {} (`{}`): its tokens count, its cost does not; `price \"<model>\" input=… output=…` in orch.kdl sets one (dollars per million tokens)",
                        match &model {
                            Some(model) => format!("model `{model}`"),
                            None => "the CLI's default model".to_owned(),
                        },
                        thread.backend
                    ),
                )
                .await;
            }
            let mut tags = thread.tags.clone();
            tags.extend(extra_tags.iter().map(|t| t.to_string()));
            let record = TurnRecord {
                agent: thread.id.clone(),
                role: thread.role.clone(),
                agent_kind: thread.kind,
                wave: thread.wave,
                turn,
                attempt,
                kind,
                prompt: prompt_text.clone(),
                response: result.response.clone(),
                usage: result.usage,
                started_at_ms: millis(started_at),
                finished_at_ms: millis(SystemTime::now()),
                backend: thread.backend.clone(),
                model,
                thread_id: result.thread_id.clone(),
                outcome: result.outcome.clone(),
                tags,
                cost_usd: cost.map(|micros| micros as f64 / 1e6),
            };
            self.bus
                .publish(OrchEventKind::TurnFinished(Box::new(record)))
                .await;
            // Told only now, so that a pause summary (written when the last turn in
            // flight ends) comes after every turn_finished it counts.
            self.link
                .turn_ended(&thread.id, tier_of(thread), result.usage, cost);
            if stopped {
                return Err(TurnError::Stopped);
            }
            if result.outcome.is_success() {
                thread.failures = 0;
                if result.thread_id.is_some() {
                    thread.resume = result.thread_id.clone();
                }
                thread.history.push(ChatMessage {
                    role: ChatRole::User,
                    content: prompt_text,
                });
                thread.history.push(ChatMessage {
                    role: ChatRole::Assistant,
                    content: result.response.clone(),
                });
                return Ok(result);
            }
            let message = match &result.outcome {
                TurnOutcome::Failed { message, .. } | TurnOutcome::Interrupted { message } => {
                    message.clone()
                }
                TurnOutcome::Completed => String::new(),
            };
            match self
                .after_failure(thread, (turn, attempt), &result.outcome, &mut state)
                .await?
            {
                Next::Again => {}
                Next::Moved => moved_backend = true,
                Next::GiveUp => {
                    let tries = if attempt > 1 {
                        format!(", attempt {attempt}")
                    } else {
                        String::new()
                    };
                    return Err(TurnError::Failed(format!(
                        "turn {turn}{tries} {}: {message}",
                        result.outcome.label()
                    )));
                }
            }
        }
    }

    /// A turn the stored session finished: its answer is given back without running it;
    /// its usage counts toward the budgets (the store already has it).
    async fn replayed(
        &self,
        thread: &mut Conversation,
        record: TurnRecord,
    ) -> Result<TurnResult, TurnError> {
        self.link
            .turn_wanted(&thread.id, record.turn, record.attempt, false)
            .await?;
        let cost = record.cost_usd.map(|usd| (usd * 1e6).round() as u64);
        thread.usage.add(&record.usage);
        thread.cost_micros = match (thread.cost_micros, cost) {
            (Some(total), Some(cost)) => Some(total + cost),
            _ => None,
        };
        self.link
            .turn_ended(&thread.id, tier_of(thread), record.usage, cost);
        if thread.backend != record.backend {
            // It had moved to a fallback backend.
            thread.backend = record.backend.clone();
        }
        if let Some(thread_id) = &record.thread_id {
            thread.resume = Some(thread_id.clone());
            // A later turn on this thread counts its usage from what the store has.
            if let (Ok(backend), Some(usage)) = (
                self.backends.get(&self.backend_key(thread)),
                self.replay.as_ref().and_then(|r| r.thread_usage(thread_id)),
            ) {
                backend.seed_thread(thread_id, usage);
            }
        }
        thread.failures = 0;
        thread.history.push(ChatMessage {
            role: ChatRole::User,
            content: record.prompt.clone(),
        });
        thread.history.push(ChatMessage {
            role: ChatRole::Assistant,
            content: record.response.clone(),
        });
        Ok(TurnResult {
            thread_id: record.thread_id,
            response: record.response,
            usage: record.usage,
            outcome: TurnOutcome::Completed,
        })
    }

    /// Decides and announces what follows a failed attempt.
    async fn after_failure(
        &self,
        thread: &mut Conversation,
        (turn, attempt): (u32, u32),
        outcome: &TurnOutcome,
        state: &mut RetryState,
    ) -> Result<Next, TurnError> {
        let (class, message) = match outcome {
            TurnOutcome::Failed { class, message } => (class.clone(), message.clone()),
            TurnOutcome::Interrupted { message } => (FailureClass::Terminal, message.clone()),
            TurnOutcome::Completed => return Ok(Next::GiveUp),
        };
        let decision = decide(
            &self.policy,
            state,
            outcome,
            &thread.fallback,
            rand::random::<f64>(),
        );
        self.bus
            .publish(OrchEventKind::TurnRetrying {
                agent: thread.id.clone(),
                turn,
                class,
                decision: decision.clone(),
                message: message.clone(),
            })
            .await;
        thread.failures += 1;
        if let Some(after) = self.config.agents.retry.needs_you_after
            && after > 0
            && thread.failures % after == 0
        {
            self.link
                .needs_you(
                    &thread.id,
                    format!(
                        "{} failed attempt{} in a row; the last: {}",
                        thread.failures,
                        if thread.failures == 1 { "" } else { "s" },
                        crate::events::render::one_line(&message, 300)
                    ),
                )
                .await?;
            // The user let it go on: one more try, even where it would have given up.
            if decision == RetryDecision::GiveUp {
                return Ok(Next::Again);
            }
        }
        match decision {
            RetryDecision::Retry { delay_ms, .. } | RetryDecision::Park { delay_ms } => {
                let lifecycle = match decision {
                    RetryDecision::Park { .. } => AgentLifecycle::Parked {
                        turn,
                        until_ms: millis(SystemTime::now()) + delay_ms,
                    },
                    _ => AgentLifecycle::Retrying {
                        turn,
                        attempt: attempt + 1,
                    },
                };
                self.link.progress(&thread.id, lifecycle);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => Ok(Next::Again),
                    _ = self.stopped() => Err(TurnError::Stopped),
                }
            }
            RetryDecision::Fallback { to } => {
                thread.backend = to;
                thread.resume = None;
                thread.model = None;
                Ok(Next::Moved)
            }
            RetryDecision::GiveUp => Ok(Next::GiveUp),
        }
    }
}
