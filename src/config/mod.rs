//! Agents config files and the resolved run configuration.

pub mod agents;
pub mod defaults;
pub mod error;
pub mod features;
pub mod json_file;
pub mod kdl_file;
pub mod prices;
pub mod resolve;

pub use agents::{
    AgentSpec, AgentsConfig, ConfigSource, GroupSpec, OrchestrationSettings, RelaySettings,
};
pub use error::ConfigError;
pub use resolve::{
    Concise, Config, Env, GroupSettings, ParentRun, group_settings, process_env, resolve,
};
