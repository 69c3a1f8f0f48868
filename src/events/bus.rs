//! The event bus: many publishers (agent turns, the orchestrator), one sink thread.
//!
//! Events are redacted once, then handed to every sink in order on a dedicated thread,
//! so file writes never block the async runtime. The channel is bounded in events and in
//! bytes of text: a fast agent waits for slow sinks instead of growing memory, whether
//! it sends many small events or a few huge ones. Owns ordering and flushing; does not
//! know what any sink writes.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::agent::event::AgentEvent;
use crate::events::event::{OrchEvent, OrchEventKind};
use crate::events::failure::{FailureReporter, SinkFailure};
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
    /// The byte bound, in KiB of event text (see `batch_kib`).
    bytes: Arc<Semaphore>,
    failures: FailureReporter,
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

    /// The first fatal sink failure of the run (`None` while every sink writes): the
    /// one way the rest of the program learns that a log or the audit store could not
    /// be written.
    pub fn failures(&self) -> watch::Receiver<Option<SinkFailure>> {
        self.failures.subscribe()
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
    failures: FailureReporter,
}

impl SinkThread {
    pub fn spawn(mut sinks: Vec<Box<dyn Sink>>, redactor: Arc<Redactor>) -> (EventBus, SinkThread) {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(BUS_CAPACITY));
        let bytes = Arc::new(Semaphore::new(BUS_KIB));
        let thread_room = Room {
            events: room.clone(),
            bytes: bytes.clone(),
        };
        let failures = FailureReporter::default();
        for sink in sinks.iter_mut() {
            sink.watch_failures(&failures);
        }
        let thread_failures = failures.clone();
        let handle = std::thread::Builder::new()
            .name("orch-sinks".into())
            .spawn(move || {
                let _close = CloseOnDrop(thread_room.clone());
                let mut sinks = SinkSet::new(sinks, thread_failures);
                run_sinks(rx, &thread_room, &mut sinks, &redactor);
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
                failures: failures.clone(),
            },
            SinkThread {
                tx,
                handle,
                failures,
            },
        )
    }

    /// The first fatal sink failure of the run; see `EventBus::failures`.
    pub fn failures(&self) -> watch::Receiver<Option<SinkFailure>> {
        self.failures.subscribe()
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
            AgentEvent::PermissionDenied { tool, detail } => tool.len() + detail.len(),
            _ => 0,
        },
        OrchEventKind::TurnFinished(record) => record.prompt.len() + record.response.len(),
        OrchEventKind::RunStarted { prompt, .. } => prompt.len(),
        _ => 0,
    }
}

/// The sinks and which of them have failed: a failed sink is reported once and then
/// left alone (its `close` still runs), so a full disk is one failure, not one warning
/// per event.
struct SinkSet {
    sinks: Vec<Box<dyn Sink>>,
    failed: Vec<bool>,
    failures: FailureReporter,
}

impl SinkSet {
    fn new(sinks: Vec<Box<dyn Sink>>, failures: FailureReporter) -> SinkSet {
        let failed = vec![false; sinks.len()];
        SinkSet {
            sinks,
            failed,
            failures,
        }
    }

    /// Calls `call` on every sink that has not failed, in order.
    fn each(&mut self, mut call: impl FnMut(&mut dyn Sink) -> std::io::Result<()>) {
        for i in 0..self.sinks.len() {
            if self.failed[i] {
                continue;
            }
            if let Err(err) = call(self.sinks[i].as_mut()) {
                self.fail(i, &err);
            }
        }
    }

    fn fail(&mut self, index: usize, err: &std::io::Error) {
        self.failed[index] = true;
        let failure = SinkFailure::from_io(self.sinks[index].name(), err);
        tracing::error!(sink = %failure.sink, error = %failure, "sink failed; the run fails");
        self.failures.report(failure.clone());
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if !self.failed[i] {
                sink.sink_failed(&failure);
            }
        }
    }

    fn close(&mut self) {
        for i in 0..self.sinks.len() {
            let result = self.sinks[i].close();
            if let Err(err) = result
                && !self.failed[i]
            {
                self.fail(i, &err);
            }
        }
    }
}

fn run_sinks(
    mut rx: mpsc::UnboundedReceiver<BusMessage>,
    room: &Room,
    sinks: &mut SinkSet,
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
                    sinks.each(|sink| sink.idle());
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
                for mut event in events {
                    redactor.redact_event(&mut event.kind);
                    sinks.each(|sink| sink.handle(&event));
                }
                room.events.add_permits(weight);
                room.bytes.add_permits(kib);
                dirty = true;
            }
            BusMessage::Flush(done) => {
                sinks.each(|sink| sink.flush());
                dirty = false;
                let _ = done.send(());
            }
            BusMessage::Shutdown => break,
        }
    }
    sinks.close();
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

    /// Fails on its second event, as a full disk would, and counts its calls.
    struct FullDisk(Arc<Mutex<usize>>);

    impl Sink for FullDisk {
        fn name(&self) -> &'static str {
            "logs"
        }
        fn handle(&mut self, _event: &OrchEvent) -> std::io::Result<()> {
            let mut calls = self.0.lock().unwrap();
            *calls += 1;
            if *calls >= 2 {
                return Err(crate::events::failure::write_error(
                    std::path::Path::new("/run/logs/a.log"),
                    std::io::Error::from_raw_os_error(28),
                ));
            }
            Ok(())
        }
    }

    /// Hears of other sinks' failures.
    struct Witness(Arc<Mutex<Vec<SinkFailure>>>);

    impl Sink for Witness {
        fn name(&self) -> &'static str {
            "witness"
        }
        fn handle(&mut self, _event: &OrchEvent) -> std::io::Result<()> {
            Ok(())
        }
        fn sink_failed(&mut self, failure: &SinkFailure) {
            self.0.lock().unwrap().push(failure.clone());
        }
    }

    /// A failing sink is one failure, reported through `failures()` with its file and
    /// OS error, told to the other sinks, and then left alone.
    #[tokio::test]
    async fn a_failing_sink_is_reported_once_and_left_alone() {
        let calls = Arc::new(Mutex::new(0));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (bus, thread) = SinkThread::spawn(
            vec![
                Box::new(FullDisk(calls.clone())),
                Box::new(Witness(heard.clone())),
            ],
            Arc::new(Redactor::default()),
        );
        let mut failures = bus.failures();
        assert!(failures.borrow().is_none());
        bus.publish_all((0..10).map(wave)).await;
        bus.flush().await;
        failures.changed().await.unwrap();
        let failure = failures.borrow().clone().unwrap();
        assert_eq!(failure.sink, "logs");
        assert!(
            failure
                .to_string()
                .starts_with("failed to write `/run/logs/a.log`: No space left on device"),
            "{failure}"
        );
        assert_eq!(*calls.lock().unwrap(), 2, "not called after it failed");
        assert_eq!(*heard.lock().unwrap(), vec![failure.clone()]);
        assert_eq!(thread.failures().borrow().as_ref(), Some(&failure));
        thread.finish().await;
    }
}
