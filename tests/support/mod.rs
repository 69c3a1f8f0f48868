//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// The directory of recorded agent streams: `tests/fixtures/agents/` in this repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agents"
    ))
}

/// A fixture file from `tests/fixtures/agents/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path)
        .unwrap_or_else(|err| panic!("cannot read fixture {}: {err}", path.display()))
}

/// Every fixture file name.
pub fn fixture_names() -> Vec<String> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub mod codex;
pub mod model_server;
pub mod repo;
pub mod squad;

#[allow(unused_imports)]
pub use repo::*;

use std::sync::{Arc, Mutex};

use orch::agent::{
    AgentEvent, AgentKind, ChatMessage, Expects, StopSignal, TurnEvents, TurnKind, TurnRequest,
};
use orch::events::{EventBus, OrchEvent, OrchEventKind, Sink, SinkThread};
use orch::redact::Redactor;

/// Collects every agent event published on the bus, and the notices.
#[derive(Clone, Default)]
pub struct Collected(
    Arc<Mutex<Vec<(String, u32, AgentEvent)>>>,
    Arc<Mutex<Vec<String>>>,
);

impl Collected {
    /// Messages of the warning notices, in order.
    pub fn warnings(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<AgentEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, e)| e.clone())
            .collect()
    }

    pub fn events_of(&self, agent: &str, turn: u32) -> Vec<AgentEvent> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(a, t, _)| a == agent && *t == turn)
            .map(|(_, _, e)| e.clone())
            .collect()
    }
}

struct CollectSink(Collected);

impl Sink for CollectSink {
    fn name(&self) -> &'static str {
        "collect"
    }

    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
        if let OrchEventKind::Agent { agent, turn, event } = &event.kind {
            (self.0)
                .0
                .lock()
                .unwrap()
                .push((agent.clone(), *turn, event.clone()));
        }
        if let OrchEventKind::Notice {
            level: orch::events::event::NoticeLevel::Warning,
            message,
        } = &event.kind
        {
            (self.0).1.lock().unwrap().push(message.clone());
        }
        Ok(())
    }
}

/// A bus whose only sink collects agent events.
pub fn collecting_bus() -> (EventBus, SinkThread, Collected) {
    let collected = Collected::default();
    let (bus, thread) = SinkThread::spawn(
        vec![Box::new(CollectSink(collected.clone()))],
        Arc::new(Redactor::default()),
    );
    (bus, thread, collected)
}

/// A turn request with sensible defaults.
pub fn request(agent: &str, turn: u32, prompt: &str, cwd: &std::path::Path) -> TurnRequest {
    TurnRequest {
        agent: agent.to_string(),
        role: agent.to_string(),
        agent_kind: AgentKind::Core,
        kind: if turn % 2 == 1 {
            TurnKind::Plan
        } else {
            TurnKind::FollowUp
        },
        expects: Expects::Text,
        turn,
        attempt: 1,
        repair: false,
        wave: 0,
        prompt: prompt.to_string(),
        resume: None,
        history: Vec::<ChatMessage>::new(),
        model: None,
        permissions: orch::agent::Permissions::Act,
        cwd: cwd.to_path_buf(),
        stop: StopSignal::never(),
    }
}

pub fn turn_events(bus: &EventBus, agent: &str, turn: u32) -> TurnEvents {
    TurnEvents::new(bus.clone(), agent.to_string(), turn)
}
