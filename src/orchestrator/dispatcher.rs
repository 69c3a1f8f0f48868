//! The one task that owns a run: every input (a control request, a signal, an agent
//! asking for a turn, a turn's end, an agent's end or panic) arrives here as a message
//! into one `select!`, is handed to `RunState::handle`, and the effects it returns are
//! performed in order.
//!
//! Owns the actor messages (which carry reply channels) and the agent tasks. Decides
//! nothing itself: `state` does.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::agent::event::Usage;
use crate::control::protocol::{ControlCommand, ControlResponse};
use crate::control::signals::SignalAction;
use crate::events::RunStatus;
use crate::events::event::OrchEventKind;
use crate::orchestrator::agents::{AgentResult, run_agent};
use crate::orchestrator::lifecycle::AgentLifecycle;
use crate::orchestrator::state::{Effect, Input, RunMode, RunReport, RunState};
use crate::orchestrator::turn::{RunContext, TurnError};

/// Messages into the dispatcher (tier 1: they may carry reply channels).
#[derive(Debug)]
pub(crate) enum Message {
    Control {
        command: ControlCommand,
        source: String,
        reply: oneshot::Sender<ControlResponse>,
    },
    Signal {
        action: SignalAction,
        source: String,
    },
    TurnWanted {
        agent: String,
        turn: u32,
        attempt: u32,
        review: bool,
        reply: oneshot::Sender<bool>,
    },
    TurnEnded {
        agent: String,
        tier: Option<String>,
        usage: Usage,
        cost: Option<u64>,
    },
    Progress {
        agent: String,
        lifecycle: AgentLifecycle,
    },
    Failure {
        message: String,
        source: &'static str,
    },
    TaskRevised {
        text: String,
    },
    NeedsYou {
        agent: String,
        reason: String,
        reply: oneshot::Sender<bool>,
    },
}

/// The way into a run's dispatcher, for agent tasks, the control socket and signals.
#[derive(Clone, Debug)]
pub struct RunLink {
    tx: mpsc::UnboundedSender<Message>,
    mode: watch::Receiver<RunMode>,
}

/// The receiving end, handed to `dispatch`.
pub struct RunInbox {
    rx: mpsc::UnboundedReceiver<Message>,
    mode: watch::Sender<RunMode>,
}

/// The run ended before the request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunEnded;

impl RunLink {
    pub fn new() -> (RunLink, RunInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (mode_tx, mode) = watch::channel(RunMode::Running);
        (RunLink { tx, mode }, RunInbox { rx, mode: mode_tx })
    }

    /// The run's mode as the dispatcher last left it.
    pub fn mode(&self) -> RunMode {
        *self.mode.borrow()
    }

    fn send(&self, message: Message) {
        // The dispatcher is gone once the run ended; nothing is waiting for this then.
        let _ = self.tx.send(message);
    }

    /// A control request and its answer; a run that has ended answers so.
    pub async fn control(&self, command: ControlCommand, source: &str) -> ControlResponse {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Control {
            command,
            source: source.to_owned(),
            reply,
        });
        answer.await.unwrap_or_else(|_| ControlResponse {
            ok: false,
            mode: RunMode::Finished,
            message: "the run has finished".into(),
            status: None,
            board: None,
        })
    }

    pub fn signal(&self, action: SignalAction, source: &str) {
        self.send(Message::Signal {
            action,
            source: source.to_owned(),
        });
    }

    /// Waits until `agent` may start try `attempt` of turn `turn`; errs when the run
    /// stops instead.
    /// `review`: the turn is a reviewer's, judging the agent's work.
    pub async fn turn_wanted(
        &self,
        agent: &str,
        turn: u32,
        attempt: u32,
        review: bool,
    ) -> Result<(), RunEnded> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::TurnWanted {
            agent: agent.to_owned(),
            turn,
            attempt,
            review,
            reply,
        });
        match answer.await {
            Ok(true) => Ok(()),
            _ => Err(RunEnded),
        }
    }

    /// `cost`: micro-dollars, `None` when the turn's model has no price.
    /// `tier`: the model tier it ran on (`tier:` tag), if its group names tiers.
    pub fn turn_ended(&self, agent: &str, tier: Option<String>, usage: Usage, cost: Option<u64>) {
        self.send(Message::TurnEnded {
            agent: agent.to_owned(),
            tier,
            usage,
            cost,
        });
    }

    pub fn progress(&self, agent: &str, lifecycle: AgentLifecycle) {
        self.send(Message::Progress {
            agent: agent.to_owned(),
            lifecycle,
        });
    }

    /// `agent` cannot go on without the user: the run pauses (turns in flight finish,
    /// nothing new starts), with `reason` in its summary, its status and the store.
    /// Returns once the user resumed the run (the agent may try again), or `RunEnded`
    /// once they stopped it.
    pub async fn needs_you(&self, agent: &str, reason: String) -> Result<(), RunEnded> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::NeedsYou {
            agent: agent.to_owned(),
            reason,
            reply,
        });
        match answer.await {
            Ok(true) => Ok(()),
            _ => Err(RunEnded),
        }
    }

    /// A sink could not write: the run starts nothing more and fails.
    pub fn sink_failed(&self, message: String) {
        self.send(Message::Failure {
            message,
            source: "a failed write",
        });
    }

    /// The task file has `text` now.
    pub fn task_revised(&self, text: String) {
        self.send(Message::TaskRevised { text });
    }

    /// A resumed run's audit store does not verify: the run stops and fails.
    pub fn store_broken(&self, message: String) {
        self.send(Message::Failure {
            message,
            source: "an audit store that does not verify",
        });
    }
}

