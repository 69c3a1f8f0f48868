//! The features backlog of `launch --features FILE`, in agent-orchestrator's format:
//! an array of features, or `{"features": [...]}`, each with `id`, `category`, `name`,
//! `description`, `steps` and `status` (`open`, `verifying`, `passed`, `failed`), and
//! the `attempts` orch adds.
//!
//! Owns reading and checking the file, putting features on tracks, and writing their
//! statuses back into a copy of the file's text (other fields and features kept).
//! Does not run anything: the orchestrator turns each feature still to do into an agent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::id::is_valid_agent_id;

/// A features file larger than this is refused (it is read whole and quoted to agents).
pub const MAX_FEATURES_FILE: u64 = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureStatus {
    Open,
    /// Its work is being checked (gates, review); a run cut off there left it so.
    Verifying,
    Passed,
    Failed,
}

impl FeatureStatus {
    pub const NAMES: &'static [&'static str] = &["open", "verifying", "passed", "failed"];

    pub fn as_str(self) -> &'static str {
        match self {
            FeatureStatus::Open => "open",
            FeatureStatus::Verifying => "verifying",
            FeatureStatus::Passed => "passed",
            FeatureStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(FeatureStatus::Open),
            "verifying" => Some(FeatureStatus::Verifying),
            "passed" => Some(FeatureStatus::Passed),
            "failed" => Some(FeatureStatus::Failed),
            _ => None,
        }
    }
}

/// One feature of the backlog, as the run started with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// Its `id` as written (a number as its decimal text).
    pub id: String,
    /// The agent that implements it: `feature-` and the id in agent-id characters.
    pub agent: String,
    pub category: String,
    pub name: String,
    pub description: String,
    pub steps: Vec<String>,
    pub status: FeatureStatus,
    /// Attempts of earlier runs (the file's `attempts`).
    pub attempts: u32,
    /// The track it runs on (set by `assign_tracks`).
    #[serde(default)]
    pub track: String,
}

impl Feature {
    /// Still to do: every status but `passed` (a failed feature is tried again).
    pub fn is_open(&self) -> bool {
        self.status != FeatureStatus::Passed
    }

    /// The agent's assignment: the feature's name, description and steps.
    pub fn assignment(&self) -> String {
        let mut text = format!(
            "Implement feature `{}` ({}): {}\n",
            self.id, self.category, self.name
        );
        if !self.description.trim().is_empty() {
            text.push_str(&format!("\n{}\n", self.description.trim()));
        }
        if !self.steps.is_empty() {
            text.push_str("\nIt is done when each of these steps works:\n");
            text.push_str(&self.numbered_steps());
        }
        text
    }

    /// The steps as a numbered list (the reviewer's points).
    pub fn numbered_steps(&self) -> String {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| format!("{}. {}\n", i + 1, step.trim()))
            .collect()
    }
}

/// The backlog a run started with: where the file is, its text then, and its features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// The file, absolute.
    pub file: PathBuf,
    /// Its path in the project's repository ('/'-separated), where the run branch gets
    /// the statuses; `None` when the file is outside it.
    pub repo_path: Option<String>,
    /// The file's text when the run started.
    pub text: String,
    /// Every feature, in file order (passed ones included: they are written back as
    /// they were).
    pub features: Vec<Feature>,
    /// The tracks, in order; each feature names one.
    pub tracks: Vec<String>,
}

impl Backlog {
    pub fn open(&self) -> impl Iterator<Item = &Feature> {
        self.features.iter().filter(|f| f.is_open())
    }

    pub fn by_agent(&self, agent: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.agent == agent)
    }
}

/// A `track` node of `orch.kdl`: the categories whose features it runs, one at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSpec {
    pub name: String,
    pub categories: Vec<String>,
}

/// The features array of a parsed file.
fn features_array(value: &Value) -> Result<&Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(map) => match map.get("features") {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err("`features` must be an array".into()),
            None => {
                Err("expected an array of features, or an object with a `features` array".into())
            }
        },
        _ => Err("expected an array of features, or an object with a `features` array".into()),
    }
}

