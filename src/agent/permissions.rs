//! What an agent may do without asking: the permission policy of a turn, and how each
//! agent CLI spells it on its command line.
//!
//! Owns the policy type and its per-CLI flags. Does not own where a policy comes from
//! (the config layer resolves agent > backend > `--permissions` > kind default).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::agent::backend::AgentKind;

/// What an agent may do on its own in its working tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permissions {
    /// Read and search files; no edits, no commands.
    ReadOnly,
    /// Read and edit files in the working tree; no commands.
    Edit,
    /// Edit files and run commands (builds, tests, `python3 -c …`) in the working tree.
    Act,
}

/// The names a user may write, in the order of `Permissions`' variants.
pub const PERMISSION_NAMES: [&str; 3] = ["read-only", "edit", "act"];

impl Permissions {
    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::ReadOnly => "read-only",
            Permissions::Edit => "edit",
            Permissions::Act => "act",
        }
    }

    /// The policy when nothing is configured: planners read, everyone else acts.
    pub fn default_for(kind: AgentKind) -> Permissions {
        match kind {
            AgentKind::Core | AgentKind::AutonomousOrchestrator => Permissions::ReadOnly,
            AgentKind::Dynamic | AgentKind::Continuation | AgentKind::Autonomous => {
                Permissions::Act
            }
        }
    }

    /// Claude Code: `--permission-mode` and the tools allowed without a prompt. In
    /// `-p` mode anything that would prompt is denied (and listed in the result's
    /// `permission_denials`), so `act` must name Bash explicitly.
    pub fn claude_args(self) -> Vec<String> {
        let strs: &[&str] = match self {
            // `dontAsk` denies every tool that is not pre-approved; reads need no approval.
            Permissions::ReadOnly => &["--permission-mode", "dontAsk"],
            Permissions::Edit => &["--permission-mode", "acceptEdits"],
            Permissions::Act => &["--permission-mode", "acceptEdits", "--allowedTools", "Bash"],
        };
        strs.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Codex: the sandbox mode (`--sandbox`, or `-c sandbox_mode=…` on resume). Codex
    /// has no mode that edits but never runs a command: `edit` shares `act`'s
    /// workspace-write sandbox (commands can write only inside the working tree).
    pub fn codex_sandbox(self) -> &'static str {
        match self {
            Permissions::ReadOnly => "read-only",
            Permissions::Edit | Permissions::Act => "workspace-write",
        }
    }

    /// Gemini CLI: `--approval-mode`.
    pub fn gemini_approval_mode(self) -> &'static str {
        match self {
            Permissions::ReadOnly => "plan",
            Permissions::Edit => "auto_edit",
            Permissions::Act => "yolo",
        }
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permissions {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "read-only" | "readonly" => Ok(Permissions::ReadOnly),
            "edit" => Ok(Permissions::Edit),
            "act" => Ok(Permissions::Act),
            _ => Err(format!(
                "unknown permissions `{}`: use one of {}",
                text.escape_debug(),
                PERMISSION_NAMES.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_typos_are_refused() {
        for name in PERMISSION_NAMES {
            let policy: Permissions = name.parse().unwrap();
            assert_eq!(policy.as_str(), name);
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{name}\""));
        }
        assert_eq!("read_only".parse(), Ok(Permissions::ReadOnly));
        let err = "write".parse::<Permissions>().unwrap_err();
        assert!(err.contains("read-only, edit, act"), "{err}");
    }

    #[test]
    fn planners_read_and_specialists_act_by_default() {
        assert_eq!(
            Permissions::default_for(AgentKind::Core),
            Permissions::ReadOnly
        );
        assert_eq!(
            Permissions::default_for(AgentKind::AutonomousOrchestrator),
            Permissions::ReadOnly
        );
        assert_eq!(
            Permissions::default_for(AgentKind::Dynamic),
            Permissions::Act
        );
        assert_eq!(
            Permissions::default_for(AgentKind::Autonomous),
            Permissions::Act
        );
    }

    #[test]
    fn each_cli_gets_its_own_spelling() {
        assert_eq!(
            Permissions::Act.claude_args(),
            ["--permission-mode", "acceptEdits", "--allowedTools", "Bash"]
        );
        assert_eq!(Permissions::ReadOnly.codex_sandbox(), "read-only");
        assert_eq!(Permissions::Edit.gemini_approval_mode(), "auto_edit");
        assert_eq!(Permissions::Act.gemini_approval_mode(), "yolo");
    }
}
