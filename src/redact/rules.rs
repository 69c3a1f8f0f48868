//! The secret shapes the redactor recognises in text, as byte spans to hide.
//!
//! Owns the patterns (token prefixes, PEM private keys, AWS key pairs, secret-named
//! `key=value` pairs, URL passwords) and how one trigger found by the redactor's
//! automaton grows into the span of the secret. Does not build the automaton, replace
//! text or know about events (`Redactor` does).

use std::ops::Range;

/// Token shapes: prefix, minimum length of the part after it, and its alphabet.
pub(super) const TOKEN_SHAPES: &[(&str, usize, Alphabet)] = &[
    ("sk-", 16, Alphabet::Token),
    ("sk_live_", 16, Alphabet::Token),
    ("sk_test_", 16, Alphabet::Token),
    ("rk_live_", 16, Alphabet::Token),
    ("rk_test_", 16, Alphabet::Token),
    ("ghp_", 20, Alphabet::Token),
    ("gho_", 20, Alphabet::Token),
    ("ghs_", 20, Alphabet::Token),
    ("ghu_", 20, Alphabet::Token),
    ("github_pat_", 20, Alphabet::Token),
    ("glpat-", 20, Alphabet::Token),
    ("xoxa-", 10, Alphabet::Token),
    ("xoxb-", 10, Alphabet::Token),
    ("xoxp-", 10, Alphabet::Token),
    ("xoxr-", 10, Alphabet::Token),
    ("xoxs-", 10, Alphabet::Token),
    ("hf_", 30, Alphabet::Token),
    ("npm_", 36, Alphabet::Alnum),
    ("AIza", 35, Alphabet::Token),
    ("AKIA", 16, Alphabet::Upper),
    ("ASIA", 16, Alphabet::Upper),
    ("Bearer ", 12, Alphabet::Bearer),
    ("bearer ", 12, Alphabet::Bearer),
];

/// Words in the name of a secret in `name=value`, `name: value` or `"name": "value"`:
/// `password`, `db_password`, `client_secret`, `Authorization`. Rare in prose, so any
/// occurrence is checked.
pub(super) const NAME_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "authorization",
    "credential",
];

/// Words that end the name of a secret (`api_key`, `apiKey`, `X-Api-Key`,
/// `access_token`) but are common in prose and code ("the key idea", "tokens"): they
/// trigger a check only when a separator follows (`NAME_ENDS`).
pub(super) const COMMON_NAME_WORDS: &[&str] = &["key", "token"];

/// What may follow a name before its value: `=`, `:`, a closing (or escaped) quote,
/// spaces before `=` or `:`.
pub(super) const NAME_ENDS: &[&str] = &["=", ":", "\"", "'", "\\", " =", " :", "\t"];

/// Starts a PEM block; only private-key labels are hidden.
pub(super) const PEM_BEGIN: &str = "-----BEGIN ";
/// Ends a PEM block: a private key whose start was cut off (a tail of stderr) is found
/// from its end.
pub(super) const PEM_END: &str = "-----END ";
/// Separates a URL's scheme from its authority (where `user:password@` lives).
pub(super) const URL_SCHEME_END: &str = "://";

/// How far around an AWS access key id to look for its 40-character secret key.
const AWS_PAIR_WINDOW: usize = 512;

#[derive(Clone, Copy, Debug)]
pub(super) enum Alphabet {
    Token,
    Alnum,
    Upper,
    Bearer,
}

impl Alphabet {
    fn contains(self, c: u8) -> bool {
        match self {
            Alphabet::Token => c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
            Alphabet::Alnum => c.is_ascii_alphanumeric(),
            Alphabet::Upper => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Alphabet::Bearer => {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'_' | b'-' | b'.' | b'=' | b'+' | b'/' | b'~')
            }
        }
    }
}

/// Bytes of the text to replace with `[redacted]`; what precedes them (a token
/// prefix, `Bearer `, a PEM header, `user:`) stays readable.
pub(super) type Span = Range<usize>;

/// A token shape whose prefix starts at `at`: the span of its tail, if it is long
/// enough and the prefix starts a word (`task-…` holds `sk-` but is no key). An AWS
/// access key id also hides the secret key written near it.
pub(super) fn token_shape(text: &str, at: usize, shape: usize, spans: &mut Vec<Span>) {
    let (prefix, min_len, alphabet) = TOKEN_SHAPES[shape];
    let bytes = text.as_bytes();
    if !text[at..].starts_with(prefix) {
        return; // the automaton matches case-insensitively; shapes are exact
    }
    let before_ok = at == 0 || {
        let c = bytes[at - 1];
        !c.is_ascii_alphanumeric() && c != b'_' && c != b'-'
    };
    let start = at + prefix.len();
    let end = start + run_len(&bytes[start..], |c| alphabet.contains(c));
    if !before_ok || end - start < min_len {
        return;
    }
    spans.push(start..end);
    if matches!(prefix, "AKIA" | "ASIA") {
        aws_secret_near(text, at..end, spans);
    }
}

