//! Pause, resume and stop: what a control request or a signal does to the run, and
//! the interrupt summary a pause or stop writes once no turn runs. Part of the pure
//! `RunState` (no I/O).

use crate::config::prices::dollars;
use crate::control::protocol::{ControlCommand, ControlResponse};
use crate::control::signals::SignalAction;
use crate::events::event::{InterruptSummary, NoticeLevel, OrchEventKind};
use crate::orchestrator::lifecycle::{AgentEntry, AgentLifecycle};
use crate::orchestrator::state::{Effect, Pause, RunMode, RunState};

/// How the source of a pause the run made because an agent needs the user begins:
/// `needs-you: <agent>: <reason>`.
pub const NEEDS_YOU: &str = "needs-you: ";

/// How the notice of a token budget raised by `ctl resume --max-tokens` begins; the
/// number follows.
pub const TOKEN_BUDGET_SET: &str = "token budget set to ";

/// The budget a `TOKEN_BUDGET_SET` notice names.
pub fn token_budget_set(message: &str) -> Option<u64> {
    message
        .strip_prefix(TOKEN_BUDGET_SET)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

impl RunState {
    pub(super) fn reply(&self, id: u64, ok: bool, message: String) -> Effect {
        Effect::Reply {
            id,
            response: ControlResponse {
                ok,
                mode: self.mode,
                message,
                status: None,
                board: None,
            },
        }
    }

    pub(super) fn interrupt_log(&self) -> String {
        self.config
            .run_paths()
            .interrupt_log()
            .display()
            .to_string()
    }

    pub(super) fn control(
        &mut self,
        id: u64,
        command: ControlCommand,
        source: &str,
        fx: &mut Vec<Effect>,
    ) {
        let message = match command {
            ControlCommand::Pause => match self.mode {
                RunMode::Running => {
                    self.begin_pause(source, fx);
                    let in_flight = &self.pause.as_ref().map(|p| p.in_flight.clone());
                    let waiting = match in_flight.as_deref() {
                        Some([]) | None => "nothing was running".to_owned(),
                        Some(agents) => format!(
                            "waiting for {} to finish the running turn",
                            agents.join(", ")
                        ),
                    };
                    Ok(format!(
                        "pausing: {waiting}; the summary goes to {}",
                        self.interrupt_log()
                    ))
                }
                RunMode::Paused => Ok(format!(
                    "already paused; the summary is in {}",
                    self.interrupt_log()
                )),
                _ => Err("the run is stopping".to_owned()),
            },
            ControlCommand::Resume => {
                if self.mode != RunMode::Paused {
                    Err("the run is not paused".into())
                } else if let Some(spent) = self.budget_spent().filter(|s| s.agent.is_none()) {
                    Err(format!(
                        "the {} budget is spent ({}): resume with a larger one, `launch ctl resume {}`, or stop",
                        spent.what, spent.text, spent.raise
                    ))
                } else {
                    self.raise_agent_budgets(source, fx);
                    self.resume(fx);
                    Ok("resumed".into())
                }
            }
            ControlCommand::MaxTokens(limit) => {
                self.max_tokens = Some(limit);
                self.budget_warned = false;
                fx.push(Effect::Publish(OrchEventKind::Notice {
                    level: NoticeLevel::Info,
                    message: format!(
                        "{TOKEN_BUDGET_SET}{limit} by {source} ({} used)",
                        self.tokens_used()
                    ),
                }));
                Ok(format!(
                    "token budget: {limit} ({} used)",
                    self.tokens_used()
                ))
            }
            ControlCommand::MaxCost(limit) => {
                self.max_cost = Some(limit);
                self.cost_warned = false;
                let (limit, used) = (dollars(limit), dollars(self.cost_micros));
                fx.push(Effect::Publish(OrchEventKind::Notice {
                    level: NoticeLevel::Info,
                    message: format!("cost budget set to {limit} by {source} ({used} spent)"),
                }));
                Ok(format!("cost budget: {limit} ({used} spent)"))
            }
            ControlCommand::Watch => Err("this run serves no status board".into()),
            ControlCommand::Stop => {
                if self.mode == RunMode::Stopping {
                    Ok("already stopping".into())
                } else {
                    self.begin_stop(source, fx);
                    Ok("stopping: running turns are being ended".into())
                }
            }
            ControlCommand::Status => {
                fx.push(Effect::Reply {
                    id,
                    response: ControlResponse {
                        ok: true,
                        mode: self.mode,
                        message: String::new(),
                        status: Some(self.status()),
                        board: None,
                    },
                });
                return;
            }
        };
        match message {
            Ok(text) => fx.push(self.reply(id, true, text)),
            Err(text) => fx.push(self.reply(id, false, text)),
        }
    }

    pub(super) fn signal(&mut self, action: SignalAction, source: &str, fx: &mut Vec<Effect>) {
        let session = self.config.paths.session.clone();
        match action {
            SignalAction::Pause => match self.mode {
                RunMode::Running => {
                    self.begin_pause(source, fx);
                    fx.push(Effect::Say(format!(
                        "pausing: running turns finish, nothing new starts\npaused: `launch ctl resume --session {session}` continues; Ctrl+C again stops the run"
                    )));
                }
                RunMode::Paused => fx.push(Effect::Say("already paused".into())),
                _ => {}
            },
            SignalAction::Stop => {
                if self.mode != RunMode::Stopping {
                    self.begin_stop(source, fx);
                    fx.push(Effect::Say(
                        "stopping: running turns are being ended (Ctrl+C once more exits at once)"
                            .into(),
                    ));
                }
            }
            SignalAction::Exit => {}
        }
    }

    /// Tokens the run has used, as budgets count them (input, cached included, and
    /// output).
    pub(super) fn tokens_used(&self) -> u64 {
        self.usage.input_tokens + self.usage.output_tokens
    }

    /// The first budget used up, if any: tokens, then cost.
    pub(super) fn budget_spent(&self) -> Option<Spent> {
        if let Some(limit) = self.max_tokens {
            let used = self.tokens_used();
            if used >= limit {
                return Some(Spent {
                    what: "token".into(),
                    flag: format!("--max-tokens {limit}"),
                    text: format!("{used} of {limit} tokens"),
                    raise: "--max-tokens N",
                    agent: None,
                });
            }
        }
        if let Some(limit) = self.max_cost
            && self.cost_micros >= limit
        {
            return Some(Spent {
                what: "cost".into(),
                flag: format!("--max-cost {}", dollars(limit)),
                text: format!("{} of {}", dollars(self.cost_micros), dollars(limit)),
                raise: "--max-cost USD",
                agent: None,
            });
        }
        self.agents.iter().find_map(|entry| {
            let limit = self.agent_limit(entry)?;
            let used = entry.usage.input_tokens + entry.usage.output_tokens;
            (used >= limit).then(|| Spent {
                what: format!("agent `{}` token", entry.id),
                flag: format!("max-tokens {limit} of agent `{}`", entry.id),
                text: format!("{used} of {limit} tokens"),
                raise: "",
                agent: Some(entry.id.clone()),
            })
        })
    }

    /// The tokens `entry` may use: its `max-tokens` in orch.kdl, as raised by resumes.
    fn agent_limit(&self, entry: &AgentEntry) -> Option<u64> {
        self.agent_limits.get(&entry.id).copied().or_else(|| {
            self.config
                .agent_max_tokens(&entry.id, entry.kind, &entry.group)
        })
    }

    /// On resume: each agent whose own budget is spent gets its `max-tokens` again.
    fn raise_agent_budgets(&mut self, source: &str, fx: &mut Vec<Effect>) {
        let mut raised = Vec::new();
        for entry in &self.agents {
            let (Some(limit), Some(allowance)) = (
                self.agent_limit(entry),
                self.config
                    .agent_max_tokens(&entry.id, entry.kind, &entry.group),
            ) else {
                continue;
            };
            let used = entry.usage.input_tokens + entry.usage.output_tokens;
            if used >= limit {
                raised.push((entry.id.clone(), used + allowance, allowance));
            }
        }
        for (agent, limit, allowance) in raised {
            fx.push(Effect::Publish(OrchEventKind::Notice {
                level: NoticeLevel::Info,
                message: format!(
                    "agent `{agent}` may use {allowance} more tokens (its budget is now {limit}), resumed by {source}"
                ),
            }));
            self.agent_warned.remove(&agent);
            self.agent_limits.insert(agent, limit);
        }
    }

    /// After a turn's usage is counted: a warning at 80 % of a budget, and at 100 % a
    /// pause as Ctrl+S makes (turns in flight finish, nothing new starts), the budget
    /// named in its summary.
    pub(super) fn check_budget(&mut self, fx: &mut Vec<Effect>) {
        if let Some(spent) = self.budget_spent() {
            if self.mode == RunMode::Running {
                let session = self.config.paths.session.clone();
                self.begin_pause(
                    &format!("budget: {} reached ({})", spent.flag, spent.text),
                    fx,
                );
                fx.push(Effect::Say(format!(
                    "paused: the {} budget is spent ({}); {}",
                    spent.what,
                    spent.text,
                    spent.how_to_continue(&session)
                )));
            }
            return;
        }
        let used = self.tokens_used();
        if let Some(limit) = self.max_tokens
            && !self.budget_warned
            && used.saturating_mul(10) >= limit.saturating_mul(8)
        {
            self.budget_warned = true;
            fx.push(Effect::Publish(OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message: format!("80 % of the token budget used ({used} of {limit} tokens)"),
            }));
        }
        let mut warnings = Vec::new();
        for entry in &self.agents {
            let Some(limit) = self.agent_limit(entry) else {
                continue;
            };
            let used = entry.usage.input_tokens + entry.usage.output_tokens;
            if used.saturating_mul(10) >= limit.saturating_mul(8)
                && !self.agent_warned.contains(&entry.id)
            {
                warnings.push((entry.id.clone(), used, limit));
            }
        }
        for (agent, used, limit) in warnings {
            fx.push(Effect::Publish(OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message: format!(
                    "80 % of the token budget of agent `{agent}` used ({used} of {limit} tokens)"
                ),
            }));
            self.agent_warned.insert(agent);
        }
        if let Some(limit) = self.max_cost
            && !self.cost_warned
            && self.cost_micros.saturating_mul(10) >= limit.saturating_mul(8)
        {
            self.cost_warned = true;
            fx.push(Effect::Publish(OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message: format!(
                    "80 % of the cost budget spent ({} of {})",
                    dollars(self.cost_micros),
                    dollars(limit)
                ),
            }));
        }
    }

    pub(super) fn begin_pause(&mut self, source: &str, fx: &mut Vec<Effect>) {
        self.pauses += 1;
        self.mode = RunMode::Paused;
        self.pause = Some(Pause {
            number: self.pauses,
            source: source.to_owned(),
            in_flight: self.in_turn.iter().cloned().collect(),
            summary_written: false,
        });
        fx.push(Effect::Publish(OrchEventKind::PauseRequested {
            source: source.to_owned(),
        }));
        self.maybe_write_pause_summary(fx);
    }

    /// A pause takes effect once no turn runs: then its summary is written, once.
    pub(super) fn maybe_write_pause_summary(&mut self, fx: &mut Vec<Effect>) {
        if self.mode != RunMode::Paused || !self.in_turn.is_empty() {
            return;
        }
        let Some(pause) = &self.pause else { return };
        if pause.summary_written {
            return;
        }
        let session = &self.config.paths.session;
        let resume = match self.budget_spent() {
            Some(spent) => format!(
                "the {} budget is spent ({} used): {}",
                spent.what,
                spent.text,
                spent.how_to_continue(session)
            ),
            None if !self.needing_you.is_empty() => format!(
                "look at what {} (a worktree under .orch/worktrees/{session}/), then let {} try again: launch ctl resume --session {session}",
                if self.needing_you.len() == 1 {
                    "needs you"
                } else {
                    "need you"
                },
                if self.needing_you.len() == 1 {
                    "it"
                } else {
                    "them"
                },
            ),
            None => format!("continue: launch ctl resume --session {session}"),
        };
        // Each agent that needs the user, with its reason (the pause names the first).
        let mut next: Vec<String> = self
            .needing_you
            .iter()
            .filter_map(|id| match &self.entry(id)?.lifecycle {
                AgentLifecycle::NeedsYou { reason } => Some(format!("{id} needs you: {reason}")),
                _ => None,
            })
            .collect();
        next.push(resume);
        next.push(format!(
            "stop for good: launch ctl stop --session {session}"
        ));
        let summary = self.summary(next);
        if let Some(pause) = &mut self.pause {
            pause.summary_written = true;
        }
        fx.push(Effect::Publish(OrchEventKind::RunPaused(Box::new(summary))));
    }

    /// An agent that cannot go on without the user: the run pauses with the reason (or,
    /// already paused, says it); the agent waits for `resume` (it tries again) or stop.
    pub(super) fn needs_you(&mut self, agent: String, reason: String, fx: &mut Vec<Effect>) {
        match self.mode {
            RunMode::Running | RunMode::Paused => {}
            RunMode::Stopping | RunMode::Finished => {
                fx.push(Effect::Deny(agent));
                return;
            }
        }
        self.set_lifecycle(
            &agent,
            AgentLifecycle::NeedsYou {
                reason: reason.clone(),
            },
        );
        self.needing_you.push(agent.clone());
        let session = self.config.paths.session.clone();
        if self.mode == RunMode::Running {
            self.begin_pause(&format!("{NEEDS_YOU}{agent}: {reason}"), fx);
        } else {
            fx.push(Effect::Publish(OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message: format!("needs you: {agent}: {reason}"),
            }));
        }
        fx.push(Effect::Say(format!(
            "paused: `{agent}` needs you: {reason}\n`launch ctl resume --session {session}` lets it try again; `launch ctl stop --session {session}` ends the run"
        )));
    }

    pub(super) fn resume(&mut self, fx: &mut Vec<Effect>) {
        self.mode = RunMode::Running;
        fx.push(Effect::Publish(OrchEventKind::RunResumed));
        for agent in std::mem::take(&mut self.needing_you) {
            self.set_lifecycle(&agent, AgentLifecycle::Starting);
            fx.push(Effect::Grant(agent));
        }
        for agent in std::mem::take(&mut self.waiting) {
            self.in_turn.insert(agent.clone());
            fx.push(Effect::Grant(agent));
        }
        for job in std::mem::take(&mut self.held) {
            self.launch(job, fx);
        }
    }

    pub(super) fn begin_stop(&mut self, source: &str, fx: &mut Vec<Effect>) {
        self.mode = RunMode::Stopping;
        self.stopped = true;
        self.pauses += 1;
        self.pause = Some(Pause {
            number: self.pauses,
            source: source.to_owned(),
            in_flight: self.in_turn.iter().cloned().collect(),
            summary_written: false,
        });
        fx.push(Effect::Publish(OrchEventKind::StopRequested {
            source: source.to_owned(),
        }));
        for agent in std::mem::take(&mut self.waiting) {
            fx.push(Effect::Deny(agent));
        }
        for agent in std::mem::take(&mut self.needing_you) {
            fx.push(Effect::Deny(agent));
        }
        self.held.clear();
        // Agents that never started end as stopped.
        let never: Vec<(String, u32)> = self
            .agents
            .iter()
            .filter(|e| e.lifecycle == AgentLifecycle::Queued)
            .map(|e| (e.id.clone(), e.wave))
            .collect();
        for (id, wave) in never {
            self.report_never_started(&id, wave);
        }
        fx.push(Effect::StopAgents);
    }

    pub(super) fn summary(&self, next_steps: Vec<String>) -> InterruptSummary {
        let with = |pred: &dyn Fn(&AgentLifecycle) -> bool| -> Vec<String> {
            self.agents
                .iter()
                .filter(|e| pred(&e.lifecycle))
                .map(|e| e.id.clone())
                .collect()
        };
        let pause = self.pause.as_ref();
        let in_flight = pause.map(|p| p.in_flight.clone()).unwrap_or_default();
        InterruptSummary {
            session: self.config.paths.session.clone(),
            number: pause.map(|p| p.number).unwrap_or(self.pauses),
            requested_by: pause.map(|p| p.source.clone()).unwrap_or_default(),
            finished: with(&|l| *l == AgentLifecycle::Succeeded),
            failed: with(&|l| {
                matches!(
                    l,
                    AgentLifecycle::Failed { .. } | AgentLifecycle::Blocked { .. }
                )
            }),
            in_flight: in_flight.clone(),
            pending: with(&|l| *l == AgentLifecycle::Queued),
            started: self
                .agents
                .iter()
                .filter(|e| {
                    !matches!(
                        e.lifecycle,
                        AgentLifecycle::Queued
                            | AgentLifecycle::Succeeded
                            | AgentLifecycle::Failed { .. }
                            | AgentLifecycle::Blocked { .. }
                            | AgentLifecycle::Stopped
                    ) && !in_flight.contains(&e.id)
                })
                .map(|e| e.id.clone())
                .collect(),
            usage: self.usage,
            next_steps,
        }
    }
}

/// A budget that is used up, in the words the run uses for it.
pub(super) struct Spent {
    /// `token`, `cost`, or ``agent `x` token``.
    what: String,
    /// `--max-tokens 100`, `--max-cost $1.0000`.
    flag: String,
    /// `120 of 100 tokens`, `$1.2000 of $1.0000`.
    text: String,
    /// How to continue: `--max-tokens N` (nothing for an agent's own budget).
    raise: &'static str,
    /// The agent whose own budget it is (`max-tokens` in orch.kdl).
    agent: Option<String>,
}

impl Spent {
    fn how_to_continue(&self, session: &str) -> String {
        match &self.agent {
            Some(agent) => format!(
                "`launch ctl resume --session {session}` gives `{agent}` its budget again, `launch ctl stop --session {session}` ends the run"
            ),
            None => format!(
                "`launch ctl resume --session {session} {}` continues with a larger one",
                self.raise
            ),
        }
    }
}
