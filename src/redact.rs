//! Secret redaction, applied to every event before any sink (log, timeline, audit
//! store) sees it.
//!
//! Two sources of secrets: the values of secret-looking environment variables
//! (`*_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`...) captured when the config is
//! resolved, and well-known token shapes (`sk-…`, `ghp_…`, `AKIA…`, `Bearer …`).
//! Agents still receive the original prompt; only what we write is redacted.

use crate::agent::event::AgentEvent;
use crate::events::event::OrchEventKind;

/// Shortest env value treated as a secret (shorter ones are flags like `1` or `true`).
const MIN_SECRET_LEN: usize = 8;

/// Token shapes: prefix, minimum length of the part after it, and its alphabet.
const TOKEN_SHAPES: &[(&str, usize, Alphabet)] = &[
    ("sk-", 16, Alphabet::Token),
    ("sk_live_", 16, Alphabet::Token),
    ("sk_test_", 16, Alphabet::Token),
    ("ghp_", 20, Alphabet::Token),
    ("gho_", 20, Alphabet::Token),
    ("ghs_", 20, Alphabet::Token),
    ("ghu_", 20, Alphabet::Token),
    ("github_pat_", 20, Alphabet::Token),
    ("glpat-", 20, Alphabet::Token),
    ("xoxb-", 10, Alphabet::Token),
    ("xoxp-", 10, Alphabet::Token),
    ("hf_", 30, Alphabet::Token),
    ("AIza", 30, Alphabet::Token),
    ("AKIA", 16, Alphabet::Upper),
    ("Bearer ", 12, Alphabet::Bearer),
    ("bearer ", 12, Alphabet::Bearer),
];

#[derive(Clone, Copy, Debug)]
enum Alphabet {
    Token,
    Upper,
    Bearer,
}

impl Alphabet {
    fn contains(self, c: char) -> bool {
        match self {
            Alphabet::Token => c.is_ascii_alphanumeric() || c == '_' || c == '-',
            Alphabet::Upper => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Alphabet::Bearer => {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=' | '+' | '/' | '~')
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// (secret value, env var name), longest first so overlapping values redact whole.
    literals: Vec<(String, String)>,
}

/// Whether an environment variable name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "_KEY",
        "_TOKEN",
        "_SECRET",
        "_PASSWORD",
        "_PASSWD",
        "_PAT",
        "_CREDENTIALS",
    ]
    .iter()
    .any(|suffix| upper.ends_with(suffix))
        || ["API_KEY", "SECRET", "TOKEN", "PASSWORD"]
            .iter()
            .any(|part| upper.contains(part))
}

impl Redactor {
    /// Builds a redactor from environment variables (name, value).
    pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut literals: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, value)| is_secret_name(name) && value.trim().len() >= MIN_SECRET_LEN)
            .map(|(name, value)| (value.trim().to_owned(), name.to_owned()))
            .collect();
        literals.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.1.cmp(&b.1)));
        literals.dedup_by(|a, b| a.0 == b.0);
        Redactor { literals }
    }

    /// Adds one more literal secret (a token passed on the command line, say).
    pub fn add_secret(&mut self, label: &str, value: &str) {
        if value.len() >= MIN_SECRET_LEN && !self.literals.iter().any(|(v, _)| v == value) {
            self.literals.push((value.to_owned(), label.to_owned()));
            self.literals.sort_by_key(|l| std::cmp::Reverse(l.0.len()));
        }
    }

    pub fn redact_in_place(&self, text: &mut String) {
        for (secret, name) in &self.literals {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), &format!("[redacted:{name}]"));
            }
        }
        for (prefix, min_len, alphabet) in TOKEN_SHAPES {
            if text.contains(prefix) {
                redact_shape(text, prefix, *min_len, *alphabet);
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut owned = text.to_owned();
        self.redact_in_place(&mut owned);
        owned
    }

    pub fn redact_event(&self, kind: &mut OrchEventKind) {
        let r = |s: &mut String| self.redact_in_place(s);
        match kind {
            OrchEventKind::RunStarted { prompt, .. } => r(prompt),
            OrchEventKind::Agent { event, .. } => self.redact_agent_event(event),
            OrchEventKind::TurnRetrying { message, .. } => r(message),
            OrchEventKind::TurnFinished(record) => {
                r(&mut record.prompt);
                r(&mut record.response);
                if let crate::agent::event::TurnOutcome::Failed { message, .. }
                | crate::agent::event::TurnOutcome::Interrupted { message } = &mut record.outcome
                {
                    r(message);
                }
            }
            OrchEventKind::AgentFinished { status, .. } => {
                if let crate::events::event::AgentStatus::Failed { reason } = status {
                    r(reason);
                }
            }
            OrchEventKind::BlueprintRejected { error, .. } => r(error),
            OrchEventKind::Notice { message, .. } => r(message),
            OrchEventKind::RunPaused(summary) => summary.next_steps.iter_mut().for_each(r),
            OrchEventKind::GroupStarted { .. }
            | OrchEventKind::WaveScheduled { .. }
            | OrchEventKind::AgentStarted { .. }
            | OrchEventKind::TurnStarted { .. }
            | OrchEventKind::BlueprintAccepted { .. }
            | OrchEventKind::PauseRequested { .. }
            | OrchEventKind::RunResumed
            | OrchEventKind::StopRequested { .. }
            | OrchEventKind::RunFinished { .. } => {}
        }
    }

    pub fn redact_agent_event(&self, event: &mut AgentEvent) {
        let r = |s: &mut String| self.redact_in_place(s);
        match event {
            AgentEvent::Message { text } | AgentEvent::Reasoning { text } => r(text),
            AgentEvent::Command {
                command, output, ..
            } => {
                r(command);
                if let Some(output) = output {
                    r(output);
                }
            }
            AgentEvent::FileChange { path, .. } => r(path),
            AgentEvent::ToolCall {
                arguments, result, ..
            } => {
                r(arguments);
                if let Some(result) = result {
                    r(result);
                }
            }
            AgentEvent::RateLimit { message, .. } | AgentEvent::Error { message } => r(message),
            AgentEvent::Finished { outcome } => {
                if let crate::agent::event::TurnOutcome::Failed { message, .. }
                | crate::agent::event::TurnOutcome::Interrupted { message } = outcome
                {
                    r(message);
                }
            }
            AgentEvent::Started { .. } | AgentEvent::Usage(_) => {}
        }
    }
}

