//! An agent's own worktree during a run: made before its first turn (from the run
//! branch's tip, so a dependant starts from its parents' merged work), committed after
//! its last, then integrated into the run branch through the merge queue, one agent at
//! a time in finishing order, with one resolve turn on a conflict.
//!
//! Owns the order of those steps and what each tells the run. The git work itself is
//! `crate::workspace`'s, run on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::agent::backend::{Expects, TurnKind};
use crate::events::event::{AgentChanges, NoticeLevel, OrchEventKind};
use crate::orchestrator::lifecycle::AgentLifecycle;
use crate::orchestrator::review::WorkForReview;
use crate::orchestrator::turn::{Conversation, RunContext, TurnError, TurnPurpose};
use crate::workspace::{
    AgentWorktree, Changes, CommitInfo, Committed, MergeMode, MergeOutcome, Workspace,
    WorkspaceError,
};

/// The run's workspace and its merge queue (a fair lock: agents merge in the order
/// they asked, which is the order they finished).
pub struct Isolation {
    pub workspace: Workspace,
    queue: tokio::sync::Mutex<()>,
    /// The git steps that must not run beside each other: `git worktree add` reads every
    /// other worktree's metadata and fails on one being made at the same moment, and so
    /// does listing the worktrees. Commits in agents' own worktrees and merges (the
    /// queue orders those) do not take it.
    git: Arc<std::sync::Mutex<()>>,
    mode: MergeMode,
    /// Worktrees made ahead for agents that have not started, by agent.
    staged: std::sync::Mutex<HashMap<String, Arc<Staged>>>,
    /// Agents launched whose worktree is not set up yet: while there are any, nothing
    /// is made ahead (their set-up comes first).
    starting: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Removals of worktrees made ahead for agents that will never start: the agent and
    /// why, when one failed.
    unstaging: std::sync::Mutex<Vec<Removal>>,
}

/// A removal under way: when it fails, the agent and why.
type Removal = tokio::task::JoinHandle<Option<(String, String)>>;

/// A worktree made ahead.
struct Staged {
    /// Locked while it is being made, then holding it (`None` when it could not be
    /// made; the agent's own set-up then tries again and says why).
    worktree: Arc<tokio::sync::Mutex<Option<AgentWorktree>>>,
    /// Its agent is starting: a making that has not begun does not begin.
    claimed: AtomicBool,
}

impl Isolation {
    pub fn new(workspace: Workspace) -> Self {
        Isolation {
            workspace,
            queue: tokio::sync::Mutex::new(()),
            git: Arc::new(std::sync::Mutex::new(())),
            mode: MergeMode::Rebase,
            staged: std::sync::Mutex::new(HashMap::new()),
            starting: Arc::default(),
            unstaging: Default::default(),
        }
    }

