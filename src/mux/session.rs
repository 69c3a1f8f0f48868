//! Session names and Zellij's session list.
//!
//! Owns the rule that a session name fits the socket path of both multiplexers, and the
//! parsing of `zellij list-sessions --no-formatting`. Does not run anything.

use crate::mux::error::MuxError;

/// Longest session name we create. Zellij puts it in a socket path (< 108 bytes) under
/// its socket dir (`$ZELLIJ_SOCKET_DIR`, `$XDG_RUNTIME_DIR/zellij` or
/// `$TMPDIR/zellij-<uid>`, then `contract_version_1/`), and refuses a name that does not
/// fit; 40 leaves 67 bytes for that dir. Default run names have 24.
pub const MAX_SESSION_NAME: usize = 40;

/// The Zellij/tmux session name of a run: the run's session name when it fits
/// [`MAX_SESSION_NAME`], else its first bytes, `-` and 8 hex digits of its hash (run
/// session names may be 64 bytes; both multiplexers put the name in a socket path).
pub fn mux_session_name(session: &str) -> String {
    if session.len() <= MAX_SESSION_NAME {
        return session.to_owned();
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(session.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX_SESSION_NAME - 1 - hash.len();
    while !session.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &session[..cut])
}

/// A session as `zellij list-sessions` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    pub state: SessionState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Running,
    /// Dead but resurrectable; it still holds the name until deleted.
    Exited,
}

/// Checks a session name before it reaches zellij (which puts it in a socket path).
pub fn validate_session_name(name: &str) -> Result<(), MuxError> {
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_SESSION_NAME {
        Some(format!("it is longer than {MAX_SESSION_NAME} bytes"))
    } else if name.contains('/') || name.chars().any(char::is_control) {
        Some("it contains `/` or a control character".to_owned())
    } else {
        None
    };
    match problem {
        Some(reason) => Err(MuxError::BadSessionName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Parses `zellij list-sessions --no-formatting`:
/// `name [Created 3s ago] (current)` or `name [Created 1h ago] (EXITED - attach to resurrect)`.
pub fn parse_session_list(text: &str) -> Vec<SessionInfo> {
    text.lines()
        .filter_map(|line| {
            let name = line.split(" [Created").next()?.trim();
            if name.is_empty() || line.starts_with("No active") {
                return None;
            }
            let state = if line.contains("EXITED") {
                SessionState::Exited
            } else {
                SessionState::Running
            };
            Some(SessionInfo {
                name: name.to_owned(),
                state,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_list_lines_parse() {
        let text =
            "run-a [Created 3s ago] \nrun-b [Created 1h ago] (EXITED - attach to resurrect)\n";
        assert_eq!(
            parse_session_list(text),
            vec![
                SessionInfo {
                    name: "run-a".into(),
                    state: SessionState::Running
                },
                SessionInfo {
                    name: "run-b".into(),
                    state: SessionState::Exited
                },
            ]
        );
        assert!(parse_session_list("No active zellij sessions found.\n").is_empty());
    }

    #[test]
    fn long_run_names_get_a_short_distinct_mux_name() {
        assert_eq!(
            mux_session_name("run-20261122-101010-abcd"),
            "run-20261122-101010-abcd"
        );
        let a = mux_session_name(&format!("{}a", "x".repeat(63)));
        let b = mux_session_name(&format!("{}b", "x".repeat(63)));
        assert_eq!(a.len(), MAX_SESSION_NAME);
        assert_ne!(a, b, "names differing only at the end stay apart");
        assert!(validate_session_name(&a).is_ok());
        assert_eq!(
            mux_session_name(&"x".repeat(MAX_SESSION_NAME)).len(),
            MAX_SESSION_NAME
        );
    }

    #[test]
    fn session_names_must_fit_the_socket_path() {
        assert!(validate_session_name("run-20261122-101010-abcd").is_ok());
        assert!(validate_session_name(&"x".repeat(MAX_SESSION_NAME + 1)).is_err());
        assert!(validate_session_name("").is_err());
        assert!(validate_session_name("a/b").is_err());
        assert!(validate_session_name("a\nb").is_err());
    }
}
