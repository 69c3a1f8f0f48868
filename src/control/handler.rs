//! What a control request does: it goes to the run's dispatcher, which decides (pause,
//! resume, stop, status) and answers. Used by the socket; signals go the same way.

use crate::control::protocol::{ControlCommand, ControlResponse};
use crate::orchestrator::{RunLink, RunMode};

#[derive(Clone, Debug)]
pub struct ControlHandler {
    link: RunLink,
}

impl ControlHandler {
    pub fn new(link: RunLink) -> Self {
        ControlHandler { link }
    }

    pub async fn handle(&self, command: ControlCommand, source: &str) -> ControlResponse {
        self.link.control(command, source).await
    }

    /// The run's mode as the dispatcher last left it.
    pub fn mode(&self) -> RunMode {
        self.link.mode()
    }
}
