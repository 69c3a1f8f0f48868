//! Agent backends and the normalized event model they all speak.

pub mod backend;
pub mod demo;
pub mod event;
pub mod id;

pub use backend::{
    AgentKind, Backend, BackendError, BoxFuture, ChatMessage, ChatRole, Expects, TurnEvents,
    TurnKind, TurnRequest, TurnResult,
};
pub use event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
