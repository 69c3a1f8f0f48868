//! The event bus: many publishers (agent turns, the orchestrator), one sink thread.
//!
//! Events are redacted once, then handed to every sink in order on a dedicated thread,
//! so file writes never block the async runtime. The channel is bounded: a fast agent
//! waits for slow sinks instead of growing memory. Owns ordering and flushing; does not
//! know what any sink writes.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::events::event::{OrchEvent, OrchEventKind};
use crate::events::sink::Sink;
use crate::redact::Redactor;

const BUS_CAPACITY: usize = 4096;

enum BusMessage {
    Event(OrchEvent),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// Cheap to clone; every clone publishes into the same ordered stream.
#[derive(Clone)]
pub struct EventBus {
    tx: mpsc::Sender<BusMessage>,
}

impl EventBus {
    /// Publishes an event stamped now. If the sink thread is gone the event is dropped
    /// (that only happens after `SinkThread::finish`).
    pub async fn publish(&self, kind: OrchEventKind) {
        let _ = self.tx.send(BusMessage::Event(OrchEvent::now(kind))).await;
    }

    /// Waits until every event published before this call has been written and flushed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(BusMessage::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The thread that owns the sinks.
pub struct SinkThread {
    tx: mpsc::Sender<BusMessage>,
    handle: Option<JoinHandle<()>>,
}

impl SinkThread {
    pub fn spawn(sinks: Vec<Box<dyn Sink>>, redactor: Arc<Redactor>) -> (EventBus, SinkThread) {
        let (tx, rx) = mpsc::channel(BUS_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("orch-sinks".into())
            .spawn(move || run_sinks(rx, sinks, &redactor))
            .ok();
        (EventBus { tx: tx.clone() }, SinkThread { tx, handle })
    }

    /// Writes out everything published so far, closes the sinks and joins the thread.
    pub async fn finish(mut self) {
        let _ = self.tx.send(BusMessage::Shutdown).await;
        if let Some(handle) = self.handle.take() {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn run_sinks(
    mut rx: mpsc::Receiver<BusMessage>,
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
            BusMessage::Event(mut event) => {
                redactor.redact_event(&mut event.kind);
                for sink in sinks.iter_mut() {
                    if let Err(err) = sink.handle(&event) {
                        tracing::warn!(sink = sink.name(), error = %err, "sink failed to write an event");
                    }
                }
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
}
