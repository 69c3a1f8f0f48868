//! The merge queue's step: integrate one agent's branch into the run branch tip.
//!
//! The rebase (or merge) happens in the agent's own worktree, so a conflict is left
//! there for one resolve turn of the agent, then `continue_integration` finishes it or
//! aborts it (the agent's branch as it was). The run branch only ever moves by a
//! fast-forward `update-ref` guarded by its old value: never half-merged, never
//! checked out.
//!
//! Owns integration. Does not decide the queue's order or the resolve turn (the
//! orchestrator does).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workspace::base::Workspace;
use crate::workspace::commit::{has_staged, stage_all};
use crate::workspace::diff::{CommitSummary, commits_between};
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::Git;
use crate::workspace::worktree::AgentWorktree;

/// How an agent's branch joins the run branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Replay the agent's commits on the run branch's tip: a straight history.
    #[default]
    Rebase,
    /// Merge the run branch's tip into the agent's branch with a merge commit.
    Merge,
}

/// Where a conflict was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictState {
    /// Mid-rebase/merge in the agent's worktree, with conflict markers in the files:
    /// give the agent a resolve turn, then call `continue_integration`.
    InWorktree,
    /// Aborted: the agent's branch and worktree are as they were before.
    Aborted,
}

/// What one integration step did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MergeOutcome {
    /// The run branch now ends at `tip`, with the agent's `commits` on it.
    Merged {
        tip: String,
        commits: Vec<CommitSummary>,
        fast_forward: bool,
    },
    /// The agent's changes conflict with the run branch in `paths`; `other_side`
    /// names the run branch's tip and the agents whose commits touched those paths.
    Conflict {
        paths: Vec<String>,
        other_side: String,
        state: ConflictState,
    },
    /// The run branch already holds everything of the agent's branch.
    NothingToMerge,
}

/// A rebase or merge in progress in a worktree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum InProgress {
    Rebase { onto: String },
    Merge { other: String },
}

/// A commit as `git cat-file commit` shows it, when it is a plain one: one parent, no
/// headers but tree, parent, author and committer (no signature, no encoding).
#[derive(Debug, PartialEq, Eq)]
struct RawCommit {
    parent: String,
    author_name: String,
    author_email: String,
    /// Git's own format: `<seconds> <zone>`.
    author_date: String,
    /// Byte for byte.
    message: Vec<u8>,
}

impl RawCommit {
    fn parse(raw: &[u8]) -> Option<RawCommit> {
        let split = raw.windows(2).position(|w| w == b"\n\n")?;
        let (headers, message) = (std::str::from_utf8(&raw[..split]).ok()?, &raw[split + 2..]);
        let (mut parent, mut author) = (None, None);
        for line in headers.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "tree" | "committer" => {}
                "parent" if parent.is_none() => parent = Some(value.to_owned()),
                "author" if author.is_none() => author = Some(value),
                _ => return None,
            }
        }
        // `Name <email> seconds zone`
        let author = author?;
        let (who, date) = author.rsplit_once("> ")?;
        let (name, email) = who.split_once(" <")?;
        let mut parts = date.split(' ');
        let (seconds, zone) = (parts.next()?, parts.next()?);
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let zone_ok =
            zone.len() == 5 && matches!(zone.as_bytes()[0], b'+' | b'-') && digits(&zone[1..]);
        if parts.next().is_some() || !digits(seconds) || !zone_ok {
            return None;
        }
        Some(RawCommit {
            parent: parent?,
            author_name: name.to_owned(),
            author_email: email.to_owned(),
            author_date: format!("{seconds} {zone}"),
            message: message.to_vec(),
        })
    }
}

fn in_progress(git: &Git) -> Result<Option<InProgress>, WorkspaceError> {
    let paths = match git_dir_of(git.dir()) {
        // Read where git keeps them, without a process (this runs in the merge queue).
        Some(dir) => vec![
            dir.join("rebase-merge"),
            dir.join("rebase-apply"),
            dir.join("MERGE_HEAD"),
        ],
        None => git
            .run([
                "rev-parse",
                "--path-format=absolute",
                "--git-path",
                "rebase-merge",
                "--git-path",
                "rebase-apply",
                "--git-path",
                "MERGE_HEAD",
            ])?
            .lines()
            .map(PathBuf::from)
            .collect(),
    };
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    if let [rebase_merge, rebase_apply, merge_head] = paths.as_slice() {
        for dir in [rebase_merge, rebase_apply] {
            if dir.is_dir() {
                return Ok(Some(InProgress::Rebase {
                    onto: read(&dir.join("onto")),
                }));
            }
        }
        if merge_head.is_file() {
            let other = read(merge_head);
            return Ok(Some(InProgress::Merge {
                other: other.lines().next().unwrap_or("").to_owned(),
            }));
        }
    }
    Ok(None)
}

/// The git directory of the worktree at `worktree` (where its `HEAD`, index and
/// rebase state live), read from its `.git` as git does: a directory, or a file
/// `gitdir: <path>`. `None` for anything else (git is asked then).
pub(crate) fn git_dir_of(worktree: &Path) -> Option<PathBuf> {
    let dot_git = worktree.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    if !meta.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let dir = text
        .strip_prefix("gitdir: ")?
        .trim_end_matches(['\n', '\r']);
    if dir.is_empty() {
        return None;
    }
    let dir = worktree.join(dir);
    dir.is_dir().then_some(dir)
}

