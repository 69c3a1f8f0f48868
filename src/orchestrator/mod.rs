//! Orchestration: groups, core agents, blueprints, waves, pause and resume.

pub mod agents;
pub mod blueprint;
pub mod control;
pub mod prompts;
pub mod retry;
pub mod run;
pub mod scheduler;
pub mod turn;

pub use control::{RunControl, RunMode};
pub use run::{AUTONOMOUS_ID, AgentReport, Orchestrator, RunReport};
pub use turn::{BackendSet, Shared};
