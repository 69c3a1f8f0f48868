//! Blueprints: the JSON a builder (or the autonomous orchestrator) writes to define
//! specialist agents: `{"agents":[{"id","role","prompt","dependsOn":[ids]}]}`.
//!
//! Parsing accepts the JSON raw, in a fenced block, or embedded in prose. Validation is
//! all-or-nothing: a half-valid blueprint is never executed.

use std::collections::HashSet;

use serde_json::Value;

use crate::agent::id::agent_id_problem;
use crate::orchestrator::scheduler::find_cycle;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlueprintAgent {
    pub id: String,
    pub role: String,
    pub prompt: String,
    pub depends_on: Vec<String>,
    /// `"tier": "fast"` (true) or `"strong"`, for a group with `routing "auto"`.
    pub fast: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Blueprint {
    pub agents: Vec<BlueprintAgent>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlueprintError {
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the blueprint must be a JSON object with an `agents` list: {0}")]
    Shape(String),
    #[error("{0}")]
    BadId(String),
    #[error("agent id `{0}` is used twice")]
    Duplicate(String),
    #[error("agent id `{0}` is already used by an earlier agent of this run")]
    Taken(String),
    #[error("agent `{agent}` depends on `{dep}`, which is not in the blueprint")]
    UnknownDependency { agent: String, dep: String },
    #[error("dependsOn forms a cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    #[error("the blueprint defines {count} agents; at most {max} are allowed")]
    TooMany { count: usize, max: usize },
}

/// What a blueprint must respect.
pub struct BlueprintRules<'a> {
    pub max_agents: usize,
    /// Ids of agents that already exist in this run (core agents, earlier waves).
    pub taken: &'a HashSet<String>,
}

/// Candidate JSON texts in an answer: the whole answer, fenced blocks (last first),
/// then the outermost braces.
pub(crate) fn candidates(text: &str) -> Vec<&str> {
    let mut out = vec![text.trim()];
    let mut fenced = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(after.len(), |n| n + 1);
        let body = &after[body_start..];
        match body.find("```") {
            Some(end) => {
                fenced.push(body[..end].trim());
                rest = &body[end + 3..];
            }
            None => break,
        }
    }
    out.extend(fenced.into_iter().rev());
    if let (Some(open), Some(close)) = (text.find('{'), text.rfind('}')) {
        if open < close {
            out.push(&text[open..=close]);
        }
    }
    out
}