/// The common git directory of the repository whose worktree is `worktree`: its own
/// git directory, or where that one's `commondir` points (a linked worktree).
fn common_dir_of(worktree: &Path) -> Option<PathBuf> {
    let dir = git_dir_of(worktree)?;
    match std::fs::read_to_string(dir.join("commondir")) {
        Ok(text) => {
            // Usually relative (`../..`): resolved, so its name can be looked at.
            std::fs::canonicalize(dir.join(text.trim_end_matches(['\n', '\r']))).ok()
        }
        Err(_) => Some(dir),
    }
}

fn unmerged_paths(git: &Git) -> Result<Vec<String>, WorkspaceError> {
    let mut paths = git.run_z([
        "diff",
        "--name-only",
        "--diff-filter=U",
        "-z",
        "--no-ext-diff",
    ])?;
    paths.dedup();
    Ok(paths)
}

/// Files that still hold conflict markers, among those the worktree changed against
/// `HEAD` (resolved-and-staged ones included).
fn files_with_markers(git: &Git) -> Result<Vec<String>, WorkspaceError> {
    let mut candidates = git.run_z(["diff", "--name-only", "-z", "--no-ext-diff", "HEAD", "--"])?;
    candidates.extend(unmerged_paths(git)?);
    candidates.extend(git.run_z(["ls-files", "-z", "--others", "--exclude-standard"])?);
    candidates.sort();
    candidates.dedup();
    let mut marked = Vec::new();
    for path in candidates {
        let Ok(bytes) = std::fs::read(git.dir().join(&path)) else {
            continue;
        };
        let has_marker = bytes.split(|b| *b == b'\n').any(|line| {
            (line.starts_with(b"<<<<<<<") || line.starts_with(b">>>>>>>"))
                && matches!(line.get(7), None | Some(b' ') | Some(b'\r'))
        });
        if has_marker {
            marked.push(path);
        }
    }
    Ok(marked)
}

impl Workspace {
    /// Integrates agent `worktree.agent`'s branch into the run branch: a fast-forward
    /// when possible, else a rebase (or merge) in the agent's worktree followed by a
    /// fast-forward. Call `commit_agent` first. Refuses while a worktree has the run
    /// branch checked out.
    pub fn integrate(
        &self,
        worktree: &mut AgentWorktree,
        mode: MergeMode,
    ) -> Result<MergeOutcome, WorkspaceError> {
        self.integrate_with(worktree, mode, || self.check_run_branch_not_checked_out())
    }

    /// `integrate`, with the check that lists every worktree (`check_out`) given by the
    /// caller: a run does it under the lock that keeps it from a `git worktree add`
    /// being made, and the rest of the step (this agent's worktree and the run branch,
    /// which only the merge queue moves) without it.
    pub fn integrate_with(
        &self,
        worktree: &mut AgentWorktree,
        mode: MergeMode,
        check_out: impl FnOnce() -> Result<(), WorkspaceError>,
    ) -> Result<MergeOutcome, WorkspaceError> {
        let branch = worktree.writable_branch()?.to_owned();
        let git = worktree.git(self);
        if in_progress(&git)?.is_some() {
            return self.continue_integration(worktree, mode);
        }
        // Both tips, their merge base (one for both ancestry questions) and the agent's
        // last commit, read side by side: this runs in the merge queue, where every
        // process counts, and neither ref can move meanwhile (the queue is the only
        // mover of the run branch, and the agent's turns are over).
        let (run_ref, agent_ref) = (self.run_ref(), format!("refs/heads/{branch}"));
        let (tips, fork, last) = std::thread::scope(|scope| {
            let fork = scope.spawn(|| self.git.cmd(["merge-base", &run_ref, &agent_ref]).output());
            let last = scope.spawn(|| {
                self.git
                    .cmd(["cat-file", "commit", &format!("{agent_ref}^{{commit}}")])
                    .output()
            });
            let tips = self.git.run([
                "rev-parse",
                // Both start with `refs/`: neither can be taken for an option.
                &format!("{run_ref}^{{commit}}"),
                &format!("{agent_ref}^{{commit}}"),
                &format!("{run_ref}^{{tree}}"),
            ]);
            (tips, fork.join(), last.join())
        });
        let tips = match tips {
            Ok(tips) => tips,
            Err(err) => {
                // Say which is missing when it is the run branch.
                self.run_tip()?;
                return Err(err);
            }
        };
        let [tip, agent_tip, tip_tree] = match tips.lines().collect::<Vec<_>>()[..] {
            [a, b, c] => [a, b, c].map(|s| s.trim().to_owned()),
            _ => {
                return Err(WorkspaceError::Git {
                    command: "git rev-parse (the run branch's and the agent's tips)".into(),
                    status: "three lines".into(),
                    stderr: tips,
                });
            }
        };
        let thread_failed = |what| WorkspaceError::Io {
            action: what,
            path: self.root.clone(),
            source: std::io::Error::other("the reading thread panicked"),
        };
        let fork = fork.map_err(|_| thread_failed("find the merge base in"))??;
        let fork = String::from_utf8_lossy(&fork.stdout).trim().to_owned();
        if fork == agent_tip {
            return Ok(MergeOutcome::NothingToMerge);
        }
        check_out()?;
        if fork == tip {
            return self.fast_forward(worktree, &tip, &agent_tip, true);
        }
        if mode == MergeMode::Rebase {
            let last = last.map_err(|_| thread_failed("read the last commit in"))??;
            let commit = last
                .status
                .success()
                .then(|| RawCommit::parse(&last.stdout))
                .flatten();
            if let Some(commit) = commit.filter(|c| c.parent == fork)
                && let Some(new) =
                    self.replay_one(&git, [&tip, &tip_tree], &fork, &agent_tip, &commit)?
            {
                return self.fast_forward(worktree, &tip, &new, false);
            }
        }
        let cmd = match mode {
            MergeMode::Rebase => git.cmd(["rebase", "--quiet", &tip]),
            MergeMode::Merge => {
                let message = format!(
                    "orch: merge {} into agent {}\n\nOrch-Session: {}\nOrch-Agent: {}\n",
                    self.run_branch(),
                    worktree.agent,
                    self.session(),
                    worktree.agent
                );
                git.cmd([
                    "merge",
                    "--quiet",
                    "--no-ff",
                    "--no-edit",
                    "-m",
                    &message,
                    &tip,
                ])
            }
        };
        let out = cmd.output()?;
        let pending = in_progress(&git)?;
        if out.status.success() && pending.is_none() {
            let new = git.run(["rev-parse", "HEAD"])?;
            return self.fast_forward(worktree, &tip, &new, false);
        }
        if pending.is_none() {
            return Err(cmd.failure(&out));
        }
        let paths = unmerged_paths(&git)?;
        let other_side = self.other_side(&tip, &agent_tip, &paths)?;
        Ok(MergeOutcome::Conflict {
            paths,
            other_side,
            state: ConflictState::InWorktree,
        })
    }

