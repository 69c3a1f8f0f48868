//! What one agent does from start to finish: its turns in order, the blueprint it
//! must produce (with one repair turn), and the status it ends with.

use std::collections::HashSet;
use std::sync::Arc;

use crate::agent::backend::{Expects, TurnKind};
use crate::config::Concise;
use crate::events::event::{AgentStatus, BlueprintAgentSummary, NoticeLevel, OrchEventKind};
use crate::orchestrator::blueprint::{Blueprint, BlueprintRules, parse_blueprint};
use crate::orchestrator::gates;
use crate::orchestrator::prompts;
use crate::orchestrator::turn::{Conversation, RunContext, TurnError, TurnPurpose};

/// One turn an agent will take.
#[derive(Clone, Debug)]
pub struct TurnPlan {
    pub kind: TurnKind,
    pub prompt: String,
    pub expects: Expects,
}

/// The blueprint an agent's last turn must produce.
#[derive(Clone, Debug)]
pub struct BlueprintAsk {
    pub max_agents: usize,
    pub taken: HashSet<String>,
    /// The wave the blueprint's agents will form (for events).
    pub wave: u32,
    pub tags: Vec<&'static str>,
}

#[derive(Clone, Debug)]
pub struct AgentJob {
    pub conversation: Conversation,
    pub depends_on: Vec<String>,
    pub turns: Vec<TurnPlan>,
    pub blueprint: Option<BlueprintAsk>,
    pub require_handoff_note: bool,
}

#[derive(Clone, Debug)]
pub struct AgentResult {
    pub id: String,
    pub status: AgentStatus,
    pub answer: Option<String>,
    pub conversation: Conversation,
    pub blueprint: Option<Blueprint>,
    pub handoff_note: Option<String>,
}

impl AgentResult {
    /// The result of an agent that never reported one (blocked, or its task was lost).
    pub fn lost(id: &str, status: AgentStatus, conversation: Option<&Conversation>) -> Self {
        let conversation = conversation.cloned().unwrap_or_else(|| Conversation {
            id: id.to_owned(),
            role: String::new(),
            kind: crate::agent::backend::AgentKind::Dynamic,
            group: String::new(),
            wave: 0,
            backend: String::new(),
            model: None,
            fallback: Vec::new(),
            tags: Vec::new(),
            resume: None,
            history: Vec::new(),
            turns: 0,
            usage: crate::agent::event::Usage::default(),
            cost_micros: Some(0),
            worktree: None,
            permissions: None,
            failures: 0,
            fixes: 0,
        });
        AgentResult {
            id: id.to_owned(),
            status,
            answer: None,
            conversation,
            blueprint: None,
            handoff_note: None,
        }
    }
}

/// Turns of a core or specialist agent: plan + follow-up, or one turn when concise.
pub fn two_turns(
    concise: Concise,
    plan: String,
    follow_up: Option<String>,
    last_expects: Expects,
) -> Vec<TurnPlan> {
    match (concise, follow_up) {
        (Concise::Off, Some(follow_up)) => vec![
            TurnPlan {
                kind: TurnKind::Plan,
                prompt: plan,
                expects: Expects::Text,
            },
            TurnPlan {
                kind: TurnKind::FollowUp,
                prompt: follow_up,
                expects: last_expects,
            },
        ],
        (_, _) => vec![TurnPlan {
            kind: TurnKind::Plan,
            prompt: plan,
            expects: last_expects,
        }],
    }
}

pub async fn run_agent(shared: Arc<RunContext>, mut job: AgentJob) -> AgentResult {
    let id = job.conversation.id.clone();
    shared
        .bus
        .publish(OrchEventKind::AgentStarted {
            agent: id.clone(),
            role: job.conversation.role.clone(),
            kind: job.conversation.kind,
            wave: job.conversation.wave,
            depends_on: job.depends_on.clone(),
        })
        .await;
    // An agent the stored session finished (`launch resume`) gives its answers back;
    // its work is committed and merged already, its gates and review passed.
    let finished = shared
        .replay
        .as_ref()
        .is_some_and(|replay| replay.agent_finished(&id));
    let outcome = match shared.prepare_workdir(&mut job.conversation).await {
        Ok(()) => match drive(&shared, &mut job).await {
            Ok((answer, blueprint, note)) if finished => Ok((answer, blueprint, note)),
            Ok((answer, blueprint, note)) => gates::check_and_integrate(&shared, &mut job, answer)
                .await
                .map(|answer| (answer, blueprint, note)),
            Err(err) => Err(err),
        },
        Err(reason) => Err(TurnError::Failed(reason)),
    };
    // On a resumed run, no agent has done new work successfully before the stored chain
    // verified. One the store finished gives back rows `launch resume` checked before
    // it started: its dependants need not wait (the run's end does, `dispatch`).
    let outcome = match outcome {
        Ok(done) if !finished => shared.store_verified().await.map(|()| done),
        other => other,
    };
    let (status, answer, blueprint, handoff_note) = match outcome {
        Ok((answer, blueprint, note)) => (AgentStatus::Succeeded, Some(answer), blueprint, note),
        Err(TurnError::Stopped) => (AgentStatus::Stopped, None, None, None),
        Err(TurnError::Failed(reason)) => (AgentStatus::Failed { reason }, None, None, None),
    };
    // A feature's status reaches the features file before its agent is done; a write
    // that did not land fails it.
    let status = if finished {
        status
    } else {
        match shared.feature_finished(&job.conversation, &status).await {
            Ok(()) => status,
            Err(reason) => AgentStatus::Failed { reason },
        }
    };
    shared
        .bus
        .publish(OrchEventKind::AgentFinished {
            agent: id.clone(),
            role: job.conversation.role.clone(),
            kind: job.conversation.kind,
            wave: job.conversation.wave,
            status: status.clone(),
            usage: job.conversation.usage,
        })
        .await;
    AgentResult {
        id,
        status,
        answer,
        conversation: job.conversation,
        blueprint,
        handoff_note,
    }
}

