//! The event bus: many publishers (agent turns, the orchestrator), one sink thread.
//!
//! Events are redacted once, then handed to every sink in order on a dedicated thread,
//! so file writes never block the async runtime. The channel is bounded in events and in
//! bytes of text: a fast agent waits for slow sinks instead of growing memory, whether
//! it sends many small events or a few huge ones. Owns ordering and flushing; does not
//! know what any sink writes.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::agent::event::AgentEvent;
use crate::events::event::{OrchEvent, OrchEventKind};
use crate::events::sink::Sink;
use crate::redact::Redactor;

/// Most events queued for the sink thread; a publisher waits for room beyond that.
const BUS_CAPACITY: usize = 4096;
/// Most events in one batch message (a larger batch is sent in parts).
const MAX_BATCH: usize = 256;
/// Most text queued for the sink thread, in KiB: a publisher waits for room beyond
/// that. One event heavier than the whole bound still passes, alone.
const BUS_KIB: usize = 16 * 1024;

enum BusMessage {
    /// Events published together (one read of an agent's output, or a single event),
    /// handled in order.
    Events(Vec<OrchEvent>),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// Cheap to clone; every clone publishes into the same ordered stream.
///
/// The channel itself is unbounded; `room` bounds it in events (not messages), so a
/// batch of a hundred events weighs a hundred. The sink thread gives the permits back
/// as it handles events, and closes `room` when it ends, so no publisher waits forever.
#[derive(Clone)]
pub struct EventBus {
    tx: mpsc::UnboundedSender<BusMessage>,
    room: Arc<Semaphore>,
    /// The byte bound, in KiB of event text (see `weight_kib`).
    bytes: Arc<Semaphore>,
}

impl EventBus {
    /// Publishes an event stamped now. If the sink thread is gone the event is dropped
    /// (that only happens after `SinkThread::finish`).
    pub async fn publish(&self, kind: OrchEventKind) {
        self.publish_all(std::iter::once(kind)).await;
    }

    /// Publishes events together, in order, all stamped now: one wake-up of the sink
    /// thread for the lot instead of one per event.
    pub async fn publish_all(&self, kinds: impl IntoIterator<Item = OrchEventKind>) {
        let mut kinds = kinds.into_iter().peekable();
        while kinds.peek().is_some() {
            // Cut by count and by bytes, so the byte bound weighs what is really queued.
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < MAX_BATCH
                && bytes < BUS_KIB * 1024 / 4
                && let Some(kind) = kinds.next()
            {
                bytes += text_bytes(&kind);
                batch.push(OrchEvent::now(kind));
            }
            let kib = batch_kib(&batch);
            let Ok(permit) = self.room.acquire_many(batch.len() as u32).await else {
                return;
            };
            permit.forget();
            let weight = batch.len();
            let Ok(bytes) = self.bytes.acquire_many(kib as u32).await else {
                self.room.add_permits(weight);
                return;
            };
            bytes.forget();
            if self.tx.send(BusMessage::Events(batch)).is_err() {
                self.room.add_permits(weight);
                self.bytes.add_permits(kib);
                return;
            }
        }
    }

    /// Waits until every event published before this call has been written and flushed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(BusMessage::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The thread that owns the sinks.
pub struct SinkThread {
    tx: mpsc::UnboundedSender<BusMessage>,
    handle: Option<JoinHandle<()>>,
}

impl SinkThread {
    pub fn spawn(sinks: Vec<Box<dyn Sink>>, redactor: Arc<Redactor>) -> (EventBus, SinkThread) {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(BUS_CAPACITY));
        let bytes = Arc::new(Semaphore::new(BUS_KIB));
        let thread_room = Room {
            events: room.clone(),
            bytes: bytes.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("orch-sinks".into())
            .spawn(move || {
                let _close = CloseOnDrop(thread_room.clone());
                run_sinks(rx, &thread_room, sinks, &redactor);
            })
            .ok();
        if handle.is_none() {
            room.close();
            bytes.close();
        }
        (
            EventBus {
                tx: tx.clone(),
                room,
                bytes,
            },
            SinkThread { tx, handle },
        )
    }

