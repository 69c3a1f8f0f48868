//! Commits for an agent: everything it changed in its worktree (what `.gitignore`
//! ignores, and what set-up placed, stays out), with a message naming the agent, its
//! role and the run, and `Orch-Session` / `Orch-Agent` trailers. Commits the agent
//! made itself are kept.
//!
//! Owns the agent's commit. Does not integrate it (`merge.rs`).

use serde::{Deserialize, Serialize};

use crate::workspace::base::Workspace;
use crate::workspace::diff::{Changes, changes};
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::{Git, split_z};
use crate::workspace::worktree::AgentWorktree;

/// What the commit message says besides the agent and run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub role: String,
    /// The agent's final answer or a summary of it (trimmed to 4,000 characters).
    pub summary: String,
}

/// An agent's work on its branch after `commit_agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    /// The commit orch made (`None`: the worktree had no uncommitted changes).
    pub orch_commit: Option<String>,
    /// Everything the agent changed since its base: its commits (its own and orch's,
    /// oldest first), diffstat, files and patch.
    pub changes: Changes,
}

impl CommitOutcome {
    /// False when the agent changed nothing at all.
    pub fn is_changed(&self) -> bool {
        !self.changes.commits.is_empty()
    }
}

/// An agent's branch after `commit_work`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The commit orch made, if any.
    pub orch_commit: Option<String>,
    /// The branch's tip.
    pub head: String,
}

const MAX_SUMMARY: usize = 4000;

pub(crate) fn message(agent: &str, role: &str, session: &str, summary: &str) -> String {
    let mut text = format!("orch: {agent} ({role}) in run {session}\n\n");
    let summary = summary.trim();
    if !summary.is_empty() {
        let cut: String = summary.chars().take(MAX_SUMMARY).collect();
        text.push_str(&cut);
        text.push_str("\n\n");
    }
    text.push_str(&format!("Orch-Session: {session}\nOrch-Agent: {agent}\n"));
    text
}

/// `git add -A`, minus what set-up placed.
pub(crate) fn stage_all(git: &Git, worktree: &AgentWorktree) -> Result<(), WorkspaceError> {
    let mut cmd = git.cmd(["add", "-A", "--", "."]);
    let placed = worktree.setup.placed();
    if !placed.is_empty() {
        // Ignored ones stay out anyway, and git refuses a pathspec naming one.
        let mut input = Vec::new();
        for path in &placed {
            input.extend_from_slice(path.as_bytes());
            input.push(0);
        }
        let check = git.cmd(["check-ignore", "-z", "--stdin"]).stdin(input);
        let out = check.output()?;
        if !matches!(out.status.code(), Some(0) | Some(1)) {
            return Err(check.failure(&out));
        }
        let ignored = split_z(&out.stdout);
        for path in placed.iter().filter(|p| !ignored.contains(p)) {
            cmd = cmd.arg(format!(":(exclude,literal){path}"));
        }
    }
    cmd.run().map(drop)
}

/// True when the index differs from `HEAD`.
pub(crate) fn has_staged(git: &Git) -> Result<bool, WorkspaceError> {
    Ok(!git
        .cmd(["diff", "--cached", "--quiet", "--no-ext-diff"])
        .success()?)
}

impl Workspace {
    /// Commits what agent `worktree.agent` changed (nothing when it changed nothing)
    /// and says where its branch is; `commit_agent` also reads what changed.
    pub fn commit_work(
        &self,
        worktree: &AgentWorktree,
        info: &CommitInfo,
    ) -> Result<Committed, WorkspaceError> {
        let branch = worktree.writable_branch()?.to_owned();
        let git = worktree.git(self);
        stage_all(&git, worktree)?;
        let committed = if has_staged(&git)? {
            let text = message(&worktree.agent, &info.role, self.session(), &info.summary);
            git.cmd([
                "commit",
                "--quiet",
                "--no-verify",
                "--no-gpg-sign",
                "-F",
                "-",
            ])
            .stdin(text.into_bytes())
            .run()?;
            true
        } else {
            false
        };
        // Where HEAD is and what it is on, in one command.
        let found = git.run(["rev-parse", "HEAD", "--symbolic-full-name", "HEAD"])?;
        let mut lines = found.lines();
        let head = lines.next().unwrap_or_default().trim().to_owned();
        let on = lines.next().unwrap_or_default().trim().to_owned();
        let head = self.bring_branch_to_head(worktree, &git, &branch, head, &on)?;
        Ok(Committed {
            orch_commit: committed.then(|| head.clone()),
            head,
        })
    }

    /// Commits what agent `worktree.agent` changed and reports its commits since its
    /// base. An agent that changed nothing gets no commit.
    pub fn commit_agent(
        &self,
        worktree: &AgentWorktree,
        info: &CommitInfo,
    ) -> Result<CommitOutcome, WorkspaceError> {
        let committed = self.commit_work(worktree, info)?;
        Ok(CommitOutcome {
            orch_commit: committed.orch_commit,
            changes: changes(&self.git, &worktree.base, &committed.head)?,
        })
    }

