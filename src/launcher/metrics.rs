//! The `--metrics` table: tokens per agent, per wave and for the whole run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::agent::event::Usage;
use crate::config::prices::dollars;
use crate::orchestrator::RunReport;

pub fn metrics_table(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>4} {:<10} {:>10} {:>10} {:>10} {:>10}",
        "agent", "wave", "status", "input", "cached", "output", "cost"
    );
    let mut waves: BTreeMap<u32, Usage> = BTreeMap::new();
    for agent in &report.agents {
        let _ = writeln!(
            out,
            "{:<28} {:>4} {:<10} {:>10} {:>10} {:>10} {:>10}",
            agent.id,
            agent.wave,
            agent.status.label(),
            agent.usage.input_tokens,
            agent.usage.cached_input_tokens,
            agent.usage.output_tokens,
            // No price for one of its models: its cost is not known.
            agent.cost_micros.map_or("-".to_owned(), dollars)
        );
        waves.entry(agent.wave).or_default().add(&agent.usage);
    }
    for (wave, usage) in &waves {
        let _ = writeln!(
            out,
            "{:<28} {:>4} {:<10} {:>10} {:>10} {:>10}",
            format!("(wave {wave})"),
            wave,
            "",
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens
        );
    }
    for (tier, usage, cost) in &report.tiers {
        let _ = writeln!(
            out,
            "{:<28} {:>4} {:<10} {:>10} {:>10} {:>10} {:>10}",
            format!("(tier {tier})"),
            "",
            "",
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
            cost.map_or("-".to_owned(), dollars)
        );
    }
    let u = &report.usage;
    let _ = writeln!(
        out,
        "{:<28} {:>4} {:<10} {:>10} {:>10} {:>10} {:>10}",
        "(run total)",
        "",
        "",
        u.input_tokens,
        u.cached_input_tokens,
        u.output_tokens,
        dollars(report.cost_micros)
    );
    out
}