    /// `agent` was launched: its set-up goes before any worktree made ahead.
    pub(crate) fn starting(&self, agent: &str) {
        self.starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent.to_owned());
    }

    /// `agent`'s worktree is set up (or its task ended without one).
    pub(crate) fn set_up(&self, agent: &str) {
        self.starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(agent);
    }

    /// Starts making the worktree of `agent`, which may change files and will start
    /// once the agents it waits for are done: on its own branch at the run branch's tip
    /// now, files checked out, no set-up yet. When it starts, its worktree only moves
    /// to the tip of that moment, which rewrites just the files its parents changed, so
    /// the checkout is not on the way from a parent's merge to its dependant's first
    /// turn. `None` when one is already made or being made. The future holds no part of
    /// the run but the workspace.
    pub(crate) fn stage(&self, agent: &str) -> Option<impl Future<Output = ()> + Send + 'static> {
        let slot = Arc::new(Staged {
            worktree: Arc::default(),
            claimed: AtomicBool::new(false),
        });
        let guard = slot.worktree.clone().try_lock_owned().ok()?;
        {
            let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            if staged.contains_key(agent) {
                return None;
            }
            staged.insert(agent.to_owned(), slot.clone());
        }
        let (workspace, lock) = (self.workspace.in_background(), self.git.clone());
        let (starting, agent) = (self.starting.clone(), agent.to_owned());
        Some(async move {
            let mut guard = guard;
            // Agents starting now set up first; this waits for them (checked every
            // 2 ms: a making ahead is never urgent), unless its own agent starts.
            loop {
                if slot.claimed.load(Ordering::Acquire) {
                    return;
                }
                if starting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let (ws, git_lock) = (workspace.clone(), lock.clone());
            let begun = blocking(move || {
                let _one_at_a_time = git_lock.lock().unwrap_or_else(|e| e.into_inner());
                match ws.open_agent(&agent) {
                    // Resumed: its worktree is its agent's already.
                    Ok(existing) if !existing.staged => Ok(None),
                    // Nothing yet, or what a killed making left (removed first).
                    _ => ws.begin_worktree(&agent, true).map(Some),
                }
            })
            .await;
            let Ok(Some(mut worktree)) = begun else {
                return;
            };
            let (ws, made) = (workspace.clone(), worktree.clone());
            *guard = match blocking(move || {
                ws.check_out(&mut worktree, None)?;
                Ok(worktree)
            })
            .await
            {
                Ok(worktree) => Some(worktree),
                Err(_) => {
                    // Half made (a full disk, say): gone again, so the agent's own
                    // set-up starts clean and says what fails.
                    let _ = blocking(move || {
                        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
                        workspace.discard_staged(&made)
                    })
                    .await;
                    None
                }
            };
        })
    }

    /// The worktree made ahead for `agent`, once it is made (taken: asked once).
    async fn take_staged(&self, agent: &str) -> Option<AgentWorktree> {
        let slot = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(agent)?;
        slot.claimed.store(true, Ordering::Release);
        slot.worktree.lock().await.take()
    }

    /// Starts removing the worktree made ahead for `agent`, which will never start (a
    /// dependency failed), once it is made; nothing when none was asked for. The run's
    /// end waits for it (`discard_staged`); a removal that fails is said there.
    pub(crate) fn unstage(&self, agent: &str) {
        let Some(slot) = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(agent)
        else {
            return;
        };
        slot.claimed.store(true, Ordering::Release);
        let (workspace, lock) = (self.workspace.clone(), self.git.clone());
        let agent = agent.to_owned();
        let removing = tokio::spawn(async move {
            let worktree = slot.worktree.lock().await.take()?;
            blocking(move || {
                let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
                workspace.discard_staged(&worktree)
            })
            .await
            .err()
            .map(|err| (agent, err))
        });
        self.unstaging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(removing);
    }

    /// Removes the worktrees made ahead for agents that never started (blocked by a
    /// failure, or the run stopped), once they are made. Returns what could not be
    /// removed, as problems to say.
    pub(crate) async fn discard_staged(&self) -> Vec<String> {
        let slots: Vec<(String, Arc<Staged>)> = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let mut problems = Vec::new();
        let removals: Vec<_> = self
            .unstaging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for removal in removals {
            if let Ok(Some((agent, err))) = removal.await {
                problems.push(left_problem(&agent, &err));
            }
        }
        for (agent, slot) in slots {
            slot.claimed.store(true, Ordering::Release);
            let Some(worktree) = slot.worktree.lock().await.take() else {
                continue;
            };
            let workspace = self.workspace.clone();
            if let Err(err) = self
                .blocking(move || workspace.discard_staged(&worktree))
                .await
            {
                problems.push(left_problem(&agent, &err));
            }
        }
        problems
    }

    /// Runs a git step of the workspace on the blocking pool, one at a time.
    async fn blocking<T: Send + 'static>(
        &self,
        step: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
    ) -> Result<T, String> {
        let lock = self.git.clone();
        blocking(move || {
            // A panic elsewhere poisons the lock but leaves nothing half-done to guard.
            let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
            step()
        })
        .await
    }
}

impl Isolation {
    /// Rewrites `path` on the run branch: `update` gets its text at the tip and gives
    /// the new text (and a flag it returns). Runs in the merge queue, so no agent's
    /// merge moves the tip meanwhile.
    pub(crate) async fn update_run_file<F>(
        &self,
        path: String,
        update: impl FnOnce(Option<String>) -> Result<(String, F), String> + Send + 'static,
        message: String,
    ) -> Result<F, String>
    where
        F: Send + 'static,
    {
        let _in_queue = self.queue.lock().await;
        let workspace = self.workspace.clone();
        let lock = self.git.clone();
        let step = move || {
            let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
            let tip = workspace.run_file(&path).map_err(|err| err.to_string())?;
            let (text, flag) = update(tip)?;
            workspace
                .write_run_file(&path, &text, &message)
                .map_err(|err| err.to_string())?;
            Ok(flag)
        };
        match tokio::task::spawn_blocking(step).await {
            Ok(result) => result,
            Err(err) => Err(format!("a git step ended abnormally: {err}")),
        }
    }
}

/// Which merge-queue step to run on an agent's worktree.
#[derive(Clone, Copy)]
enum MergeStep {
    /// Rebase (or merge) onto the run branch's tip.
    Integrate,
    /// Finish the one a resolve turn fixed (or abort it, if markers are left).
    Continue,
}