fn redact_shape(text: &mut String, prefix: &str, min_len: usize, alphabet: Alphabet) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut changed = false;
    while let Some(pos) = rest.find(prefix) {
        let before_ok = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_' && c != '-');
        let after = &rest[pos + prefix.len()..];
        let tail_len: usize = after
            .chars()
            .take_while(|c| alphabet.contains(*c))
            .map(char::len_utf8)
            .sum();
        if before_ok && tail_len >= min_len {
            out.push_str(&rest[..pos]);
            out.push_str(prefix.trim_end());
            out.push_str(if prefix.ends_with(' ') {
                " [redacted]"
            } else {
                "[redacted]"
            });
            rest = &after[tail_len..];
            changed = true;
        } else {
            out.push_str(&rest[..pos + prefix.len()]);
            rest = after;
        }
    }
    if changed {
        out.push_str(rest);
        *text = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_of_secret_names_are_replaced_by_their_name() {
        let r = Redactor::from_env([
            ("OPENAI_API_KEY", "abcdefgh12345678"),
            ("ORCH_AUDIT_TOKEN", "tok-9999-8888"),
            ("HOME", "/root/secret-home"),
            ("DEBUG_TOKEN", "1"),
        ]);
        assert_eq!(
            r.redact("key=abcdefgh12345678 token tok-9999-8888 home /root/secret-home flag 1"),
            "key=[redacted:OPENAI_API_KEY] token [redacted:ORCH_AUDIT_TOKEN] home /root/secret-home flag 1"
        );
    }

    #[test]
    fn token_shapes_are_redacted_and_lookalikes_are_not() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("use sk-ant-api03-AAAAAAAAAAAAAAAAAAAA now"),
            "use sk-[redacted] now"
        );
        assert_eq!(
            r.redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(r.redact("AKIAABCDEFGHIJKLMNOP!"), "AKIA[redacted]!");
        // `task-...` contains `sk-` but is not a key; short tails are not keys either.
        assert_eq!(
            r.redact("task-0123456789abcdefghij"),
            "task-0123456789abcdefghij"
        );
        assert_eq!(r.redact("sk-short"), "sk-short");
    }
}
