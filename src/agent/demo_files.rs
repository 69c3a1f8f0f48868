//! The files the demo backend writes when an agent's final turn runs in an orch
//! worktree (`.orch/worktrees/<session>/<agent>`): a small module and its test per
//! agent, and the agent's own line of the shared roster `demo/SQUAD.md`. Never in any
//! other directory (a user's tree stays untouched).
//!
//! The roster is made so parallel agents' edits merge cleanly: the first agent of a
//! branch without it commits the same template (identical bytes, so a rebase drops
//! the duplicate), and each agent then changes only its own line, with a blank line
//! between any two agents' lines.

use std::path::{Component, Path};

use crate::agent::demo::DemoClash;
use crate::workspace::git::Git;

pub const ROSTER: &str = "demo/SQUAD.md";

/// Every agent id the demo blueprints use, in roster order.
fn roster_agents() -> Vec<String> {
    let mut agents: Vec<String> = [
        "backend-api",
        "frontend-ui",
        "integration-tests",
        "schema",
        "api",
        "docs",
        "chain-followup",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    agents.extend((1..=9).map(|n| format!("polish-{n}")));
    agents
}

fn pending_line(agent: &str) -> String {
    format!("- {agent}: pending")
}

fn roster_template() -> String {
    let mut text = String::from(
        "# Squad roster\n\nWritten by orch's demo backend: each agent marks its own line when it is done.\n",
    );
    for agent in roster_agents() {
        text.push('\n');
        text.push_str(&pending_line(&agent));
        text.push('\n');
    }
    text
}

/// True for a directory inside `.orch/worktrees/` that is a git worktree.
pub fn is_orch_worktree(cwd: &Path) -> bool {
    let names: Vec<&std::ffi::OsStr> = cwd
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let inside = names
        .windows(2)
        .any(|pair| pair[0] == ".orch" && pair[1] == "worktrees");
    inside && cwd.join(".git").is_file()
}

fn write(cwd: &Path, path: &str, text: &str) -> Result<(), String> {
    let full = cwd.join(path);
    if let Some(dir) = full.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    }
    std::fs::write(&full, text).map_err(|e| format!("failed to write {}: {e}", full.display()))
}

/// Writes agent `agent`'s files in the worktree `cwd`; returns `(path, change)` for
/// each file written. `None` when `cwd` is not an orch worktree.
pub fn write_agent_files(
    cwd: &Path,
    agent: &str,
    clash: DemoClash,
) -> Option<Result<Vec<(String, String)>, String>> {
    if !is_orch_worktree(cwd) {
        return None;
    }
    Some(write_with_clash(cwd, agent, clash))
}

/// The clash file every specialist writes the same line of (scenario `clash`).
pub const CLASH: &str = "demo/CLASH.md";

fn write_with_clash(
    cwd: &Path,
    agent: &str,
    clash: DemoClash,
) -> Result<Vec<(String, String)>, String> {
    let git = Git::new(cwd);
    let unmerged = git
        .run_z(["diff", "--name-only", "-z", "--diff-filter=U"])
        .map_err(|e| e.to_string())?;
    if !unmerged.is_empty() {
        // A resolve turn: keep both sides of every conflicting file, or (stubborn)
        // leave the markers where they are.
        let mut resolved = Vec::new();
        if clash != DemoClash::Stubborn {
            for path in unmerged {
                let full = cwd.join(&path);
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| format!("failed to read {}: {e}", full.display()))?;
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        !(l.starts_with("<<<<<<<")
                            || l.starts_with("=======")
                            || l.starts_with(">>>>>>>"))
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                write(cwd, &path, &kept)?;
                resolved.push((path, "update".to_owned()));
            }
        }
        return Ok(resolved);
    }
    let mut written = write_files(cwd, agent)?;
    if clash != DemoClash::None {
        // Parallel agents each create it (a clash); a later agent adds its line.
        let line = format!("{agent} wrote this line.\n");
        let text = match std::fs::read_to_string(cwd.join(CLASH)) {
            Ok(existing) => format!("{existing}{line}"),
            Err(_) => format!("# Clash\n\n{line}"),
        };
        write(cwd, CLASH, &text)?;
        written.push((CLASH.to_owned(), "add".to_owned()));
    }
    Ok(written)
}

fn write_files(cwd: &Path, agent: &str) -> Result<Vec<(String, String)>, String> {
    let name = agent.replace('-', "_");
    let mut written = Vec::new();
    let module = format!("demo/{name}.py");
    let test = format!("demo/test_{name}.py");
    let change = |path: &str| {
        if cwd.join(path).exists() {
            "update"
        } else {
            "add"
        }
    };
    let module_change = change(&module);
    write(
        cwd,
        &module,
        &format!(
            "\"\"\"{agent}: written by orch's demo backend.\"\"\"\n\n\ndef {name}():\n    return \"{agent} is ready\"\n"
        ),
    )?;
    written.push((module.clone(), module_change.to_owned()));
    let test_change = change(&test);
    write(
        cwd,
        &test,
        &format!(
            "from {name} import {name}\n\n\ndef test_{name}():\n    assert {name}() == \"{agent} is ready\"\n"
        ),
    )?;
    written.push((test.clone(), test_change.to_owned()));

    let roster = cwd.join(ROSTER);
    if roster_agents().iter().any(|a| a == agent) {
        if !roster.exists() {
            // The agent commits the template itself (as Claude or Gemini would), so
            // that parallel agents' rosters share a base.
            write(cwd, ROSTER, &roster_template())?;
            let git = Git::new(cwd)
                .with_identity_of_repo()
                .map_err(|e| e.to_string())?;
            git.run(["add", "--", ROSTER]).map_err(|e| e.to_string())?;
            git.cmd(["commit", "--quiet", "--no-verify", "-F", "-"])
                .stdin(format!("demo: add the squad roster\n\nOrch-Agent: {agent}\n").into_bytes())
                .run()
                .map_err(|e| e.to_string())?;
            written.push((ROSTER.to_owned(), "add".to_owned()));
        }
        let text = std::fs::read_to_string(&roster)
            .map_err(|e| format!("failed to read {}: {e}", roster.display()))?;
        let done = format!("- {agent}: done ({module}, {test})");
        let updated: Vec<String> = text
            .lines()
            .map(|line| {
                if line == pending_line(agent) {
                    done.clone()
                } else {
                    line.to_owned()
                }
            })
            .collect();
        let mut updated = updated.join("\n");
        updated.push('\n');
        if updated != text {
            write(cwd, ROSTER, &updated)?;
            written.push((ROSTER.to_owned(), "update".to_owned()));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_orch_worktrees_qualify() {
        let dir = tempfile::tempdir().unwrap();
        let wt = dir.path().join(".orch/worktrees/run-a/api");
        std::fs::create_dir_all(&wt).unwrap();
        assert!(!is_orch_worktree(&wt), "no .git file yet");
        std::fs::write(wt.join(".git"), "gitdir: x").unwrap();
        assert!(is_orch_worktree(&wt));
        assert!(!is_orch_worktree(dir.path()));
        assert!(
            write_agent_files(dir.path(), "api", crate::agent::demo::DemoClash::None).is_none()
        );
        assert!(!dir.path().join("demo").exists(), "nothing written outside");
    }
}