impl Isolation {
    /// Runs one merge step; `worktree` is updated to what the step left.
    async fn merge_step(
        &self,
        worktree: &mut AgentWorktree,
        step: MergeStep,
        agent: &str,
    ) -> Result<MergeOutcome, TurnError> {
        let (workspace, mode, mut wt) = (self.workspace.clone(), self.mode, worktree.clone());
        let lock = self.git.clone();
        // The caller holds the merge queue, the only mover of the run branch; of this
        // step only the listing of every worktree by git (when their files cannot be
        // read directly) must not run beside a `git worktree add`. The rebase and the
        // update of the run branch run beside agents' set-ups.
        let (outcome, wt) = blocking(move || {
            let check_out = || {
                if let Some(checked) = workspace.run_branch_checked_out_on_disk() {
                    return checked;
                }
                let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
                workspace.check_run_branch_not_checked_out()
            };
            let outcome = match step {
                MergeStep::Integrate => workspace.integrate_with(&mut wt, mode, check_out)?,
                MergeStep::Continue => workspace.continue_integration(&mut wt, mode)?,
            };
            Ok((outcome, wt))
        })
        .await
        .map_err(|err| {
            TurnError::Failed(format!("failed to merge the work of `{agent}`: {err}"))
        })?;
        *worktree = wt;
        Ok(outcome)
    }
}

fn left_problem(agent: &str, err: &str) -> String {
    format!(
        "the worktree made ahead for `{agent}`, which never started, is left: {err} (`launch clean` removes it)"
    )
}

/// Runs `step` on the blocking pool.
async fn blocking<T: Send + 'static>(
    step: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(step).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(format!("a git step ended abnormally: {err}")),
    }
}

impl RunContext {
    /// The directory the agent's turns run in: its worktree (made now if it has none)
    /// or, without isolation, the project root.
    pub(crate) async fn prepare_workdir(
        &self,
        conversation: &mut Conversation,
    ) -> Result<(), String> {
        let Some(isolation) = &self.isolation else {
            return Ok(());
        };
        let prepared = self.prepare_worktree(isolation, conversation).await;
        isolation.set_up(&conversation.id);
        prepared
    }

    async fn prepare_worktree(
        &self,
        isolation: &Isolation,
        conversation: &mut Conversation,
    ) -> Result<(), String> {
        if conversation.worktree.is_some() {
            return Ok(());
        }
        self.link
            .progress(&conversation.id, AgentLifecycle::SettingUp);
        let workspace = isolation.workspace.clone();
        let agent = conversation.id.clone();
        // What the agent may do decides its worktree: one that may change files gets a
        // branch whose work is committed and merged; a read-only one a detached view.
        let write =
            self.config
                .permissions_for(&conversation.id, conversation.kind, &conversation.backend)
                != crate::agent::permissions::Permissions::ReadOnly;
        let fail = |err: String| {
            format!(
                "failed to set up the worktree of `{}`: {err}",
                conversation.id
            )
        };
        // Made ahead while its parents worked (for an agent that may change files; one
        // that now may not gets a view instead, which replaces it), or its own from an
        // earlier attempt of this run, or made now (`begin_worktree` first removes what
        // a making killed before its agent had it left).
        let (mut worktree, ahead) = match isolation.take_staged(&agent).await.filter(|_| write) {
            Some(staged) => (staged, true),
            None => {
                let ws = workspace.clone();
                let found = isolation
                    .blocking(move || match ws.open_agent(&agent) {
                        Ok(existing) if !existing.staged => Ok(existing),
                        _ => ws.begin_worktree(&agent, write),
                    })
                    .await
                    .map_err(fail)?;
                (found, false)
            }
        };
        if worktree.staged {
            // The checkout and the set-up (copies, links, commands such as `npm ci`)
            // touch only this worktree: agents starting together do them at once.
            worktree = blocking(move || {
                if !ahead {
                    workspace.check_out(&mut worktree, None)?;
                } else {
                    // Made ahead at what is still the tip: its files are there already.
                    let tip = workspace.run_tip()?;
                    if tip != worktree.base {
                        workspace.check_out(&mut worktree, Some(&tip))?;
                    }
                }
                workspace.finish_worktree(&mut worktree)?;
                Ok(worktree)
            })
            .await
            .map_err(fail)?;
        }
        self.bus
            .publish(OrchEventKind::WorktreeReady {
                agent: conversation.id.clone(),
                path: worktree.path.clone(),
                branch: worktree.branch.clone(),
                base: worktree.base.clone(),
            })
            .await;
        conversation.worktree = Some(worktree);
        Ok(())
    }

