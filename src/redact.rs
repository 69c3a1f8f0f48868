//! Secret redaction, applied to every event before any sink (log, timeline, audit
//! store) sees it.
//!
//! Two sources of secrets: the values of secret-looking environment variables
//! (`*_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`...) captured when the config is
//! resolved, and secrets recognisable in the text itself (see `rules`): token shapes
//! (`sk-…`, `ghp_…`, `xoxb-…`, `AIza…`, `npm_…`, `AKIA…` and the AWS secret key near
//! it), PEM private keys, secret-named `key=value` pairs (`password=`, `"api_key":`,
//! `Authorization: Bearer …`) and URL passwords (`postgres://user:pass@host`).
//! Agents still receive the original prompt; only what we write is redacted.

use std::path::PathBuf;

use aho_corasick::AhoCorasick;

use crate::agent::event::{AgentEvent, TurnOutcome};
use crate::events::event::{
    AgentChanges, AgentStatus, BlueprintAgentSummary, InterruptSummary, OrchEventKind,
    RetryDecision, TurnRecord,
};

mod rules;

pub use rules::is_secret_key_name;

use rules::{
    COMMON_NAME_WORDS, NAME_ENDS, NAME_WORDS, PEM_BEGIN, PEM_END, Span, TOKEN_SHAPES,
    URL_SCHEME_END,
};

/// Shortest env value treated as a secret (shorter ones are flags like `1` or `true`).
const MIN_SECRET_LEN: usize = 8;

/// What an automaton pattern starts.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// The value of a secret environment variable (index into `literals`).
    Literal(usize),
    /// A token prefix (index into `TOKEN_SHAPES`).
    Shape(usize),
    Pem,
    PemEnd,
    Url,
    /// A word of a secret's name (its length: a pattern may go on with a separator),
    /// for `name=value` pairs.
    Name(usize),
}

#[derive(Clone, Debug)]
pub struct Redactor {
    /// (secret value, env var name), longest first so overlapping values redact whole.
    literals: Vec<(String, String)>,
    /// Finds every literal and every trigger of a pattern rule in one pass, ASCII case
    /// folded. Almost no text has one, so this check is all the work most strings cost
    /// (every event goes through here).
    matcher: Matcher,
}

#[derive(Clone, Debug)]
struct Matcher {
    automaton: Option<AhoCorasick>,
    triggers: Vec<Trigger>,
    /// The literals are not in the automaton (it could not be built with them): each
    /// is searched on its own.
    literals_apart: bool,
}

