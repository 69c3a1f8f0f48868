//! Run events, the bus that orders them, and the sinks that write them out.

pub mod bus;
pub mod event;
pub mod failure;
pub mod log_sink;
pub mod progress;
pub mod render;
pub mod sink;
pub mod story;
pub mod wire;

pub use bus::{EventBus, SinkThread};
pub use event::{
    AgentStatus, BlueprintAgentSummary, InterruptSummary, NoticeLevel, OrchEvent, OrchEventKind,
    PromptStats, RetryDecision, RunStatus, TurnRecord, WaveKind,
};
pub use failure::{FailureReporter, SinkFailure};
pub use sink::Sink;
