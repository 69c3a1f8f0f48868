//! The seed's compiled JSON agents config (`agents.out.json`).
//!
//! Shape: `{"groups": [{"name", "agents": [...], "orchestration": {...}}]}` (groups may
//! also be an object keyed by name), or a single group at the top level
//! (`{"agents": [...], "orchestration": {...}}`). Agent fields are snake_case as the
//! seed wrote them; camelCase spellings are accepted too. Unknown fields are ignored.

use crate::agent::permissions::Permissions;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::agents::{
    AgentSpec, AgentsConfig, ConfigSource, GroupSpec, OrchestrationSettings, RelaySettings,
    RetrySettings,
};
use crate::config::error::ConfigError;
use crate::config::kdl_file::default_blueprint_agent;

#[derive(Deserialize)]
struct SeedFile {
    #[serde(default)]
    groups: Option<Value>,
    #[serde(default)]
    agents: Option<Vec<SeedAgent>>,
    #[serde(default)]
    orchestration: Option<SeedOrchestration>,
}

#[derive(Deserialize)]
struct SeedGroup {
    #[serde(default, alias = "id")]
    name: Option<String>,
    #[serde(default)]
    agents: Vec<SeedAgent>,
    #[serde(default)]
    orchestration: Option<SeedOrchestration>,
}

#[derive(Deserialize)]
struct SeedAgent {
    id: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, alias = "planPrompt", alias = "prompt")]
    plan_prompt: Option<String>,
    #[serde(default, alias = "followUpPrompt", alias = "followup_prompt")]
    follow_up_prompt: Option<String>,
    #[serde(default, alias = "followUpSchema", alias = "followup_schema")]
    follow_up_schema: Option<Value>,
    #[serde(default, alias = "follow_up_rules", alias = "followUpRules")]
    rules: Option<Rules>,
    #[serde(default, alias = "followUpEnabled", alias = "followup_enabled")]
    follow_up_enabled: Option<bool>,
    #[serde(default, alias = "dependsOn")]
    depends_on: Vec<String>,
    #[serde(default)]
    blueprint: Option<bool>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    fallback: Vec<String>,
    /// `read-only`, `edit` or `act`.
    #[serde(default)]
    permissions: Option<Permissions>,
}

/// Rules may be one string or a list of strings.
#[derive(Deserialize)]
#[serde(from = "Value")]
struct Rules(Vec<String>);

impl From<Value> for Rules {
    fn from(value: Value) -> Self {
        match value {
            Value::String(s) => Rules(vec![s]),
            Value::Array(items) => Rules(
                items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => Rules(Vec::new()),
        }
    }
}

#[derive(Deserialize, Default)]
struct SeedOrchestration {
    #[serde(default)]
    autonomous: Option<bool>,
    #[serde(default)]
    parallel: Option<bool>,
    #[serde(default, alias = "maxWaves")]
    max_waves: Option<u32>,
    #[serde(default, alias = "maxAgents")]
    max_agents: Option<u32>,
    #[serde(default, alias = "maxParallel")]
    max_parallel: Option<u32>,
    #[serde(default)]
    relay: Option<SeedRelay>,
}

#[derive(Deserialize, Default)]
struct SeedRelay {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, alias = "requireHandoffNote")]
    require_handoff_note: Option<bool>,
    #[serde(default)]
    graph: BTreeMap<String, Vec<String>>,
}

fn orchestration(seed: Option<SeedOrchestration>) -> OrchestrationSettings {
    let seed = seed.unwrap_or_default();
    let relay = seed.relay.unwrap_or_default();
    OrchestrationSettings {
        autonomous: seed.autonomous,
        parallel: seed.parallel,
        max_waves: seed.max_waves,
        max_agents: seed.max_agents,
        max_parallel: seed.max_parallel,
        relay: RelaySettings {
            enabled: relay.enabled,
            require_handoff_note: relay.require_handoff_note,
            graph: relay.graph,
        },
    }
}