    /// After the agent's resolve turn: finishes the rebase/merge left by `integrate`
    /// when no conflict markers remain, and fast-forwards the run branch. When
    /// conflicts remain it aborts (the agent's branch as it was) and says where.
    pub fn continue_integration(
        &self,
        worktree: &mut AgentWorktree,
        mode: MergeMode,
    ) -> Result<MergeOutcome, WorkspaceError> {
        let branch = worktree.writable_branch()?.to_owned();
        let git = worktree.git(self);
        let agent_tip_before = git.run(["rev-parse", &format!("refs/heads/{branch}")])?;
        // Bounded: one round per commit being replayed.
        let mut rounds = 0;
        while let Some(state) = in_progress(&git)? {
            rounds += 1;
            if rounds > 500 {
                self.abort_integration(worktree)?;
                return Err(WorkspaceError::Git {
                    command: format!("git -C {} rebase --continue", worktree.path.display()),
                    status: "did not finish".into(),
                    stderr: "the rebase kept stopping without a conflict; it was aborted".into(),
                });
            }
            let onto = match &state {
                InProgress::Rebase { onto } => onto.clone(),
                InProgress::Merge { other } => other.clone(),
            };
            // Unmerged index entries are fine (the agent need not `git add`); markers
            // left in a file are not.
            let remaining = files_with_markers(&git)?;
            if !remaining.is_empty() {
                let other_side = self.other_side(&onto, &agent_tip_before, &remaining)?;
                self.abort_integration(worktree)?;
                return Ok(MergeOutcome::Conflict {
                    paths: remaining,
                    other_side,
                    state: ConflictState::Aborted,
                });
            }
            stage_all(&git, worktree)?;
            let cmd = match state {
                InProgress::Rebase { .. } if !has_staged(&git)? => git.cmd(["rebase", "--skip"]),
                InProgress::Rebase { .. } => git.cmd(["rebase", "--continue"]),
                InProgress::Merge { .. } => {
                    git.cmd(["commit", "--quiet", "--no-edit", "--no-verify"])
                }
            };
            let out = cmd.output()?;
            if !out.status.success() && in_progress(&git)?.is_none() {
                return Err(cmd.failure(&out));
            }
        }
        // The agent may also have aborted by itself and edited again: commit that.
        stage_all(&git, worktree)?;
        if has_staged(&git)? {
            let text = crate::workspace::commit::message(
                &worktree.agent,
                "conflict resolution",
                self.session(),
                "",
            );
            git.cmd(["commit", "--quiet", "--no-verify", "-F", "-"])
                .stdin(text.into_bytes())
                .run()?;
        }
        // The run branch may have moved during the resolve turn: integrate again
        // (a fast-forward when it did not).
        self.integrate(worktree, mode)
    }

    /// Ends a rebase or merge left in the agent's worktree; its branch is as it was
    /// before `integrate`. Nothing to do when none is in progress.
    pub fn abort_integration(&self, worktree: &AgentWorktree) -> Result<(), WorkspaceError> {
        let git = worktree.git(self);
        match in_progress(&git)? {
            Some(InProgress::Rebase { .. }) => git.run(["rebase", "--abort"]).map(drop),
            Some(InProgress::Merge { .. }) => git.run(["merge", "--abort"]).map(drop),
            None => Ok(()),
        }
    }