type Drive = Result<(String, Option<Blueprint>, Option<String>), TurnError>;

async fn drive(shared: &RunContext, job: &mut AgentJob) -> Drive {
    let mut answer = String::new();
    let last = job.turns.len().saturating_sub(1);
    for (i, plan) in job.turns.clone().into_iter().enumerate() {
        let tags: &[&str] = if plan.expects == Expects::Blueprint {
            &["dynamic-blueprint"]
        } else {
            &[]
        };
        let result = shared
            .run_turn(
                &mut job.conversation,
                plan.kind,
                plan.expects,
                TurnPurpose::Planned,
                &plan.prompt,
                tags,
            )
            .await?;
        answer = result.response;
        if i == last {
            if let Some(ask) = job.blueprint.clone() {
                let blueprint = obtain_blueprint(shared, job, &ask, answer.clone()).await?;
                return Ok((answer, Some(blueprint), None));
            }
        }
    }
    let note = if job.require_handoff_note {
        match prompts::extract_handoff_note(&answer) {
            Some(note) => Some(note),
            None => {
                shared
                    .bus
                    .publish(OrchEventKind::Notice {
                        level: NoticeLevel::Warning,
                        message: format!(
                            "agent `{}` wrote no handoff note; the next wave gets the end of its answer instead",
                            job.conversation.id
                        ),
                    })
                    .await;
                let tail: String = answer
                    .chars()
                    .rev()
                    .take(500)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Some(tail)
            }
        }
    } else {
        prompts::extract_handoff_note(&answer)
    };
    Ok((answer, None, note))
}

/// Parses the answer as a blueprint; one repair turn on the same thread, then failure.
async fn obtain_blueprint(
    shared: &RunContext,
    job: &mut AgentJob,
    ask: &BlueprintAsk,
    first: String,
) -> Result<Blueprint, TurnError> {
    let rules = BlueprintRules {
        max_agents: ask.max_agents,
        taken: &ask.taken,
    };
    let mut answer = first;
    for attempt in 1..=2u32 {
        match parse_blueprint(&answer, &rules) {
            Ok(blueprint) => {
                shared
                    .bus
                    .publish(OrchEventKind::BlueprintAccepted {
                        source: job.conversation.id.clone(),
                        wave: ask.wave,
                        agents: blueprint
                            .agents
                            .iter()
                            .map(|a| BlueprintAgentSummary {
                                id: a.id.clone(),
                                role: a.role.clone(),
                                depends_on: a.depends_on.clone(),
                            })
                            .collect(),
                    })
                    .await;
                return Ok(blueprint);
            }
            Err(err) => {
                let error = err.to_string();
                shared
                    .bus
                    .publish(OrchEventKind::BlueprintRejected {
                        source: job.conversation.id.clone(),
                        attempt,
                        error: error.clone(),
                    })
                    .await;
                if attempt == 2 {
                    return Err(TurnError::Failed(format!(
                        "invalid blueprint from `{}` after one repair attempt: {error}",
                        job.conversation.id
                    )));
                }
                let mut tags = vec!["repair"];
                tags.extend(ask.tags.iter().copied());
                let repaired = shared
                    .run_turn(
                        &mut job.conversation,
                        TurnKind::FollowUp,
                        Expects::Blueprint,
                        TurnPurpose::Repair,
                        &prompts::repair(&error),
                        &tags,
                    )
                    .await?;
                answer = repaired.response;
            }
        }
    }
    Err(TurnError::Failed(
        "unreachable: blueprint loop ended".into(),
    ))
}