fn features_array_mut(value: &mut Value) -> Option<&mut Vec<Value>> {
    match value {
        Value::Array(items) => Some(items),
        Value::Object(map) => map.get_mut("features").and_then(Value::as_array_mut),
        _ => None,
    }
}

/// A feature's id as text: a string as it is, a whole number in decimal.
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) if !id.trim().is_empty() => Some(id.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// The agent id of a feature id: `feature-` and the id lowercased, every other
/// character a `-`; `None` when the id has no letter or digit.
pub fn agent_id_of(id: &str) -> Option<String> {
    let slug: String = id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '-',
        })
        .collect();
    let slug = slug.trim_matches(|c| c == '-' || c == '_');
    if slug.is_empty() {
        return None;
    }
    let mut agent = format!("feature-{slug}");
    agent.truncate(64);
    Some(agent.trim_end_matches(['-', '_']).to_owned())
}

/// Reads the features of a file's text; every problem names the feature.
pub fn parse(text: &str) -> Result<Vec<Feature>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))?;
    let items = features_array(&value)?;
    let mut features: Vec<Feature> = Vec::new();
    let mut agents: BTreeMap<String, String> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(format!("features[{i}] is not an object"));
        };
        let id = id_text(map.get("id"))
            .ok_or_else(|| format!("features[{i}] has no `id` (a string or a whole number)"))?;
        let at = |what: &str| format!("feature `{}` (features[{i}]): {what}", id.escape_debug());
        let string = |key: &str, required: bool| -> Result<String, String> {
            match map.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                None | Some(Value::Null) if !required => Ok(String::new()),
                None | Some(Value::Null) => Err(at(&format!("no `{key}`"))),
                Some(_) => Err(at(&format!("`{key}` must be a string"))),
            }
        };
        let name = string("name", false)?;
        let description = string("description", false)?;
        if name.trim().is_empty() && description.trim().is_empty() {
            return Err(at("it has neither a `name` nor a `description`"));
        }
        let category = match string("category", false)?.trim() {
            "" => "general".to_owned(),
            category => category.to_owned(),
        };
        let steps = match map.get("steps") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(steps)) => steps
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| at("`steps` must be an array of strings"))?,
            Some(_) => return Err(at("`steps` must be an array of strings")),
        };
        let status = match map.get("status") {
            None | Some(Value::Null) => FeatureStatus::Open,
            Some(Value::String(s)) => FeatureStatus::parse(s.trim()).ok_or_else(|| {
                at(&format!(
                    "unknown status `{}` (expected one of: {})",
                    s.escape_debug(),
                    FeatureStatus::NAMES.join(", ")
                ))
            })?,
            Some(_) => return Err(at("`status` must be a string")),
        };
        let attempts = match map.get("attempts") {
            None | Some(Value::Null) => 0,
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| at("`attempts` must be a whole number"))?,
        };
        let Some(agent) = agent_id_of(&id).filter(|a| is_valid_agent_id(a)) else {
            return Err(at(
                "its id gives no usable agent name: use letters or digits",
            ));
        };
        if let Some(other) = agents.insert(agent.clone(), id.clone()) {
            return Err(if other == id {
                at("the id is used twice")
            } else {
                at(&format!(
                    "its id and `{}`'s both give agent `{agent}`: make them differ in letters or digits",
                    other.escape_debug()
                ))
            });
        }
        features.push(Feature {
            id,
            agent,
            category,
            name,
            description,
            steps,
            status,
            attempts,
            track: String::new(),
        });
    }
    Ok(features)
}

