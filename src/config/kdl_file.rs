//! The native agents config format: KDL (`orch.kdl`). KDL v2 and v1 are both accepted.
//!
//! ```kdl
//! group "default" {
//!     orchestration { autonomous #false; max-waves 3; relay { enabled #false } }
//!     agent "planner" { role "Planner"; plan-prompt "..."; follow-up-prompt "..." }
//! }
//! ```
//! Top-level `agent` and `orchestration` nodes form one group named `default`. A
//! top-level `retry { max-tries 5; base-delay-ms 1000; max-park-ms … }` tunes retries,
//! a top-level `process { kill-grace-ms 5000; idle-timeout-ms 1200000 }` how agent
//! processes are stopped. A top-level `permissions "act"` sets what every agent may do
//! without asking, `backend "claude" { permissions "edit" }` what the agents on one
//! backend may do, and `permissions "read-only"` inside an agent that agent's policy.
//! `gate "cmd"` (top level, group, agent) adds a gate; `reviewer "name" backend=…
//! model=… prompt=…` defines a reviewer that `review "name" max-rounds=N` (top level,
//! group, agent; or `review backend=… model=…` inline) asks; `max-tokens N` in an agent or
//! group caps each agent's tokens; `retry { needs-you-after N }` asks the user after N
//! failed attempts in a row.
//! Unknown settings are errors with line and column (a typo never passes silently).

use std::path::Path;

use kdl::{KdlDocument, KdlNode, KdlValue};

use crate::agent::permissions::Permissions;
use crate::agent::registry::BACKEND_NAMES;
use crate::config::agents::{
    AgentSpec, AgentsConfig, ConfigSource, GateSpec, GroupSpec, OrchestrationSettings,
    PermissionSettings, ProcessSettings, RelaySettings, RetrySettings, ReviewSpec,
    WorktreeSettings,
};
use crate::config::error::{ConfigError, line_column};

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
    /// The file's `reviewer` nodes, which `review "<name>"` refers to.
    reviewers: Vec<ReviewSpec>,
}

