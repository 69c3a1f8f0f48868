//! Orchestration: the run's dispatcher and state, groups, core agents, blueprints,
//! waves, pause and resume.

pub(crate) mod agents;
pub(crate) mod blueprint;
pub(crate) mod dispatcher;
pub(crate) mod features;
pub(crate) mod gates;
pub(crate) mod interrupts;
pub(crate) mod isolation;
pub(crate) mod jobs;
pub(crate) mod lifecycle;
pub(crate) mod prompts;
pub mod replay;
pub(crate) mod retry;
pub(crate) mod review;
pub(crate) mod scheduler;
pub(crate) mod state;
pub(crate) mod turn;
pub(crate) mod waves;

pub use dispatcher::{RunInbox, RunLink, dispatch};
pub use isolation::Isolation;
pub use lifecycle::{AgentEntry, AgentLifecycle};
pub use retry::RetryPolicy;
pub use state::{AgentReport, RunMode, RunReport, StatusReport};
pub use turn::{BackendSet, RunContext};
pub use waves::AUTONOMOUS_ID;

#[cfg(test)]
mod state_tests;