/// Puts each feature on a track and returns the tracks in order. Configured tracks take
/// the categories they list (a category listed twice goes to the first); the features
/// of categories none lists go to a last track `other`. Without configured tracks, the
/// categories of the open features are dealt in order of first appearance onto up to
/// `slots` tracks, named after their categories, so one category's features never run
/// at the same time.
pub fn assign_tracks(
    features: &mut [Feature],
    configured: &[TrackSpec],
    slots: u32,
) -> Vec<String> {
    let mut tracks: Vec<String> = Vec::new();
    let mut track_of: BTreeMap<String, String> = BTreeMap::new();
    if configured.is_empty() {
        let mut categories: Vec<String> = Vec::new();
        for feature in features.iter().filter(|f| f.is_open()) {
            if !categories.contains(&feature.category) {
                categories.push(feature.category.clone());
            }
        }
        let slots = (slots.max(1) as usize).min(categories.len().max(1));
        let mut members: Vec<Vec<String>> = vec![Vec::new(); slots];
        for (i, category) in categories.iter().enumerate() {
            members[i % slots].push(category.clone());
        }
        for categories in members.into_iter().filter(|m| !m.is_empty()) {
            let name = categories.join("+");
            for category in categories {
                track_of.insert(category, name.clone());
            }
            tracks.push(name);
        }
    } else {
        for track in configured {
            for category in &track.categories {
                track_of
                    .entry(category.clone())
                    .or_insert_with(|| track.name.clone());
            }
            tracks.push(track.name.clone());
        }
    }
    for feature in features.iter_mut() {
        feature.track = match track_of.get(&feature.category) {
            Some(track) => track.clone(),
            None => {
                if feature.is_open() && !tracks.iter().any(|t| t == "other") {
                    tracks.push("other".into());
                }
                "other".into()
            }
        };
    }
    // Tracks nothing open runs on are not tracks of this run.
    tracks.retain(|t| features.iter().any(|f| f.is_open() && &f.track == t));
    tracks
}

/// `text` (the features file) with the status and attempts of the features in
/// `updates` (by id) set, everything else kept. Keys are written in a fixed order: a
/// feature's own first (`id`, `category`, `name`, `description`, `steps`, `status`,
/// `attempts`), then the others sorted.
pub fn write_back(text: &str, updates: &[(String, FeatureStatus, u32)]) -> Result<String, String> {
    let mut value: Value =
        serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))?;
    let items = features_array_mut(&mut value)
        .ok_or("expected an array of features, or an object with a `features` array")?;
    for item in items.iter_mut() {
        let Some(id) = id_text(item.get("id")) else {
            continue;
        };
        let Some((_, status, attempts)) = updates.iter().find(|(u, _, _)| *u == id) else {
            continue;
        };
        if let Value::Object(map) = item {
            map.insert("status".into(), Value::String(status.as_str().into()));
            map.insert("attempts".into(), Value::from(*attempts));
        }
    }
    let mut out = String::new();
    render(&value, 0, &mut out);
    out.push('\n');
    Ok(out)
}

const KEY_ORDER: &[&str] = &[
    "id",
    "category",
    "name",
    "description",
    "steps",
    "status",
    "attempts",
];

