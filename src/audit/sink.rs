//! `AuditSink`: the event-bus sink that feeds the audit writer thread.
//!
//! `handle` encodes an event (wire form, JSON payload) on the bus's sink thread and
//! queues it for the writer, waiting at the `Gate` while 4096 events are uncommitted;
//! the writer thread owns the connection, and commits by itself within `MAX_DELAY`. `flush` is a durable commit barrier (`idle` is not);
//! `close` commits everything, checkpoints and joins.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::thread::JoinHandle;

use crate::audit::error::AuditError;
use crate::audit::target::AuditTarget;
use crate::audit::writer::{
    AuditOptions, Extra, Gate, PendingEvent, RunMeta, WriterMsg, WriterShared, run_writer,
};
use crate::events::event::{OrchEvent, OrchEventKind};
use crate::events::failure::{FailureReporter, SinkFailure};
use crate::events::sink::Sink;
use crate::events::wire::{encode, millis};
use crate::redact::Redactor;

/// Events between the sink thread and the writer's commit before `handle` blocks: four
/// full batches. Under a saturated stream the queue stays full, so each one is
/// resident memory.
const QUEUE_CAPACITY: usize = 4096;
/// Payload bytes between the sink thread and the writer's commit before `handle`
/// blocks; also what a failing store keeps in memory while it retries.
const QUEUE_BYTES: usize = 32 << 20;

pub struct AuditSink {
    tx: Option<Sender<WriterMsg>>,
    gate: Arc<Gate>,
    shared: Arc<WriterShared>,
    handle: Option<JoinHandle<()>>,
    target: String,
}

impl AuditSink {
    /// Opens (or creates) the store, records the run and starts the writer thread.
    /// Blocks until the store is open; every field of the run is redacted before it is
    /// stored (the `runs` row holds the prompt).
    pub fn open(
        target: AuditTarget,
        meta: RunMeta,
        redactor: &Redactor,
    ) -> Result<AuditSink, AuditError> {
        AuditSink::open_with(target, meta, redactor, AuditOptions::default())
    }

    /// `open` with options (a memory directory that mirrors the artifacts).
    pub fn open_with(
        target: AuditTarget,
        mut meta: RunMeta,
        redactor: &Redactor,
        options: AuditOptions,
    ) -> Result<AuditSink, AuditError> {
        let RunMeta {
            session,
            started_at_ms: _,
            prompt,
            backend,
            project_root,
        } = &mut meta;
        for text in [session, prompt, backend, project_root] {
            redactor.redact_in_place(text);
        }
        let (tx, rx) = channel();
        let gate = Arc::new(Gate::with_bytes(QUEUE_CAPACITY, QUEUE_BYTES));
        let writer_gate = gate.clone();
        let shared = Arc::new(WriterShared::default());
        let writer_shared = shared.clone();
        let (ready_tx, ready_rx) = sync_channel(1);
        let described = target.describe();
        let handle = std::thread::Builder::new()
            .name("orch-audit-writer".into())
            .spawn(move || {
                run_writer(
                    target,
                    meta,
                    options,
                    rx,
                    writer_gate,
                    writer_shared,
                    ready_tx,
                )
            })
            .map_err(AuditError::Spawn)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(AuditSink {
                tx: Some(tx),
                gate,
                shared,
                handle: Some(handle),
                target: described,
            }),
            Ok(Err(err)) => {
                let _ = handle.join();
                Err(err)
            }
            Err(_) => {
                let _ = handle.join();
                Err(AuditError::WriterGone {
                    detail: "the writer thread ended while opening the store".into(),
                })
            }
        }
    }

    /// Convenience for tests and tools: an `Arc` redactor works too.
    pub fn open_shared(
        target: AuditTarget,
        meta: RunMeta,
        redactor: &Arc<Redactor>,
    ) -> Result<AuditSink, AuditError> {
        AuditSink::open(target, meta, redactor.as_ref())
    }

    /// What the writer thread shares: its fatal failure and the anchor it wrote.
    pub fn shared(&self) -> Arc<WriterShared> {
        self.shared.clone()
    }

    fn send(&self, msg: WriterMsg) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx.send(msg).map_err(|_| gone(&self.target)),
            None => Err(gone(&self.target)),
        }
    }

    fn barrier(&self, close: bool) -> io::Result<()> {
        let (done_tx, done_rx) = sync_channel(1);
        self.send(if close {
            WriterMsg::Close(done_tx)
        } else {
            WriterMsg::Barrier(done_tx)
        })?;
        match done_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(match self.shared.failure() {
                Some(failure) => io::Error::other(failure),
                None => io::Error::other(detail),
            }),
            Err(_) => Err(self.stopped()),
        }
    }

    fn shutdown(&mut self) -> io::Result<()> {
        if self.tx.is_none() {
            return Ok(());
        }
        let result = self.barrier(true);
        self.tx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        result
    }
}

