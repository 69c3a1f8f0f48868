//! Secret redaction, applied to every event before any sink (log, timeline, audit
//! store) sees it.
//!
//! Two sources of secrets: the values of secret-looking environment variables
//! (`*_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`...) captured when the config is
//! resolved, and well-known token shapes (`sk-…`, `ghp_…`, `AKIA…`, `Bearer …`).
//! Agents still receive the original prompt; only what we write is redacted.

use std::path::PathBuf;

use aho_corasick::AhoCorasick;

use crate::agent::event::{AgentEvent, TurnOutcome};
use crate::events::event::{
    AgentStatus, BlueprintAgentSummary, InterruptSummary, OrchEventKind, RetryDecision, TurnRecord,
};

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

#[derive(Clone, Debug)]
pub struct Redactor {
    /// (secret value, env var name), longest first so overlapping values redact whole.
    literals: Vec<(String, String)>,
    /// Finds any literal or token prefix in one pass. Almost no text has one, so this
    /// check is all the work most strings cost (every event goes through here).
    /// `None` only if the automaton could not be built; then every string is searched.
    prefilter: Option<AhoCorasick>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::with_literals(Vec::new())
    }
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
        Redactor::with_literals(literals)
    }

    fn with_literals(literals: Vec<(String, String)>) -> Self {
        let patterns = literals
            .iter()
            .map(|(secret, _)| secret.as_str())
            .chain(TOKEN_SHAPES.iter().map(|(prefix, _, _)| *prefix));
        // Building fails only past the automaton's size limits, which a handful of
        // secrets and prefixes cannot reach.
        let prefilter = AhoCorasick::new(patterns).ok();
        Redactor {
            literals,
            prefilter,
        }
    }

    /// Adds one more literal secret (a token passed on the command line, say).
    pub fn add_secret(&mut self, label: &str, value: &str) {
        if value.len() >= MIN_SECRET_LEN && !self.literals.iter().any(|(v, _)| v == value) {
            let mut literals = std::mem::take(&mut self.literals);
            literals.push((value.to_owned(), label.to_owned()));
            literals.sort_by_key(|l| std::cmp::Reverse(l.0.len()));
            *self = Redactor::with_literals(literals);
        }
    }

    pub fn redact_in_place(&self, text: &mut String) {
        if let Some(prefilter) = &self.prefilter
            && !prefilter.is_match(text.as_str())
        {
            return;
        }
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

    /// Redacts every string of an event: free text, but also ids, roles, model and
    /// backend names, paths and lists, since any of them can come from a prompt or an
    /// agent. The matches name every field (no `..`), so a new field does not compile
    /// until it is handled here.
    pub fn redact_event(&self, kind: &mut OrchEventKind) {
        let r = |s: &mut String| self.redact_in_place(s);
        let all = |list: &mut Vec<String>| list.iter_mut().for_each(r);
        match kind {
            OrchEventKind::RunStarted {
                session,
                prompt,
                backend,
                project_root,
                groups,
            } => {
                r(session);
                r(prompt);
                r(backend);
                self.redact_path(project_root);
                all(groups);
            }
            OrchEventKind::GroupStarted { group } => r(group),
            OrchEventKind::WaveScheduled {
                wave: _,
                kind: _,
                agents,
            } => all(agents),
            OrchEventKind::AgentStarted {
                agent,
                role,
                kind: _,
                wave: _,
                depends_on,
            } => {
                r(agent);
                r(role);
                all(depends_on);
            }
            OrchEventKind::TurnStarted {
                agent,
                turn: _,
                kind: _,
                backend,
                model,
                // Counts only: the stats of the prompt as sent, no text.
                prompt: _,
            } => {
                r(agent);
                r(backend);
                model.iter_mut().for_each(r);
            }
            OrchEventKind::Agent {
                agent,
                turn: _,
                event,
            } => {
                r(agent);
                self.redact_agent_event(event);
            }
            OrchEventKind::TurnRetrying {
                agent,
                turn: _,
                class: _,
                decision,
                message,
            } => {
                r(agent);
                if let RetryDecision::Fallback { to } = decision {
                    r(to);
                }
                r(message);
            }
            OrchEventKind::TurnFinished(record) => self.redact_turn(record),
            OrchEventKind::AgentFinished {
                agent,
                status,
                usage: _,
            } => {
                r(agent);
                match status {
                    AgentStatus::Failed { reason } => r(reason),
                    AgentStatus::Blocked { by } => r(by),
                    AgentStatus::Succeeded | AgentStatus::Stopped => {}
                }
            }
            OrchEventKind::BlueprintAccepted {
                source,
                wave: _,
                agents,
            } => {
                r(source);
                for BlueprintAgentSummary {
                    id,
                    role,
                    depends_on,
                } in agents
                {
                    r(id);
                    r(role);
                    all(depends_on);
                }
            }
            OrchEventKind::BlueprintRejected {
                source,
                attempt: _,
                error,
            } => {
                r(source);
                r(error);
            }
            OrchEventKind::Notice { level: _, message } => r(message),
            OrchEventKind::PauseRequested { source } | OrchEventKind::StopRequested { source } => {
                r(source)
            }
            OrchEventKind::RunPaused(summary) => {
                let InterruptSummary {
                    session,
                    number: _,
                    requested_by,
                    finished,
                    failed,
                    in_flight,
                    pending,
                    usage: _,
                    next_steps,
                } = summary.as_mut();
                r(session);
                r(requested_by);
                all(finished);
                all(failed);
                all(in_flight);
                all(pending);
                all(next_steps);
            }
            OrchEventKind::RunResumed => {}
            OrchEventKind::RunFinished {
                status: _,
                usage: _,
                failed,
            } => all(failed),
        }
    }

    /// Every string of a turn record (what becomes a turn file, a memory artifact and a
    /// `tool_calls` row).
    pub fn redact_turn(&self, record: &mut TurnRecord) {
        let r = |s: &mut String| self.redact_in_place(s);
        let TurnRecord {
            agent,
            role,
            agent_kind: _,
            wave: _,
            turn: _,
            kind: _,
            prompt,
            response,
            usage: _,
            started_at_ms: _,
            finished_at_ms: _,
            backend,
            model,
            thread_id,
            outcome,
            tags,
        } = record;
        r(agent);
        r(role);
        r(prompt);
        r(response);
        r(backend);
        model.iter_mut().for_each(r);
        thread_id.iter_mut().for_each(r);
        self.redact_outcome(outcome);
        tags.iter_mut().for_each(r);
    }

    fn redact_outcome(&self, outcome: &mut TurnOutcome) {
        match outcome {
            TurnOutcome::Failed { class: _, message } | TurnOutcome::Interrupted { message } => {
                self.redact_in_place(message)
            }
            TurnOutcome::Completed => {}
        }
    }

    /// Redacts every string in a JSON document, object keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => self.redact_in_place(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (mut key, mut item) in entries {
                    self.redact_in_place(&mut key);
                    self.redact_json(&mut item);
                    map.insert(key, item);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            }
        }
    }

    /// A path is redacted as text; one that is not UTF-8 is left alone unless its lossy
    /// text holds a secret (then the lossy, redacted text replaces it).
    pub fn redact_path(&self, path: &mut PathBuf) {
        let text = path.to_string_lossy();
        let redacted = self.redact(&text);
        if redacted != text {
            *path = PathBuf::from(redacted);
        }
    }

    pub fn redact_agent_event(&self, event: &mut AgentEvent) {
        let r = |s: &mut String| self.redact_in_place(s);
        match event {
            AgentEvent::Started { thread_id } => thread_id.iter_mut().for_each(r),
            AgentEvent::Message { text } | AgentEvent::Reasoning { text } => r(text),
            AgentEvent::Command {
                id,
                command,
                status: _,
                exit_code: _,
                output,
            } => {
                id.iter_mut().for_each(r);
                r(command);
                output.iter_mut().for_each(r);
            }
            AgentEvent::FileChange {
                path,
                change,
                status: _,
            } => {
                r(path);
                r(change);
            }
            AgentEvent::ToolCall {
                id,
                name,
                arguments,
                status: _,
                result,
            } => {
                id.iter_mut().for_each(r);
                r(name);
                r(arguments);
                result.iter_mut().for_each(r);
            }
            AgentEvent::RateLimit {
                message,
                retry_after_secs: _,
                resets_at,
            } => {
                r(message);
                resets_at.iter_mut().for_each(r);
            }
            AgentEvent::Error { message } => r(message),
            AgentEvent::RawLine { text } => r(text),
            AgentEvent::Finished { outcome } => self.redact_outcome(outcome),
            AgentEvent::Usage(_) => {}
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

    const KEY: &str = "sk-ant-api03-PLANTEDPLANTEDPLANTED0123";
    const ENV_VALUE: &str = "plantedenvvalue-0042";

    /// One event of every kind with a secret in every string field.
    fn every_kind() -> Vec<OrchEventKind> {
        use crate::agent::backend::{AgentKind, TurnKind};
        use crate::agent::event::{FailureClass, ItemStatus, Usage};
        use crate::events::event::{NoticeLevel, PromptStats, RunStatus, WaveKind};
        let s = |label: &str| format!("{label} {KEY} {ENV_VALUE}");
        let outcome = || TurnOutcome::Failed {
            class: FailureClass::Terminal,
            message: s("failed"),
        };
        let agent_events = vec![
            AgentEvent::Started {
                thread_id: Some(s("thread")),
            },
            AgentEvent::Message { text: s("message") },
            AgentEvent::Reasoning {
                text: s("thinking"),
            },
            AgentEvent::Command {
                id: Some(s("id")),
                command: s("command"),
                status: ItemStatus::Completed,
                exit_code: Some(0),
                output: Some(s("output")),
            },
            AgentEvent::FileChange {
                path: s("path"),
                change: s("change"),
                status: ItemStatus::Completed,
            },
            AgentEvent::ToolCall {
                id: Some(s("id")),
                name: s("name"),
                arguments: s("arguments"),
                status: ItemStatus::Completed,
                result: Some(s("result")),
            },
            AgentEvent::Usage(Usage::default()),
            AgentEvent::RateLimit {
                message: s("limit"),
                retry_after_secs: None,
                resets_at: Some(s("resets")),
            },
            AgentEvent::Error {
                message: s("error"),
            },
            AgentEvent::RawLine { text: s("raw") },
            AgentEvent::Finished { outcome: outcome() },
            AgentEvent::Finished {
                outcome: TurnOutcome::Interrupted {
                    message: s("interrupted"),
                },
            },
        ];
        let mut kinds: Vec<OrchEventKind> = agent_events
            .into_iter()
            .map(|event| OrchEventKind::Agent {
                agent: s("agent"),
                turn: 1,
                event,
            })
            .collect();
        kinds.extend([
            OrchEventKind::RunStarted {
                session: s("session"),
                prompt: s("prompt"),
                backend: s("backend"),
                project_root: PathBuf::from(format!("/home/{KEY}/{ENV_VALUE}")),
                groups: vec![s("group")],
            },
            OrchEventKind::GroupStarted { group: s("group") },
            OrchEventKind::WaveScheduled {
                wave: 1,
                kind: WaveKind::Dynamic,
                agents: vec![s("agent")],
            },
            OrchEventKind::AgentStarted {
                agent: s("agent"),
                role: s("role"),
                kind: AgentKind::Dynamic,
                wave: 1,
                depends_on: vec![s("dep")],
            },
            OrchEventKind::TurnStarted {
                agent: s("agent"),
                turn: 1,
                kind: TurnKind::Plan,
                backend: s("backend"),
                model: Some(s("model")),
                prompt: PromptStats::of(&s("prompt")),
            },
            OrchEventKind::TurnRetrying {
                agent: s("agent"),
                turn: 1,
                class: FailureClass::Terminal,
                decision: RetryDecision::Fallback { to: s("backend") },
                message: s("message"),
            },
            OrchEventKind::TurnFinished(Box::new(TurnRecord {
                agent: s("agent"),
                role: s("role"),
                agent_kind: AgentKind::Core,
                wave: 0,
                turn: 1,
                kind: TurnKind::FollowUp,
                prompt: s("prompt"),
                response: s("response"),
                usage: Usage::default(),
                started_at_ms: 1,
                finished_at_ms: 2,
                backend: s("backend"),
                model: Some(s("model")),
                thread_id: Some(s("thread")),
                outcome: outcome(),
                tags: vec![s("tag")],
            })),
            OrchEventKind::AgentFinished {
                agent: s("agent"),
                status: AgentStatus::Failed {
                    reason: s("reason"),
                },
                usage: Usage::default(),
            },
            OrchEventKind::AgentFinished {
                agent: s("agent"),
                status: AgentStatus::Blocked { by: s("by") },
                usage: Usage::default(),
            },
            OrchEventKind::BlueprintAccepted {
                source: s("source"),
                wave: 1,
                agents: vec![BlueprintAgentSummary {
                    id: s("id"),
                    role: s("role"),
                    depends_on: vec![s("dep")],
                }],
            },
            OrchEventKind::BlueprintRejected {
                source: s("source"),
                attempt: 1,
                error: s("error"),
            },
            OrchEventKind::Notice {
                level: NoticeLevel::Warning,
                message: s("notice"),
            },
            OrchEventKind::PauseRequested {
                source: s("source"),
            },
            OrchEventKind::RunPaused(Box::new(InterruptSummary {
                session: s("session"),
                number: 1,
                requested_by: s("by"),
                finished: vec![s("finished")],
                failed: vec![s("failed")],
                in_flight: vec![s("in-flight")],
                pending: vec![s("pending")],
                usage: Usage::default(),
                next_steps: vec![s("next")],
            })),
            OrchEventKind::RunResumed,
            OrchEventKind::StopRequested {
                source: s("source"),
            },
            OrchEventKind::RunFinished {
                status: RunStatus::Stopped,
                usage: Usage::default(),
                failed: vec![s("failed")],
            },
        ]);
        kinds
    }

    /// Which variant an event is; no wildcard, so a new variant must be added above.
    fn variant(kind: &OrchEventKind) -> usize {
        match kind {
            OrchEventKind::RunStarted { .. } => 0,
            OrchEventKind::GroupStarted { .. } => 1,
            OrchEventKind::WaveScheduled { .. } => 2,
            OrchEventKind::AgentStarted { .. } => 3,
            OrchEventKind::TurnStarted { .. } => 4,
            OrchEventKind::Agent { .. } => 5,
            OrchEventKind::TurnRetrying { .. } => 6,
            OrchEventKind::TurnFinished(_) => 7,
            OrchEventKind::AgentFinished { .. } => 8,
            OrchEventKind::BlueprintAccepted { .. } => 9,
            OrchEventKind::BlueprintRejected { .. } => 10,
            OrchEventKind::Notice { .. } => 11,
            OrchEventKind::PauseRequested { .. } => 12,
            OrchEventKind::RunPaused(_) => 13,
            OrchEventKind::RunResumed => 14,
            OrchEventKind::StopRequested { .. } => 15,
            OrchEventKind::RunFinished { .. } => 16,
        }
    }

    #[test]
    fn every_string_of_every_event_kind_is_redacted() {
        let r = Redactor::from_env([("PLANTED_SERVICE_TOKEN", ENV_VALUE)]);
        let mut kinds = every_kind();
        let mut seen: Vec<usize> = kinds.iter().map(variant).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..=16).collect::<Vec<_>>(), "one of every kind");
        for kind in &mut kinds {
            if *kind == OrchEventKind::RunResumed {
                continue; // the one kind without text
            }
            let before = format!("{kind:?}");
            assert!(before.contains(KEY) && before.contains(ENV_VALUE));
            r.redact_event(kind);
            // Debug shows every field, and the wire form is what the store keeps.
            let event = crate::events::event::OrchEvent::now(kind.clone());
            let wire = serde_json::to_string(&crate::events::wire::encode(&event)).unwrap();
            for text in [format!("{kind:?}"), wire] {
                assert!(!text.contains(KEY), "key left in {text}");
                assert!(!text.contains(ENV_VALUE), "env value left in {text}");
                assert!(text.contains("[redacted:PLANTED_SERVICE_TOKEN]"), "{text}");
            }
        }
    }
}
