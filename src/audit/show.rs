//! `orch-audit show`: one run folded into waves and agents with their turns.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::audit::error::AuditError;
use crate::audit::reader::{AuditReader, EventFilter, RunSummary};
use crate::audit::render::time_of;
use crate::events::event::TurnRecord;
use crate::events::render::duration;

#[derive(Clone, Debug, Serialize)]
pub struct RunDetail {
    pub run: RunSummary,
    /// The run it follows up (`launch continue`).
    pub parent: Option<String>,
    /// How many times it was resumed (`launch resume`).
    pub resumes: u32,
    /// Tokens and cost per model tier (`tier` in `orch.kdl`), from the turns tagged
    /// `tier:fast` or `tier:strong`; empty when no turn was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierUsage>,
    pub waves: Vec<WaveInfo>,
    pub agents: Vec<AgentDetail>,
    /// `--features`: each feature's last status in this run, in the order first seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureInfo {
    pub feature: String,
    pub agent: String,
    pub track: String,
    pub status: String,
    pub attempts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierUsage {
    pub tier: String,
    pub turns: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WaveInfo {
    pub wave: i64,
    pub kind: String,
    pub agents: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentDetail {
    pub agent: String,
    pub role: String,
    pub kind: String,
    pub wave: i64,
    pub status: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars, from the turns that carry a cost (their model had a price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub turns: Vec<TurnInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TurnInfo {
    pub turn: u32,
    #[serde(rename = "type")]
    pub turn_type: String,
    pub outcome: String,
    pub duration_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub backend: String,
}

pub async fn run_detail(reader: &AuditReader, session: &str) -> Result<RunDetail, AuditError> {
    let run = reader.run(session).await?;
    let mut waves: Vec<WaveInfo> = Vec::new();
    let mut agents: Vec<AgentDetail> = Vec::new();
    let mut parent = None;
    let mut resumes = 0;
    let mut tiers = TierTotals::new();
    let mut features: Vec<FeatureInfo> = Vec::new();
    for kind in [
        "run_started",
        "wave_scheduled",
        "agent_started",
        "turn_finished",
        "agent_finished",
        "feature_updated",
    ] {
        let filter = EventFilter {
            kind: Some(kind.into()),
            ..EventFilter::default()
        };
        for row in reader.events(session, &filter).await? {
            let p = &row.payload;
            let text = |key: &str| p.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
            match kind {
                "run_started" => {
                    if p.get("resumed").and_then(Value::as_bool) == Some(true) {
                        resumes += 1;
                    }
                    if parent.is_none() {
                        parent = p.get("parent").and_then(Value::as_str).map(str::to_owned);
                    }
                }
                "wave_scheduled" => {
                    let wave = WaveInfo {
                        wave: p.get("wave").and_then(Value::as_i64).unwrap_or(0),
                        kind: text("wave_kind"),
                        agents: p
                            .get("agents")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                    };
                    // A resumed run schedules its waves again.
                    if !waves.iter().any(|w| {
                        w.wave == wave.wave && w.kind == wave.kind && w.agents == wave.agents
                    }) {
                        waves.push(wave);
                    }
                }
                "agent_started" => {
                    let agent = find_or_add(&mut agents, row.agent.as_deref().unwrap_or(""));
                    agent.role = text("role");
                    agent.kind = text("agent_kind");
                    agent.wave = p.get("wave").and_then(Value::as_i64).unwrap_or(0);
                }
                "turn_finished" => {
                    let Ok(t) = serde_json::from_value::<TurnRecord>(row.payload.clone()) else {
                        continue;
                    };
                    add_tier_turn(
                        &mut tiers,
                        t.tags.iter().map(String::as_str),
                        (t.usage.input_tokens, t.usage.output_tokens),
                        t.cost_usd,
                    );
                    let agent = find_or_add(&mut agents, &t.agent);
                    agent.input_tokens += t.usage.input_tokens;
                    agent.output_tokens += t.usage.output_tokens;
                    if let Some(cost) = t.cost_usd {
                        agent.cost_usd = Some(agent.cost_usd.unwrap_or(0.0) + cost);
                    }
                    agent.turns.push(TurnInfo {
                        turn: t.turn,
                        turn_type: t.kind.as_str().into(),
                        outcome: t.outcome.label().into(),
                        duration_ms: t.duration_ms(),
                        input_tokens: t.usage.input_tokens,
                        output_tokens: t.usage.output_tokens,
                        backend: t.backend.clone(),
                    });
                }
                "feature_updated" => fold_feature(&mut features, row.agent.as_deref(), p),
                _ => {
                    let name = row.agent.clone().unwrap_or_default();
                    let status = p
                        .get("status")
                        .and_then(|s| s.get("status"))
                        .and_then(Value::as_str)
                        .unwrap_or("finished");
                    let agent = find_or_add(&mut agents, &name);
                    agent.status = status.to_owned();
                    // A blocked agent never started: its end names who it was.
                    if agent.role.is_empty() {
                        agent.role = text("role");
                        agent.kind = text("agent_kind");
                        agent.wave = p.get("wave").and_then(Value::as_i64).unwrap_or(0);
                    }
                }
            }
        }
    }
    Ok(RunDetail {
        run,
        parent,
        resumes,
        tiers: tier_list(tiers),
        waves,
        agents,
        features,
    })
}

/// Per-tier totals, by tier name.
pub type TierTotals = std::collections::BTreeMap<String, TierUsage>;

/// Counts one turn in its tier's totals when it is tagged `tier:fast` or `tier:strong`.
pub fn add_tier_turn<'a>(
    tiers: &mut TierTotals,
    tags: impl IntoIterator<Item = &'a str>,
    (input_tokens, output_tokens): (u64, u64),
    cost_usd: Option<f64>,
) {
    let Some(name) = tags.into_iter().find_map(|tag| tag.strip_prefix("tier:")) else {
        return;
    };
    let tier = tiers.entry(name.to_owned()).or_insert_with(|| TierUsage {
        tier: name.to_owned(),
        turns: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: None,
    });
    tier.turns += 1;
    tier.input_tokens += input_tokens;
    tier.output_tokens += output_tokens;
    if let Some(cost) = cost_usd {
        tier.cost_usd = Some(tier.cost_usd.unwrap_or(0.0) + cost);
    }
}

/// The tiers in the order they are shown: "strong" before "fast".
pub fn tier_list(tiers: TierTotals) -> Vec<TierUsage> {
    tiers.into_values().rev().collect()
}

/// Folds a `feature_updated` event (its agent and payload) into the features: each
/// feature once, in the order first seen, with its last status.
pub fn fold_feature(features: &mut Vec<FeatureInfo>, agent: Option<&str>, p: &Value) {
    let text = |key: &str| p.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let info = FeatureInfo {
        feature: text("feature"),
        agent: agent.unwrap_or_default().to_owned(),
        track: text("track"),
        status: text("status"),
        attempts: p.get("attempts").and_then(Value::as_u64).unwrap_or(0),
        reason: p.get("reason").and_then(Value::as_str).map(str::to_owned),
    };
    match features.iter_mut().find(|f| f.feature == info.feature) {
        Some(known) => *known = info,
        None => features.push(info),
    }
}

fn find_or_add<'a>(agents: &'a mut Vec<AgentDetail>, name: &str) -> &'a mut AgentDetail {
    let index = match agents.iter().position(|a| a.agent == name) {
        Some(i) => i,
        None => {
            agents.push(AgentDetail {
                agent: name.to_owned(),
                role: String::new(),
                kind: String::new(),
                wave: 0,
                status: "running".into(),
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: None,
                turns: Vec::new(),
            });
            agents.len() - 1
        }
    };
    &mut agents[index]
}

pub fn render(d: &RunDetail) -> String {
    let r = &d.run;
    let mut out = format!(
        "run {}  started {}  status {}  backend {}\nagents {}  tokens in {} out {}  events {}\nprompt: {}\n",
        r.session,
        time_of(r.started_at_ms),
        r.status,
        r.backend,
        r.agents,
        r.input_tokens,
        r.output_tokens,
        r.events,
        crate::audit::memory::truncate(&r.prompt.replace('\n', " "), 200)
    );
    if let Some(parent) = &d.parent {
        let _ = writeln!(out, "continues run {parent}");
    }
    if d.resumes > 0 {
        let _ = writeln!(
            out,
            "resumed {} time{} (launch resume)",
            d.resumes,
            if d.resumes == 1 { "" } else { "s" }
        );
    }
    for t in &d.tiers {
        let cost = t.cost_usd.map(|c| format!("  ${c:.4}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "tier {:<6} {} turn(s)  tokens in {} out {}{cost}",
            t.tier, t.turns, t.input_tokens, t.output_tokens
        );
    }
    if !d.waves.is_empty() {
        out.push_str("\nwaves:\n");
        for w in &d.waves {
            let _ = writeln!(
                out,
                "  {:>2} {:<13} {}",
                w.wave,
                w.kind,
                w.agents.join(", ")
            );
        }
    }
    if !d.features.is_empty() {
        out.push_str("\nfeatures:\n");
        for f in &d.features {
            let _ = write!(
                out,
                "  {:<24} {:<10} {:<9} {} attempt(s)",
                f.feature, f.track, f.status, f.attempts
            );
            if let Some(reason) = &f.reason {
                let _ = write!(
                    out,
                    "  {}",
                    crate::audit::memory::truncate(&reason.replace('\n', " "), 160)
                );
            }
            out.push('\n');
        }
    }
    let costs: Vec<f64> = d.agents.iter().filter_map(|a| a.cost_usd).collect();
    if !costs.is_empty() {
        let _ = writeln!(out, "cost {}", usd(costs.iter().sum()));
    }
    out.push_str("\nagents:\n");
    for a in &d.agents {
        let cost = a
            .cost_usd
            .map_or(String::new(), |c| format!("  cost {}", usd(c)));
        let _ = writeln!(
            out,
            "  {} ({}, {}, wave {})  {}  tokens in {} out {}{cost}",
            a.agent, a.role, a.kind, a.wave, a.status, a.input_tokens, a.output_tokens
        );
        for t in &a.turns {
            let _ = writeln!(
                out,
                "     {:03}-{:<9} {:<11} {:>8}  in {:>8}  out {:>7}  {}",
                t.turn,
                t.turn_type,
                t.outcome,
                duration(t.duration_ms),
                t.input_tokens,
                t.output_tokens,
                t.backend
            );
        }
    }
    out
}

/// `$0.0123` for a cost in dollars, as the run writes costs everywhere.
fn usd(dollars: f64) -> String {
    crate::config::prices::dollars((dollars * 1e6).round() as u64)
}
