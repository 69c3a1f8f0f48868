//! Agent backends and the normalized event model they all speak.

pub mod acting;
pub mod anthropic;
pub mod backend;
pub mod classify;
pub mod claude;
pub mod cli_turn;
pub mod codex;
pub mod codex_rollout;
pub mod demo;
pub mod demo_files;
pub mod event;
pub mod gemini;
pub mod http;
pub mod id;
pub mod openai;
pub mod permissions;
pub mod process;
pub mod registry;
pub mod settings;
pub mod stream;
pub mod watchdog;

pub use backend::{
    AgentKind, Backend, BackendError, BoxFuture, ChatMessage, ChatRole, Expects, StopHandle,
    StopSignal, TurnEvents, TurnKind, TurnRequest, TurnResult,
};
pub use event::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, Usage};
pub use permissions::Permissions;
pub use registry::{BACKEND_NAMES, build_backend};
pub use settings::{BackendSettings, CliSettings, HttpSettings};
