//! The `Sink` trait: a consumer of the ordered, redacted event stream.

use crate::events::event::OrchEvent;

/// Runs on the sink thread; may block on I/O. Errors are reported and the run goes on.
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
}
