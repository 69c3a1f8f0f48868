//! The run's anchor outside `audit.db`: the heads of its chains (`{session, seq, hash,
//! files_seq, files_hash}`: events, and files with tool calls) as a
//! git blob that `refs/orch/audit/<session>` points to, in the project's repository.
//! A store cut short or rewritten consistently (rows, files and every later hash) no
//! longer reaches the head the anchor names, and `verify` says so. A team can push the
//! refs to keep the anchors beyond one machine.
//!
//! Owns the ref's name and content and the two git commands that write it
//! (`hash-object -w`, `update-ref`): never the user's branch, index, tree or stash.
//! Arguments are passed to git as data, never through a shell.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Where the anchors live.
pub const REF_PREFIX: &str = "refs/orch/audit/";

/// A run's head at the time it was anchored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub session: String,
    /// The head of the `events` chain.
    pub seq: i64,
    pub hash: String,
    /// The head of the `files` chain (turn files, artifacts, tool calls); 0: none.
    #[serde(default)]
    pub files_seq: i64,
    #[serde(default)]
    pub files_hash: String,
}

/// What the repository holds for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorLookup {
    /// The project is not a git repository: there are no anchors.
    NoRepository,
    Missing,
    Found(Anchor),
}

pub fn ref_name(session: &str) -> String {
    format!("{REF_PREFIX}{session}")
}

fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        // The repository is the project's, whatever the caller's environment says.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

fn is_repository(repo: &Path) -> bool {
    repo.is_dir()
        && git(repo)
            .args(["rev-parse", "--git-dir"])
            .output()
            .is_ok_and(|out| out.status.success())
}

fn checked_session(session: &str) -> Result<(), String> {
    if crate::agent::id::is_valid_agent_id(session) {
        Ok(())
    } else {
        Err(format!(
            "session `{}` cannot name a git ref",
            session.escape_debug()
        ))
    }
}

/// Writes the anchor; `Ok(None)` when the project is not a git repository. Returns the
/// line to show the user.
pub fn write(repo: &Path, anchor: &Anchor) -> Result<Option<String>, String> {
    checked_session(&anchor.session)?;
    if !is_repository(repo) {
        return Ok(None);
    }
    let body = serde_json::to_vec(anchor).map_err(|err| err.to_string())?;
    let mut child = git(repo)
        .args(["hash-object", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|err| format!("failed to run git: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&body)
            .map_err(|err| format!("failed to write to git hash-object: {err}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|err| format!("failed to run git hash-object: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "git hash-object failed in `{}`: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let oid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let name = ref_name(&anchor.session);
    let out = git(repo)
        .args(["update-ref", &name, &oid])
        .output()
        .map_err(|err| format!("failed to run git update-ref: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "git update-ref {name} failed in `{}`: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Some(format!(
        "audit anchor: {name} -> seq {} {}",
        anchor.seq, anchor.hash
    )))
}

/// Reads a run's anchor from the repository.
pub fn read(repo: &Path, session: &str) -> Result<AnchorLookup, String> {
    checked_session(session)?;
    if !is_repository(repo) {
        return Ok(AnchorLookup::NoRepository);
    }
    let name = ref_name(session);
    let out = git(repo)
        .args(["cat-file", "-p", &name])
        .output()
        .map_err(|err| format!("failed to run git cat-file: {err}"))?;
    if !out.status.success() {
        let exists = git(repo)
            .args(["rev-parse", "--verify", "--quiet", &name])
            .output()
            .is_ok_and(|out| out.status.success());
        return if exists {
            Err(format!("the anchor {name} cannot be read"))
        } else {
            Ok(AnchorLookup::Missing)
        };
    }
    serde_json::from_slice(&out.stdout)
        .map(AnchorLookup::Found)
        .map_err(|err| format!("the anchor {name} is not an orch anchor: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_round_trips_through_a_ref_and_leaves_the_worktree_alone() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let anchor = Anchor {
            session: "run-1".into(),
            seq: 7,
            hash: "ab".repeat(32),
            files_seq: 2,
            files_hash: "cd".repeat(32),
        };
        assert_eq!(write(repo, &anchor), Ok(None), "not a repository yet");
        assert_eq!(read(repo, "run-1"), Ok(AnchorLookup::NoRepository));
        let status = Command::new("git")
            .args(["init", "-q"])
            .current_dir(repo)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(read(repo, "run-1"), Ok(AnchorLookup::Missing));
        let line = write(repo, &anchor).unwrap().unwrap();
        assert!(line.contains("refs/orch/audit/run-1"), "{line}");
        assert_eq!(read(repo, "run-1"), Ok(AnchorLookup::Found(anchor.clone())));
        let porcelain = Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(repo)
            .output()
            .unwrap();
        assert!(porcelain.stdout.is_empty());
        let unsafe_name = Anchor {
            session: "../x".into(),
            ..anchor.clone()
        };
        assert!(write(repo, &unsafe_name).is_err());
    }
}
