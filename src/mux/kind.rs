//! Which multiplexer a run shows its panes in (`--mux zellij|tmux|none`).

use std::fmt;
use std::str::FromStr;

/// The multiplexer of a run; `None` is headless (progress on stderr, CI/server mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MuxKind {
    #[default]
    Zellij,
    Tmux,
    None,
}

impl MuxKind {
    pub const ALL: [MuxKind; 3] = [MuxKind::Zellij, MuxKind::Tmux, MuxKind::None];

    pub fn as_str(self) -> &'static str {
        match self {
            MuxKind::Zellij => "zellij",
            MuxKind::Tmux => "tmux",
            MuxKind::None => "none",
        }
    }
}

impl fmt::Display for MuxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MuxKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MuxKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown multiplexer `{s}`: expected zellij, tmux or none"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in MuxKind::ALL {
            assert_eq!(kind.to_string().parse::<MuxKind>(), Ok(kind));
        }
        assert_eq!(MuxKind::default(), MuxKind::Zellij);
        assert!(
            "screen"
                .parse::<MuxKind>()
                .unwrap_err()
                .contains("zellij, tmux or none")
        );
    }
}