    /// Where the agent's turns run.
    pub(crate) fn workdir(&self, conversation: &Conversation) -> PathBuf {
        match &conversation.worktree {
            Some(worktree) => worktree.path.clone(),
            None => self.config.paths.project_root.clone(),
        }
    }

    /// After the agent's final turn: commits its work and integrates it into the run
    /// branch. An error is the agent's failure (its branch is kept). `Ok(true)` when the
    /// merge brought other agents' work into the agent's worktree (a rebase or a merge,
    /// not a fast-forward): what its gates checked is not what the run branch now holds.
    pub(crate) async fn integrate(
        &self,
        conversation: &mut Conversation,
        answer: &str,
    ) -> Result<bool, TurnError> {
        let Some(isolation) = &self.isolation else {
            return Ok(false);
        };
        let Some(mut worktree) = conversation.worktree.clone() else {
            return Ok(false);
        };
        if worktree.branch.is_none() {
            // A read-only view: nothing is kept from it, so changes left there are said.
            let workspace = isolation.workspace.clone();
            let wt = worktree.clone();
            if let Ok(changed) = isolation.blocking(move || workspace.uncommitted(&wt)).await
                && !changed.is_empty()
            {
                let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
                let more = match changed.len() - shown.len() {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                self.notice(
                    NoticeLevel::Warning,
                    format!(
                        "agent `{}` is read-only but changed {}{more} in its worktree; that is not kept (give it `permissions \"edit\"` in orch.kdl to keep its work)",
                        conversation.id,
                        shown.join(", ")
                    ),
                )
                .await;
            }
            return Ok(false);
        }
        self.store_verified().await?;
        let id = conversation.id.clone();
        self.link.progress(&id, AgentLifecycle::Merging);
        let committed = commit_work(isolation, &worktree, conversation, answer).await?;
        let base = worktree.base.clone();
        if committed.head == base {
            self.notice(
                NoticeLevel::Info,
                format!("`{id}` changed no file: nothing to merge"),
            )
            .await;
            return Ok(false);
        }
        // What the agent changed is read while its work goes through the merge queue
        // (both only read the commits they are given), and stored before the merge is.
        let workspace = isolation.workspace.clone();
        let head = committed.head.clone();
        let reading = tokio::task::spawn_blocking(move || workspace.changes_between(&base, &head));
        let read = |joined: Result<Result<Changes, WorkspaceError>, tokio::task::JoinError>| {
            joined
                .map_err(|err| format!("a git step ended abnormally: {err}"))
                .and_then(|read| read.map_err(|err| err.to_string()))
                .map_err(|err| {
                    TurnError::Failed(format!("failed to read the work of `{id}`: {err}"))
                })
        };
        // The merge queue: one agent at a time, in the order they got here.
        let _turn = isolation.queue.lock().await;
        let merged = isolation
            .merge_step(&mut worktree, MergeStep::Integrate, &id)
            .await;
        let changes = read(reading.await)?;
        if changes.commits.is_empty() {
            // Its branch went back to (or behind) its base: nothing of it to keep.
            self.notice(
                NoticeLevel::Info,
                format!("`{id}` changed no file: nothing to merge"),
            )
            .await;
            conversation.worktree = Some(worktree);
            return merged.map(|_| false);
        }
        self.bus
            .publish(OrchEventKind::ChangesCommitted(Box::new(AgentChanges {
                agent: id.clone(),
                branch: worktree.branch.clone().unwrap_or_default(),
                base: changes.base.clone(),
                head: changes.head.clone(),
                commits: changes.commits.clone(),
                files: changes.files.clone(),
                diffstat: changes.diffstat.clone(),
                patch: String::from_utf8_lossy(&changes.patch).into_owned(),
            })))
            .await;
        let outcome = merged?;
        let outcome = match outcome {
            MergeOutcome::Conflict {
                paths, other_side, ..
            } => {
                self.bus
                    .publish(OrchEventKind::MergeConflict {
                        agent: id.clone(),
                        paths: paths.clone(),
                        other_side: other_side.clone(),
                        resolving: true,
                    })
                    .await;
                conversation.worktree = Some(worktree.clone());
                let prompt = resolve_prompt(&paths, &other_side, &worktree);
                self.run_turn(
                    conversation,
                    TurnKind::FollowUp,
                    Expects::Text,
                    TurnPurpose::Planned,
                    &prompt,
                    &["merge-resolve"],
                )
                .await?;
                isolation
                    .merge_step(&mut worktree, MergeStep::Continue, &id)
                    .await?
            }
            other => other,
        };
        conversation.worktree = Some(worktree.clone());
        match outcome {
            MergeOutcome::Merged {
                tip,
                commits,
                fast_forward,
            } => {
                self.bus
                    .publish(OrchEventKind::AgentMerged {
                        agent: id.clone(),
                        run_branch: isolation.workspace.run_branch().to_owned(),
                        tip,
                        commits: commits.len(),
                        fast_forward,
                    })
                    .await;
                Ok(!fast_forward)
            }
            MergeOutcome::NothingToMerge => Ok(false),
            MergeOutcome::Conflict {
                paths, other_side, ..
            } => {
                self.bus
                    .publish(OrchEventKind::MergeConflict {
                        agent: id.clone(),
                        paths: paths.clone(),
                        other_side: other_side.clone(),
                        resolving: false,
                    })
                    .await;
                Err(TurnError::Failed(format!(
                    "its work conflicts with {other_side} in {}; its branch {} is kept",
                    paths.join(", "),
                    worktree.branch.as_deref().unwrap_or("-")
                )))
            }
        }
    }

    /// The agent's work as a reviewer sees it: committed first (its commits are kept;
    /// a later fix is committed after them), then its diff since its base.
    pub(crate) async fn work_for_review(
        &self,
        conversation: &Conversation,
        answer: &str,
    ) -> Result<WorkForReview, TurnError> {
        let (Some(isolation), Some(worktree)) = (&self.isolation, &conversation.worktree) else {
            return Ok(WorkForReview {
                diffstat: "(this run has no worktrees, so orch has no diff of this agent's work: read the files in the working directory)".into(),
                patch: String::new(),
                files: 0,
            });
        };
        let changes = commit(isolation, worktree, conversation, answer).await?;
        Ok(WorkForReview {
            diffstat: if changes.files.is_empty() {
                "(no file changed)".into()
            } else {
                changes.diffstat.clone()
            },
            patch: String::from_utf8_lossy(&changes.patch).into_owned(),
            files: changes.files.len(),
        })
    }

    pub(crate) async fn notice(&self, level: NoticeLevel, message: String) {
        self.bus
            .publish(OrchEventKind::Notice { level, message })
            .await;
    }
}

/// Commits what the agent changed in its worktree (`answer` sums it up), then reads
/// all it changed since its base.
async fn commit(
    isolation: &Isolation,
    worktree: &AgentWorktree,
    conversation: &Conversation,
    answer: &str,
) -> Result<Changes, TurnError> {
    let head = commit_work(isolation, worktree, conversation, answer)
        .await?
        .head;
    let (workspace, base, id) = (
        isolation.workspace.clone(),
        worktree.base.clone(),
        conversation.id.clone(),
    );
    blocking(move || workspace.changes_between(&base, &head))
        .await
        .map_err(|err| TurnError::Failed(format!("failed to read the work of `{id}`: {err}")))
}

/// Commits what the agent changed in its worktree (`answer` sums it up).
///
/// Not under the run's git lock: a commit touches only the agent's own worktree, index
/// and branch (and adds objects, which git writes atomically), so agents that finish
/// together commit at once; worktree set-up and merges stay serial.
async fn commit_work(
    isolation: &Isolation,
    worktree: &AgentWorktree,
    conversation: &Conversation,
    answer: &str,
) -> Result<Committed, TurnError> {
    let (workspace, wt) = (isolation.workspace.clone(), worktree.clone());
    let info = CommitInfo {
        role: conversation.role.clone(),
        summary: answer.to_owned(),
    };
    let id = conversation.id.clone();
    blocking(move || workspace.commit_work(&wt, &info))
        .await
        .map_err(|err| TurnError::Failed(format!("failed to commit the work of `{id}`: {err}")))
}

/// The one turn an agent gets to resolve a conflict with the run branch.
fn resolve_prompt(paths: &[String], other_side: &str, worktree: &AgentWorktree) -> String {
    let mut out = String::from(
        "Your work was committed, but rebasing it onto the run branch stopped on a conflict.\n",
    );
    out.push_str(&format!(
        "The other side: {other_side}.\nConflicting files:\n"
    ));
    for path in paths {
        out.push_str(&format!("- {path}\n"));
    }
    out.push_str(&format!(
        "\nIn {}, edit each of these files so that it keeps both your change and the other side's, and remove every conflict marker (<<<<<<<, =======, >>>>>>>). Do not run git yourself: orch continues the rebase when you are done. Answer with one sentence saying what you kept.\n",
        worktree.path.display()
    ));
    out
}
