//! Isolation and integration: the run's base and branch `orch/<session>`, a git
//! worktree per agent, orch's commits for agents, the merge queue's step, what each
//! agent changed, and `launch merge|diff|clean`. Every git command goes through
//! `git::Git`. The user's branch, index, tree and stash are never touched, except by
//! `launch merge` on the user's request.
//!
//! A run calls, in order: `Workspace::prepare` at start (or `Workspace::open` on
//! resume), `create_agent` / `create_readonly` when an agent starts (`open_agent` on
//! resume), `commit_agent` then `agent_changes` when its final turn ends, and
//! `integrate` in the merge queue; after a conflict's resolve turn,
//! `continue_integration`.

mod base;
mod clean;
mod commit;
mod diff;
mod error;
pub mod git;
mod merge;
mod run_file;
mod setup;
mod user_merge;
mod worktree;

pub use base::{
    BaseChoice, RunBase, UserTree, Workspace, repo_root, run_branch_name, session_worktrees_dir,
};
pub use clean::{CleanForce, CleanReport, CleanScope, clean};
pub use commit::{CommitInfo, CommitOutcome, Committed};
pub use diff::{ChangedFile, Changes, CommitSummary};
pub use error::WorkspaceError;
pub use merge::{ConflictState, MergeMode, MergeOutcome};
pub use setup::{DEFAULT_SETUP_TIMEOUT, SetupReport, WORKTREE_INCLUDE, WorktreeSetup};
pub use user_merge::{UserMergeOutcome, merge_run};
pub use worktree::{AgentWorktree, WorktreeAccess, agent_branch_name};

#[cfg(test)]
mod test_support;
