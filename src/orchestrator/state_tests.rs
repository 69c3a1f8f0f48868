//! The run's pure core, driven by sequences of inputs without a runtime: each race
//! the dispatcher closes has a test here.

use std::sync::Arc;

use crate::agent::event::Usage;
use crate::cli::{IsolationChoice, RunArgs};
use crate::config::{Config, resolve};
use crate::control::protocol::ControlCommand;
use crate::control::signals::SignalAction;
use crate::events::event::{AgentStatus, OrchEventKind, RunStatus};
use crate::orchestrator::agents::AgentResult;
use crate::orchestrator::lifecycle::AgentLifecycle;
use crate::orchestrator::state::{Effect, Input, RunMode, RunState};

fn config() -> Arc<Config> {
    Arc::new(config_with(None))
}

/// The test run's config, with `agents_config` as its `orch.kdl` if given.
fn config_with(agents_config: Option<std::path::PathBuf>) -> Config {
    let root = std::env::temp_dir();
    let args = RunArgs {
        prompt: Some("Ship the MVP".into()),
        backend: Some("demo".into()),
        project_root: Some(root.clone()),
        session: Some("run-test".into()),
        no_audit: true,
        isolation: Some(IsolationChoice::Shared),
        agents_config,
        ..RunArgs::default()
    };
    resolve(&args, &Default::default(), &root).expect("config")
}

/// The names of what the effects publish, in order, and the other effects by name.
fn names(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Publish(kind) => event_name(kind),
            Effect::Reply { response, .. } => format!("reply:{}", response.ok),
            Effect::Say(_) => "say".into(),
            Effect::Launch(job) => format!("launch:{}", job.conversation.id),
            Effect::Stage(a) => format!("stage:{a}"),
            Effect::Unstage(a) => format!("unstage:{a}"),
            Effect::Grant(a) => format!("grant:{a}"),
            Effect::Deny(a) => format!("deny:{a}"),
            Effect::StopAgents => "stop_agents".into(),
            Effect::Finish => "finish".into(),
        })
        .collect()
}

fn event_name(kind: &OrchEventKind) -> String {
    match kind {
        OrchEventKind::RunStarted { .. } => "run_started".into(),
        OrchEventKind::GroupStarted { .. } => "group_started".into(),
        OrchEventKind::WaveScheduled { .. } => "wave_scheduled".into(),
        OrchEventKind::AgentFinished { agent, status, .. } => {
            format!("agent_finished:{agent}:{}", status.label())
        }
        OrchEventKind::PauseRequested { .. } => "pause_requested".into(),
        OrchEventKind::RunPaused(summary) => format!("run_paused:{}", summary.number),
        OrchEventKind::RunResumed => "run_resumed".into(),
        OrchEventKind::StopRequested { .. } => "stop_requested".into(),
        OrchEventKind::RunFinished { status, .. } => format!("run_finished:{}", status.as_str()),
        OrchEventKind::Notice { .. } => "notice".into(),
        other => format!("{other:?}"),
    }
}

fn control(state: &mut RunState, command: ControlCommand) -> Vec<String> {
    names(&state.handle(Input::Control {
        id: 1,
        command,
        source: "test".into(),
    }))
}

fn wanted(state: &mut RunState, agent: &str, turn: u32) -> Vec<String> {
    names(&state.handle(Input::TurnWanted {
        agent: agent.into(),
        turn,
        attempt: 1,
        review: false,
    }))
}

fn ended(state: &mut RunState, agent: &str) -> Vec<String> {
    names(&state.handle(Input::TurnEnded {
        agent: agent.into(),
        tier: None,
        usage: Usage {
            input_tokens: 10,
            ..Usage::default()
        },
        cost: Some(20_000),
    }))
}

fn result(state: &RunState, agent: &str, status: AgentStatus) -> Input {
    let conversation = state.group.as_ref().and_then(|g| g.conversation(agent));
    let mut result = AgentResult::lost(agent, status, conversation);
    if result.status == AgentStatus::Succeeded {
        result.answer = Some(format!("{agent} is done"));
    }
    Input::AgentEnded(Box::new(result))
}

/// A run whose planner (the first core agent) has been launched.
fn started() -> RunState {
    let mut state = RunState::new(config());
    let fx = names(&state.handle(Input::Start));
    assert_eq!(
        fx,
        [
            "run_started",
            "group_started",
            "wave_scheduled",
            "launch:planner"
        ]
    );
    state
}

