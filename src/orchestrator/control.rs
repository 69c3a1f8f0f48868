//! Run control: the pause gate every turn passes, the stop signal, and the tracker
//! of which agents are pending, running, in a turn or done.
//!
//! Owns the state a pause/resume/stop/status request acts on and the interrupt summary
//! built from it. Does not own sockets or signals (see `crate::control`).

use std::sync::Mutex;

use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard, Notify, watch};

use crate::agent::backend::{StopHandle, StopSignal};
use crate::agent::event::Usage;
use crate::events::event::InterruptSummary;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    Running,
    Paused,
    Stopping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Blocked,
    Stopped,
}

/// The run was stopped: the caller ends what it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

#[derive(Debug, Default)]
struct Tracker {
    agents: Vec<(String, AgentState)>,
    in_turn: Vec<String>,
    usage: Usage,
    pauses: u32,
    /// Agents that were in a turn when the current pause was requested.
    pause_in_flight: Vec<String>,
    pause_source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    pub mode: RunMode,
    pub agents: Vec<(String, AgentState)>,
    pub in_turn: Vec<String>,
    pub usage: Usage,
    pub pauses: u32,
}

pub enum PauseAck {
    /// This request paused the run (the n-th pause).
    Started {
        number: u32,
        in_flight: Vec<String>,
    },
    AlreadyPaused,
    Stopping,
}

pub struct RunControl {
    session: String,
    mode: watch::Sender<RunMode>,
    tracker: Mutex<Tracker>,
    idle: Notify,
    /// Held while an interrupt summary or the end of the run is published; true once
    /// the run has ended. See `summary_gate`.
    summary_gate: AsyncMutex<bool>,
    /// Fired by `stop`: every running turn ends its agent (TERM, grace, KILL).
    stop_handle: StopHandle,
    stop_signal: StopSignal,
}

impl RunControl {
    pub fn new(session: &str) -> Self {
        let (stop_handle, stop_signal) = StopSignal::pair();
        RunControl {
            session: session.to_owned(),
            mode: watch::Sender::new(RunMode::Running),
            tracker: Mutex::new(Tracker::default()),
            idle: Notify::new(),
            summary_gate: AsyncMutex::new(false),
            stop_handle,
            stop_signal,
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> RunMode {
        *self.mode.borrow()
    }

    pub fn is_stopping(&self) -> bool {
        self.mode() == RunMode::Stopping
    }

    /// Waits while the run is paused; errors once it is stopping.
    pub async fn wait_runnable(&self) -> Result<(), Stopped> {
        let mut rx = self.mode.subscribe();
        loop {
            match *rx.borrow_and_update() {
                RunMode::Running => return Ok(()),
                RunMode::Stopping => return Err(Stopped),
                RunMode::Paused => {}
            }
            if rx.changed().await.is_err() {
                return Err(Stopped);
            }
        }
    }

    /// Resolves when the run starts stopping.
    pub async fn stopped(&self) {
        let mut rx = self.mode.subscribe();
        let _ = rx.wait_for(|m| *m == RunMode::Stopping).await;
    }

    pub fn register(&self, ids: &[String]) {
        let mut t = self.tracker();
        for id in ids {
            if !t.agents.iter().any(|(a, _)| a == id) {
                t.agents.push((id.clone(), AgentState::Pending));
            }
        }
    }

    pub fn set_state(&self, id: &str, state: AgentState) {
        let mut t = self.tracker();
        match t.agents.iter_mut().find(|(a, _)| a == id) {
            Some(entry) => entry.1 = state,
            None => t.agents.push((id.to_owned(), state)),
        }
    }

    pub fn turn_started(&self, id: &str) {
        self.tracker().in_turn.push(id.to_owned());
    }

    pub fn turn_finished(&self, id: &str, usage: &Usage) {
        let mut t = self.tracker();
        if let Some(pos) = t.in_turn.iter().position(|a| a == id) {
            t.in_turn.remove(pos);
        }
        t.usage.add(usage);
        if t.in_turn.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no turn is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.tracker().in_turn.is_empty() {
                return;
            }
            notified.await;
        }
    }

    pub fn request_pause(&self, source: &str) -> PauseAck {
        let mut t = self.tracker();
        match self.mode() {
            RunMode::Stopping => PauseAck::Stopping,
            RunMode::Paused => PauseAck::AlreadyPaused,
            RunMode::Running => {
                t.pauses += 1;
                t.pause_in_flight = t
                    .agents
                    .iter()
                    .filter(|(_, s)| *s == AgentState::Running)
                    .map(|(a, _)| a.clone())
                    .collect();
                t.pause_source = source.to_owned();
                self.mode.send_replace(RunMode::Paused);
                PauseAck::Started {
                    number: t.pauses,
                    in_flight: t.pause_in_flight.clone(),
                }
            }
        }
    }

    /// Continues a paused run; false when it was not paused.
    pub fn resume(&self) -> bool {
        self.mode.send_if_modified(|mode| {
            if *mode == RunMode::Paused {
                *mode = RunMode::Running;
                true
            } else {
                false
            }
        })
    }

    /// Starts stopping; false when already stopping.
    pub fn stop(&self, source: &str) -> bool {
        let mut t = self.tracker();
        if self.mode() == RunMode::Stopping {
            return false;
        }
        t.pauses += 1;
        t.pause_in_flight = t.in_turn.clone();
        t.pause_source = source.to_owned();
        self.mode.send_replace(RunMode::Stopping);
        self.stop_handle.stop();
        true
    }

    /// The signal `stop` fires, for the turns' requests.
    pub fn stop_signal(&self) -> StopSignal {
        self.stop_signal.clone()
    }

    pub fn status(&self) -> StatusReport {
        let t = self.tracker();
        StatusReport {
            mode: self.mode(),
            agents: t.agents.clone(),
            in_turn: t.in_turn.clone(),
            usage: t.usage,
            pauses: t.pauses,
        }
    }

    /// Orders a pause's summary against the end of the run. A pause's summary waits for
    /// the running turns, so a stop or the run's end can overtake it: whoever publishes
    /// holds this gate, the run's end sets it to true, and a pause publishes only while
    /// the run is neither ended nor stopping (a stop writes its own summary). So no
    /// summary follows `run_finished`, and none is published after the sinks closed.
    pub async fn summary_gate(&self) -> AsyncMutexGuard<'_, bool> {
        self.summary_gate.lock().await
    }

    /// The summary of the current pause (or stop).
    pub fn interrupt_summary(&self, next_steps: Vec<String>) -> InterruptSummary {
        let t = self.tracker();
        let with = |state: AgentState| -> Vec<String> {
            t.agents
                .iter()
                .filter(|(_, s)| *s == state)
                .map(|(a, _)| a.clone())
                .collect()
        };
        let mut failed = with(AgentState::Failed);
        failed.extend(with(AgentState::Blocked));
        InterruptSummary {
            session: self.session.clone(),
            number: t.pauses,
            requested_by: t.pause_source.clone(),
            finished: with(AgentState::Succeeded),
            failed,
            in_flight: t.pause_in_flight.clone(),
            pending: with(AgentState::Pending),
            usage: t.usage,
            next_steps,
        }
    }
}
