//! The plain data an HTML run report is drawn from, filled by
//! `audit::report::load_report` and rendered by `status::report::render_html`.
//!
//! Owns no I/O: everything here is a value, so the rendering is testable without a store.

/// One run, summarised for the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    pub session: String,
    /// running, paused, succeeded, failed, stopped or crashed (as `orch-audit runs`).
    pub status: String,
    pub backend: String,
    pub prompt: String,
    pub started_at_ms: i64,
    /// When `run_finished` was recorded, if it was.
    pub finished_at_ms: Option<i64>,
    /// The highest event sequence number of the run.
    pub events: i64,
    pub waves: Vec<ReportWave>,
    pub agents: Vec<ReportAgent>,
    pub pauses: Vec<ReportPause>,
    /// Turns, tokens and cost per model tier (empty: no turn was on a tier).
    pub tiers: Vec<crate::audit::show::TierUsage>,
    /// `--features`: each feature's last status (empty: no backlog).
    pub features: Vec<crate::audit::show::FeatureInfo>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportWave {
    pub wave: i64,
    pub kind: String,
    pub agents: Vec<String>,
    pub scheduled_at_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportAgent {
    pub id: String,
    pub role: String,
    pub kind: String,
    pub wave: i64,
    /// succeeded, failed, blocked, stopped, or running when it never finished.
    pub status: String,
    /// Why it failed or who blocked it.
    pub status_detail: String,
    pub depends_on: Vec<String>,
    pub backend: String,
    pub model: String,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// Only when the turn records carry a cost (`cost_usd`).
    pub cost_usd: Option<f64>,
    pub turns: Vec<ReportTurn>,
    /// Waits for a usage limit to reset (`turn_retrying` with a `park` decision).
    pub parks: Vec<ReportSpan>,
    /// Commits and merges of the agent's changes, when the run recorded them.
    pub merges: Vec<ReportMark>,
    /// The response of its last completed turn, cut to a few KiB.
    pub final_answer: Option<Clipped>,
    /// `/runs/<session>/agents/<agent>/changes.patch`, when the store has it.
    pub patch: Option<Clipped>,
    /// Its worktree's branch (`worktree_ready`), `read-only` for a read-only view; `None`
    /// without a worktree.
    pub branch: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportTurn {
    pub turn: u32,
    pub attempt: u32,
    /// plan or follow-up.
    pub kind: String,
    /// completed, failed or interrupted.
    pub outcome: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl ReportTurn {
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }

    pub fn is_success(&self) -> bool {
        self.outcome == "completed"
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportSpan {
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportMark {
    pub at_ms: i64,
    /// The event kind, such as `changes_committed` or `agent_merged`.
    pub kind: String,
    /// A short description (a commit, a branch), agent-written: escape it.
    pub label: String,
}

/// Text that may have been cut: `text` holds the first part, `total_bytes` the whole size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clipped {
    pub text: String,
    pub total_bytes: u64,
}

impl Clipped {
    /// The first `max` bytes of `text` (at a character boundary).
    pub fn of(text: &str, max: usize) -> Clipped {
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Clipped {
            text: text[..end].to_owned(),
            total_bytes: text.len() as u64,
        }
    }

    pub fn is_truncated(&self) -> bool {
        (self.text.len() as u64) < self.total_bytes
    }
}

/// What the squad had done when a pause took effect (a `run_paused` event).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportPause {
    pub number: u32,
    pub paused_at_ms: i64,
    /// The next `run_resumed`, if the run went on.
    pub resumed_at_ms: Option<i64>,
    pub requested_by: String,
    pub finished: Vec<String>,
    pub failed: Vec<String>,
    pub in_flight: Vec<String>,
    pub pending: Vec<String>,
    pub next_steps: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_whole_characters_and_knows_it_cut() {
        let c = Clipped::of("héllo", 2);
        assert_eq!(c.text, "h");
        assert!(c.is_truncated());
        let whole = Clipped::of("abc", 10);
        assert_eq!(whole.text, "abc");
        assert!(!whole.is_truncated());
    }
}