#[test]
fn a_pause_after_the_turn_was_granted_waits_for_that_turn() {
    let mut state = started();
    assert_eq!(wanted(&mut state, "planner", 1), ["grant:planner"]);
    // The pause arrives after the grant, before the agent's turn_started: the turn
    // counts as in flight, so the summary waits for its end.
    assert_eq!(
        control(&mut state, ControlCommand::Pause),
        ["pause_requested", "reply:true"]
    );
    assert_eq!(ended(&mut state, "planner"), ["run_paused:1"]);
    let summary = state.summary(Vec::new());
    assert_eq!(summary.in_flight, ["planner"]);
    assert!(summary.started.is_empty(), "in flight, so not listed twice");
    // While paused, the next turn waits.
    assert!(wanted(&mut state, "planner", 2).is_empty());
    assert_eq!(
        state
            .entry("planner")
            .map(|e| e.lifecycle.clone())
            .expect("planner"),
        AgentLifecycle::Paused
    );
    assert_eq!(
        control(&mut state, ControlCommand::Resume),
        ["run_resumed", "grant:planner", "reply:true"]
    );
}

#[test]
fn a_pause_resumed_before_it_took_effect_writes_no_summary_after_the_resume() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    control(&mut state, ControlCommand::Pause);
    assert_eq!(
        control(&mut state, ControlCommand::Resume),
        ["run_resumed", "reply:true"]
    );
    assert!(
        ended(&mut state, "planner").is_empty(),
        "no run_paused after run_resumed"
    );
}

#[test]
fn two_pauses_write_two_summaries_each_once() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    control(&mut state, ControlCommand::Pause);
    assert_eq!(
        control(&mut state, ControlCommand::Pause),
        ["reply:true"],
        "a second request while paused coalesces"
    );
    assert_eq!(ended(&mut state, "planner"), ["run_paused:1"]);
    control(&mut state, ControlCommand::Resume);
    wanted(&mut state, "planner", 2);
    control(&mut state, ControlCommand::Pause);
    assert_eq!(ended(&mut state, "planner"), ["run_paused:2"]);
}

#[test]
fn a_pause_with_nothing_running_takes_effect_at_once() {
    let mut state = started();
    assert_eq!(
        control(&mut state, ControlCommand::Pause),
        ["pause_requested", "run_paused:1", "reply:true"]
    );
    // The planner was launched but had no turn yet: the summary names it as started,
    // not in flight, and not pending either.
    let summary = state.summary(Vec::new());
    assert_eq!(summary.started, ["planner"]);
    assert!(summary.in_flight.is_empty());
    assert_eq!(summary.pending, ["researcher", "builder"]);
    assert!(crate::events::render::interrupt_text(&summary).contains("  started:   planner\n"));
}

#[test]
fn a_panicking_agent_fails_blocks_its_dependants_and_frees_a_pause() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    control(&mut state, ControlCommand::Pause);
    let fx = names(&state.handle(Input::AgentPanicked {
        agent: "planner".into(),
        message: "boom".into(),
    }));
    assert_eq!(
        fx,
        [
            "agent_finished:planner:failed",
            "agent_finished:researcher:blocked",
            "agent_finished:builder:blocked",
            "run_paused:1",
            // Nothing is left to run, paused or not: the run ends, failed.
            "run_finished:failed",
            "finish",
        ]
    );
    let blocked = state.entry("researcher").expect("researcher");
    assert_eq!(blocked.role, "Researcher");
    assert_eq!(state.report().status, RunStatus::Failed);
}

#[test]
fn a_stop_ends_running_turns_then_writes_its_summary_and_finishes_last() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    assert_eq!(
        control(&mut state, ControlCommand::Stop),
        ["stop_requested", "stop_agents", "reply:true"]
    );
    // A turn asked for while stopping is refused.
    assert_eq!(wanted(&mut state, "planner", 2), ["deny:planner"]);
    ended(&mut state, "planner");
    let input = result(&state, "planner", AgentStatus::Stopped);
    assert_eq!(
        names(&state.handle(input)),
        ["run_paused:1", "run_finished:stopped", "finish"]
    );
    assert_eq!(state.mode(), RunMode::Finished);
    assert_eq!(state.report().status, RunStatus::Stopped);
    // After the end, requests get an answer and publish nothing.
    assert_eq!(control(&mut state, ControlCommand::Pause), ["reply:false"]);
    assert_eq!(control(&mut state, ControlCommand::Resume), ["reply:false"]);
    assert_eq!(control(&mut state, ControlCommand::Stop), ["reply:false"]);
}

