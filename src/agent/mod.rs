//! Agent backends and the normalized event model they all speak.

pub mod backend;
pub mod classify;
pub mod cli_turn;
pub mod codex;
pub mod demo;
pub mod event;
pub mod http;
pub mod id;
pub mod process;
pub mod settings;
pub mod stream;

pub use backend::{
    AgentKind, Backend, BackendError, BoxFuture, ChatMessage, ChatRole, Expects, TurnEvents,
    TurnKind, TurnRequest, TurnResult,
};
pub use event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