    /// Writes out everything published so far, closes the sinks and joins the thread.
    pub async fn finish(mut self) {
        let _ = self.tx.send(BusMessage::Shutdown);
        if let Some(handle) = self.handle.take() {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// The bus's two bounds, as the sink thread gives them back.
#[derive(Clone)]
struct Room {
    events: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// Closes the bus's room when the sink thread ends, even by a panic: publishers
/// then drop their events instead of waiting for permits that will never come back.
struct CloseOnDrop(Room);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.events.close();
        self.0.bytes.close();
    }
}

/// What a batch weighs against the byte bound: its text in KiB, rounded up, at most
/// the whole bound (so a huge event waits for an empty queue instead of forever).
fn batch_kib(batch: &[OrchEvent]) -> usize {
    let bytes: usize = batch.iter().map(|e| text_bytes(&e.kind)).sum();
    bytes.div_ceil(1024).clamp(1, BUS_KIB)
}

/// The bytes of text an event carries; only agent output and turn records are large.
fn text_bytes(kind: &OrchEventKind) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    match kind {
        OrchEventKind::Agent { event, .. } => match event {
            AgentEvent::Message { text }
            | AgentEvent::Reasoning { text }
            | AgentEvent::RawLine { text } => text.len(),
            AgentEvent::Command {
                command, output, ..
            } => command.len() + opt(output),
            AgentEvent::ToolCall {
                arguments, result, ..
            } => arguments.len() + opt(result),
            AgentEvent::Error { message } => message.len(),
            _ => 0,
        },
        OrchEventKind::TurnFinished(record) => record.prompt.len() + record.response.len(),
        OrchEventKind::RunStarted { prompt, .. } => prompt.len(),
        _ => 0,
    }
}

fn run_sinks(
    mut rx: mpsc::UnboundedReceiver<BusMessage>,
    room: &Room,
    mut sinks: Vec<Box<dyn Sink>>,
    redactor: &Redactor,
) {
    let mut dirty = false;
    loop {
        // Drain what is queued without flushing; tell the sinks when the queue runs dry,
        // so a burst is written in large writes and a lone event is visible at once.
        let message = match rx.try_recv() {
            Ok(message) => message,
            Err(mpsc::error::TryRecvError::Empty) => {
                if dirty {
                    idle_all(&mut sinks);
                }
                match rx.blocking_recv() {
                    Some(message) => message,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match message {
            BusMessage::Events(events) => {
                let weight = events.len();
                let kib = batch_kib(&events);
                for event in events {
                    handle_event(event, &mut sinks, redactor);
                }
                room.events.add_permits(weight);
                room.bytes.add_permits(kib);
                dirty = true;
            }
            BusMessage::Flush(done) => {
                flush_all(&mut sinks);
                dirty = false;
                let _ = done.send(());
            }
            BusMessage::Shutdown => break,
        }
    }
    for sink in sinks.iter_mut() {
        if let Err(err) = sink.close() {
            tracing::warn!(sink = sink.name(), error = %err, "sink failed to close");
        }
    }
}

fn handle_event(mut event: OrchEvent, sinks: &mut [Box<dyn Sink>], redactor: &Redactor) {
    redactor.redact_event(&mut event.kind);
    for sink in sinks.iter_mut() {
        if let Err(err) = sink.handle(&event) {
            tracing::warn!(sink = sink.name(), error = %err, "sink failed to write an event");
        }
    }
}

fn idle_all(sinks: &mut [Box<dyn Sink>]) {
    for sink in sinks.iter_mut() {
        if let Err(err) = sink.idle() {
            tracing::warn!(sink = sink.name(), error = %err, "sink failed to flush");
        }
    }
}

fn flush_all(sinks: &mut [Box<dyn Sink>]) {
    for sink in sinks.iter_mut() {
        if let Err(err) = sink.flush() {
            tracing::warn!(sink = sink.name(), error = %err, "sink failed to flush");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;

    /// Records which hooks the sink thread calls, in order.
    struct Recorder(Arc<Mutex<Vec<&'static str>>>);

    impl Sink for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn handle(&mut self, _event: &OrchEvent) -> std::io::Result<()> {
            self.0.lock().unwrap().push("handle");
            Ok(())
        }
        fn idle(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().push("idle");
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().push("flush");
            Ok(())
        }
    }

    /// A dry queue only nudges the sinks (`idle`); the durable `flush` (the audit
    /// store's commit barrier) runs only when someone asks for it.
    #[tokio::test]
    async fn a_dry_queue_calls_idle_and_only_an_explicit_flush_calls_flush() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (bus, thread) = SinkThread::spawn(
            vec![Box::new(Recorder(calls.clone()))],
            Arc::new(Redactor::default()),
        );
        bus.publish(OrchEventKind::RunResumed).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !calls.lock().unwrap().contains(&"idle") {
            assert!(
                Instant::now() < deadline,
                "no idle call: {:?}",
                calls.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!calls.lock().unwrap().contains(&"flush"));
        bus.flush().await;
        assert_eq!(calls.lock().unwrap().last(), Some(&"flush"));
        thread.finish().await;
    }

    /// Records the wave number of every `WaveScheduled` it sees, in order.
    struct Numbers(Arc<Mutex<Vec<u32>>>);

    impl Sink for Numbers {
        fn name(&self) -> &'static str {
            "numbers"
        }
        fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
            if let OrchEventKind::WaveScheduled { wave, .. } = &event.kind {
                self.0.lock().unwrap().push(*wave);
            }
            Ok(())
        }
    }

    fn wave(n: u32) -> OrchEventKind {
        OrchEventKind::WaveScheduled {
            wave: n,
            kind: crate::events::event::WaveKind::Core,
            agents: Vec::new(),
        }
    }

    /// More events than one batch message and than the bus holds arrive whole and in
    /// order, single events and batches interleaved as published.
    #[tokio::test]
    async fn batches_larger_than_the_bus_arrive_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (bus, thread) = SinkThread::spawn(
            vec![Box::new(Numbers(seen.clone()))],
            Arc::new(Redactor::default()),
        );
        let total = (BUS_CAPACITY * 2 + MAX_BATCH / 2) as u32;
        bus.publish(wave(0)).await;
        bus.publish_all((1..total).map(wave)).await;
        bus.publish(wave(total)).await;
        bus.flush().await;
        thread.finish().await;
        let seen = seen.lock().unwrap();
        assert_eq!(*seen, (0..=total).collect::<Vec<_>>());
    }

    /// Blocks in `handle` until told to go on.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Sink for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        fn handle(&mut self, _event: &OrchEvent) -> std::io::Result<()> {
            let _ = self.0.recv();
            Ok(())
        }
    }

    fn big(mib: usize) -> OrchEventKind {
        OrchEventKind::Agent {
            agent: "a".into(),
            turn: 1,
            event: AgentEvent::Message {
                text: "x".repeat(mib * 1024 * 1024),
            },
        }
    }

    /// Few events but many bytes: a publisher waits once the queued text passes the
    /// bound, and one event larger than the whole bound still goes through.
    #[tokio::test]
    async fn the_bus_is_bounded_in_bytes_not_only_in_events() {
        let (go, wait) = std::sync::mpsc::channel();
        let (bus, thread) =
            SinkThread::spawn(vec![Box::new(Stuck(wait))], Arc::new(Redactor::default()));
        // Two events of 6 MiB fit in the 16 MiB bound (the sink holds the first); a
        // third waits until the sink gives room back.
        bus.publish(big(6)).await;
        bus.publish(big(6)).await;
        let blocked = tokio::time::timeout(Duration::from_millis(300), bus.publish(big(6))).await;
        assert!(blocked.is_err(), "a third 6 MiB event was queued");
        // Larger than the whole bound: waits for an empty queue, then passes.
        for _ in 0..3 {
            go.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), bus.publish(big(20)))
            .await
            .expect("an event over the bound never passed");
        bus.flush().await;
        thread.finish().await;
    }

    struct Panics;

    impl Sink for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn handle(&mut self, _event: &OrchEvent) -> std::io::Result<()> {
            panic!("a sink bug");
        }
    }

    /// If the sink thread dies, publishers drop their events instead of waiting for
    /// room that never comes back.
    #[tokio::test]
    async fn publishing_after_the_sink_thread_died_does_not_wait() {
        let (bus, thread) =
            SinkThread::spawn(vec![Box::new(Panics)], Arc::new(Redactor::default()));
        let publish = async {
            bus.publish(wave(0)).await;
            bus.publish_all((1..(BUS_CAPACITY as u32 * 3)).map(wave))
                .await;
            bus.publish(wave(1)).await;
        };
        tokio::time::timeout(Duration::from_secs(30), publish)
            .await
            .expect("publishers must not hang on a dead sink thread");
        thread.finish().await;
    }
}
