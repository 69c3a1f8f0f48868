//! What to do after a failed turn: retry, park, fall back, or give up.
//!
//! A pure function of the failure class, what was tried so far and a jitter value, so
//! it is tested without sleeping. Classes come from structured channels only (the
//! backends decide them), never from assistant text.

use crate::agent::event::{FailureClass, TurnOutcome};
use crate::config::agents::RetrySettings;
use crate::events::event::RetryDecision;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries of one backend for transient failures (the first try included).
    pub max_transient_tries: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Times a turn may be parked for a usage limit before it counts as terminal.
    pub max_parks: u32,
    /// Park time when the backend did not say when the limit resets.
    pub default_park_ms: u64,
    pub max_park_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_transient_tries: 5,
            base_delay_ms: 1_000,
            max_delay_ms: 60_000,
            max_parks: 3,
            default_park_ms: 15 * 60 * 1000,
            max_park_ms: 6 * 60 * 60 * 1000,
        }
    }
}

impl RetryPolicy {
    /// The defaults with what the agents config's `retry` node sets.
    pub fn with_settings(settings: &RetrySettings) -> Self {
        let default = RetryPolicy::default();
        RetryPolicy {
            max_transient_tries: settings.max_tries.unwrap_or(default.max_transient_tries),
            base_delay_ms: settings.base_delay_ms.unwrap_or(default.base_delay_ms),
            max_delay_ms: settings.max_delay_ms.unwrap_or(default.max_delay_ms),
            max_parks: settings.max_parks.unwrap_or(default.max_parks),
            default_park_ms: settings.default_park_ms.unwrap_or(default.default_park_ms),
            max_park_ms: settings.max_park_ms.unwrap_or(default.max_park_ms),
        }
    }
}

/// What was tried for one turn so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryState {
    pub tries: u32,
    pub parks: u32,
    /// How many fallback backends were used.
    pub fallbacks_used: usize,
}

/// Decides the next step after `outcome` failed. `jitter` is in [0, 1).
pub fn decide(
    policy: &RetryPolicy,
    state: &mut RetryState,
    outcome: &TurnOutcome,
    fallbacks: &[String],
    jitter: f64,
) -> RetryDecision {
    let class = match outcome {
        TurnOutcome::Completed => return RetryDecision::GiveUp,
        TurnOutcome::Failed { class, .. } => class.clone(),
        // A crash mid-turn is not retried on the same backend: it may have changed files.
        TurnOutcome::Interrupted { .. } => FailureClass::Terminal,
    };
    match class {
        FailureClass::UsageLimit { resets_in_secs } if state.parks < policy.max_parks => {
            state.parks += 1;
            let delay_ms = resets_in_secs
                .map(|s| s.saturating_mul(1000))
                .unwrap_or(policy.default_park_ms)
                .min(policy.max_park_ms);
            RetryDecision::Park { delay_ms }
        }
        FailureClass::Transient { retry_after_secs }
            if state.tries + 1 < policy.max_transient_tries =>
        {
            state.tries += 1;
            let exponential = policy
                .base_delay_ms
                .saturating_mul(1 << (state.tries - 1).min(20));
            // Full jitter on half of the delay: spreads retries of parallel agents.
            let jittered = (exponential as f64 * (0.5 + jitter.clamp(0.0, 1.0) / 2.0)) as u64;
            let floor = retry_after_secs.unwrap_or(0).saturating_mul(1000);
            RetryDecision::Retry {
                attempt: state.tries + 1,
                delay_ms: jittered.max(floor).min(policy.max_delay_ms.max(floor)),
            }
        }
        _ => match fallbacks.get(state.fallbacks_used) {
            Some(next) => {
                state.fallbacks_used += 1;
                state.tries = 0;
                state.parks = 0;
                RetryDecision::Fallback { to: next.clone() }
            }
            None => RetryDecision::GiveUp,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(class: FailureClass) -> TurnOutcome {
        TurnOutcome::Failed {
            class,
            message: "x".into(),
        }
    }

    #[test]
    fn transient_failures_back_off_then_fall_back() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::default();
        let transient = failed(FailureClass::Transient {
            retry_after_secs: None,
        });
        let fallbacks = vec!["claude".to_string()];
        let delays: Vec<RetryDecision> = (0..4)
            .map(|_| decide(&policy, &mut state, &transient, &fallbacks, 1.0))
            .collect();
        assert_eq!(
            delays,
            vec![
                RetryDecision::Retry {
                    attempt: 2,
                    delay_ms: 1000
                },
                RetryDecision::Retry {
                    attempt: 3,
                    delay_ms: 2000
                },
                RetryDecision::Retry {
                    attempt: 4,
                    delay_ms: 4000
                },
                RetryDecision::Retry {
                    attempt: 5,
                    delay_ms: 8000
                },
            ]
        );
        assert_eq!(
            decide(&policy, &mut state, &transient, &fallbacks, 1.0),
            RetryDecision::Fallback {
                to: "claude".into()
            }
        );
        assert_eq!(state.tries, 0, "the fallback backend gets its own tries");
    }

    #[test]
    fn retry_after_is_honoured_and_jitter_shortens_backoff() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::default();
        let limited = failed(FailureClass::Transient {
            retry_after_secs: Some(17),
        });
        assert_eq!(
            decide(&policy, &mut state, &limited, &[], 0.0),
            RetryDecision::Retry {
                attempt: 2,
                delay_ms: 17_000
            }
        );
        let mut state = RetryState::default();
        let plain = failed(FailureClass::Transient {
            retry_after_secs: None,
        });
        assert_eq!(
            decide(&policy, &mut state, &plain, &[], 0.0),
            RetryDecision::Retry {
                attempt: 2,
                delay_ms: 500
            }
        );
    }

    #[test]
    fn the_retry_node_overrides_only_what_it_sets() {
        let policy = RetryPolicy::with_settings(&RetrySettings {
            base_delay_ms: Some(50),
            max_park_ms: Some(2_000),
            ..RetrySettings::default()
        });
        assert_eq!(
            policy,
            RetryPolicy {
                base_delay_ms: 50,
                max_park_ms: 2_000,
                ..RetryPolicy::default()
            }
        );
    }

    #[test]
    fn usage_limits_park_without_counting_as_attempts() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::default();
        let limit = failed(FailureClass::UsageLimit {
            resets_in_secs: Some(90),
        });
        assert_eq!(
            decide(&policy, &mut state, &limit, &[], 0.5),
            RetryDecision::Park { delay_ms: 90_000 }
        );
        assert_eq!(state.tries, 0);
        let unknown = failed(FailureClass::UsageLimit {
            resets_in_secs: None,
        });
        assert_eq!(
            decide(&policy, &mut state, &unknown, &[], 0.5),
            RetryDecision::Park {
                delay_ms: 15 * 60 * 1000
            }
        );
    }

    #[test]
    fn terminal_failures_and_crashes_fall_back_or_give_up() {
        let policy = RetryPolicy::default();
        let mut state = RetryState::default();
        let auth = failed(FailureClass::Terminal);
        assert_eq!(
            decide(&policy, &mut state, &auth, &["gemini".into()], 0.0),
            RetryDecision::Fallback {
                to: "gemini".into()
            }
        );
        assert_eq!(
            decide(&policy, &mut state, &auth, &["gemini".into()], 0.0),
            RetryDecision::GiveUp
        );
        let crash = TurnOutcome::Interrupted {
            message: "eof".into(),
        };
        assert_eq!(
            decide(&policy, &mut RetryState::default(), &crash, &[], 0.0),
            RetryDecision::GiveUp
        );
    }
}
