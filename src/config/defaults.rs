//! The built-in squad, used only when no agents config file is given or found.
//! It is `examples/orch.kdl`, so the shipped example and the defaults cannot drift.

use std::path::Path;

use crate::config::agents::{AgentsConfig, ConfigSource};
use crate::config::error::ConfigError;
use crate::config::kdl_file::parse_kdl;

pub const DEFAULT_AGENTS_KDL: &str = include_str!("../../examples/orch.kdl");

pub fn default_agents() -> Result<AgentsConfig, ConfigError> {
    let (mut config, _) = parse_kdl(
        DEFAULT_AGENTS_KDL,
        Path::new("<built-in examples/orch.kdl>"),
    )?;
    config.source = ConfigSource::BuiltIn;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_is_the_valid_default_squad() {
        let config = default_agents().unwrap();
        config.validate().unwrap();
        let ids: Vec<&str> = config.groups[0]
            .agents
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(ids, ["planner", "researcher", "builder"]);
        assert!(config.groups[0].agents[2].blueprint);
    }
}