impl Ctx<'_> {
    fn err(&self, node: &KdlNode, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, node.span().offset());
        ConfigError::At {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Offsets of each group's and agent's node, to place semantic errors.
pub struct KdlLocations {
    pub groups: Vec<(usize, Vec<usize>)>,
}

pub fn parse_kdl(text: &str, path: &Path) -> Result<(AgentsConfig, KdlLocations), ConfigError> {
    let doc = KdlDocument::parse(text).map_err(|err| {
        let diag = err.diagnostics.first();
        let offset = diag.map_or(0, |d| d.span.offset());
        let (line, column) = line_column(text, offset);
        let mut message = diag
            .and_then(|d| d.message.clone().or_else(|| d.label.clone()))
            .unwrap_or_else(|| "invalid KDL".into());
        if let Some(help) = diag.and_then(|d| d.help.clone()) {
            message.push_str(&format!(" (help: {help})"));
        }
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            column,
            message: format!("invalid KDL: {message}"),
        }
    })?;
    let mut ctx = Ctx {
        text,
        path,
        reviewers: Vec::new(),
    };
    // Reviewers first: a `review` may name one defined further down.
    for node in doc.nodes().iter().filter(|n| key(n) == "reviewer") {
        let reviewer = parse_reviewer(&ctx, node)?;
        if ctx.reviewers.iter().any(|r| r.name == reviewer.name) {
            return Err(ctx.err(
                node,
                format!("reviewer `{}` is defined twice", reviewer.name),
            ));
        }
        ctx.reviewers.push(reviewer);
    }
    let ctx = ctx;
    let mut groups = Vec::new();
    let mut locations = Vec::new();
    let mut loose = GroupSpec::new("default");
    let mut loose_offsets = Vec::new();
    let mut loose_offset = None;
    let mut retry = RetrySettings::default();
    let mut process = ProcessSettings::default();
    let mut worktree = WorktreeSettings::default();
    let mut permissions = PermissionSettings::default();
    let mut gates = Vec::new();
    let mut reviews = Vec::new();
    let mut prices = crate::config::prices::PriceTable::default();
    let mut tracks = Vec::new();
    for node in doc.nodes() {
        match key(node).as_str() {
            "group" => {
                let name = single_string(&ctx, node)?;
                let (group, offsets) = parse_group(&ctx, node, name)?;
                groups.push(group);
                locations.push((node.span().offset(), offsets));
            }
            "agent" => {
                loose_offset.get_or_insert(node.span().offset());
                loose_offsets.push(node.span().offset());
                loose.agents.push(parse_agent(&ctx, node)?);
            }
            "orchestration" => {
                loose_offset.get_or_insert(node.span().offset());
                loose.orchestration = parse_orchestration(&ctx, node)?;
            }
            "fallback" => {
                loose_offset.get_or_insert(node.span().offset());
                loose.fallback.extend(string_args(&ctx, node)?);
            }
            "tier" | "routing" => {
                loose_offset.get_or_insert(node.span().offset());
                parse_tiers(&ctx, node, &mut loose.tiers)?;
            }
            "retry" => retry = parse_retry(&ctx, node)?,
            "process" => process = parse_process(&ctx, node)?,
            "worktree" => worktree = parse_worktree(&ctx, node)?,
            "permissions" => permissions.all = Some(single_permissions(&ctx, node)?),
            "gate" => gates.push(parse_gate(&ctx, node)?),
            "review" => reviews.push(parse_review(&ctx, node)?),
            "reviewer" => {}
            "price" => prices.configured.push(parse_price(&ctx, node)?),
            "tracks" => tracks = parse_tracks(&ctx, node)?,
            "backend" => {
                let name = single_string(&ctx, node)?.to_ascii_lowercase();
                if !BACKEND_NAMES.contains(&name.as_str()) {
                    return Err(ctx.err(
                        node,
                        format!(
                            "unknown backend `{name}` (expected one of: {})",
                            BACKEND_NAMES.join(", ")
                        ),
                    ));
                }
                for child in children(node) {
                    match key(child).as_str() {
                        "permissions" => {
                            let policy = single_permissions(&ctx, child)?;
                            permissions.backends.insert(name.clone(), policy);
                        }
                        other => {
                            return Err(ctx.err(
                                child,
                                format!("unknown setting `{other}` in backend `{name}` (expected `permissions`)"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(ctx.err(
                    node,
                    format!(
                        "unknown setting `{other}` (expected `group`, `agent`, `orchestration`, `fallback`, `tier`, `routing`, `retry`, `process`, `worktree`, `permissions`, `gate`, `review`, `reviewer`, `price`, `tracks` or `backend`)"
                    ),
                ));
            }
        }
    }
    if let Some(offset) = loose_offset {
        if !groups.is_empty() {
            return Err(ConfigError::At {
                path: path.to_path_buf(),
                line: line_column(text, offset).0,
                column: line_column(text, offset).1,
                message: "top-level `agent`/`orchestration`/`fallback` nodes cannot be mixed with `group` nodes: move them into a group".into(),
            });
        }
        groups.push(loose);
        locations.push((offset, loose_offsets));
    }
    if groups.len() <= 1
        && groups
            .iter()
            .all(|g| g.agents.is_empty() && g.name == "default")
    {
        // A file of settings only (gates, tracks, tiers, …) keeps the built-in squad,
        // with its top-level tiers, orchestration and fallback.
        let settings = groups.pop().unwrap_or_else(|| GroupSpec::new("default"));
        groups = crate::config::defaults::default_agents()
            .map(|config| config.groups)
            .unwrap_or_default();
        for group in &mut groups {
            group.tiers = settings.tiers.clone();
            if !settings.fallback.is_empty() {
                group.fallback = settings.fallback.clone();
            }
            if settings.orchestration != Default::default() {
                group.orchestration = settings.orchestration.clone();
            }
        }
        locations = groups.iter().map(|_| (0, Vec::new())).collect();
    }
    let mut config = AgentsConfig {
        source: ConfigSource::File(path.to_path_buf()),
        groups,
        retry,
        process,
        worktree,
        permissions,
        gates,
        reviews,
        prices,
        tracks,
    };
    default_blueprint_agent(&mut config);
    Ok((config, KdlLocations { groups: locations }))
}

/// Without an explicit `blueprint` agent, the agent named `builder` writes the blueprint.
pub fn default_blueprint_agent(config: &mut AgentsConfig) {
    for group in &mut config.groups {
        if !group.agents.iter().any(|a| a.blueprint) {
            if let Some(builder) = group.agents.iter_mut().find(|a| a.id == "builder") {
                builder.blueprint = true;
            }
        }
    }
}

fn key(node: &KdlNode) -> String {
    node.name().value().replace('_', "-")
}

fn children(node: &KdlNode) -> &[KdlNode] {
    node.children().map_or(&[], |doc| doc.nodes())
}

fn string_args(ctx: &Ctx, node: &KdlNode) -> Result<Vec<String>, ConfigError> {
    node.entries()
        .iter()
        .map(|entry| {
            if entry.name().is_some() {
                return Err(ctx.err(
                    node,
                    format!("`{}` takes plain values, not properties", key(node)),
                ));
            }
            match entry.value() {
                KdlValue::String(s) => Ok(s.clone()),
                other => Err(ctx.err(
                    node,
                    format!("`{}` takes strings, found `{other}`", key(node)),
                )),
            }
        })
        .collect()
}

fn single_value<'a>(ctx: &Ctx, node: &'a KdlNode) -> Result<&'a KdlValue, ConfigError> {
    match node.entries() {
        [entry] if entry.name().is_none() => Ok(entry.value()),
        _ => Err(ctx.err(node, format!("`{}` takes exactly one value", key(node)))),
    }
}

fn single_string(ctx: &Ctx, node: &KdlNode) -> Result<String, ConfigError> {
    match single_value(ctx, node)? {
        KdlValue::String(s) => Ok(s.clone()),
        other => Err(ctx.err(
            node,
            format!("`{}` takes a string, found `{other}`", key(node)),
        )),
    }
}

fn single_bool(ctx: &Ctx, node: &KdlNode) -> Result<bool, ConfigError> {
    match single_value(ctx, node)? {
        KdlValue::Bool(b) => Ok(*b),
        other => Err(ctx.err(
            node,
            format!("`{}` takes #true or #false, found `{other}`", key(node)),
        )),
    }
}

/// `gate "cargo test" timeout-s=600 max-attempts=3`.
/// `price "gpt-5" input=1.25 cached-input=0.125 output=10`: US dollars per million
/// tokens (`cached-input` defaults to `input`).
fn parse_price(
    ctx: &Ctx,
    node: &KdlNode,
) -> Result<(String, crate::config::prices::Price), ConfigError> {
    const USAGE: &str = "`price` takes a model and its prices in US dollars per million tokens: price \"gpt-5\" input=1.25 cached-input=0.125 output=10";
    let mut model = None;
    let (mut input, mut cached, mut output) = (None, None, None);
    for entry in node.entries() {
        let amount = || match entry.value() {
            KdlValue::Integer(n) if *n >= 0 && *n <= 1_000_000 => Ok(*n as f64),
            KdlValue::Float(x) if x.is_finite() && *x >= 0.0 && *x <= 1e6 => Ok(*x),
            other => Err(ctx.err(
                node,
                format!(
                    "`{}` of `price` takes a number of dollars from 0 to 1000000, found `{other}`",
                    entry.name().map(|n| n.value()).unwrap_or_default()
                ),
            )),
        };
        match entry.name().map(|n| n.value()) {
            None => match (entry.value(), &model) {
                (KdlValue::String(text), None) if !text.trim().is_empty() => {
                    model = Some(text.trim().to_owned())
                }
                _ => return Err(ctx.err(node, USAGE)),
            },
            Some("input") => input = Some(amount()?),
            Some("cached-input") => cached = Some(amount()?),
            Some("output") => output = Some(amount()?),
            Some(other) => {
                return Err(ctx.err(
                    node,
                    format!("unknown property `{other}` of `price` (expected `input`, `cached-input` or `output`)"),
                ));
            }
        }
    }
    match (model, input, output) {
        (Some(model), Some(input), Some(output)) => Ok((
            model,
            crate::config::prices::Price {
                input,
                cached_input: cached.unwrap_or(input),
                output,
            },
        )),
        _ => Err(ctx.err(node, USAGE)),
    }
}

/// `tracks { track "core" categories="api" "db"; track "ui" categories="web" }`: each
/// track's name, then its categories (the `categories` property and the values after it).
fn parse_tracks(
    ctx: &Ctx,
    node: &KdlNode,
) -> Result<Vec<crate::config::features::TrackSpec>, ConfigError> {
    const FORM: &str = "track \"core\" categories=\"api\" \"db\"";
    if !node.entries().is_empty() {
        return Err(ctx.err(
            node,
            format!("`tracks` takes its tracks as children: tracks {{ {FORM} }}"),
        ));
    }
    let mut tracks: Vec<crate::config::features::TrackSpec> = Vec::new();
    for child in children(node) {
        if key(child) != "track" {
            return Err(ctx.err(
                child,
                format!(
                    "unknown setting `{}` in `tracks` (expected `track`)",
                    key(child)
                ),
            ));
        }
        let mut name = None;
        let mut categories = Vec::new();
        for entry in child.entries() {
            let Some(value) = entry.value().as_string().filter(|v| !v.trim().is_empty()) else {
                return Err(ctx.err(child, format!("`track` takes non-empty strings: {FORM}")));
            };
            match (entry.name().map(|n| n.value()), &name) {
                (None, None) => name = Some(value.to_owned()),
                (None, Some(_)) | (Some("categories"), _) => categories.push(value.to_owned()),
                (Some(other), _) => {
                    return Err(ctx.err(
                        child,
                        format!("unknown property `{other}` of `track` (expected `categories`)"),
                    ));
                }
            }
        }
        let Some(name) = name else {
            return Err(ctx.err(child, format!("`track` needs a name first: {FORM}")));
        };
        if categories.is_empty() {
            return Err(ctx.err(child, format!("track `{name}` names no categories: {FORM}")));
        }
        if tracks.iter().any(|t| t.name == name) {
            return Err(ctx.err(child, format!("track `{name}` is defined twice")));
        }
        tracks.push(crate::config::features::TrackSpec { name, categories });
    }
    if tracks.is_empty() {
        return Err(ctx.err(
            node,
            format!("`tracks` holds no track: tracks {{ {FORM} }}"),
        ));
    }
    Ok(tracks)
}

fn parse_gate(ctx: &Ctx, node: &KdlNode) -> Result<GateSpec, ConfigError> {
    let mut command = None;
    let mut gate = GateSpec::new("");
    for entry in node.entries() {
        let number = |max: i128| match entry.value() {
            KdlValue::Integer(n) if *n >= 1 && *n <= max => Ok(*n as u64),
            other => Err(ctx.err(
                node,
                format!(
                    "`{}` of `gate` takes a whole number from 1 to {max}, found `{other}`",
                    entry.name().map(|n| n.value()).unwrap_or_default()
                ),
            )),
        };
        match entry.name().map(|n| n.value()) {
            None => match (entry.value(), &command) {
                (KdlValue::String(text), None) if !text.trim().is_empty() => {
                    command = Some(text.clone())
                }
                _ => {
                    return Err(ctx.err(
                        node,
                        "`gate` takes one command, a non-empty string: gate \"cargo test\"",
                    ));
                }
            },
            Some("timeout-s") => gate.timeout_s = number(24 * 60 * 60)?,
            Some("max-attempts") => gate.max_attempts = number(20)? as u32,
            Some(other) => {
                return Err(ctx.err(
                    node,
                    format!("unknown property `{other}` of `gate` (expected `timeout-s` or `max-attempts`)"),
                ));
            }
        }
    }
    gate.command = command.ok_or_else(|| {
        ctx.err(
            node,
            "`gate` takes one command, a non-empty string: gate \"cargo test\"",
        )
    })?;
    Ok(gate)
}

/// `reviewer "critic" backend="claude" model="claude-sonnet-4-5" prompt="…"`: a
/// reviewer that `review "critic"` names.
fn parse_reviewer(ctx: &Ctx, node: &KdlNode) -> Result<ReviewSpec, ConfigError> {
    const USAGE: &str = "`reviewer` takes a name and where it runs: reviewer \"critic\" backend=\"claude\" model=\"…\" prompt=\"…\"";
    let mut name = None;
    let mut review = ReviewSpec {
        name: String::new(),
        backend: None,
        model: None,
        instructions: String::new(),
        max_rounds: ReviewSpec::DEFAULT_MAX_ROUNDS,
    };
    for entry in node.entries() {
        match (entry.name().map(|n| n.value()), entry.value()) {
            (None, KdlValue::String(text)) if name.is_none() && !text.trim().is_empty() => {
                name = Some(text.trim().to_owned())
            }
            (Some(property), value) => {
                review_property(ctx, node, "reviewer", &mut review, property, value)?
            }
            _ => return Err(ctx.err(node, USAGE)),
        }
    }
    review.name = name.ok_or_else(|| ctx.err(node, USAGE))?;
    Ok(review)
}

/// `review "critic" max-rounds=2` (a `reviewer` of the file) or `review
/// backend="gemini" model="…" prompt="…" max-rounds=2`.
fn parse_review(ctx: &Ctx, node: &KdlNode) -> Result<ReviewSpec, ConfigError> {
    let mut review = None;
    let mut properties = Vec::new();
    for entry in node.entries() {
        match (entry.name().map(|n| n.value()), entry.value()) {
            (None, KdlValue::String(name)) if review.is_none() => {
                let found = ctx.reviewers.iter().find(|r| &r.name == name);
                review = Some(found.cloned().ok_or_else(|| {
                    let known: Vec<&str> = ctx.reviewers.iter().map(|r| r.name.as_str()).collect();
                    ctx.err(
                        node,
                        match known.as_slice() {
                            [] => format!("`review` names reviewer `{name}`, but the file defines no `reviewer`"),
                            known => format!(
                                "`review` names reviewer `{name}`, which is not defined (the file's reviewers: {})",
                                known.join(", ")
                            ),
                        },
                    )
                })?);
            }
            (Some(property), value) => properties.push((property, value)),
            _ => {
                return Err(ctx.err(
                    node,
                    "`review` takes a reviewer's name or where it runs: review \"critic\" max-rounds=2, or review backend=\"claude\" model=\"…\"",
                ));
            }
        }
    }
    let named = review.is_some();
    let mut review = review.unwrap_or(ReviewSpec {
        name: String::new(),
        backend: None,
        model: None,
        instructions: String::new(),
        max_rounds: ReviewSpec::DEFAULT_MAX_ROUNDS,
    });
    for (property, value) in properties {
        review_property(ctx, node, "review", &mut review, property, value)?;
    }
    if !named {
        review.name = review
            .backend
            .clone()
            .unwrap_or_else(|| "reviewer".to_owned());
    }
    Ok(review)
}

fn review_property(
    ctx: &Ctx,
    node: &KdlNode,
    what: &str,
    review: &mut ReviewSpec,
    property: &str,
    value: &KdlValue,
) -> Result<(), ConfigError> {
    let text = || match value {
        KdlValue::String(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        other => Err(ctx.err(
            node,
            format!("`{property}` of `{what}` takes a non-empty string, found `{other}`"),
        )),
    };
    match property {
        "backend" => {
            review.backend = Some(backend_name(ctx, node, &text()?, what)?);
        }
        "model" => review.model = Some(text()?),
        "prompt" => review.instructions = text()?,
        "max-rounds" => {
            review.max_rounds = match value {
                KdlValue::Integer(n) if (1..=10).contains(n) => *n as u32,
                other => {
                    return Err(ctx.err(
                        node,
                        format!("`max-rounds` of `{what}` takes a whole number from 1 to 10, found `{other}`"),
                    ));
                }
            }
        }
        other => {
            return Err(ctx.err(
                node,
                format!("unknown property `{other}` of `{what}` (expected `backend`, `model`, `prompt` or `max-rounds`)"),
            ));
        }
    }
    Ok(())
}

/// A count of tokens: a whole number from 1.
fn single_count(ctx: &Ctx, node: &KdlNode) -> Result<u64, ConfigError> {
    match single_value(ctx, node)? {
        KdlValue::Integer(n) if *n >= 1 && *n <= i128::from(u64::MAX >> 1) => Ok(*n as u64),
        other => Err(ctx.err(
            node,
            format!(
                "`{}` takes a whole number from 1, found `{other}`",
                key(node)
            ),
        )),
    }
}

fn single_permissions(ctx: &Ctx, node: &KdlNode) -> Result<Permissions, ConfigError> {
    single_string(ctx, node)?
        .parse()
        .map_err(|message: String| ctx.err(node, message))
}

fn single_u32(ctx: &Ctx, node: &KdlNode) -> Result<u32, ConfigError> {
    match single_value(ctx, node)? {
        KdlValue::Integer(n) if *n >= 1 && *n <= 1000 => Ok(*n as u32),
        other => Err(ctx.err(
            node,
            format!(
                "`{}` takes a whole number from 1 to 1000, found `{other}`",
                key(node)
            ),
        )),
    }
}

/// A `backend=` property's value, lower-cased: a backend orch knows (the demo too).
fn backend_name(ctx: &Ctx, node: &KdlNode, value: &str, what: &str) -> Result<String, ConfigError> {
    let backend = value.to_ascii_lowercase();
    if backend != "demo" && !BACKEND_NAMES.contains(&backend.as_str()) {
        return Err(ctx.err(
            node,
            format!(
                "unknown backend `{backend}` of `{what}` (expected one of {} or demo)",
                BACKEND_NAMES.join(", ")
            ),
        ));
    }
    Ok(backend)
}

/// `tier "strong"|"fast" backend="…" model="…"` and `routing "fast-first"` (see
/// `Routing`).
fn parse_tiers(
    ctx: &Ctx,
    node: &KdlNode,
    tiers: &mut crate::config::agents::Tiers,
) -> Result<(), ConfigError> {
    use crate::config::agents::Routing;
    let positional: Vec<&KdlValue> = node
        .entries()
        .iter()
        .filter(|e| e.name().is_none())
        .map(|e| e.value())
        .collect();
    let name = match positional.as_slice() {
        [KdlValue::String(name)] => name.clone(),
        _ => {
            return Err(ctx.err(
                node,
                format!(
                    "`{}` takes one name: tier \"fast\" model=\"…\", routing \"fast-first\"",
                    key(node)
                ),
            ));
        }
    };
    if key(node) == "routing" {
        tiers.routing = Routing::parse(&name).ok_or_else(|| {
            ctx.err(
                node,
                format!(
                    "unknown routing `{name}` (expected one of: {})",
                    Routing::NAMES.join(", ")
                ),
            )
        })?;
        return Ok(());
    }
    let tier = match name.as_str() {
        "strong" => &mut tiers.strong,
        "fast" => &mut tiers.fast,
        other => {
            return Err(ctx.err(
                node,
                format!("unknown tier `{other}` (expected `strong` or `fast`)"),
            ));
        }
    };
    for entry in node.entries().iter().filter(|e| e.name().is_some()) {
        let property = entry
            .name()
            .map(|n| n.value().to_owned())
            .unwrap_or_default();
        let Some(value) = entry.value().as_string().filter(|v| !v.is_empty()) else {
            return Err(ctx.err(
                node,
                format!("`{property}` of tier `{name}` takes a non-empty string"),
            ));
        };
        match property.as_str() {
            "backend" => {
                tier.backend = Some(backend_name(ctx, node, value, &format!("tier {name}"))?);
            }
            "model" => tier.model = Some(value.to_owned()),
            "base-url" => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(ctx.err(
                        node,
                        format!("`base-url` of tier `{name}` must start with http:// or https://"),
                    ));
                }
                tier.base_url = Some(value.to_owned());
            }
            "key-env" => {
                let valid = value.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                });
                if !valid {
                    return Err(ctx.err(
                        node,
                        format!(
                            "`key-env` of tier `{name}` names the environment variable that holds the key (such as FAST_API_KEY), not the key itself"
                        ),
                    ));
                }
                tier.key_env = Some(value.to_owned());
            }
            other => {
                return Err(ctx.err(
                    node,
                    format!("unknown property `{other}` of tier `{name}` (expected `backend`, `model`, `base-url` or `key-env`)"),
                ));
            }
        }
    }
    Ok(())
}

fn parse_group(
    ctx: &Ctx,
    node: &KdlNode,
    name: String,
) -> Result<(GroupSpec, Vec<usize>), ConfigError> {
    let mut group = GroupSpec::new(&name);
    let mut offsets = Vec::new();
    for child in children(node) {
        match key(child).as_str() {
            "agent" => {
                offsets.push(child.span().offset());
                group.agents.push(parse_agent(ctx, child)?);
            }
            "orchestration" => group.orchestration = parse_orchestration(ctx, child)?,
            "fallback" => group.fallback.extend(string_args(ctx, child)?),
            "gate" => group.gates.push(parse_gate(ctx, child)?),
            "review" => group.reviews.push(parse_review(ctx, child)?),
            "max-tokens" => group.max_tokens = Some(single_count(ctx, child)?),
            "tier" | "routing" => parse_tiers(ctx, child, &mut group.tiers)?,
            other => {
                return Err(ctx.err(
                    child,
                    format!("unknown setting `{other}` in group `{}`", group.name),
                ));
            }
        }
    }
    Ok((group, offsets))
}

fn parse_agent(ctx: &Ctx, node: &KdlNode) -> Result<AgentSpec, ConfigError> {
    let id = single_string(ctx, node)?;
    let mut agent = AgentSpec::new(&id, "");
    let mut follow_up_set = false;
    for child in children(node) {
        match key(child).as_str() {
            "role" => agent.role = single_string(ctx, child)?,
            "plan-prompt" | "prompt" => agent.plan_prompt = single_string(ctx, child)?,
            "follow-up-prompt" => agent.follow_up_prompt = single_string(ctx, child)?,
            "follow-up-enabled" => {
                agent.follow_up_enabled = single_bool(ctx, child)?;
                follow_up_set = true;
            }
            "follow-up-schema" => {
                let text = single_string(ctx, child)?;
                let schema = serde_json::from_str(&text).map_err(|e| {
                    ctx.err(
                        child,
                        format!("`follow-up-schema` of agent `{id}` is not valid JSON: {e}"),
                    )
                })?;
                agent.follow_up_schema = Some(schema);
            }
            "rules" | "follow-up-rules" | "rule" => agent.rules.extend(string_args(ctx, child)?),
            "depends-on" => agent.depends_on.extend(string_args(ctx, child)?),
            "blueprint" => agent.blueprint = single_bool(ctx, child)?,
            "backend" => agent.backend = Some(single_string(ctx, child)?),
            "model" => agent.model = Some(single_string(ctx, child)?),
            "fallback" => agent.fallback.extend(string_args(ctx, child)?),
            "permissions" => agent.permissions = Some(single_permissions(ctx, child)?),
            "gate" => agent.gates.push(parse_gate(ctx, child)?),
            "review" => agent.reviews.push(parse_review(ctx, child)?),
            "max-tokens" => agent.max_tokens = Some(single_count(ctx, child)?),
            other => {
                return Err(ctx.err(child, format!("unknown setting `{other}` in agent `{id}`")));
            }
        }
    }
    if agent.role.is_empty() {
        agent.role = id.clone();
    }
    if !follow_up_set {
        // Without a follow-up prompt an agent is single-turn unless it says otherwise.
        agent.follow_up_enabled = !agent.follow_up_prompt.is_empty();
    }
    Ok(agent)
}

fn parse_orchestration(ctx: &Ctx, node: &KdlNode) -> Result<OrchestrationSettings, ConfigError> {
    let mut settings = OrchestrationSettings::default();
    for child in children(node) {
        match key(child).as_str() {
            "autonomous" => settings.autonomous = Some(single_bool(ctx, child)?),
            "parallel" => settings.parallel = Some(single_bool(ctx, child)?),
            "max-waves" => settings.max_waves = Some(single_u32(ctx, child)?),
            "max-agents" => settings.max_agents = Some(single_u32(ctx, child)?),
            "max-parallel" => settings.max_parallel = Some(single_u32(ctx, child)?),
            "relay" => settings.relay = parse_relay(ctx, child)?,
            other => return Err(ctx.err(child, format!("unknown orchestration setting `{other}`"))),
        }
    }
    Ok(settings)
}

fn parse_retry(ctx: &Ctx, node: &KdlNode) -> Result<RetrySettings, ConfigError> {
    /// A day: no delay or park of ours should be longer.
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let mut retry = RetrySettings::default();
    for child in children(node) {
        match key(child).as_str() {
            "max-tries" => retry.max_tries = Some(single_u32(ctx, child)?),
            "max-parks" => retry.max_parks = Some(single_u32(ctx, child)?),
            "base-delay-ms" => retry.base_delay_ms = Some(single_ms(ctx, child, DAY_MS)?),
            "max-delay-ms" => retry.max_delay_ms = Some(single_ms(ctx, child, DAY_MS)?),
            "max-park-ms" => retry.max_park_ms = Some(single_ms(ctx, child, DAY_MS)?),
            "default-park-ms" => retry.default_park_ms = Some(single_ms(ctx, child, DAY_MS)?),
            "needs-you-after" => retry.needs_you_after = Some(single_u32(ctx, child)?),
            other => return Err(ctx.err(child, format!("unknown retry setting `{other}`"))),
        }
    }
    Ok(retry)
}

fn parse_process(ctx: &Ctx, node: &KdlNode) -> Result<ProcessSettings, ConfigError> {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let mut process = ProcessSettings::default();
    for child in children(node) {
        match key(child).as_str() {
            "kill-grace-ms" => process.kill_grace_ms = Some(single_ms(ctx, child, 600_000)?),
            "idle-timeout-ms" => match single_ms(ctx, child, DAY_MS)? {
                0 => return Err(ctx.err(child, "`idle-timeout-ms` must be above 0")),
                ms => process.idle_timeout_ms = Some(ms),
            },
            other => return Err(ctx.err(child, format!("unknown process setting `{other}`"))),
        }
    }
    Ok(process)
}

fn parse_worktree(ctx: &Ctx, node: &KdlNode) -> Result<WorktreeSettings, ConfigError> {
    let mut worktree = WorktreeSettings::default();
    for child in children(node) {
        match key(child).as_str() {
            "copy" => worktree.copy.extend(string_args(ctx, child)?),
            "link" => worktree.link.extend(string_args(ctx, child)?),
            "setup" => worktree.setup.extend(string_args(ctx, child)?),
            "setup-timeout-ms" => {
                worktree.setup_timeout_ms = Some(single_ms(ctx, child, 24 * 60 * 60 * 1000)?)
            }
            other => {
                return Err(ctx.err(
                    child,
                    format!(
                        "unknown worktree setting `{other}` (expected `copy`, `link`, `setup` or `setup-timeout-ms`)"
                    ),
                ));
            }
        }
    }
    Ok(worktree)
}

fn single_ms(ctx: &Ctx, node: &KdlNode, max: u64) -> Result<u64, ConfigError> {
    match single_value(ctx, node)? {
        KdlValue::Integer(n) if *n >= 0 && *n <= i128::from(max) => Ok(*n as u64),
        other => Err(ctx.err(
            node,
            format!(
                "`{}` takes milliseconds from 0 to {max}, found `{other}`",
                key(node)
            ),
        )),
    }
}

fn parse_relay(ctx: &Ctx, node: &KdlNode) -> Result<RelaySettings, ConfigError> {
    let mut relay = RelaySettings::default();
    if !node.entries().is_empty() {
        relay.enabled = Some(single_bool(ctx, node)?);
    }
    for child in children(node) {
        match key(child).as_str() {
            "enabled" => relay.enabled = Some(single_bool(ctx, child)?),
            "require-handoff-note" => relay.require_handoff_note = Some(single_bool(ctx, child)?),
            "graph" => {
                for edge in children(child) {
                    let from = edge.name().value().to_owned();
                    relay
                        .graph
                        .entry(from)
                        .or_default()
                        .extend(string_args(ctx, edge)?);
                }
            }
            other => return Err(ctx.err(child, format!("unknown relay setting `{other}`"))),
        }
    }
    Ok(relay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentsConfig, ConfigError> {
        parse_kdl(text, Path::new("orch.kdl")).map(|(c, _)| c)
    }

    #[test]
    fn reads_a_groups_fallback_chain() {
        let config = parse(
            r#"
group "g" {
    fallback "claude" "gemini"
    agent "a" { plan-prompt "p" }
}
"#,
        )
        .unwrap();
        assert_eq!(config.groups[0].fallback, ["claude", "gemini"]);
        let loose = parse("fallback \"demo\"\nagent \"a\" { plan-prompt \"p\" }").unwrap();
        assert_eq!(loose.groups[0].fallback, ["demo"]);
    }

    #[test]
    fn reads_tiers_and_routing_at_the_top_and_per_group() {
        use crate::config::agents::Routing;
        let config = parse(
            r#"
tier "fast" backend="codex" model="gpt-5.1-codex-mini"
tier "strong" model="gpt-5.1-codex"
routing "fast-first"
agent "a" { plan-prompt "p" }
"#,
        )
        .unwrap();
        let tiers = &config.groups[0].tiers;
        assert_eq!(tiers.routing, Routing::FastFirst);
        assert_eq!(tiers.fast.backend.as_deref(), Some("codex"));
        assert_eq!(tiers.fast.model.as_deref(), Some("gpt-5.1-codex-mini"));
        assert_eq!(tiers.strong.backend, None);
        let grouped = parse(
            r#"group "g" { routing "auto"; tier "fast" model="m"; agent "a" { plan-prompt "p" } }"#,
        )
        .unwrap();
        assert_eq!(grouped.groups[0].tiers.routing, Routing::Auto);
        for bad in [
            "routing \"sometimes\"",
            "tier \"medium\" model=\"m\"",
            "tier \"fast\" model=\"\"",
            "tier \"fast\" backend=\"nope\"",
            "tier \"fast\" temperature=\"1\"",
            "tier model=\"m\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_gates_at_the_top_and_per_agent() {
        let config = parse(
            r#"
gate "cargo test" timeout-s=60
agent "a" { plan-prompt "p"; gate "make check" max-attempts=2 }
"#,
        )
        .unwrap();
        assert_eq!(config.gates.len(), 1);
        assert_eq!(config.gates[0].command, "cargo test");
        assert_eq!(config.gates[0].timeout_s, 60);
        assert_eq!(config.gates[0].max_attempts, GateSpec::DEFAULT_MAX_ATTEMPTS);
        let agent = &config.groups[0].agents[0];
        assert_eq!(agent.gates[0].command, "make check");
        assert_eq!(agent.gates[0].max_attempts, 2);
        for bad in [
            "gate",
            "gate \"\"",
            "gate 3",
            "gate \"x\" timeout-s=0",
            "gate \"x\" retries=2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_reviewers_reviews_group_gates_and_token_budgets() {
        let config = parse(
            r#"
review "critic"
retry { needs-you-after 4; }
group "build" {
    gate "make lint"
    review backend="gemini" model="gemini-2.5-pro" max-rounds=2
    max-tokens 9000
    agent "a" { plan-prompt "p"; review "critic" max-rounds=1; max-tokens 500 }
}
reviewer "critic" backend="Claude" model="claude-sonnet-4-5" prompt="Check the tests."
"#,
        )
        .unwrap();
        let critic = &config.reviews[0];
        assert_eq!(critic.name, "critic");
        assert_eq!(critic.backend.as_deref(), Some("claude"));
        assert_eq!(critic.instructions, "Check the tests.");
        assert_eq!(critic.max_rounds, ReviewSpec::DEFAULT_MAX_ROUNDS);
        assert_eq!(config.retry.needs_you_after, Some(4));
        let group = &config.groups[0];
        assert_eq!(group.gates[0].command, "make lint");
        assert_eq!(group.reviews[0].name, "gemini");
        assert_eq!(group.reviews[0].max_rounds, 2);
        assert_eq!(group.max_tokens, Some(9000));
        let agent = &group.agents[0];
        assert_eq!(agent.reviews[0].name, "critic");
        assert_eq!(agent.reviews[0].max_rounds, 1);
        assert_eq!(agent.max_tokens, Some(500));
        // The built-in demo backend reviews too (it passes everything).
        let demo = parse("review backend=\"demo\"").unwrap();
        assert_eq!(demo.reviews[0].backend.as_deref(), Some("demo"));
        for (bad, wanted) in [
            ("review \"nobody\"", "defines no `reviewer`"),
            (
                "reviewer \"x\" backend=\"claude\"\nreview \"y\"",
                "not defined (the file's reviewers: x)",
            ),
            ("review backend=\"nope\"", "unknown backend `nope`"),
            ("review backend=\"claude\" max-rounds=0", "from 1 to 10"),
            (
                "review backend=\"claude\" rounds=2",
                "unknown property `rounds`",
            ),
            ("reviewer backend=\"claude\"", "takes a name"),
            (
                "reviewer \"x\" backend=\"claude\"\nreviewer \"x\" backend=\"codex\"",
                "defined twice",
            ),
            (
                "agent \"a\" { plan-prompt \"p\"; max-tokens 0 }",
                "whole number from 1",
            ),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(wanted), "{bad}: {err}");
        }
    }

    #[test]
    fn reads_permissions_for_all_per_backend_and_per_agent() {
        let config = parse(
            r#"
permissions "edit"
backend "claude" { permissions "act" }
agent "planner" { plan-prompt "p"; permissions "read-only" }
agent "builder" { plan-prompt "b" }
"#,
        )
        .unwrap();
        assert_eq!(config.permissions.all, Some(Permissions::Edit));
        assert_eq!(config.permissions.backends["claude"], Permissions::Act);
        let agents = &config.groups[0].agents;
        assert_eq!(agents[0].permissions, Some(Permissions::ReadOnly));
        assert_eq!(agents[1].permissions, None);

        let err = parse("agent \"a\" { plan-prompt \"p\"; permissions \"write\" }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("orch.kdl:1:") && err.contains("read-only, edit, act"),
            "{err}"
        );
        let err = parse("backend \"clod\" { permissions \"act\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown backend `clod`"), "{err}");
    }

    #[test]
    fn reads_groups_agents_and_orchestration() {
        let config = parse(
            r##"
group "web" {
    orchestration {
        autonomous #true
        max-waves 2
        relay {
            enabled #true
            graph { api "ui" "tests" }
        }
    }
    agent "planner" { role "Planner"; plan-prompt "plan it"; follow-up-prompt "final plan" }
    agent "builder" {
        plan-prompt "split"
        follow-up-enabled #true
        follow-up-prompt "blueprint"
        depends-on "planner"
        rules "one" "two"
        fallback "claude" "gemini"
    }
}
"##,
        )
        .unwrap();
        let group = &config.groups[0];
        assert_eq!(group.name, "web");
        assert_eq!(group.orchestration.autonomous, Some(true));
        assert_eq!(group.orchestration.max_waves, Some(2));
        assert_eq!(group.orchestration.relay.graph["api"], vec!["ui", "tests"]);
        assert_eq!(group.agents[1].depends_on, vec!["planner"]);
        assert_eq!(group.agents[1].rules, vec!["one", "two"]);
        assert_eq!(group.agents[1].role, "builder", "role defaults to the id");
        assert!(
            group.agents[1].blueprint,
            "the agent named builder writes the blueprint by default"
        );
        config.validate().unwrap();
    }

    #[test]
    fn a_top_level_retry_node_tunes_retries_beside_groups() {
        let config = parse(
            "retry {\n  max-tries 3\n  base-delay-ms 0\n  max-park-ms 86400000\n}\ngroup \"g\" {\n  agent \"a\" { plan-prompt \"x\"; follow-up-prompt \"y\" }\n}\n",
        )
        .unwrap();
        assert_eq!(
            config.retry,
            RetrySettings {
                max_tries: Some(3),
                base_delay_ms: Some(0),
                max_park_ms: Some(86_400_000),
                ..RetrySettings::default()
            }
        );
        let err = parse("retry {\n  max-park-ms 86400001\n}\nagent \"a\" { plan-prompt \"x\" }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("orch.kdl:2:") && err.contains("takes milliseconds from 0 to 86400000"),
            "{err}"
        );
        let err = parse("retry { backoff 3 }\nagent \"a\" { plan-prompt \"x\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown retry setting `backoff`"), "{err}");
    }

    #[test]
    fn a_top_level_worktree_node_lists_copies_links_and_set_up_commands() {
        let config = parse(
            "worktree {\n  copy \".env\" \"config/local.toml\"\n  link \"node_modules\"\n  setup \"npm ci\"\n  setup-timeout-ms 60000\n}\nagent \"a\" { plan-prompt \"x\" }\n",
        )
        .unwrap();
        assert_eq!(config.worktree.copy, [".env", "config/local.toml"]);
        assert_eq!(config.worktree.link, ["node_modules"]);
        assert_eq!(config.worktree.setup, ["npm ci"]);
        assert_eq!(config.worktree.setup_timeout_ms, Some(60000));
        let err = parse("worktree { clone \"x\" }\nagent \"a\" { plan-prompt \"x\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown worktree setting `clone`"), "{err}");
    }

    #[test]
    fn a_top_level_process_node_sets_grace_and_idle_limit() {
        let config = parse(
            "process {\n  kill-grace-ms 1000\n  idle-timeout-ms 250\n}\nagent \"a\" { plan-prompt \"x\" }\n",
        )
        .unwrap();
        assert_eq!(
            config.process,
            ProcessSettings {
                kill_grace_ms: Some(1000),
                idle_timeout_ms: Some(250),
            }
        );
        let err = parse("process { idle-timeout-ms 0 }\nagent \"a\" { plan-prompt \"x\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be above 0"), "{err}");
        let err = parse("process { grace 3 }\nagent \"a\" { plan-prompt \"x\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown process setting `grace`"), "{err}");
    }

    #[test]
    fn kdl_v1_syntax_is_accepted() {
        let config =
            parse("agent \"solo\" {\n  plan-prompt \"x\"\n  follow-up-enabled false\n}\n").unwrap();
        assert!(!config.groups[0].agents[0].follow_up_enabled);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse("agent \"a\" {\n  role \"unterminated\n}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("orch.kdl:2:"), "{err}");
    }

    #[test]
    fn unknown_settings_name_line_and_column() {
        let err = parse("agent \"a\" {\n  plan-prompt \"x\"\n  dependz \"b\"\n}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "orch.kdl:3:3: unknown setting `dependz` in agent `a`");
    }

    #[test]
    fn wrong_value_types_are_errors() {
        let err = parse("orchestration {\n  max-waves \"three\"\n}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("orch.kdl:2:3: `max-waves` takes a whole number"),
            "{err}"
        );
    }
}
