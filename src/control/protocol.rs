//! The control socket's wire format: one JSON line in, one JSON line out.
//!
//! Text a request controls (its `source`) reaches the timeline, the panes and status
//! answers, so the server cleans it with [`clean_source`] before anything else sees it.

use serde::{Deserialize, Serialize};

use crate::board::Board;
use crate::orchestrator::{RunMode, StatusReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlCommand {
    Pause,
    Resume,
    Status,
    Stop,
    /// Keeps the connection open and sends the status board (a [`Board`] per line)
    /// now and again each time it changes, until the run ends. Answered by the socket
    /// itself, not the run's dispatcher.
    Watch,
    /// Sets the run's token budget (`launch ctl resume --max-tokens N` sends it first).
    MaxTokens(u64),
    /// Sets the run's cost budget, in micro-dollars (`launch ctl resume --max-cost USD`).
    MaxCost(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub command: ControlCommand,
    /// Who asked (`ctl`, `ctrl-s`, `SIGINT`...), for the timeline.
    #[serde(default)]
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    pub mode: RunMode,
    pub message: String,
    #[serde(default)]
    pub status: Option<StatusReport>,
    /// With `status`: the status board's model (the same as `launch status --json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<Box<Board>>,
}

/// The answer to a connection over the server's limit, sent before it is closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlBusy {
    /// Always true: tells this line from a [`ControlResponse`].
    pub busy: bool,
    pub mode: RunMode,
    pub message: String,
}

/// Longest `source` kept.
pub const MAX_SOURCE: usize = 32;

/// A request's `source` as it may appear in a log line: letters, digits and `-_.:@+/`,
/// anything else as `?`, at most [`MAX_SOURCE`] chars; `unknown` when empty. No space,
/// newline or escape sequence can get through, so it cannot forge a field, a line or
/// a terminal command.
pub fn clean_source(source: &str) -> String {
    let clean: String = source
        .chars()
        .take(MAX_SOURCE)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:@+/".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

/// Text for a terminal: control characters (newlines and escapes included) as `?`, at
/// most `max` chars.
pub fn clean_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cannot_carry_lines_fields_or_escapes() {
        assert_eq!(clean_source("ctl"), "ctl");
        assert_eq!(clean_source("SIGINT"), "SIGINT");
        assert_eq!(clean_source("ctrl-s"), "ctrl-s");
        assert_eq!(clean_source(""), "unknown");
        let forged = clean_source("x\n12:00:00.000 run_finished status=succeeded");
        assert!(!forged.contains('\n') && !forged.contains(' '), "{forged}");
        let escape = clean_source("\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}2J");
        assert!(escape.chars().all(|c| c.is_ascii_graphic()), "{escape:?}");
        assert!(!escape.contains('\u{1b}'));
        assert_eq!(clean_source(&"a".repeat(1000)).len(), MAX_SOURCE);
        assert_eq!(clean_source("ünï"), "?n?");
    }

    #[test]
    fn clean_text_drops_controls() {
        assert_eq!(clean_text("a\nb\u{1b}[2Jc", 100), "a?b?[2Jc");
        assert_eq!(clean_text("abcdef", 3), "abc");
    }

    #[test]
    fn a_busy_line_is_not_a_response() {
        let busy = ControlBusy {
            busy: true,
            mode: RunMode::Running,
            message: "64 control connections are open".into(),
        };
        let line = serde_json::to_string(&busy).unwrap();
        assert!(serde_json::from_str::<ControlResponse>(&line).is_err());
        assert_eq!(serde_json::from_str::<ControlBusy>(&line).unwrap(), busy);
    }
}