#[test]
fn signals_pause_then_stop_like_requests() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    let fx = names(&state.handle(Input::Signal {
        action: SignalAction::Pause,
        source: "SIGINT".into(),
    }));
    assert_eq!(fx, ["pause_requested", "say"]);
    let fx = names(&state.handle(Input::Signal {
        action: SignalAction::Stop,
        source: "SIGINT".into(),
    }));
    assert_eq!(fx, ["stop_requested", "stop_agents", "say"]);
}

#[test]
fn a_failed_write_stops_the_run_and_fails_it() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    let fx = names(&state.handle(Input::Failure {
        message: "failed to write `x.log`: No space left on device".into(),
        source: "a failed write",
    }));
    assert_eq!(fx, ["stop_requested", "stop_agents"]);
    ended(&mut state, "planner");
    let input = result(&state, "planner", AgentStatus::Stopped);
    let fx = names(&state.handle(input));
    assert_eq!(fx, ["run_paused:1", "run_finished:failed", "finish"]);
    assert_eq!(
        state.report().problems,
        ["failed to write `x.log`: No space left on device"]
    );
}

#[test]
fn a_dependant_starts_only_after_its_dependency_and_quotes_its_answer() {
    let mut state = started();
    wanted(&mut state, "planner", 1);
    ended(&mut state, "planner");
    let input = result(&state, "planner", AgentStatus::Succeeded);
    let fx = state.handle(input);
    let job = fx
        .iter()
        .find_map(|e| match e {
            Effect::Launch(job) => Some(job),
            _ => None,
        })
        .expect("researcher launched");
    assert_eq!(job.conversation.id, "researcher");
    assert!(
        job.turns[0].prompt.contains("planner is done"),
        "{}",
        job.turns[0].prompt
    );
}

#[test]
fn a_spent_token_budget_pauses_after_the_turn_and_resumes_only_with_a_larger_one() {
    let mut state = started();
    state.max_tokens = Some(25);
    assert_eq!(wanted(&mut state, "planner", 1), ["grant:planner"]);
    // 10 of 25: nothing to say.
    assert!(ended(&mut state, "planner").is_empty());
    assert_eq!(wanted(&mut state, "planner", 2), ["grant:planner"]);
    // 20 of 25: the 80 % warning, once.
    assert_eq!(ended(&mut state, "planner"), ["notice"]);
    assert_eq!(wanted(&mut state, "planner", 3), ["grant:planner"]);
    // 30 of 25: paused as Ctrl+S pauses, the budget named; nothing new starts.
    assert_eq!(
        ended(&mut state, "planner"),
        ["pause_requested", "run_paused:1", "say"]
    );
    assert_eq!(state.mode(), RunMode::Paused);
    assert!(wanted(&mut state, "planner", 4).is_empty());
    let summary = state.summary(Vec::new());
    assert_eq!(
        summary.requested_by,
        "budget: --max-tokens 25 reached (30 of 25 tokens)"
    );
    // A plain resume is refused while the budget is spent; a larger one lets it go on.
    assert_eq!(control(&mut state, ControlCommand::Resume), ["reply:false"]);
    assert_eq!(
        control(&mut state, ControlCommand::MaxTokens(100)),
        ["notice", "reply:true"]
    );
    assert_eq!(
        control(&mut state, ControlCommand::Resume),
        ["run_resumed", "grant:planner", "reply:true"]
    );
}

#[test]
fn agents_without_a_fallback_of_their_own_take_their_groups() {
    let mut config = (*config()).clone();
    config.agents.groups[0].fallback = vec!["claude".into(), "gemini".into()];
    config.agents.groups[0].agents[1].fallback = vec!["demo".into()];
    let mut state = RunState::new(Arc::new(config));
    let launched = state.handle(Input::Start);
    let Some(Effect::Launch(job)) = launched.iter().find(|e| matches!(e, Effect::Launch(_))) else {
        panic!("nothing launched");
    };
    assert_eq!(job.conversation.fallback, ["claude", "gemini"]);
    // What a dynamic, continuation or autonomous agent gets too.
    let conversation = super::jobs::new_conversation(
        &state,
        "dyn",
        "Dynamic",
        crate::agent::backend::AgentKind::Dynamic,
        1,
        None,
        Vec::new(),
    );
    assert_eq!(conversation.fallback, ["claude", "gemini"]);
}