/// 40-character AWS secret access keys (base64 alphabet, mixed case, so not a git
/// hash) within `AWS_PAIR_WINDOW` bytes of an access key id.
fn aws_secret_near(text: &str, id: Range<usize>, spans: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let from = id.start.saturating_sub(AWS_PAIR_WINDOW);
    let to = (id.end + AWS_PAIR_WINDOW).min(bytes.len());
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let mut i = from;
    while i < to {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let len = run_len(&bytes[i..], is_b64);
        let starts_word = i == 0 || !is_b64(bytes[i - 1]);
        let run = &bytes[i..i + len];
        if starts_word
            && len == 40
            && run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
        {
            spans.push(i..i + len);
        }
        i += len;
    }
}

/// The body of a PEM private key whose `-----BEGIN ` is at `at`, up to its
/// `-----END` (or the end of the text when it was cut).
pub(super) fn pem_private_key(text: &str, at: usize, spans: &mut Vec<Span>) {
    let label_start = at + PEM_BEGIN.len();
    let rest = &text[label_start..];
    let Some(label_len) = rest.find("-----") else {
        return;
    };
    let label = &rest[..label_len];
    if label.contains('\n') || !label.to_ascii_uppercase().contains("PRIVATE KEY") {
        return;
    }
    let body_start = label_start + label_len + "-----".len();
    let body_end = text[body_start..]
        .find("-----END")
        .map_or(text.len(), |pos| body_start + pos);
    if body_end > body_start {
        spans.push(body_start..body_end);
    }
}

/// The body of a private key whose `-----END …PRIVATE KEY-----` is at `at` but whose
/// `-----BEGIN` is not in the text (it was cut off): the base64 lines before the end.
pub(super) fn pem_private_key_end(text: &str, at: usize, spans: &mut Vec<Span>) {
    let label = &text[at + PEM_END.len()..];
    let Some(label_len) = label.find("-----") else {
        return;
    };
    if !label[..label_len]
        .to_ascii_uppercase()
        .contains("PRIVATE KEY")
    {
        return;
    }
    let begun = text[..at].rfind(PEM_BEGIN).is_some_and(|begin| {
        let header = &text[begin + PEM_BEGIN.len()..at];
        header
            .find("-----")
            .is_some_and(|end| header[..end].to_ascii_uppercase().contains("PRIVATE KEY"))
    });
    if begun {
        return; // `pem_private_key` hides it from its start
    }
    let bytes = text.as_bytes();
    let mut start = at;
    while start > 0 && {
        let c = bytes[start - 1];
        c.is_ascii_alphanumeric()
            || matches!(c, b'+' | b'/' | b'=' | b'\\')
            || c.is_ascii_whitespace()
    } {
        start -= 1;
    }
    if at > start {
        spans.push(start..at);
    }
}

/// The password of `scheme://user:password@host` whose `://` is at `at`.
pub(super) fn url_password(text: &str, at: usize, spans: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let start = at + URL_SCHEME_END.len();
    let authority = run_len(&bytes[start..], |c| {
        !c.is_ascii_whitespace()
            && !matches!(
                c,
                b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\'
            )
    });
    let authority = &text[start..start + authority];
    let Some(at_sign) = authority.rfind('@') else {
        return;
    };
    let Some(colon) = authority[..at_sign].find(':') else {
        return;
    };
    let password = start + colon + 1..start + at_sign;
    if !password.is_empty() && !text[password.clone()].starts_with("[redacted") {
        spans.push(password);
    }
}