    /// True while a rebase or merge waits in the agent's worktree.
    pub fn is_integration_pending(&self, worktree: &AgentWorktree) -> Result<bool, WorkspaceError> {
        Ok(in_progress(&worktree.git(self))?.is_some())
    }

    /// The rebase of an agent's one commit onto `tip` without a rebase: git merges the
    /// trees in memory (`merge-tree`), the commit is made again on `tip` with its own
    /// author, date and message, and the agent's branch and worktree move to it. About
    /// half the time of `git rebase` for the usual case, an agent whose work orch
    /// committed. `None` when it cannot be done that way (a conflict, a commit that
    /// the tip holds already, a git without `merge-tree --write-tree`): nothing was
    /// changed, and the rebase does it.
    fn replay_one(
        &self,
        git: &Git,
        [tip, tip_tree]: [&str; 2],
        fork: &str,
        agent_tip: &str,
        commit: &RawCommit,
    ) -> Result<Option<String>, WorkspaceError> {
        let merged = self
            .git
            .cmd(["merge-tree", "--write-tree", "--no-messages"])
            .arg(format!("--merge-base={fork}"))
            .args([tip, agent_tip])
            .output()?;
        if !merged.status.success() {
            return Ok(None);
        }
        let tree = String::from_utf8_lossy(&merged.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if tree.is_empty() || tree == tip_tree {
            return Ok(None);
        }
        let made = self
            .git
            .cmd(["commit-tree", &tree, "-p", tip, "-F", "-"])
            .env("GIT_AUTHOR_NAME", &commit.author_name)
            .env("GIT_AUTHOR_EMAIL", &commit.author_email)
            .env("GIT_AUTHOR_DATE", &commit.author_date)
            .stdin(commit.message.clone())
            .run()?;
        // The worktree holds nothing uncommitted of the agent (its work was just
        // committed); `--keep` refuses rather than lose anything that is there.
        let moved = git.cmd(["reset", "--quiet", "--keep", &made]).output()?;
        if !moved.status.success() {
            return Ok(None);
        }
        Ok(Some(made))
    }

    fn fast_forward(
        &self,
        worktree: &mut AgentWorktree,
        tip: &str,
        new: &str,
        fast_forward: bool,
    ) -> Result<MergeOutcome, WorkspaceError> {
        let message = format!("orch: integrate agent {}", worktree.agent);
        // The commits are read beside the update (neither needs the other).
        let (updated, commits) = std::thread::scope(|scope| {
            let commits = scope.spawn(|| commits_between(&self.git, tip, new));
            let updated = self
                .git
                .update_ref(&self.run_ref(), new, Some(tip), &message);
            (updated, commits.join())
        });
        if let Err(err) = updated {
            let found = self.run_tip().unwrap_or_default();
            if found != tip {
                return Err(WorkspaceError::RunBranchMoved {
                    branch: self.run_branch().to_owned(),
                    agent: worktree.agent.clone(),
                    expected: tip.to_owned(),
                    found,
                });
            }
            return Err(err);
        }
        let commits = commits.map_err(|_| WorkspaceError::Io {
            action: "read the commits of",
            path: self.root.clone(),
            source: std::io::Error::other("the reading thread panicked"),
        })??;
        if !fast_forward {
            // The agent's work now sits on `tip`: measure it from there.
            worktree.base = tip.to_owned();
            self.save_agent(worktree)?;
        }
        Ok(MergeOutcome::Merged {
            tip: new.to_owned(),
            commits,
            fast_forward,
        })
    }

    /// The run branch's side of a conflict: its tip and the agents (from their
    /// `Orch-Agent` trailers) whose commits touched `paths` since the agent forked.
    fn other_side(
        &self,
        tip: &str,
        agent_tip: &str,
        paths: &[String],
    ) -> Result<String, WorkspaceError> {
        let fork = self
            .git
            .run(["merge-base", tip, agent_tip])
            .unwrap_or_else(|_| self.base.commit.clone());
        let log = self
            .git
            .cmd([
                "log",
                "--format=%(trailers:key=Orch-Agent,valueonly,separator=%x2C)%x09%h %s",
                &format!("{fork}..{tip}"),
                "--",
            ])
            .args(paths)
            .run()?;
        let mut agents: Vec<String> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        for line in log.lines() {
            let (trailer, commit) = line.split_once('\t').unwrap_or(("", line));
            if trailer.trim().is_empty() {
                others.push(commit.to_owned());
            } else {
                for agent in trailer.split(',').map(str::trim) {
                    if !agents.iter().any(|a| a == agent) {
                        agents.push(agent.to_owned());
                    }
                }
            }
        }
        let short = &tip[..tip.len().min(10)];
        let mut text = format!("{} at {short}", self.run_branch());
        if !agents.is_empty() {
            text.push_str(&format!(
                ", changed there by agent {}",
                agents.join(", agent ")
            ));
        }
        if !others.is_empty() {
            text.push_str(&format!(", commits {}", others.join("; ")));
        }
        Ok(text)
    }

    /// orch moves the run branch with `update-ref`: never while a worktree has it
    /// checked out (that tree would seem to change under its user).
    pub(crate) fn check_run_branch_not_checked_out(&self) -> Result<(), WorkspaceError> {
        if let Some(checked) = self.run_branch_checked_out_on_disk() {
            return checked;
        }
        let list = self.git.run(["worktree", "list", "--porcelain"])?;
        let wanted = format!("branch {}", self.run_ref());
        let mut path = PathBuf::new();
        for line in list.lines() {
            if let Some(p) = line.strip_prefix("worktree ") {
                path = PathBuf::from(p);
            } else if line == wanted {
                return Err(WorkspaceError::RunBranchCheckedOut {
                    branch: self.run_branch().to_owned(),
                    path,
                });
            }
        }
        Ok(())
    }

    /// `check_run_branch_not_checked_out` from the files alone (no process, safe beside
    /// a `git worktree add`); `None` when git must be asked.
    pub(crate) fn run_branch_checked_out_on_disk(&self) -> Option<Result<(), WorkspaceError>> {
        let found = self.worktree_on(&self.run_ref())?;
        Some(match found {
            Some(path) => Err(WorkspaceError::RunBranchCheckedOut {
                branch: self.run_branch().to_owned(),
                path,
            }),
            None => Ok(()),
        })
    }

    /// The worktree that has `refname` checked out, read from the `HEAD` files git
    /// keeps (the main worktree's and each linked one's) without a process, as `git
    /// worktree list` reads them: `Some(None)` when none has, `None` when the layout
    /// is not one this knows (git is asked then).
    fn worktree_on(&self, refname: &str) -> Option<Option<PathBuf>> {
        let common = common_dir_of(&self.root)?;
        // The usual layout only: `<main worktree>/.git`. A bare repository or a git
        // directory kept elsewhere is left to git.
        if common.file_name() != Some(std::ffi::OsStr::new(".git")) {
            return None;
        }
        let on = |head: &Path| {
            std::fs::read_to_string(head)
                .map(|text| text.trim_end() == format!("ref: {refname}"))
                .unwrap_or(false)
        };
        if common.join("HEAD").is_file() && on(&common.join("HEAD")) {
            // The main worktree: the directory the common one sits in.
            return Some(Some(common.parent().unwrap_or(&common).to_path_buf()));
        }
        let linked = match std::fs::read_dir(common.join("worktrees")) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Some(None),
            Err(_) => return None,
        };
        for entry in linked.flatten() {
            if on(&entry.path().join("HEAD")) {
                let path = std::fs::read_to_string(entry.path().join("gitdir"))
                    .map(|p| {
                        let p = PathBuf::from(p.trim_end_matches(['\n', '\r']));
                        p.parent().map(Path::to_path_buf).unwrap_or(p)
                    })
                    .unwrap_or_else(|_| entry.path());
                return Some(Some(path));
            }
        }
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::base::BaseChoice;
    use crate::workspace::commit::CommitInfo;
    use crate::workspace::test_support::{UserRepo, write};

    fn finish(ws: &Workspace, wt: &AgentWorktree) {
        ws.commit_agent(
            wt,
            &CommitInfo {
                role: "Engineer".into(),
                summary: String::new(),
            },
        )
        .unwrap();
    }

    /// Agents `api` and `ui` of run `session`, each having written one file, committed.
    fn two_finished(
        repo: &UserRepo,
        session: &str,
        [api_file, ui_file]: [(&str, &str); 2],
    ) -> (Workspace, AgentWorktree, AgentWorktree) {
        let (ws, _) = Workspace::prepare(&repo.root, session, BaseChoice::Head).unwrap();
        let api = ws.create_agent("api").unwrap();
        let ui = ws.create_agent("ui").unwrap();
        write(&api.path, api_file.0, api_file.1);
        write(&ui.path, ui_file.0, ui_file.1);
        finish(&ws, &api);
        finish(&ws, &ui);
        (ws, api, ui)
    }

    /// `branch` checked out in another worktree of the user's repository.
    fn check_out_elsewhere(repo: &UserRepo, branch: &str) -> PathBuf {
        let elsewhere = repo.root.parent().unwrap().join("elsewhere");
        repo.git
            .cmd(["worktree", "add", "-q"])
            .arg(&elsewhere)
            .arg(branch)
            .run()
            .unwrap();
        elsewhere
    }

    fn file_at(repo: &UserRepo, rev: &str, path: &str) -> String {
        repo.show(&format!("{rev}:{path}"))
    }

    #[test]
    fn parallel_agents_on_one_file_both_land_and_a_dependant_starts_from_them() {
        let repo = UserRepo::new();
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-p", BaseChoice::Head).unwrap();
        let mut api = ws.create_agent("api").unwrap();
        let mut ui = ws.create_agent("ui").unwrap();
        write(
            &api.path,
            "src/app.txt",
            "alpha (api)\nbeta\ngamma\ndelta\nepsilon\n",
        );
        write(
            &ui.path,
            "src/app.txt",
            "alpha\nbeta\ngamma\ndelta\nepsilon (ui)\n",
        );
        finish(&ws, &api);
        finish(&ws, &ui);
        let first = ws.integrate(&mut ui, MergeMode::Rebase).unwrap();
        assert!(
            matches!(
                first,
                MergeOutcome::Merged {
                    fast_forward: true,
                    ..
                }
            ),
            "{first:?}"
        );
        let second = ws.integrate(&mut api, MergeMode::Rebase).unwrap();
        let MergeOutcome::Merged {
            tip,
            commits,
            fast_forward: false,
        } = second
        else {
            panic!("{second:?}");
        };
        assert_eq!(commits.len(), 1);
        assert_eq!(ws.run_tip().unwrap(), tip);
        assert_eq!(
            file_at(&repo, "orch/run-p", "src/app.txt"),
            "alpha (api)\nbeta\ngamma\ndelta\nepsilon (ui)"
        );
        // The agent's work is now measured from the tip it was rebased onto.
        assert_eq!(ws.agent_changes(&api).unwrap().commits.len(), 1);
        assert_eq!(
            ws.integrate(&mut api, MergeMode::Rebase).unwrap(),
            MergeOutcome::NothingToMerge
        );
        let tests = ws.create_agent("tests").unwrap();
        let seen = std::fs::read_to_string(tests.path.join("src/app.txt")).unwrap();
        assert!(seen.contains("(api)") && seen.contains("(ui)"), "{seen}");
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn an_agents_one_commit_is_replayed_onto_the_tip_as_a_rebase_would() {
        let repo = UserRepo::new();
        let before = repo.untouched();
        let (ws, mut api, mut ui) = two_finished(
            &repo,
            "run-r",
            [("src/api.txt", "api\n"), ("src/ui.txt", "ui\n")],
        );
        // The agent's commit has an author and a date of its own, and a message with
        // trailing blank lines that a rebase keeps byte for byte.
        let git = repo.git.at(&ui.path);
        git.cmd(["commit", "-q", "--amend", "--cleanup=verbatim", "-F", "-"])
            .env("GIT_AUTHOR_NAME", "Ada \"ui\" Lovelace")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_AUTHOR_DATE", "1700000000 +0130")
            .stdin(b"ui work\n\nbody\n\n".to_vec())
            .run()
            .unwrap();
        let original = git.run(["cat-file", "commit", "HEAD"]).unwrap();
        assert!(matches!(
            ws.integrate(&mut api, MergeMode::Rebase).unwrap(),
            MergeOutcome::Merged {
                fast_forward: true,
                ..
            }
        ));
        let api_tip = ws.run_tip().unwrap();
        let MergeOutcome::Merged {
            tip,
            commits,
            fast_forward: false,
        } = ws.integrate(&mut ui, MergeMode::Rebase).unwrap()
        else {
            panic!("not merged");
        };
        assert_eq!(commits.len(), 1);
        assert_eq!(ws.run_tip().unwrap(), tip);
        assert_eq!(git.run(["rev-parse", "HEAD"]).unwrap(), tip, "branch moved");
        assert_eq!(git.run(["rev-parse", "HEAD^"]).unwrap(), api_tip);
        assert_eq!(ui.base, api_tip);
        let replayed = git.run(["cat-file", "commit", "HEAD"]).unwrap();
        let without = |text: &str, keys: [&str; 3]| -> String {
            text.lines()
                .filter(|l| !keys.iter().any(|k| l.starts_with(k)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // Author, date and message as they were; only tree, parent and committer differ.
        assert_eq!(
            without(&replayed, ["tree ", "parent ", "committer "]),
            without(&original, ["tree ", "parent ", "committer "])
        );
        assert_eq!(git.run(["status", "--porcelain"]).unwrap(), "");
        assert!(
            ui.path.join("src/api.txt").is_file(),
            "the worktree moved too"
        );
        assert_eq!(
            ws.integrate(&mut ui, MergeMode::Rebase).unwrap(),
            MergeOutcome::NothingToMerge
        );
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn a_commit_the_tip_holds_already_is_left_to_the_rebase() {
        let repo = UserRepo::new();
        let same = ("src/same.txt", "same\n");
        let (ws, mut api, mut ui) = two_finished(&repo, "run-e", [same, same]);
        ws.integrate(&mut api, MergeMode::Rebase).unwrap();
        let tip = ws.run_tip().unwrap();
        let outcome = ws.integrate(&mut ui, MergeMode::Rebase).unwrap();
        // The rebase drops the commit that became empty: no empty commit on the run
        // branch.
        assert!(
            matches!(&outcome, MergeOutcome::Merged { commits, .. } if commits.is_empty()),
            "{outcome:?}"
        );
        assert_eq!(ws.run_tip().unwrap(), tip);
    }

    #[test]
    fn only_plain_commits_are_replayed() {
        let plain = b"tree 1111\nparent 2222\nauthor A B <a@b> 1700000000 -0700\ncommitter C <c@d> 1700000001 +0000\n\nsubject\n\nbody\n";
        let commit = RawCommit::parse(plain).unwrap();
        assert_eq!(commit.parent, "2222");
        assert_eq!(
            (commit.author_name.as_str(), commit.author_email.as_str()),
            ("A B", "a@b")
        );
        assert_eq!(commit.author_date, "1700000000 -0700");
        assert_eq!(commit.message, b"subject\n\nbody\n");
        for odd in [
            // A merge, a signature, another encoding, no parent, a broken date.
            &b"tree 1\nparent 2\nparent 3\nauthor A <a> 1 +0000\ncommitter C <c> 1 +0000\n\nm\n"[..],
            b"tree 1\nparent 2\nauthor A <a> 1 +0000\ncommitter C <c> 1 +0000\ngpgsig -----BEGIN\n\nm\n",
            b"tree 1\nparent 2\nauthor A <a> 1 +0000\ncommitter C <c> 1 +0000\nencoding ISO-8859-1\n\nm\n",
            b"tree 1\nauthor A <a> 1 +0000\ncommitter C <c> 1 +0000\n\nm\n",
            b"tree 1\nparent 2\nauthor A <a> yesterday\ncommitter C <c> 1 +0000\n\nm\n",
        ] {
            assert_eq!(RawCommit::parse(odd), None, "{}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn the_run_branch_checked_out_is_seen_from_the_files_as_git_sees_it() {
        let repo = UserRepo::new();
        let (ws, _) = Workspace::prepare(&repo.root, "run-o", BaseChoice::Head).unwrap();
        assert!(ws.run_branch_checked_out_on_disk().unwrap().is_ok());
        let elsewhere = check_out_elsewhere(&repo, "orch/run-o");
        let err = ws.run_branch_checked_out_on_disk().unwrap().unwrap_err();
        assert!(
            matches!(&err, WorkspaceError::RunBranchCheckedOut { path, .. } if path == &elsewhere),
            "{err}"
        );
        // A linked worktree's files lead to the same answer.
        let (linked, _) = Workspace::prepare(&elsewhere, "run-o2", BaseChoice::Head).unwrap();
        assert!(linked.run_branch_checked_out_on_disk().unwrap().is_ok());
        repo.git
            .cmd(["worktree", "remove", "--force"])
            .arg(&elsewhere)
            .run()
            .unwrap();
        assert!(ws.run_branch_checked_out_on_disk().unwrap().is_ok());
    }

    #[test]
    fn a_conflict_is_left_for_a_resolve_turn_then_continued() {
        let repo = UserRepo::new();
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-k", BaseChoice::Head).unwrap();
        let mut api = ws.create_agent("api").unwrap();
        let mut ui = ws.create_agent("ui").unwrap();
        write(
            &api.path,
            "src/app.txt",
            "alpha\nbeta\nGAMMA FROM API\ndelta\nepsilon\n",
        );
        write(
            &ui.path,
            "src/app.txt",
            "alpha\nbeta\nGAMMA FROM UI\ndelta\nepsilon\n",
        );
        finish(&ws, &api);
        finish(&ws, &ui);
        ws.integrate(&mut ui, MergeMode::Rebase).unwrap();
        let tip = ws.run_tip().unwrap();
        let outcome = ws.integrate(&mut api, MergeMode::Rebase).unwrap();
        let MergeOutcome::Conflict {
            paths,
            other_side,
            state: ConflictState::InWorktree,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(paths, ["src/app.txt"]);
        assert!(other_side.starts_with("orch/run-k at "), "{other_side}");
        assert!(other_side.contains("agent ui"), "{other_side}");
        assert_eq!(ws.run_tip().unwrap(), tip, "the run branch did not move");
        assert!(ws.is_integration_pending(&api).unwrap());
        let text = std::fs::read_to_string(api.path.join("src/app.txt")).unwrap();
        assert!(
            text.contains("<<<<<<<") && text.contains("GAMMA FROM UI"),
            "{text}"
        );
        assert_eq!(
            repo.untouched(),
            before,
            "a conflict stays in the agent's worktree"
        );

        // The resolve turn: both edits, no markers, not even staged.
        write(
            &api.path,
            "src/app.txt",
            "alpha\nbeta\nGAMMA FROM UI\nGAMMA FROM API\ndelta\nepsilon\n",
        );
        let done = ws
            .continue_integration(&mut api, MergeMode::Rebase)
            .unwrap();
        assert!(matches!(done, MergeOutcome::Merged { .. }), "{done:?}");
        assert_eq!(
            file_at(&repo, "orch/run-k", "src/app.txt"),
            "alpha\nbeta\nGAMMA FROM UI\nGAMMA FROM API\ndelta\nepsilon"
        );
        assert!(!ws.is_integration_pending(&api).unwrap());
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn a_conflict_still_there_after_the_resolve_turn_is_aborted_with_the_branch_intact() {
        for mode in [MergeMode::Rebase, MergeMode::Merge] {
            let repo = UserRepo::new();
            let before = repo.untouched();
            let (ws, _) = Workspace::prepare(&repo.root, "run-f", BaseChoice::Head).unwrap();
            let mut api = ws.create_agent("api").unwrap();
            let mut ui = ws.create_agent("ui").unwrap();
            write(&api.path, "README.md", "# API\n");
            write(&ui.path, "README.md", "# UI\n");
            finish(&ws, &api);
            finish(&ws, &ui);
            ws.integrate(&mut ui, mode).unwrap();
            let tip = ws.run_tip().unwrap();
            let branch_before = repo.git.run(["rev-parse", "orch-agent/run-f/api"]).unwrap();
            let outcome = ws.integrate(&mut api, mode).unwrap();
            assert!(
                matches!(outcome, MergeOutcome::Conflict { .. }),
                "{mode:?}: {outcome:?}"
            );
            // The resolve turn stages the file with the markers still in it.
            repo.git.at(&api.path).run(["add", "README.md"]).unwrap();
            let outcome = ws.continue_integration(&mut api, mode).unwrap();
            let MergeOutcome::Conflict {
                paths,
                state: ConflictState::Aborted,
                ..
            } = outcome
            else {
                panic!("{mode:?}: {outcome:?}");
            };
            assert_eq!(paths, ["README.md"]);
            assert_eq!(ws.run_tip().unwrap(), tip, "{mode:?}");
            assert_eq!(
                repo.git.run(["rev-parse", "orch-agent/run-f/api"]).unwrap(),
                branch_before,
                "{mode:?}: the agent's branch is kept as it was"
            );
            assert!(!ws.is_integration_pending(&api).unwrap());
            assert_eq!(
                std::fs::read_to_string(api.path.join("README.md")).unwrap(),
                "# API\n"
            );
            assert_eq!(repo.untouched(), before, "{mode:?}");
        }
    }

    #[test]
    fn merge_mode_resolves_with_a_merge_commit() {
        let repo = UserRepo::new();
        let (ws, mut api, mut ui) =
            two_finished(&repo, "run-m", [("api.txt", "api\n"), ("ui.txt", "ui\n")]);
        ws.integrate(&mut api, MergeMode::Merge).unwrap();
        let outcome = ws.integrate(&mut ui, MergeMode::Merge).unwrap();
        assert!(
            matches!(
                outcome,
                MergeOutcome::Merged {
                    fast_forward: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let parents = repo
            .git
            .run(["rev-list", "--parents", "-1", "orch/run-m"])
            .unwrap();
        assert_eq!(parents.split(' ').count(), 3, "a merge commit: {parents}");
        assert_eq!(file_at(&repo, "orch/run-m", "api.txt"), "api");
        assert_eq!(file_at(&repo, "orch/run-m", "ui.txt"), "ui");
    }

    #[test]
    fn the_run_branch_is_never_moved_while_checked_out() {
        let repo = UserRepo::new();
        let (ws, _) = Workspace::prepare(&repo.root, "run-o", BaseChoice::Head).unwrap();
        let mut api = ws.create_agent("api").unwrap();
        write(&api.path, "api.txt", "api\n");
        finish(&ws, &api);
        check_out_elsewhere(&repo, "orch/run-o");
        let err = ws.integrate(&mut api, MergeMode::Rebase).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::RunBranchCheckedOut { .. }),
            "{err}"
        );
    }

    #[test]
    fn parallel_demo_agents_merge_cleanly_in_rebase_mode() {
        let repo = UserRepo::new();
        let (ws, _) = Workspace::prepare(&repo.root, "run-demo", BaseChoice::Head).unwrap();
        let mut api = ws.create_agent("backend-api").unwrap();
        let mut ui = ws.create_agent("frontend-ui").unwrap();
        for wt in [&api, &ui] {
            let files = crate::agent::demo_files::write_agent_files(
                &wt.path,
                &wt.agent,
                crate::agent::demo::DemoClash::None,
            )
            .expect("an orch worktree")
            .unwrap();
            let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
            assert!(names.contains(&"demo/SQUAD.md"), "{names:?}");
            finish(&ws, wt);
        }
        assert!(matches!(
            ws.integrate(&mut api, MergeMode::Rebase).unwrap(),
            MergeOutcome::Merged { .. }
        ));
        let second = ws.integrate(&mut ui, MergeMode::Rebase).unwrap();
        assert!(matches!(second, MergeOutcome::Merged { .. }), "{second:?}");
        let mut tests = ws.create_agent("integration-tests").unwrap();
        let files = crate::agent::demo_files::write_agent_files(
            &tests.path,
            &tests.agent,
            crate::agent::demo::DemoClash::None,
        )
        .unwrap()
        .unwrap();
        assert!(
            files.contains(&("demo/SQUAD.md".to_owned(), "update".to_owned())),
            "{files:?}"
        );
        finish(&ws, &tests);
        ws.integrate(&mut tests, MergeMode::Rebase).unwrap();
        let roster = file_at(&repo, "orch/run-demo", "demo/SQUAD.md");
        for agent in ["backend-api", "frontend-ui", "integration-tests"] {
            assert!(roster.contains(&format!("- {agent}: done")), "{roster}");
        }
        let tree = repo
            .git
            .run(["ls-tree", "-r", "--name-only", "orch/run-demo", "demo"])
            .unwrap();
        assert!(
            tree.contains("demo/backend_api.py") && tree.contains("demo/test_frontend_ui.py"),
            "{tree}"
        );
    }
}