/// Runs the whole run to its end and returns its report.
pub async fn dispatch(ctx: Arc<RunContext>, inbox: RunInbox) -> RunReport {
    let RunInbox { mut rx, mode } = inbox;
    let mut state = RunState::new(ctx.config.clone());
    let mut tasks: JoinSet<AgentResult> = JoinSet::new();
    let mut task_agents: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut replies: HashMap<u64, oneshot::Sender<ControlResponse>> = HashMap::new();
    let mut grants: HashMap<String, oneshot::Sender<bool>> = HashMap::new();
    let mut next_request = 0u64;
    let mut effects = state.handle(Input::Start);
    let mut late_problem: Option<String> = None;
    loop {
        let mut finished = false;
        for effect in effects.drain(..) {
            match effect {
                Effect::Publish(OrchEventKind::RunFinished {
                    status: RunStatus::Succeeded,
                    usage,
                    failed,
                }) => {
                    // A resumed run has not succeeded before its stored chain verified.
                    let status = match ctx.store_verified().await {
                        Ok(()) => RunStatus::Succeeded,
                        Err(TurnError::Failed(problem)) => {
                            late_problem = Some(problem);
                            RunStatus::Failed
                        }
                        Err(TurnError::Stopped) => RunStatus::Stopped,
                    };
                    ctx.bus
                        .publish(OrchEventKind::RunFinished {
                            status,
                            usage,
                            failed,
                        })
                        .await;
                }
                Effect::Publish(kind) => ctx.bus.publish(kind).await,
                Effect::Reply { id, response } => {
                    if let Some(reply) = replies.remove(&id) {
                        let _ = reply.send(response);
                    }
                }
                Effect::Say(text) => eprintln!("{text}"),
                Effect::Launch(job) => {
                    let agent = job.conversation.id.clone();
                    if let Some(isolation) = &ctx.isolation {
                        isolation.starting(&agent);
                    }
                    let handle = tasks.spawn(run_agent(ctx.clone(), *job));
                    task_agents.insert(handle.id(), agent);
                }
                Effect::Stage(agent) => {
                    if let Some(making) = ctx.isolation.as_ref().and_then(|i| i.stage(&agent)) {
                        tokio::spawn(making);
                    }
                }
                Effect::Unstage(agent) => {
                    if let Some(isolation) = &ctx.isolation {
                        isolation.unstage(&agent);
                    }
                }
                Effect::Grant(agent) => {
                    if let Some(check) = &ctx.store_check {
                        check.begin();
                    }
                    // A dropped receiver means the agent's task ended; its end (or panic)
                    // is on its way and frees the turn.
                    if let Some(reply) = grants.remove(&agent) {
                        let _ = reply.send(true);
                    }
                }
                Effect::Deny(agent) => {
                    if let Some(reply) = grants.remove(&agent) {
                        let _ = reply.send(false);
                    }
                }
                Effect::StopAgents => ctx.stop(),
                Effect::Finish => finished = true,
            }
        }
        if finished {
            break;
        }
        let input = tokio::select! {
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => match joined {
                Ok((id, result)) => {
                    task_agents.remove(&id);
                    if let Some(isolation) = &ctx.isolation {
                        isolation.set_up(&result.id);
                    }
                    Input::AgentEnded(Box::new(result))
                }
                Err(error) => {
                    let agent = task_agents.remove(&error.id()).unwrap_or_default();
                    if let Some(isolation) = &ctx.isolation {
                        isolation.set_up(&agent);
                    }
                    grants.remove(&agent);
                    Input::AgentPanicked { agent, message: join_message(error) }
                }
            },
            Some(message) = rx.recv() => match message {
                Message::Control { command, source, reply } => {
                    next_request += 1;
                    replies.insert(next_request, reply);
                    Input::Control { id: next_request, command, source }
                }
                Message::Signal { action, source } => Input::Signal { action, source },
                Message::TurnWanted { agent, turn, attempt, review, reply } => {
                    grants.insert(agent.clone(), reply);
                    Input::TurnWanted { agent, turn, attempt, review }
                }
                Message::TurnEnded { agent, tier, usage, cost } => Input::TurnEnded { agent, tier, usage, cost },
                Message::Progress { agent, lifecycle } => Input::Progress { agent, lifecycle },
                Message::Failure { message, source } => Input::Failure { message, source },
                Message::TaskRevised { text } => Input::TaskRevised { text },
                Message::NeedsYou { agent, reason, reply } => {
                    grants.insert(agent.clone(), reply);
                    Input::NeedsYou { agent, reason }
                }
            },
            else => break,
        };
        effects = state.handle(input);
        mode.send_if_modified(|current| {
            let changed = *current != state.mode();
            *current = state.mode();
            changed
        });
    }
    mode.send_replace(RunMode::Finished);
    // Requests that raced the end get the same answer as later ones.
    rx.close();
    while let Ok(message) = rx.try_recv() {
        if let Message::Control { reply, .. } = message {
            let _ = reply.send(ControlResponse {
                ok: false,
                mode: RunMode::Finished,
                message: "the run has finished".into(),
                status: None,
                board: None,
            });
        }
    }
    let mut report = state.report();
    if let Some(problem) = late_problem {
        report.status = RunStatus::Failed;
        report.problems.push(problem);
    }
    report
}

fn join_message(error: tokio::task::JoinError) -> String {
    if error.is_panic() {
        let payload = error.into_panic();
        if let Some(text) = payload.downcast_ref::<&str>() {
            return format!("panicked: {text}");
        }
        if let Some(text) = payload.downcast_ref::<String>() {
            return format!("panicked: {text}");
        }
        return "panicked".into();
    }
    error.to_string()
}