/// The value of a `name=value` / `name: value` / `"name": "value"` pair whose name
/// holds the word matched at `word` and says it is a secret.
pub(super) fn named_value(text: &str, word: Range<usize>, spans: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let is_name = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.');
    let mut name_start = word.start;
    while name_start > 0 && is_name(bytes[name_start - 1]) {
        name_start -= 1;
    }
    let name_end = word.end + run_len(&bytes[word.end..], is_name);
    let name = &text[name_start..name_end];
    if !is_secret_key_name(name) {
        return;
    }
    // The closing quote of a JSON or YAML key, plain or escaped inside a JSON string.
    let mut i = name_end;
    if text[i..].starts_with("\\\"") {
        i += 2;
    } else if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    i += run_len(&bytes[i..], |c| c == b' ' || c == b'\t');
    match (bytes.get(i), bytes.get(i + 1)) {
        (Some(b':'), Some(b'=')) => i += 2,
        (Some(b'='), next) | (Some(b':'), next) if !matches!(next, Some(b'=' | b':')) => i += 1,
        _ => return,
    }
    i += run_len(&bytes[i..], |c| c == b' ' || c == b'\t');
    if name.to_ascii_lowercase().ends_with("authorization") {
        // Keep the scheme: `Authorization: Bearer [redacted]`, quoted or not.
        let quoted = usize::from(matches!(bytes.get(i), Some(b'"' | b'\'')));
        let scheme = run_len(&bytes[i + quoted..], |c| c.is_ascii_alphabetic());
        let after = i + quoted + scheme;
        if scheme > 0
            && bytes.get(after) == Some(&b' ')
            && bytes
                .get(after + 1)
                .is_some_and(|c| !c.is_ascii_whitespace())
        {
            let start = after + 1;
            let value = start
                + run_len(&bytes[start..], |c| {
                    !c.is_ascii_whitespace() && !matches!(c, b'"' | b'\'' | b',' | b';' | b'\\')
                });
            if !text[start..value].starts_with("[redacted") {
                spans.push(start..value);
            }
            return;
        }
    }
    let Some(value) = value_at(text, i) else {
        return;
    };
    let shown = &text[value.clone()];
    let harmless = ["null", "none", "true", "false", "undefined"];
    if shown.is_empty()
        || shown.starts_with("[redacted")
        || harmless.iter().any(|h| shown.eq_ignore_ascii_case(h))
    {
        return;
    }
    spans.push(value);
}

/// The value starting at `i`: quoted (to its closing quote, honouring backslash
/// escapes, at most to the end of the line) or bare (to a space or delimiter).
fn value_at(text: &str, i: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    if text[i..].starts_with("\\\"") {
        let start = i + 2;
        let len = text[start..]
            .find("\\\"")
            .unwrap_or_else(|| line_len(&text[start..]));
        return Some(start..start + len);
    }
    match bytes.get(i) {
        Some(&quote @ (b'"' | b'\'')) => {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != quote && bytes[j] != b'\n' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            Some(start..j.min(bytes.len()))
        }
        // A nested object or list, a placeholder: not a value to hide.
        Some(b'{' | b'[' | b'(' | b'<') | None => None,
        Some(_) => {
            let len = run_len(&bytes[i..], |c| {
                !c.is_ascii_whitespace()
                    && !matches!(
                        c,
                        b',' | b';'
                            | b'&'
                            | b'"'
                            | b'\''
                            | b'<'
                            | b'>'
                            | b')'
                            | b']'
                            | b'}'
                            | b'\\'
                    )
            });
            Some(i..i + len)
        }
    }
}

/// Whether a key name says its value is a secret: it ends with one of the secret
/// words (`db_password`, `apiKey`, `X-Auth-Token`) or holds `password`/`secret`. Plural
/// counts (`max_tokens`, `keys`) are not secrets, nor error types that name a secret
/// (`invalid_api_key: bad key`, `missing_token: …`).
pub fn is_secret_key_name(name: &str) -> bool {
    let lower = name
        .trim_matches(|c| matches!(c, '_' | '-' | '.'))
        .to_ascii_lowercase();
    const ERROR_TYPES: &[&str] = &[
        "invalid", "missing", "bad", "wrong", "expired", "revoked", "unknown", "no_", "empty",
    ];
    if ERROR_TYPES.iter().any(|prefix| lower.starts_with(prefix)) {
        return false;
    }
    const ENDS: &[&str] = &[
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "credential",
        "credentials",
    ];
    const HOLDS: &[&str] = &[
        "password", "passwd", "secret", "apikey", "api_key", "api-key",
    ];
    ENDS.iter().any(|end| lower.ends_with(end)) || HOLDS.iter().any(|part| lower.contains(part))
}

fn run_len(bytes: &[u8], keep: impl Fn(u8) -> bool) -> usize {
    bytes.iter().position(|c| !keep(*c)).unwrap_or(bytes.len())
}

fn line_len(text: &str) -> usize {
    memchr::memchr(b'\n', text.as_bytes()).unwrap_or(text.len())
}
