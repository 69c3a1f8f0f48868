//! What a model's tokens cost: built-in figures for the models users pick most often,
//! overridden or extended by `price` nodes in `orch.kdl`. A model with no price counts
//! tokens only.
//!
//! Owns the table and the arithmetic; budgets and reports use [`PriceTable::cost`].

use serde::{Deserialize, Serialize};

use crate::agent::event::Usage;

/// US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: f64,
    pub output: f64,
}

impl Price {
    /// The cost of `usage` in micro-dollars (millionths of a dollar), rounded up. Input
    /// tokens include the cached ones, which are billed at the cached rate.
    pub fn micros(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        // $ per million tokens × tokens = micro-dollars.
        let micros = self.input * uncached as f64
            + self.cached_input * cached as f64
            + self.output * usage.output_tokens as f64;
        micros.max(0.0).ceil() as u64
    }
}

/// Published list prices (USD per million tokens, standard tier), as of late 2025. Dated
/// or suffixed model names (`claude-sonnet-4-5-20250929`) take the price of the longest
/// name here they start with.
const BUILT_IN: &[(&str, Price)] = &[
    ("gpt-5", p(1.25, 0.125, 10.0)),
    ("gpt-5-codex", p(1.25, 0.125, 10.0)),
    ("gpt-5-mini", p(0.25, 0.025, 2.0)),
    ("gpt-5-nano", p(0.05, 0.005, 0.4)),
    ("gpt-4.1", p(2.0, 0.5, 8.0)),
    ("gpt-4.1-mini", p(0.4, 0.1, 1.6)),
    ("o3", p(2.0, 0.5, 8.0)),
    ("o4-mini", p(1.1, 0.275, 4.4)),
    ("claude-opus-4", p(15.0, 1.5, 75.0)),
    ("claude-sonnet-4", p(3.0, 0.3, 15.0)),
    ("claude-haiku-4-5", p(1.0, 0.1, 5.0)),
    ("claude-3-5-haiku", p(0.8, 0.08, 4.0)),
    ("gemini-2.5-pro", p(1.25, 0.31, 10.0)),
    ("gemini-2.5-flash", p(0.3, 0.075, 2.5)),
    ("gemini-2.5-flash-lite", p(0.1, 0.025, 0.4)),
];

const fn p(input: f64, cached_input: f64, output: f64) -> Price {
    Price {
        input,
        cached_input,
        output,
    }
}

/// The prices in force for a run: `orch.kdl`'s first, then the built-in ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// From `price "<model>" input=… cached-input=… output=…` nodes.
    pub configured: Vec<(String, Price)>,
}

impl PriceTable {
    /// The price of `model`: a configured entry of that exact name, else the built-in
    /// entry with the longest name that `model` starts with.
    pub fn price(&self, model: &str) -> Option<Price> {
        let model = model.trim().to_ascii_lowercase();
        if let Some((_, price)) = self
            .configured
            .iter()
            .rev()
            .find(|(name, _)| name.to_ascii_lowercase() == model)
        {
            return Some(*price);
        }
        BUILT_IN
            .iter()
            .filter(|(name, _)| model.starts_with(name))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| *price)
    }

    /// What `usage` on `model` cost, in micro-dollars; `None` when the model is unknown
    /// (or not named: the CLI's default model).
    pub fn cost(&self, model: Option<&str>, usage: &Usage) -> Option<u64> {
        Some(self.price(model?)?.micros(usage))
    }
}

/// `$0.0123` from micro-dollars.
pub fn dollars(micros: u64) -> String {
    if micros >= 100_000_000 {
        format!("${:.2}", micros as f64 / 1e6)
    } else {
        format!("${:.4}", micros as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            output_tokens: output,
            ..Usage::default()
        }
    }

    #[test]
    fn cached_input_is_billed_at_its_own_rate() {
        let price = p(1.25, 0.125, 10.0);
        // 1M uncached in, 1M cached, 1M out: 1.25 + 0.125 + 10 dollars.
        assert_eq!(
            price.micros(&usage(2_000_000, 1_000_000, 1_000_000)),
            11_375_000
        );
        assert_eq!(price.micros(&usage(0, 0, 0)), 0);
        assert_eq!(price.micros(&usage(1, 0, 0)), 2, "rounded up");
    }

    #[test]
    fn configured_prices_win_and_dated_names_take_the_built_in_one() {
        let mut table = PriceTable::default();
        assert_eq!(
            table.price("claude-sonnet-4-5-20250929"),
            Some(p(3.0, 0.3, 15.0))
        );
        assert_eq!(
            table.price("gpt-5-mini-2025-08-07"),
            Some(p(0.25, 0.025, 2.0))
        );
        assert_eq!(table.price("GPT-5"), Some(p(1.25, 0.125, 10.0)));
        assert_eq!(table.price("my-local-model"), None);
        assert_eq!(table.cost(None, &usage(10, 0, 10)), None);
        table.configured.push(("gpt-5".into(), p(2.0, 1.0, 20.0)));
        table
            .configured
            .push(("my-local-model".into(), p(0.0, 0.0, 0.0)));
        assert_eq!(table.price("gpt-5"), Some(p(2.0, 1.0, 20.0)));
        assert_eq!(
            table.cost(Some("my-local-model"), &usage(10, 0, 10)),
            Some(0)
        );
        assert_eq!(dollars(1_234), "$0.0012");
        assert_eq!(dollars(123_456_789), "$123.46");
    }
}
