//! The bound between the audit sink and its writer thread (`Gate`, in events and
//! bytes), and what the two share besides (`WriterShared`: the writer's fatal failure,
//! where to report it, and the anchor it wrote). Owns no I/O.

use std::sync::{Condvar, Mutex, OnceLock};

use crate::events::failure::{FailureReporter, SinkFailure};

/// Bounds the events between the sink thread and the writer, counted from `enter`
/// until the writer's commit of them, in events and in payload bytes. The room comes
/// back a whole batch at a time, so a sink thread waiting for it wakes once per
/// commit, not once per event taken off the queue (which had it and the writer trade
/// the core thousands of times per second). Events the writer could not commit keep
/// their room until they are committed: the bound holds while commits fail.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    room: Condvar,
    capacity: usize,
    byte_capacity: usize,
}

#[derive(Debug, Default)]
struct GateState {
    in_flight: usize,
    bytes: usize,
    closed: bool,
    /// Events refused because the writer had stopped or failed.
    refused: usize,
    /// Senders waiting for room (only then does `leave` wake anyone).
    waiting: usize,
}

impl Gate {
    pub fn new(capacity: usize) -> Gate {
        Gate::with_bytes(capacity, usize::MAX)
    }

    pub fn with_bytes(capacity: usize, byte_capacity: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState::default()),
            room: Condvar::new(),
            capacity: capacity.max(1),
            byte_capacity: byte_capacity.max(1),
        }
    }

    /// Takes room for one event of `bytes`, waiting while the writer is `capacity`
    /// events or `byte_capacity` bytes behind (one event larger than that passes
    /// alone). `false` once the writer has stopped or failed.
    pub fn enter(&self, bytes: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.closed
            && (state.in_flight >= self.capacity
                || (state.in_flight > 0 && state.bytes.saturating_add(bytes) > self.byte_capacity))
        {
            state.waiting += 1;
            state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
        if state.closed {
            state.refused += 1;
            return false;
        }
        state.in_flight += 1;
        state.bytes = state.bytes.saturating_add(bytes);
        true
    }

    /// Gives back the room of `events` committed, `bytes` in all.
    pub fn leave(&self, events: usize, bytes: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight = state.in_flight.saturating_sub(events);
        state.bytes = state.bytes.saturating_sub(bytes);
        if state.waiting > 0 {
            self.room.notify_all();
        }
    }

    /// The writer has stopped: nobody waits for room any more.
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        self.room.notify_all();
    }

    /// Events refused since the gate closed.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).refused
    }
}

/// What the writer thread shares with its sink: where to report a fatal failure (set
/// once the sink thread hands it over) and the failure itself, kept until then.
#[derive(Debug, Default)]
pub struct WriterShared {
    reporter: OnceLock<FailureReporter>,
    failure: Mutex<Option<SinkFailure>>,
    anchor: Mutex<Option<String>>,
}

impl WriterShared {
    /// Hands over the reporter; a failure that happened before is reported now.
    pub fn attach(&self, reporter: &FailureReporter) {
        let _ = self.reporter.set(reporter.clone());
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(failure) = failure {
            reporter.report(failure);
        }
    }

    pub(crate) fn fail(&self, failure: SinkFailure) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure.clone());
        if let Some(reporter) = self.reporter.get() {
            reporter.report(failure);
        }
    }

    /// The writer's fatal failure, if it had one.
    pub fn failure(&self) -> Option<SinkFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_anchor(&self, line: String) {
        *self.anchor.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
    }

    /// The last anchor the writer wrote, as a line for the terminal.
    pub fn anchor(&self) -> Option<String> {
        self.anchor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A full gate holds the sender until the writer gives room back; closing it lets
    /// every waiter go with `false`.
    #[test]
    fn a_full_gate_waits_for_room_and_closing_releases_it() {
        let gate = Arc::new(Gate::new(2));
        assert!(gate.enter(1) && gate.enter(1));
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter(1))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the third event waits for room");
        gate.leave(2, 2);
        assert!(waiter.join().unwrap(), "room came back");
        assert!(gate.enter(1));
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter(1))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        gate.close();
        assert!(!waiter.join().unwrap(), "a closed gate refuses");
        assert!(!gate.enter(1));
        assert_eq!(gate.refused(), 2);
    }

    /// Bytes bound the queue too; one event larger than the bound passes alone.
    #[test]
    fn a_gate_bounds_bytes_and_lets_one_large_event_through() {
        let gate = Arc::new(Gate::with_bytes(100, 10));
        assert!(gate.enter(50), "alone, a large event passes");
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter(1))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "over the byte bound, the next one waits"
        );
        gate.leave(1, 50);
        assert!(waiter.join().unwrap());
        assert!(gate.enter(9));
    }
}
