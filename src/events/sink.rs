//! The `Sink` trait: a consumer of the ordered, redacted event stream.

use crate::events::event::OrchEvent;
use crate::events::failure::{FailureReporter, SinkFailure};

/// Runs on the sink thread; may block on I/O. An error is a fatal failure of that sink:
/// the sink thread reports it once (`EventBus::failures`) and stops calling `handle`,
/// `idle` and `flush` on it (`close` is still called, and its error ignored). Wrap I/O
/// errors with `failure::write_error` so the failure names the file.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()>;
    /// Called whenever the queue runs dry: make what was handled visible soon, without
    /// waiting for anything slow (a pane tails the log; a durable commit can wait).
    fn idle(&mut self) -> std::io::Result<()> {
        self.flush()
    }
    /// Called on `EventBus::flush`: returns once everything handled is written.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Called once at the end of the run.
    fn close(&mut self) -> std::io::Result<()> {
        self.flush()
    }
    /// Called once before any event: a sink that writes from a thread of its own
    /// reports its failures here as they happen.
    fn watch_failures(&mut self, _reporter: &FailureReporter) {}
    /// Another sink failed: a sink that keeps the run's record (the audit store)
    /// records it.
    fn sink_failed(&mut self, _failure: &SinkFailure) {}
}