    /// An agent that checked out another branch or detached `HEAD` and committed
    /// there: its branch is fast-forwarded to that work and checked out again. `head`
    /// is HEAD's commit and `on` its full ref name (`HEAD` when detached). Returns the
    /// branch's tip.
    fn bring_branch_to_head(
        &self,
        worktree: &AgentWorktree,
        git: &Git,
        branch: &str,
        head: String,
        on: &str,
    ) -> Result<String, WorkspaceError> {
        let refname = format!("refs/heads/{branch}");
        if on == refname {
            return Ok(head);
        }
        let tip = git.run(["rev-parse", &refname])?;
        let found = if on == "HEAD" || on.is_empty() {
            format!("a detached HEAD at {}", &head[..head.len().min(10)])
        } else {
            format!("`{}`", on.trim_start_matches("refs/heads/"))
        };
        if !git.is_ancestor(&tip, &head)? {
            return Err(WorkspaceError::AgentLeftBranch {
                agent: worktree.agent.clone(),
                branch: branch.to_owned(),
                found,
                path: worktree.path.clone(),
            });
        }
        git.update_ref(
            &refname,
            &head,
            Some(&tip),
            &format!(
                "orch: keep the commits agent {} made on {found}",
                worktree.agent
            ),
        )?;
        git.run(["checkout", "--quiet", branch])?;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::base::BaseChoice;
    use crate::workspace::setup::WorktreeSetup;
    use crate::workspace::test_support::{UserRepo, write};

    fn info() -> CommitInfo {
        CommitInfo {
            role: "API engineer".into(),
            summary: "Added the endpoint.".into(),
        }
    }

    #[test]
    fn orch_commits_what_the_agent_changed_with_trailers_and_keeps_its_own_commits() {
        let repo = UserRepo::new();
        write(&repo.root, ".env", "SECRET=1\n");
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-c", BaseChoice::Head).unwrap();
        let ws = ws.with_setup(WorktreeSetup {
            // notes.txt is neither tracked nor ignored: only set-up keeps it out.
            copy: vec![".env".into(), "notes.txt".into()],
            ..WorktreeSetup::default()
        });
        let wt = ws.create_agent("api").unwrap();
        assert!(wt.path.join("notes.txt").exists());

        // Nothing changed: no commit, and it says so.
        let nothing = ws.commit_agent(&wt, &info()).unwrap();
        assert_eq!(nothing.orch_commit, None);
        assert!(!nothing.is_changed());

        // The agent commits once by itself, then leaves more changes uncommitted.
        let git = repo.git.at(&wt.path);
        write(&wt.path, "src/own.txt", "committed by the agent\n");
        git.run(["add", "src/own.txt"]).unwrap();
        git.run(["commit", "-q", "-m", "agent's own commit"])
            .unwrap();
        write(
            &wt.path,
            "src/app.txt",
            "alpha\nbeta\ngamma (api)\ndelta\nepsilon\n",
        );
        write(&wt.path, "src/new.txt", "new\n");
        write(&wt.path, "scratch.log", "ignored by .gitignore\n");
        write(&wt.path, ".env", "SECRET=changed by the agent\n");
        let outcome = ws.commit_agent(&wt, &info()).unwrap();
        assert!(outcome.is_changed());
        assert_eq!(outcome.changes.commits.len(), 2, "{outcome:?}");
        assert_eq!(outcome.changes.commits[0].subject, "agent's own commit");
        assert_eq!(
            outcome.changes.commits[1].subject,
            "orch: api (API engineer) in run run-c"
        );
        let message = git.run(["log", "-1", "--format=%B"]).unwrap();
        assert!(message.contains("Added the endpoint."), "{message}");
        assert!(
            message.contains("Orch-Session: run-c\nOrch-Agent: api"),
            "{message}"
        );
        let trailers = git
            .run(["log", "-1", "--format=%(trailers:key=Orch-Agent,valueonly)"])
            .unwrap();
        assert_eq!(trailers.trim(), "api");
        let paths: Vec<&str> = outcome
            .changes
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(paths, ["src/app.txt", "src/new.txt", "src/own.txt"]);
        assert!(
            outcome.changes.diffstat.contains("3 files changed"),
            "{}",
            outcome.changes.diffstat
        );
        assert_eq!(
            git.run(["status", "--porcelain"]).unwrap(),
            "?? notes.txt",
            "only ignored or set-up files are left"
        );
        // The agent's changes are in the audit data, byte for byte.
        let changes = ws.agent_changes(&wt).unwrap();
        assert_eq!(changes, outcome.changes);
        let patch = String::from_utf8(changes.patch.clone()).unwrap();
        assert!(patch.contains("+gamma (api)"), "{patch}");
        assert!(!patch.contains("SECRET"), "set-up copies stay out: {patch}");
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn an_agent_that_commits_on_another_branch_still_lands_on_its_own() {
        let repo = UserRepo::new();
        let (ws, _) = Workspace::prepare(&repo.root, "run-d", BaseChoice::Head).unwrap();
        let wt = ws.create_agent("api").unwrap();
        let git = repo.git.at(&wt.path);
        git.run(["checkout", "-q", "--detach"]).unwrap();
        write(&wt.path, "detached.txt", "x\n");
        let outcome = ws.commit_agent(&wt, &info()).unwrap();
        assert_eq!(outcome.changes.commits.len(), 1);
        assert_eq!(
            git.run(["symbolic-ref", "HEAD"]).unwrap(),
            "refs/heads/orch-agent/run-d/api"
        );
        // A read-only worktree has nothing to commit.
        let core = ws.create_readonly("planner").unwrap();
        let err = ws.commit_agent(&core, &info()).unwrap_err();
        assert!(matches!(err, WorkspaceError::ReadOnly { .. }), "{err}");
    }
}
