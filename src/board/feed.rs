//! The run's side of the board: a sink that keeps a [`Board`] from the run's events,
//! and the feed the control socket serves it from (`status`, and `watch`, which sends
//! the board again each time it changes).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::agent::event::AgentEvent;
use crate::board::model::Board;
use crate::events::Sink;
use crate::events::event::{OrchEvent, OrchEventKind};

/// The live board of a run, shared by its sink and the control socket.
#[derive(Clone, Debug)]
pub struct BoardFeed {
    board: Arc<Mutex<Board>>,
    /// Counts changes; a watcher waits on it.
    version: watch::Receiver<u64>,
}

impl BoardFeed {
    pub fn snapshot(&self) -> Board {
        lock(&self.board).clone()
    }

    /// A receiver that sees every later change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.clone()
    }
}

/// The sink that keeps the board. Cheap per event: streamed events other than commands,
/// file changes and tool calls are not even looked at.
pub struct BoardSink {
    board: Arc<Mutex<Board>>,
    version: watch::Sender<u64>,
}

impl BoardSink {
    pub fn new(session: &str, max_tokens: Option<u64>) -> (BoardSink, BoardFeed) {
        let board = Arc::new(Mutex::new(Board::new(session, max_tokens)));
        let (version, receiver) = watch::channel(0);
        (
            BoardSink {
                board: board.clone(),
                version,
            },
            BoardFeed {
                board,
                version: receiver,
            },
        )
    }
}

fn lock(board: &Mutex<Board>) -> MutexGuard<'_, Board> {
    board
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sink for BoardSink {
    fn name(&self) -> &'static str {
        "board"
    }

    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
        if let OrchEventKind::Agent {
            event: streamed, ..
        } = &event.kind
            && !matches!(
                streamed,
                AgentEvent::Command { .. }
                    | AgentEvent::FileChange { .. }
                    | AgentEvent::ToolCall { .. }
            )
        {
            return Ok(());
        }
        if lock(&self.board).apply(event) {
            self.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }
}
