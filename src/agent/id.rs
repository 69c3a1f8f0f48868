//! Agent ids: the only names that become file names, pane names and audit paths.
//!
//! Valid ids match `[a-z0-9][a-z0-9-_]{0,63}` and are not reserved for run files.

/// Names that would collide with files of the run itself.
pub const RESERVED_IDS: &[&str] = &["timeline", "interrupt"];

pub fn is_valid_agent_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
        && !RESERVED_IDS.contains(&id)
}

/// Why an id is not valid, as a sentence fragment.
pub fn agent_id_problem(id: &str) -> Option<String> {
    if is_valid_agent_id(id) {
        None
    } else if RESERVED_IDS.contains(&id) {
        Some(format!(
            "agent id `{id}` is reserved for the run's own files"
        ))
    } else {
        Some(format!(
            "agent id `{}` is not allowed: ids must match [a-z0-9][a-z0-9-_]{{0,63}}",
            id.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        for good in ["planner", "a", "api-server_2", "0x", &"a".repeat(64)] {
            assert!(is_valid_agent_id(good), "{good}");
        }
        for bad in [
            "",
            "../evil",
            "Api",
            "-x",
            "_x",
            "a b",
            "a/b",
            "a.b",
            "é",
            &"a".repeat(65),
            "timeline",
        ] {
            assert!(!is_valid_agent_id(bad), "{bad}");
        }
    }
}