#[test]
fn an_agent_that_needs_you_pauses_the_run_and_waits_for_resume_or_stop() {
    let needs_you = |state: &mut RunState| {
        names(&state.handle(Input::NeedsYou {
            agent: "planner".into(),
            reason: "reviewer `critic` still fails its work".into(),
        }))
    };
    let mut state = started();
    assert_eq!(
        needs_you(&mut state),
        ["pause_requested", "run_paused:1", "say"]
    );
    assert_eq!(state.mode(), RunMode::Paused);
    assert_eq!(
        state.entry("planner").unwrap().lifecycle.label(),
        "needs you: reviewer `critic` still fails its work"
    );
    let summary = state.summary(Vec::new());
    assert_eq!(
        summary.requested_by,
        "needs-you: planner: reviewer `critic` still fails its work"
    );
    // A plain resume is the user's answer: the agent tries again.
    assert_eq!(
        control(&mut state, ControlCommand::Resume),
        ["run_resumed", "grant:planner", "reply:true"]
    );
    // Asked again, it waits once more; a stop answers it with a no.
    needs_you(&mut state);
    let stopped = control(&mut state, ControlCommand::Stop);
    assert!(stopped.contains(&"deny:planner".to_owned()), "{stopped:?}");
    // Once stopping, an agent asking is denied at once.
    assert_eq!(needs_you(&mut state), ["deny:planner"]);
}

#[test]
fn an_agents_own_budget_warns_pauses_and_a_plain_resume_gives_it_its_allowance_again() {
    let mut config = (*config()).clone();
    let planner = config.agents.groups[0]
        .agents
        .iter_mut()
        .find(|a| a.id == "planner")
        .unwrap();
    planner.max_tokens = Some(25);
    let mut state = RunState::new(Arc::new(config));
    state.handle(Input::Start);
    assert_eq!(wanted(&mut state, "planner", 1), ["grant:planner"]);
    assert!(ended(&mut state, "planner").is_empty());
    assert_eq!(wanted(&mut state, "planner", 2), ["grant:planner"]);
    // 20 of 25: the warning, once.
    assert_eq!(ended(&mut state, "planner"), ["notice"]);
    assert_eq!(wanted(&mut state, "planner", 3), ["grant:planner"]);
    assert_eq!(
        ended(&mut state, "planner"),
        ["pause_requested", "run_paused:1", "say"]
    );
    assert_eq!(
        state.summary(Vec::new()).requested_by,
        "budget: max-tokens 25 of agent `planner` reached (30 of 25 tokens)"
    );
    assert!(wanted(&mut state, "planner", 4).is_empty());
    // A plain resume: 25 more tokens (up to 55), and the turn that waited goes on.
    assert_eq!(
        control(&mut state, ControlCommand::Resume),
        ["notice", "run_resumed", "grant:planner", "reply:true"]
    );
    assert!(ended(&mut state, "planner").is_empty());
    // 50 of 55: warned again for the new allowance.
    assert_eq!(wanted(&mut state, "planner", 5), ["grant:planner"]);
    assert_eq!(ended(&mut state, "planner"), ["notice"]);
}

#[test]
fn the_pause_summary_names_every_agent_that_needs_you_with_its_reason() {
    let mut state = started();
    assert_eq!(wanted(&mut state, "planner", 1), ["grant:planner"]);
    let ask = |state: &mut RunState, agent: &str, reason: &str| {
        names(&state.handle(Input::NeedsYou {
            agent: agent.into(),
            reason: reason.into(),
        }))
    };
    // The first pauses the run (its summary waits for the planner's turn); the second,
    // already paused, is said in the timeline.
    assert_eq!(
        ask(&mut state, "researcher", "gate `make` still fails"),
        ["pause_requested", "say"]
    );
    assert_eq!(
        ask(
            &mut state,
            "builder",
            "reviewer `critic` still fails its work"
        ),
        ["notice", "say"]
    );
    let fx = state.handle(Input::TurnEnded {
        agent: "planner".into(),
        tier: None,
        usage: Usage::default(),
        cost: Some(0),
    });
    let summary = fx
        .iter()
        .find_map(|e| match e {
            Effect::Publish(OrchEventKind::RunPaused(summary)) => Some(summary.clone()),
            _ => None,
        })
        .expect("the pause summary");
    assert_eq!(
        summary.requested_by,
        "needs-you: researcher: gate `make` still fails"
    );
    let steps = summary.next_steps.join("\n");
    assert!(
        steps.contains("researcher needs you: gate `make` still fails")
            && steps.contains("builder needs you: reviewer `critic` still fails its work")
            && steps.contains("then let them try again: launch ctl resume"),
        "{steps}"
    );
}