fn gone(target: &str) -> io::Error {
    io::Error::other(format!("the audit writer for `{target}` has stopped"))
}

impl AuditSink {
    /// The writer's own failure when it has one (it names the store and the error),
    /// else that the writer stopped.
    fn stopped(&self) -> io::Error {
        match self.shared.failure() {
            Some(failure) => io::Error::other(failure),
            None => gone(&self.target),
        }
    }
}

/// Encodes an event into the row the writer stores.
pub fn pending_event(event: &OrchEvent) -> PendingEvent {
    if let OrchEventKind::Agent {
        agent,
        turn,
        event: streamed,
    } = &event.kind
    {
        // Nearly every event is one of these: serialize it straight to text rather
        // than through a `serde_json::Value` (same fields, declaration order).
        return PendingEvent {
            ts: millis(event.at) as i64,
            agent: Some(agent.clone()),
            turn: Some(i64::from(*turn)),
            kind: streamed.kind().to_owned(),
            payload: serde_json::to_string(streamed).unwrap_or_else(|_| "null".to_owned()),
            extra: Extra::None,
        };
    }
    let wire = encode(event);
    let extra = match &event.kind {
        OrchEventKind::TurnFinished(record) => Extra::Turn(record.clone()),
        OrchEventKind::RunPaused(summary) => Extra::Interrupt(summary.clone()),
        OrchEventKind::ChangesCommitted(changes) => Extra::Changes(changes.clone()),
        _ => Extra::None,
    };
    PendingEvent {
        ts: wire.ts_ms as i64,
        agent: wire.agent,
        turn: wire.turn.map(i64::from),
        kind: wire.kind,
        payload: serde_json::to_string(&wire.payload).unwrap_or_else(|_| "null".to_owned()),
        extra,
    }
}

impl Sink for AuditSink {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn handle(&mut self, event: &OrchEvent) -> io::Result<()> {
        let pending = pending_event(event);
        if !self.gate.enter(pending.payload.len()) {
            return Err(self.stopped());
        }
        self.send(WriterMsg::Event(pending))
    }

    /// Nothing to do: the writer commits on its own within `MAX_DELAY` (group commit),
    /// and waiting for that here would hold up every other sink (the log panes).
    fn idle(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Returns once everything handled so far is committed.
    fn flush(&mut self) -> io::Result<()> {
        if self.tx.is_none() {
            return Ok(());
        }
        self.barrier(false)
    }

    fn close(&mut self) -> io::Result<()> {
        self.shutdown().map_err(|err| match self.shared.failure() {
            Some(failure) => io::Error::other(failure),
            None => err,
        })
    }

    fn watch_failures(&mut self, reporter: &FailureReporter) {
        self.shared.attach(reporter);
    }

    fn sink_failed(&mut self, failure: &SinkFailure) {
        let _ = self.send(WriterMsg::SinkFailed(failure.clone()));
    }
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            tracing::warn!(error = %err, "audit store was not closed cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::event::{AgentEvent, ItemStatus};

    /// The direct encoding of streamed events stores what the wire form says.
    #[test]
    fn streamed_events_encode_like_the_wire_form() {
        let event = OrchEvent::now(OrchEventKind::Agent {
            agent: "builder".into(),
            turn: 2,
            event: AgentEvent::Command {
                id: Some("item_1".into()),
                command: "cargo test \"quoted\"\n".into(),
                status: ItemStatus::Failed,
                exit_code: Some(101),
                output: None,
            },
        });
        let row = pending_event(&event);
        let wire = encode(&event);
        assert_eq!(row.ts, wire.ts_ms as i64);
        assert_eq!(row.agent, wire.agent);
        assert_eq!(row.turn, wire.turn.map(i64::from));
        assert_eq!(row.kind, wire.kind);
        let payload: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(payload, wire.payload);
    }
}