/// Pretty JSON, two spaces, keys in `KEY_ORDER` then sorted.
fn render(value: &Value, depth: usize, out: &mut String) {
    let pad = |depth: usize| "  ".repeat(depth);
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                render(item, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    KEY_ORDER
                        .iter()
                        .position(|o| o == k)
                        .unwrap_or(KEY_ORDER.len()),
                    (*k).clone(),
                )
            });
            out.push_str("{\n");
            for (i, key) in keys.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push_str(": ");
                render(&map[key.as_str()], depth + 1, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"project": "shop", "features": [
        {"id": "F1", "category": "api", "name": "List items", "description": "GET /items", "steps": ["returns 200", "returns JSON"], "status": "open", "owner": "ana"},
        {"id": 2, "category": "ui", "name": "Cart page", "steps": [], "status": "passed", "attempts": 1},
        {"id": "f-3", "category": "api", "name": "Add item", "status": "failed", "attempts": 2}
    ]}"#;

    #[test]
    fn reads_both_shapes_and_every_field() {
        let features = parse(FILE).unwrap();
        assert_eq!(features.len(), 3);
        assert_eq!(features[0].agent, "feature-f1");
        assert_eq!(features[0].steps, ["returns 200", "returns JSON"]);
        assert_eq!(features[1].id, "2");
        assert_eq!(features[1].status, FeatureStatus::Passed);
        assert_eq!(features[2].attempts, 2);
        assert!(features[2].is_open(), "a failed feature is tried again");
        let array = r#"[{"id": "a", "name": "A"}]"#;
        let one = parse(array).unwrap();
        assert_eq!(one[0].category, "general");
        assert_eq!(one[0].status, FeatureStatus::Open);
    }

    #[test]
    fn refuses_what_it_cannot_run_naming_the_feature() {
        for (text, expected) in [
            ("{", "not valid JSON"),
            ("{\"x\": 1}", "`features` array"),
            ("[1]", "features[0] is not an object"),
            ("[{\"name\": \"A\"}]", "has no `id`"),
            ("[{\"id\": \"a\"}]", "neither a `name` nor a `description`"),
            (
                "[{\"id\": \"a\", \"name\": \"A\", \"status\": \"done\"}]",
                "unknown status `done`",
            ),
            (
                "[{\"id\": \"a\", \"name\": \"A\", \"steps\": [1]}]",
                "array of strings",
            ),
            (
                "[{\"id\": \"a\", \"name\": \"A\"}, {\"id\": \"A\", \"name\": \"B\"}]",
                "both give agent `feature-a`",
            ),
            (
                "[{\"id\": \"a\", \"name\": \"A\"}, {\"id\": \"a\", \"name\": \"B\"}]",
                "used twice",
            ),
            (
                "[{\"id\": \"../..\", \"name\": \"A\"}]",
                "no usable agent name",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn ids_become_safe_agent_names() {
        assert_eq!(agent_id_of("Auth.Login").unwrap(), "feature-auth-login");
        assert_eq!(agent_id_of("x y\n\"z\"").unwrap(), "feature-x-y--z");
        assert_eq!(agent_id_of("ééé"), None);
        let long = agent_id_of(&"a".repeat(200)).unwrap();
        assert!(is_valid_agent_id(&long) && long.len() <= 64);
    }

    #[test]
    fn categories_go_to_tracks_one_category_one_track() {
        let mut features = parse(FILE).unwrap();
        // Open: F1 (api), f-3 (api); 2 (ui) passed.
        let tracks = assign_tracks(&mut features, &[], 4);
        assert_eq!(tracks, ["api"]);
        assert_eq!(features[0].track, "api");
        assert_eq!(features[2].track, "api");

        let text = r#"[{"id":"a","name":"A","category":"api"},{"id":"b","name":"B","category":"db"},{"id":"c","name":"C","category":"ui"}]"#;
        let mut features = parse(text).unwrap();
        assert_eq!(assign_tracks(&mut features, &[], 2), ["api+ui", "db"]);
        let configured = [TrackSpec {
            name: "core".into(),
            categories: vec!["api".into(), "db".into()],
        }];
        assert_eq!(
            assign_tracks(&mut features, &configured, 2),
            ["core", "other"]
        );
        assert_eq!(features[2].track, "other");
    }

    #[test]
    fn statuses_are_written_back_keeping_everything_else() {
        let text = write_back(
            FILE,
            &[
                ("F1".into(), FeatureStatus::Passed, 1),
                ("f-3".into(), FeatureStatus::Failed, 3),
            ],
        )
        .unwrap();
        let features = parse(&text).unwrap();
        assert_eq!(features[0].status, FeatureStatus::Passed);
        assert_eq!(features[0].attempts, 1);
        assert_eq!(features[2].attempts, 3);
        assert_eq!(features[1].status, FeatureStatus::Passed);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["project"], "shop");
        assert_eq!(value["features"][0]["owner"], "ana");
        // A feature's own keys come first, in the usual order.
        let first = text.find("\"id\"").unwrap();
        assert!(first < text.find("\"category\"").unwrap());
        assert!(text.find("\"status\"").unwrap() < text.find("\"owner\"").unwrap());
    }
}