#[test]
fn a_revised_task_is_published_once_with_its_diff_and_becomes_the_task() {
    let mut state = started();
    assert!(
        state
            .handle(Input::TaskRevised {
                text: "Ship the MVP".into()
            })
            .is_empty(),
        "the same text is no revision"
    );
    let fx = state.handle(Input::TaskRevised {
        text: "Ship the MVP\nwith rate limiting\n".into(),
    });
    let [
        Effect::Publish(OrchEventKind::TaskRevised {
            revision,
            sha256,
            diff,
            text,
        }),
    ] = fx.as_slice()
    else {
        panic!("{:?}", names(&fx));
    };
    assert_eq!(*revision, 1);
    assert_eq!(sha256.len(), 64);
    assert!(diff.contains("+with rate limiting"), "{diff}");
    assert_eq!(text, "Ship the MVP\nwith rate limiting\n");
    assert_eq!(state.task, *text);
    assert_eq!(state.task_revision, 1);
}

#[test]
fn with_worktrees_the_next_agent_is_staged_and_unstaged_once_it_can_never_start() {
    let dir = tempfile::tempdir().unwrap();
    let kdl = dir.path().join("orch.kdl");
    std::fs::write(
        &kdl,
        r#"
permissions "edit"
group "g" {
    agent "a" { role "A"; plan-prompt "p"; follow-up-enabled #false; }
    agent "b" { role "B"; plan-prompt "p"; follow-up-enabled #false; depends-on "a"; }
    agent "c" { role "C"; plan-prompt "p"; follow-up-enabled #false; depends-on "b"; }
}
"#,
    )
    .unwrap();
    let mut config = config_with(Some(kdl));
    config.isolation = IsolationChoice::Worktree;
    let mut state = RunState::new(Arc::new(config));
    let fx = names(&state.handle(Input::Start));
    // `a` starts; `b`, whose only dependency started, gets its worktree made now; `c`
    // waits for `b` to start.
    assert!(
        fx.ends_with(&["launch:a".to_owned(), "stage:b".to_owned()]),
        "{fx:?}"
    );
    assert!(!fx.contains(&"stage:c".to_owned()), "{fx:?}");
    wanted(&mut state, "a", 1);
    ended(&mut state, "a");
    let input = result(&state, "a", AgentStatus::Failed { reason: "x".into() });
    let fx = names(&state.handle(input));
    assert!(fx.contains(&"unstage:b".to_owned()), "{fx:?}");
    assert!(
        !fx.contains(&"unstage:c".to_owned()),
        "never staged: {fx:?}"
    );
}

#[test]
fn a_reviewers_turn_keeps_the_agent_under_review_and_its_fix_turn_is_its_own() {
    let mut state = started();
    let reviewing = AgentLifecycle::Reviewing {
        round: 1,
        reviewer: "critic".into(),
    };
    state.handle(Input::Progress {
        agent: "planner".into(),
        lifecycle: reviewing.clone(),
    });
    let fx = names(&state.handle(Input::TurnWanted {
        agent: "planner".into(),
        turn: 2,
        attempt: 1,
        review: true,
    }));
    assert_eq!(fx, ["grant:planner"]);
    assert_eq!(state.entry("planner").unwrap().lifecycle, reviewing);
    ended(&mut state, "planner");
    // The fix turn the verdict asks for is the agent's own.
    wanted(&mut state, "planner", 3);
    assert_eq!(
        state.entry("planner").unwrap().lifecycle,
        AgentLifecycle::Running {
            turn: 3,
            attempt: 1
        }
    );
}
