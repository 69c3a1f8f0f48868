//! What a control request does: it goes to the run's dispatcher, which decides (pause,
//! resume, stop, status) and answers. Used by the socket; signals go the same way.

use crate::board::BoardFeed;
use crate::control::protocol::{ControlCommand, ControlResponse};
use crate::orchestrator::{RunLink, RunMode};

#[derive(Clone, Debug)]
pub struct ControlHandler {
    link: RunLink,
    board: Option<BoardFeed>,
}

impl ControlHandler {
    pub fn new(link: RunLink) -> Self {
        ControlHandler { link, board: None }
    }

    /// Answers `status` with the board too, and serves `watch`.
    pub fn with_board(mut self, board: BoardFeed) -> Self {
        self.board = Some(board);
        self
    }

    pub fn board(&self) -> Option<&BoardFeed> {
        self.board.as_ref()
    }

    pub async fn handle(&self, command: ControlCommand, source: &str) -> ControlResponse {
        let mut response = self.link.control(command, source).await;
        if command == ControlCommand::Status
            && let Some(board) = &self.board
        {
            response.board = Some(Box::new(board.snapshot()));
        }
        response
    }

    /// The run's mode as the dispatcher last left it.
    pub fn mode(&self) -> RunMode {
        self.link.mode()
    }
}