pub fn parse_blueprint(text: &str, rules: &BlueprintRules) -> Result<Blueprint, BlueprintError> {
    let mut first_error = None;
    let mut value = None;
    for candidate in candidates(text) {
        match serde_json::from_str::<Value>(candidate) {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let value = value.ok_or_else(|| {
        BlueprintError::NotJson(first_error.unwrap_or_else(|| "empty answer".into()))
    })?;
    let agents = value
        .get("agents")
        .and_then(Value::as_array)
        .ok_or_else(|| BlueprintError::Shape("no `agents` list found".into()))?;
    let mut blueprint = Blueprint::default();
    for (i, item) in agents.iter().enumerate() {
        let field = |name: &str| item.get(name).and_then(Value::as_str).map(str::trim);
        let id = field("id")
            .ok_or_else(|| BlueprintError::Shape(format!("agents[{i}] has no string `id`")))?;
        let prompt = field("prompt").filter(|p| !p.is_empty()).ok_or_else(|| {
            BlueprintError::Shape(format!("agent `{}` has no `prompt`", id.escape_debug()))
        })?;
        let role = field("role").filter(|r| !r.is_empty()).unwrap_or(id);
        let deps_value = item.get("dependsOn").or_else(|| item.get("depends_on"));
        let depends_on = match deps_value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(deps)) => deps
                .iter()
                .map(|d| {
                    d.as_str().map(str::to_owned).ok_or_else(|| {
                        BlueprintError::Shape(format!(
                            "dependsOn of agent `{}` must list agent ids",
                            id.escape_debug()
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(BlueprintError::Shape(format!(
                    "dependsOn of agent `{}` must be a list",
                    id.escape_debug()
                )));
            }
        };
        let fast = match item.get("tier") {
            None | Some(Value::Null) => None,
            Some(tier) => match tier.as_str().map(str::trim) {
                Some("fast") => Some(true),
                Some("strong") => Some(false),
                _ => {
                    return Err(BlueprintError::Shape(format!(
                        "tier of agent `{}` must be \"fast\" or \"strong\"",
                        id.escape_debug()
                    )));
                }
            },
        };
        blueprint.agents.push(BlueprintAgent {
            id: id.to_owned(),
            role: role.to_owned(),
            prompt: prompt.to_owned(),
            depends_on,
            fast,
        });
    }
    validate(&blueprint, rules)?;
    Ok(blueprint)
}

pub fn validate(blueprint: &Blueprint, rules: &BlueprintRules) -> Result<(), BlueprintError> {
    if blueprint.agents.len() > rules.max_agents {
        return Err(BlueprintError::TooMany {
            count: blueprint.agents.len(),
            max: rules.max_agents,
        });
    }
    let mut seen = HashSet::new();
    for agent in &blueprint.agents {
        if let Some(problem) = agent_id_problem(&agent.id) {
            return Err(BlueprintError::BadId(problem));
        }
        if rules.taken.contains(&agent.id) {
            return Err(BlueprintError::Taken(agent.id.clone()));
        }
        if !seen.insert(agent.id.as_str()) {
            return Err(BlueprintError::Duplicate(agent.id.clone()));
        }
    }
    for agent in &blueprint.agents {
        for dep in &agent.depends_on {
            if !seen.contains(dep.as_str()) {
                return Err(BlueprintError::UnknownDependency {
                    agent: agent.id.clone(),
                    dep: dep.escape_debug().to_string(),
                });
            }
        }
    }
    let edges: Vec<(String, Vec<String>)> = blueprint
        .agents
        .iter()
        .map(|a| (a.id.clone(), a.depends_on.clone()))
        .collect();
    if let Some(cycle) = find_cycle(&edges) {
        return Err(BlueprintError::Cycle(cycle));
    }
    Ok(())
}

impl Blueprint {
    /// A pure chain: at least two agents, each depending on exactly the one before.
    pub fn is_straight_chain(&self) -> bool {
        self.agents.len() >= 2
            && self.agents[0].depends_on.is_empty()
            && self
                .agents
                .windows(2)
                .all(|w| w[1].depends_on == [w[0].id.clone()])
    }

    pub fn has_dependencies(&self) -> bool {
        self.agents.iter().any(|a| !a.depends_on.is_empty())
    }

    pub fn ids(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Blueprint, BlueprintError> {
        let taken: HashSet<String> = ["planner".to_string()].into();
        parse_blueprint(
            text,
            &BlueprintRules {
                max_agents: 4,
                taken: &taken,
            },
        )
    }

    const VALID: &str = r#"{"agents":[{"id":"api","role":"API","prompt":"build it"},
        {"id":"ui","role":"UI","prompt":"draw it"},
        {"id":"tests","role":"QA","prompt":"test it","dependsOn":["api","ui"]}]}"#;

    #[test]
    fn accepts_raw_fenced_and_embedded_json() {
        assert_eq!(parse(VALID).unwrap().agents.len(), 3);
        let fenced = format!("Here is the blueprint:\n```json\n{VALID}\n```\nDone.");
        assert_eq!(parse(&fenced).unwrap().agents[2].depends_on, ["api", "ui"]);
        let prose = format!("Sure. {VALID} Hope that helps.");
        assert_eq!(parse(&prose).unwrap().ids(), ["api", "ui", "tests"]);
    }

    #[test]
    fn rejects_each_kind_of_bad_blueprint_with_a_clear_message() {
        let cases = [
            ("not json at all", "the answer is not JSON"),
            (
                r#"{"tasks":[]}"#,
                "must be a JSON object with an `agents` list",
            ),
            (
                r#"{"agents":[{"id":"../evil","prompt":"x"}]}"#,
                "agent id `../evil` is not allowed",
            ),
            (
                r#"{"agents":[{"id":"a","prompt":"x"},{"id":"a","prompt":"y"}]}"#,
                "agent id `a` is used twice",
            ),
            (
                r#"{"agents":[{"id":"a","prompt":"x","dependsOn":["ghost"]}]}"#,
                "agent `a` depends on `ghost`, which is not in the blueprint",
            ),
            (
                r#"{"agents":[{"id":"a","prompt":"x","dependsOn":["b"]},{"id":"b","prompt":"y","dependsOn":["a"]}]}"#,
                "dependsOn forms a cycle: a → b → a",
            ),
            (
                r#"{"agents":[{"id":"planner","prompt":"x"}]}"#,
                "already used by an earlier agent",
            ),
            (
                r#"{"agents":[{"id":"a","prompt":"1"},{"id":"b","prompt":"2"},{"id":"c","prompt":"3"},{"id":"d","prompt":"4"},{"id":"e","prompt":"5"}]}"#,
                "defines 5 agents; at most 4",
            ),
            (r#"{"agents":[{"id":"a"}]}"#, "agent `a` has no `prompt`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{text}: got `{err}`, want `{expected}`"
            );
        }
    }

    #[test]
    fn straight_chains_are_recognized() {
        let chain = parse(r#"{"agents":[{"id":"a","prompt":"1"},{"id":"b","prompt":"2","dependsOn":["a"]},{"id":"c","prompt":"3","dependsOn":["b"]}]}"#).unwrap();
        assert!(chain.is_straight_chain());
        assert!(!parse(VALID).unwrap().is_straight_chain());
        assert!(
            !parse(r#"{"agents":[{"id":"a","prompt":"1"}]}"#)
                .unwrap()
                .is_straight_chain()
        );
    }

    #[test]
    fn an_agent_may_name_its_tier() {
        let b = parse(r#"{"agents":[{"id":"a","prompt":"x","tier":"fast"},{"id":"b","prompt":"y","tier":"strong"},{"id":"c","prompt":"z"}]}"#).unwrap();
        let tiers: Vec<Option<bool>> = b.agents.iter().map(|a| a.fast).collect();
        assert_eq!(tiers, [Some(true), Some(false), None]);
        assert!(parse(r#"{"agents":[{"id":"a","prompt":"x","tier":"turbo"}]}"#).is_err());
    }
}