impl Matcher {
    fn new(literals: &[(String, String)]) -> Matcher {
        let named: Vec<(String, Trigger)> = NAME_WORDS
            .iter()
            .map(|word| (word.to_string(), Trigger::Name(word.len())))
            .chain(COMMON_NAME_WORDS.iter().flat_map(|word| {
                NAME_ENDS
                    .iter()
                    .map(move |end| (format!("{word}{end}"), Trigger::Name(word.len())))
            }))
            .collect();
        let rules = TOKEN_SHAPES
            .iter()
            .enumerate()
            .map(|(i, (prefix, _, _))| (*prefix, Trigger::Shape(i)))
            .chain([
                (PEM_BEGIN, Trigger::Pem),
                (PEM_END, Trigger::PemEnd),
                (URL_SCHEME_END, Trigger::Url),
            ])
            .chain(named.iter().map(|(p, t)| (p.as_str(), *t)));
        let with_literals: Vec<(&str, Trigger)> = literals
            .iter()
            .enumerate()
            .map(|(i, (secret, _))| (secret.as_str(), Trigger::Literal(i)))
            .chain(rules.clone())
            .collect();
        let build = |patterns: &[(&str, Trigger)]| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(patterns.iter().map(|(p, _)| p))
                .ok()
                .map(|automaton| (automaton, patterns.iter().map(|(_, t)| *t).collect()))
        };
        if let Some((automaton, triggers)) = build(&with_literals) {
            return Matcher {
                automaton: Some(automaton),
                triggers,
                literals_apart: false,
            };
        }
        // Only past the automaton's size limits (huge secret values); the rules alone
        // are a few dozen short words.
        let rules: Vec<(&str, Trigger)> = rules.collect();
        let (automaton, triggers) = build(&rules).unzip();
        Matcher {
            automaton,
            triggers: triggers.unwrap_or_default(),
            literals_apart: true,
        }
    }
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
        let matcher = Matcher::new(&literals);
        Redactor { literals, matcher }
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
        let matcher = &self.matcher;
        let hit = match &matcher.automaton {
            Some(automaton) => automaton.is_match(text.as_str()),
            None => true,
        };
        if !hit && !matcher.literals_apart {
            return;
        }
        let mut spans: Vec<(Span, Option<usize>)> = Vec::new();
        let mut found = Vec::new();
        if hit && let Some(automaton) = &matcher.automaton {
            for m in automaton.find_overlapping_iter(text.as_str()) {
                match matcher.triggers[m.pattern().as_usize()] {
                    Trigger::Literal(i) => {
                        if text[m.range()] == *self.literals[i].0 {
                            spans.push((m.range(), Some(i)));
                        }
                    }
                    Trigger::Shape(i) => rules::token_shape(text, m.start(), i, &mut found),
                    Trigger::Pem => rules::pem_private_key(text, m.start(), &mut found),
                    Trigger::PemEnd => rules::pem_private_key_end(text, m.start(), &mut found),
                    Trigger::Url => rules::url_password(text, m.start(), &mut found),
                    Trigger::Name(len) => {
                        rules::named_value(text, m.start()..m.start() + len, &mut found)
                    }
                }
            }
        }
        if matcher.literals_apart {
            for (i, (secret, _)) in self.literals.iter().enumerate() {
                for (at, _) in text.match_indices(secret.as_str()) {
                    spans.push((at..at + secret.len(), Some(i)));
                }
            }
        }
        if spans.is_empty() && found.is_empty() {
            return;
        }
        spans.extend(found.into_iter().map(|span| (span, None)));
        *text = self.replace_spans(text, spans);
    }

    /// Replaces each span with `[redacted]` (or `[redacted:NAME]` for an environment
    /// value); overlapping spans become one, marked as the first.
    fn replace_spans(&self, text: &str, mut spans: Vec<(Span, Option<usize>)>) -> String {
        // Longest first among equal starts, so the merged span is the widest.
        spans.sort_by(|a, b| a.0.start.cmp(&b.0.start).then(b.0.end.cmp(&a.0.end)));
        let mut out = String::with_capacity(text.len());
        let mut done = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((span, literal)) = spans.next() {
            let mut end = span.end;
            while let Some((next, _)) = spans.peek()
                && next.start < end
            {
                end = end.max(next.end);
                spans.next();
            }
            if span.start < done {
                continue;
            }
            out.push_str(&text[done..span.start]);
            match literal {
                Some(i) => {
                    out.push_str("[redacted:");
                    out.push_str(&self.literals[i].1);
                    out.push(']');
                }
                None => out.push_str("[redacted]"),
            }
            done = end;
        }
        out.push_str(&text[done..]);
        out
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
            OrchEventKind::WorktreeReady {
                agent,
                path,
                branch,
                base,
            } => {
                r(agent);
                self.redact_path(path);
                branch.iter_mut().for_each(r);
                r(base);
            }
            OrchEventKind::ChangesCommitted(changes) => {
                let AgentChanges {
                    agent,
                    branch,
                    base,
                    head,
                    commits,
                    files,
                    diffstat,
                    patch,
                } = changes.as_mut();
                r(agent);
                r(branch);
                r(base);
                r(head);
                commits.iter_mut().for_each(|c| r(&mut c.subject));
                files.iter_mut().for_each(|f| r(&mut f.path));
                r(diffstat);
                r(patch);
            }
            OrchEventKind::AgentMerged {
                agent,
                run_branch,
                tip,
                commits: _,
                fast_forward: _,
            } => {
                r(agent);
                r(run_branch);
                r(tip);
            }
            OrchEventKind::GateFinished {
                agent,
                command,
                attempt: _,
                passed: _,
                exit_code: _,
                timed_out: _,
                duration_ms: _,
                output_tail,
            } => {
                r(agent);
                r(command);
                r(output_tail);
            }
            OrchEventKind::FeatureUpdated {
                feature,
                agent,
                track,
                status: _,
                attempts: _,
                reason,
            } => {
                r(feature);
                r(agent);
                r(track);
                if let Some(reason) = reason {
                    r(reason);
                }
            }
            OrchEventKind::ReviewFinished {
                agent,
                reviewer,
                backend,
                model,
                round: _,
                passed: _,
                points,
            } => {
                r(agent);
                r(reviewer);
                r(backend);
                if let Some(model) = model {
                    r(model);
                }
                for point in points {
                    r(&mut point.point);
                    r(&mut point.note);
                }
            }
            OrchEventKind::MergeConflict {
                agent,
                paths,
                other_side,
                resolving: _,
            } => {
                r(agent);
                all(paths);
                r(other_side);
            }
            OrchEventKind::RunStarted {
                session,
                prompt,
                backend,
                project_root,
                groups,
                config,
                resumed: _,
                parent,
            } => {
                r(session);
                r(prompt);
                r(backend);
                self.redact_path(project_root);
                all(groups);
                if let Some(config) = config {
                    self.redact_json(config);
                }
                parent.iter_mut().for_each(r);
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
                attempt: _,
                kind: _,
                backend,
                model,
                // Counts only: the stats of the prompt as sent, no text.
                prompt: _,
                purpose,
            } => {
                r(agent);
                if let Some(purpose) = purpose {
                    r(purpose);
                }
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
                role,
                kind: _,
                wave: _,
                status,
                usage: _,
            } => {
                r(agent);
                r(role);
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
            OrchEventKind::TaskRevised { diff, text, .. } => {
                r(diff);
                r(text);
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
                    started,
                    usage: _,
                    next_steps,
                } = summary.as_mut();
                r(session);
                r(requested_by);
                all(finished);
                all(failed);
                all(in_flight);
                all(pending);
                all(started);
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
            attempt: _,
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
            cost_usd: _,
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

    /// Redacts every string in a JSON document, object keys included; a string under
    /// a secret-named key (`"api_key"`, `"password"`) is hidden whole.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => self.redact_in_place(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (mut key, mut item) in entries {
                    match &mut item {
                        serde_json::Value::String(text)
                            if is_secret_key_name(&key) && !text.is_empty() =>
                        {
                            *text = "[redacted]".to_owned();
                        }
                        _ => self.redact_json(&mut item),
                    }
                    self.redact_in_place(&mut key);
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
            AgentEvent::PermissionsSet { policy, flags } => {
                r(policy);
                r(flags);
            }
            AgentEvent::PermissionDenied { tool, detail } => {
                r(tool);
                r(detail);
            }
            AgentEvent::Finished { outcome } => self.redact_outcome(outcome),
            AgentEvent::Usage(_) => {}
        }
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

    #[test]
    fn pem_private_key_bodies_are_hidden_and_certificates_are_not() {
        let r = Redactor::default();
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAq7BFUPLANTED\n+fKf0Zx2QnKp==\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            r.redact(&format!("key file:\n{key}\ndone")),
            "key file:\n-----BEGIN RSA PRIVATE KEY-----[redacted]-----END RSA PRIVATE KEY-----\ndone"
        );
        // JSON-escaped, OpenSSH, and cut before its end.
        assert_eq!(
            r.redact("\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk\\n-----END OPENSSH PRIVATE KEY-----\""),
            "\"-----BEGIN OPENSSH PRIVATE KEY-----[redacted]-----END OPENSSH PRIVATE KEY-----\""
        );
        assert_eq!(
            r.redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "-----BEGIN PRIVATE KEY-----[redacted]"
        );
        // The tail of a stderr that cut the key's first line off.
        assert_eq!(
            r.redact("PRIVATE KEY-----\nMIIEowIBAAKCAQEAq7\n+fKf0Zx2Qn==\n-----END RSA PRIVATE KEY-----\nexit 1"),
            "PRIVATE KEY-----[redacted]-----END RSA PRIVATE KEY-----\nexit 1"
        );
        let cert = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----";
        assert_eq!(r.redact(cert), cert);
    }

    #[test]
    fn aws_secret_keys_are_hidden_by_name_and_next_to_an_access_key_id() {
        let r = Redactor::default();
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY";
        assert_eq!(secret.len(), 40);
        assert_eq!(
            r.redact(&format!("aws_secret_access_key = {secret}")),
            "aws_secret_access_key = [redacted]"
        );
        assert_eq!(
            r.redact(&format!("export AWS_SECRET_ACCESS_KEY={secret}")),
            "export AWS_SECRET_ACCESS_KEY=[redacted]"
        );
        assert_eq!(
            r.redact(&format!("creds AKIAIOSFODNN7PLANTED,{secret}")),
            "creds AKIA[redacted],[redacted]"
        );
        // A 40-character git hash next to an id is not a secret key; alone, neither is
        // a mixed-case 40-character word.
        let sha = "3f2a9c0e1b7d4a6f8e2c5b1a9d0f7e3c2b4a6d8e";
        assert_eq!(
            r.redact(&format!("AKIAIOSFODNN7PLANTED at {sha}")),
            format!("AKIA[redacted] at {sha}")
        );
        assert_eq!(
            r.redact(&format!("blob {secret}")),
            format!("blob {secret}")
        );
    }

    #[test]
    fn secret_named_pairs_are_hidden_in_every_syntax() {
        let r = Redactor::default();
        for (text, expected) in [
            ("password=hunter2 next", "password=[redacted] next"),
            (
                "DB_PASSWORD: 'pa ss' next",
                "DB_PASSWORD: '[redacted]' next",
            ),
            (
                "{\"api_key\": \"abc\\\"def\", \"n\": 1}",
                "{\"api_key\": \"[redacted]\", \"n\": 1}",
            ),
            (
                "{\\\"client_secret\\\":\\\"s3cr3t\\\"}",
                "{\\\"client_secret\\\":\\\"[redacted]\\\"}",
            ),
            ("?apikey=q1w2e3&page=2", "?apikey=[redacted]&page=2"),
            ("X-Api-Key: k-123", "X-Api-Key: [redacted]"),
            ("accessToken := tok", "accessToken := [redacted]"),
            ("passwd=x", "passwd=[redacted]"),
            ("key=v", "key=[redacted]"),
            (
                "Authorization: Bearer abc",
                "Authorization: Bearer [redacted]",
            ),
            (
                "-H 'authorization: token t0k'",
                "-H 'authorization: token [redacted]'",
            ),
            ("Authorization: c2VjcmV0", "Authorization: [redacted]"),
        ] {
            assert_eq!(r.redact(text), expected, "{text}");
        }
        // Counts, comparisons, paths, nested values and placeholders stay.
        for text in [
            "max_tokens=4096 input_tokens: 12",
            "if key == other { token::Kind }",
            "the key thing: a token of thanks",
            "\"api_key\": null, \"token\": {\"a\": 1}",
            "/root/secret-home flag",
            "HTTP 401: invalid_api_key: bad key",
            "missing_token: set one",
        ] {
            assert_eq!(r.redact(text), text);
        }
    }

    #[test]
    fn url_passwords_are_hidden_and_the_rest_of_the_url_stays() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("DATABASE_URL postgres://app:s3cr3t@db.internal:5432/prod"),
            "DATABASE_URL postgres://app:[redacted]@db.internal:5432/prod"
        );
        assert_eq!(
            r.redact("git clone https://oauth2:p@ss@gitlab.example.com/x.git"),
            "git clone https://oauth2:[redacted]@gitlab.example.com/x.git"
        );
        for text in [
            "https://example.com/a@b",
            "https://user@example.com/",
            "http://[::1]:8080/",
        ] {
            assert_eq!(r.redact(text), text);
        }
    }

    #[test]
    fn vendor_token_shapes_are_hidden() {
        let r = Redactor::default();
        for (text, expected) in [
            ("xoxb-1234567890-abcdef", "xoxb-[redacted]"),
            ("xoxs-1234567890-abcdef", "xoxs-[redacted]"),
            ("AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "AIza[redacted]"),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_[redacted]"),
            ("rk_live_4eC39HqLyjWDarjtT1zdp7dc", "rk_live_[redacted]"),
            ("npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "npm_[redacted]"),
        ] {
            assert_eq!(r.redact(text), expected, "{text}");
        }
        // Too short for the shape.
        assert_eq!(r.redact("AIzaShort npm_short"), "AIzaShort npm_short");
    }

    #[test]
    fn config_json_hides_values_under_secret_names() {
        let r = Redactor::default();
        let mut value = serde_json::json!({
            "api_key": "plain",
            "nested": {"password": "p", "max_tokens": "12"},
            "url": "https://u:pw@h/"
        });
        r.redact_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "api_key": "[redacted]",
                "nested": {"password": "[redacted]", "max_tokens": "12"},
                "url": "https://u:[redacted]@h/"
            })
        );
    }

    /// The redactor sees every event: text without a trigger must cost one automaton
    /// scan, and text full of triggers must stay linear.
    #[test]
    fn redaction_stays_fast_on_plain_and_on_trigger_heavy_text() {
        let r = Redactor::from_env([("SERVICE_TOKEN", "plantedenvvalue-0042")]);
        let plain = "cargo test -p calendar: running 5 tests, all passed in 0.42s\n".repeat(64);
        let heavy = "the key token: a secret password=; monkey key:{ https://x.y/ ".repeat(64);
        for text in [&plain, &heavy] {
            let started = std::time::Instant::now();
            for _ in 0..200 {
                let mut owned = text.clone();
                r.redact_in_place(&mut owned);
                std::hint::black_box(owned);
            }
            let per_kib = started.elapsed() / 200 / (text.len() as u32 / 1024).max(1);
            // Generous for debug builds on a loaded machine; release is ~100x faster.
            assert!(
                per_kib < std::time::Duration::from_millis(2),
                "{per_kib:?} per KiB"
            );
        }
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
            AgentEvent::PermissionsSet {
                policy: s("policy"),
                flags: s("flags"),
            },
            AgentEvent::PermissionDenied {
                tool: s("tool"),
                detail: s("detail"),
            },
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
                config: Some(Box::new(serde_json::json!({"prompt": s("prompt")}))),
                resumed: true,
                parent: Some(s("parent")),
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
                attempt: 1,
                kind: TurnKind::Plan,
                backend: s("backend"),
                model: Some(s("model")),
                prompt: PromptStats::of(&s("prompt")),
                purpose: Some(s("purpose")),
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
                attempt: 1,
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
                cost_usd: None,
            })),
            OrchEventKind::AgentFinished {
                agent: s("agent"),
                role: s("role"),
                kind: AgentKind::Dynamic,
                wave: 1,
                status: AgentStatus::Failed {
                    reason: s("reason"),
                },
                usage: Usage::default(),
            },
            OrchEventKind::AgentFinished {
                agent: s("agent"),
                role: s("role"),
                kind: AgentKind::Dynamic,
                wave: 1,
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
                started: vec![],
                usage: Usage::default(),
                next_steps: vec![s("next")],
            })),
            OrchEventKind::RunResumed,
            OrchEventKind::StopRequested {
                source: s("source"),
            },
            OrchEventKind::TaskRevised {
                revision: 1,
                sha256: "00".into(),
                diff: s("diff"),
                text: s("text"),
            },
            OrchEventKind::RunFinished {
                status: RunStatus::Stopped,
                usage: Usage::default(),
                failed: vec![s("failed")],
            },
            OrchEventKind::WorktreeReady {
                agent: s("agent"),
                path: std::path::PathBuf::from(s("path")),
                branch: Some(s("branch")),
                base: s("base"),
            },
            OrchEventKind::ChangesCommitted(Box::new(AgentChanges {
                agent: s("agent"),
                branch: s("branch"),
                base: s("base"),
                head: s("head"),
                commits: vec![crate::workspace::CommitSummary {
                    oid: "0123456789".into(),
                    subject: s("subject"),
                }],
                files: vec![crate::workspace::ChangedFile {
                    status: "M".into(),
                    path: s("file"),
                }],
                diffstat: s("stat"),
                patch: s("patch"),
            })),
            OrchEventKind::AgentMerged {
                agent: s("agent"),
                run_branch: s("branch"),
                tip: s("tip"),
                commits: 1,
                fast_forward: true,
            },
            OrchEventKind::MergeConflict {
                agent: s("agent"),
                paths: vec![s("path")],
                other_side: s("other"),
                resolving: true,
            },
            OrchEventKind::GateFinished {
                agent: s("agent"),
                command: s("command"),
                attempt: 1,
                passed: false,
                exit_code: Some(1),
                timed_out: false,
                duration_ms: 5,
                output_tail: s("output"),
            },
            OrchEventKind::FeatureUpdated {
                feature: s("feature"),
                agent: s("agent"),
                track: s("track"),
                status: crate::config::features::FeatureStatus::Failed,
                attempts: 2,
                reason: Some(s("reason")),
            },
            OrchEventKind::ReviewFinished {
                agent: s("agent"),
                reviewer: s("reviewer"),
                backend: s("backend"),
                model: Some(s("model")),
                round: 1,
                passed: false,
                points: vec![crate::events::event::ReviewPoint {
                    point: s("point"),
                    pass: false,
                    note: s("note"),
                }],
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
            OrchEventKind::WorktreeReady { .. } => 17,
            OrchEventKind::ChangesCommitted(_) => 18,
            OrchEventKind::AgentMerged { .. } => 19,
            OrchEventKind::MergeConflict { .. } => 20,
            OrchEventKind::GateFinished { .. } => 21,
            OrchEventKind::ReviewFinished { .. } => 22,
            OrchEventKind::TaskRevised { .. } => 23,
            OrchEventKind::FeatureUpdated { .. } => 24,
        }
    }

    #[test]
    fn every_string_of_every_event_kind_is_redacted() {
        let r = Redactor::from_env([("PLANTED_SERVICE_TOKEN", ENV_VALUE)]);
        let mut kinds = every_kind();
        let mut seen: Vec<usize> = kinds.iter().map(variant).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..=24).collect::<Vec<_>>(), "one of every kind");
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