fn agent(seed: SeedAgent) -> AgentSpec {
    let mut spec = AgentSpec::new(&seed.id, seed.role.as_deref().unwrap_or(&seed.id));
    spec.plan_prompt = seed.plan_prompt.unwrap_or_default();
    spec.follow_up_prompt = seed.follow_up_prompt.unwrap_or_default();
    spec.follow_up_schema = seed.follow_up_schema;
    spec.rules = seed.rules.map(|r| r.0).unwrap_or_default();
    spec.follow_up_enabled = seed
        .follow_up_enabled
        .unwrap_or(!spec.follow_up_prompt.is_empty());
    spec.depends_on = seed.depends_on;
    spec.blueprint = seed.blueprint.unwrap_or(false);
    spec.backend = seed.backend;
    spec.model = seed.model;
    spec.fallback = seed.fallback;
    spec.permissions = seed.permissions;
    spec
}

fn group(name: String, seed: SeedGroup) -> GroupSpec {
    GroupSpec {
        name: seed.name.unwrap_or(name),
        agents: seed.agents.into_iter().map(agent).collect(),
        orchestration: orchestration(seed.orchestration),
        ..GroupSpec::new("")
    }
}

pub fn parse_json(text: &str, path: &Path) -> Result<AgentsConfig, ConfigError> {
    let at = |err: serde_json::Error| ConfigError::At {
        path: path.to_path_buf(),
        line: err.line(),
        column: err.column(),
        message: format!("invalid agents config: {err}"),
    };
    let seed: SeedFile = serde_json::from_str(text).map_err(at)?;
    let mut groups = Vec::new();
    match seed.groups {
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let g: SeedGroup =
                    serde_json::from_value(item).map_err(|e| ConfigError::InFile {
                        path: path.to_path_buf(),
                        message: format!("groups[{i}]: {e}"),
                    })?;
                groups.push(group(format!("group-{}", i + 1), g));
            }
        }
        Some(Value::Object(map)) => {
            for (name, item) in map {
                let g: SeedGroup =
                    serde_json::from_value(item).map_err(|e| ConfigError::InFile {
                        path: path.to_path_buf(),
                        message: format!("groups.{name}: {e}"),
                    })?;
                groups.push(group(name, g));
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(ConfigError::InFile {
                path: path.to_path_buf(),
                message: "`groups` must be a list or an object of groups".into(),
            });
        }
    }
    if let Some(agents) = seed.agents {
        if !groups.is_empty() {
            return Err(ConfigError::InFile {
                path: path.to_path_buf(),
                message: "top-level `agents` cannot be mixed with `groups`".into(),
            });
        }
        groups.push(group(
            "default".into(),
            SeedGroup {
                name: None,
                agents,
                orchestration: seed.orchestration,
            },
        ));
    }
    let mut config = AgentsConfig {
        source: ConfigSource::File(path.to_path_buf()),
        groups,
        retry: RetrySettings::default(),
        process: Default::default(),
        worktree: Default::default(),
        permissions: Default::default(),
        gates: Vec::new(),
        reviews: Vec::new(),
        prices: Default::default(),
        tracks: Vec::new(),
    };
    default_blueprint_agent(&mut config);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_shape_with_both_spellings() {
        let text = r#"{
          "groups": [{
            "name": "core",
            "orchestration": {"autonomous": true, "max_waves": 2,
                              "relay": {"enabled": true, "require_handoff_note": false, "graph": {"a": ["b"]}}},
            "agents": [
              {"id": "planner", "role": "Planner", "plan_prompt": "p", "follow_up_prompt": "f",
               "follow_up_enabled": true, "depends_on": [], "rules": "be brief", "extra": 1},
              {"id": "builder", "role": "Builder", "planPrompt": "p", "followUpPrompt": "f",
               "dependsOn": ["planner"], "followUpSchema": {"type": "object"}}
            ]
          }]
        }"#;
        let config = parse_json(text, Path::new("agents.out.json")).unwrap();
        let group = &config.groups[0];
        assert_eq!(group.name, "core");
        assert_eq!(group.orchestration.relay.require_handoff_note, Some(false));
        assert_eq!(group.agents[0].rules, vec!["be brief"]);
        assert_eq!(group.agents[1].depends_on, vec!["planner"]);
        assert!(group.agents[1].follow_up_enabled);
        assert!(group.agents[1].blueprint);
        config.validate().unwrap();
    }

    #[test]
    fn json_syntax_errors_name_line_and_column() {
        let err = parse_json(
            "{\n  \"agents\": [\n    {\"id\": }\n  ]\n}",
            Path::new("a.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("a.json:3:12: invalid agents config"),
            "{err}"
        );
    }
}
