//! The run's base and its branch: `Workspace::prepare` pins the commit every agent
//! starts from and creates `orch/<session>` there; `Workspace::open` finds them again
//! (resume, `launch diff`).
//!
//! Owns the base snapshot of `--include-uncommitted`, made with a private index file
//! so the user's index, tree and stash list stay as they are. Does not create agent
//! worktrees (`worktree.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::id::is_valid_agent_id;
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::Git;
use crate::workspace::setup::WorktreeSetup;

/// Where the run's base comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseChoice {
    /// The commit `HEAD` points at.
    Head,
    /// `--base <ref>`: a branch, tag or commit.
    Ref { reference: String },
    /// `--include-uncommitted`: a snapshot commit of the working tree (untracked,
    /// not ignored files included) on top of `HEAD`.
    Snapshot,
}

/// The user's working tree when the run started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTree {
    /// Changed, staged or untracked (not ignored) paths, at most `MAX_LISTED`.
    pub changed: Vec<String>,
    /// How many there were in all.
    pub changed_count: usize,
    /// The branch `HEAD` is on (`None`: detached).
    pub branch: Option<String>,
}

const MAX_LISTED: usize = 20;

impl UserTree {
    pub fn is_dirty(&self) -> bool {
        self.changed_count > 0
    }
}

/// What `prepare` pinned: saved as `.orch/worktrees/<session>/.meta/run.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBase {
    pub session: String,
    pub choice: BaseChoice,
    /// The commit the run starts from.
    pub commit: String,
    /// `orch/<session>`.
    pub run_branch: String,
}

/// One run's view of the user's repository: its base, its run branch, its worktrees.
/// Cheap to clone; every method runs git synchronously (call it from
/// `spawn_blocking` in async code).
#[derive(Clone, Debug)]
pub struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) git: Git,
    pub(crate) base: RunBase,
    pub(crate) setup: WorktreeSetup,
}

/// `orch/<session>`.
pub fn run_branch_name(session: &str) -> String {
    format!("orch/{session}")
}

/// Where orch keeps the worktrees of a run.
pub fn session_worktrees_dir(root: &Path, session: &str) -> PathBuf {
    crate::paths::orch_dir(root).join("worktrees").join(session)
}

pub(crate) fn meta_dir(root: &Path, session: &str) -> PathBuf {
    session_worktrees_dir(root, session).join(".meta")
}

pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), WorkspaceError> {
    if is_valid_agent_id(name) {
        Ok(())
    } else {
        Err(WorkspaceError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

/// The top of the work tree `dir` is in.
pub fn repo_root(dir: &Path) -> Result<PathBuf, WorkspaceError> {
    let out = Git::new(dir)
        .cmd(["rev-parse", "--show-toplevel"])
        .output()?;
    let top = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || top.is_empty() {
        return Err(WorkspaceError::NotARepository {
            root: dir.to_path_buf(),
        });
    }
    Ok(PathBuf::from(top))
}

/// `.orch/` holds runs, logs and worktrees: a `.gitignore` inside it keeps all of it
/// out of `git status` and `git add -A`, in the user's tree and in snapshots, without
/// touching any file of the user's.
pub(crate) fn ignore_orch_dir(root: &Path) -> Result<(), WorkspaceError> {
    let dir = crate::paths::orch_dir(root);
    let file = dir.join(".gitignore");
    if file.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|source| WorkspaceError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    std::fs::write(
        &file,
        "# Written by orch: runs, logs and agent worktrees stay out of git.\n*\n",
    )
    .map_err(|source| WorkspaceError::Io {
        action: "write",
        path: file,
        source,
    })
}

/// Every changed, staged or untracked (not ignored) path of the tree `git` runs in,
/// read without refreshing (writing) its index.
pub(crate) fn user_tree_paths(git: &Git) -> Result<Vec<String>, WorkspaceError> {
    let entries = git.run_z([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
    ])?;
    Ok(entries
        .iter()
        .filter_map(|e| e.get(3..).map(str::to_owned))
        .collect())
}

/// What `git status` says about the user's tree.
pub(crate) fn user_tree(git: &Git) -> Result<UserTree, WorkspaceError> {
    let changed = user_tree_paths(git)?;
    let branch = git
        .cmd(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .output()?;
    Ok(UserTree {
        changed_count: changed.len(),
        changed: changed.into_iter().take(MAX_LISTED).collect(),
        branch: branch
            .status
            .success()
            .then(|| String::from_utf8_lossy(&branch.stdout).trim().to_owned()),
    })
}

/// A path for a private index file (`GIT_INDEX_FILE`) in a new temporary directory,
/// removed when the returned guard is dropped.
pub(crate) fn private_index(prefix: &str) -> Result<(tempfile::TempDir, PathBuf), WorkspaceError> {
    let temp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| WorkspaceError::Io {
            action: "create a temporary directory for",
            path: std::env::temp_dir(),
            source,
        })?;
    let index = temp.path().join("index");
    Ok((temp, index))
}

/// A commit of the working tree as it is (tracked changes and untracked files that are
/// not ignored), parented on `head`. Uses a private copy of the index, so the user's
/// index file, tree and stash list are not touched.
fn snapshot_commit(git: &Git, head: &str, session: &str) -> Result<String, WorkspaceError> {
    let (_temp, index) = private_index("orch-snapshot")?;
    let user_index =
        PathBuf::from(git.run(["rev-parse", "--path-format=absolute", "--git-path", "index"])?);
    // Starting from a copy of the user's index keeps its stat cache: `add -A` then
    // reads only files that changed.
    if user_index.exists() {
        std::fs::copy(&user_index, &index).map_err(|source| WorkspaceError::Io {
            action: "copy the index",
            path: user_index.clone(),
            source,
        })?;
    } else {
        git.cmd(["read-tree", head])
            .env("GIT_INDEX_FILE", &index)
            .run()?;
    }
    git.cmd(["add", "-A", "--", "."])
        .env("GIT_INDEX_FILE", &index)
        .run()?;
    let tree = git
        .cmd(["write-tree"])
        .env("GIT_INDEX_FILE", &index)
        .run()?;
    git.cmd([
        "commit-tree",
        &tree,
        "-p",
        head,
        "-m",
        &format!("orch: snapshot of the working tree for run {session}\n\nOrch-Session: {session}"),
    ])
    .run()
}

impl Workspace {
    /// The same workspace, for work done ahead of need: its git processes run at the
    /// lowest CPU priority.
    pub fn in_background(&self) -> Workspace {
        Workspace {
            git: self.git.clone().in_background(),
            ..self.clone()
        }
    }
}

impl Workspace {
    /// Pins the base of run `session` and creates its run branch `orch/<session>`
    /// there. The user's branch, index, tree and stash list are left as they are.
    pub fn prepare(
        project_root: &Path,
        session: &str,
        choice: BaseChoice,
    ) -> Result<(Workspace, UserTree), WorkspaceError> {
        check_name("session name", session)?;
        let root = repo_root(project_root)?;
        let git = Git::new(&root).with_identity_of_repo()?;
        let Some(head) = git.resolve_commit("HEAD")? else {
            return Err(WorkspaceError::NoCommits { root });
        };
        ignore_orch_dir(&root)?;
        let tree = user_tree(&git)?;
        let commit = match &choice {
            BaseChoice::Head => head,
            BaseChoice::Ref { reference } => {
                git.resolve_commit(reference)?
                    .ok_or_else(|| WorkspaceError::BadBase {
                        root: root.clone(),
                        reference: reference.clone(),
                    })?
            }
            BaseChoice::Snapshot if tree.is_dirty() => snapshot_commit(&git, &head, session)?,
            BaseChoice::Snapshot => head,
        };
        let run_branch = run_branch_name(session);
        let refname = format!("refs/heads/{run_branch}");
        if git.resolve_commit(&refname)?.is_some() {
            return Err(WorkspaceError::RunBranchExists {
                branch: run_branch,
                session: session.to_owned(),
            });
        }
        git.update_ref(
            &refname,
            &commit,
            None,
            &format!("orch: run {session} starts"),
        )?;
        let base = RunBase {
            session: session.to_owned(),
            choice,
            commit,
            run_branch,
        };
        // Agents' worktrees live in a private folder (0700), like the rest of .orch/.
        let private = session_worktrees_dir(&root, session);
        crate::private_fs::create_dir_all(&private).map_err(|source| WorkspaceError::Io {
            action: "create",
            path: private.clone(),
            source,
        })?;
        write_json(&meta_dir(&root, session).join("run.json"), &base)?;
        Ok((
            Workspace {
                root,
                git,
                base,
                setup: WorktreeSetup::default(),
            },
            tree,
        ))
    }

    /// The workspace of an earlier `prepare` (resume, `launch diff`, `launch merge`).
    pub fn open(project_root: &Path, session: &str) -> Result<Workspace, WorkspaceError> {
        check_name("session name", session)?;
        let root = repo_root(project_root)?;
        let git = Git::new(&root).with_identity_of_repo()?;
        let file = meta_dir(&root, session).join("run.json");
        if !file.exists() {
            return Err(WorkspaceError::NoWorkspace {
                session: session.to_owned(),
                root,
                file: file.display().to_string(),
            });
        }
        let base: RunBase = read_json(&file)?;
        Ok(Workspace {
            root,
            git,
            base,
            setup: WorktreeSetup::default(),
        })
    }

    /// Worktree set-up (copies, links, commands) for agents created from now on.
    pub fn with_setup(mut self, setup: WorktreeSetup) -> Self {
        self.setup = setup;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn session(&self) -> &str {
        &self.base.session
    }

    pub fn base(&self) -> &RunBase {
        &self.base
    }

    /// `orch/<session>`.
    pub fn run_branch(&self) -> &str {
        &self.base.run_branch
    }

    pub(crate) fn run_ref(&self) -> String {
        format!("refs/heads/{}", self.base.run_branch)
    }

    /// The run branch's current tip.
    pub fn run_tip(&self) -> Result<String, WorkspaceError> {
        self.git
            .resolve_commit(&self.run_ref())?
            .ok_or_else(|| WorkspaceError::NoRunBranch {
                branch: self.base.run_branch.clone(),
                root: self.root.clone(),
            })
    }

    pub fn git(&self) -> &Git {
        &self.git
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), WorkspaceError> {
    let io = |action, source| WorkspaceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| WorkspaceError::BadMetadata {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).map_err(|e| io("write", e))?;
    std::fs::rename(&temp, path).map_err(|e| io("write", e))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, WorkspaceError> {
    let text = std::fs::read_to_string(path).map_err(|source| WorkspaceError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| WorkspaceError::BadMetadata {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_support::{UserRepo, write};

    #[test]
    fn prepare_pins_head_creates_the_run_branch_and_reports_a_dirty_tree() {
        let repo = UserRepo::new();
        let before = repo.untouched();
        let head = repo.git.run(["rev-parse", "HEAD"]).unwrap();
        let (ws, tree) = Workspace::prepare(&repo.root, "run-a", BaseChoice::Head).unwrap();
        assert_eq!(ws.base().commit, head);
        assert_eq!(ws.run_tip().unwrap(), head);
        assert_eq!(ws.run_branch(), "orch/run-a");
        assert!(tree.is_dirty());
        assert_eq!(tree.branch.as_deref(), Some("main"));
        assert!(tree.changed.contains(&"README.md".to_owned()), "{tree:?}");
        assert!(tree.changed.contains(&"notes.txt".to_owned()), "{tree:?}");
        assert!(
            !tree.changed.iter().any(|p| p.starts_with(".orch")),
            "{tree:?}"
        );
        assert_eq!(repo.untouched(), before);
        // Found again for resume.
        let again = Workspace::open(&repo.root, "run-a").unwrap();
        assert_eq!(again.base(), ws.base());
        // The same session twice is refused.
        let err = Workspace::prepare(&repo.root, "run-a", BaseChoice::Head).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::RunBranchExists { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("launch clean --session run-a"),
            "{err}"
        );
    }

    #[test]
    fn a_snapshot_base_holds_uncommitted_and_untracked_files_and_leaves_the_user_repo_alone() {
        let repo = UserRepo::new();
        write(
            &repo.root,
            "dir with space/new file.txt",
            "untracked in a subdir\n",
        );
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-s", BaseChoice::Snapshot).unwrap();
        let base = &ws.base().commit;
        assert_ne!(base, &repo.git.run(["rev-parse", "HEAD"]).unwrap());
        assert_eq!(
            repo.git.run(["rev-parse", &format!("{base}^")]).unwrap(),
            repo.git.run(["rev-parse", "HEAD"]).unwrap(),
            "the snapshot sits on HEAD"
        );
        assert!(
            repo.show(&format!("{base}:README.md"))
                .contains("(edited, uncommitted)")
        );
        assert_eq!(repo.show(&format!("{base}:notes.txt")), "untracked notes");
        assert!(
            repo.show(&format!("{base}:dir with space/new file.txt"))
                .contains("subdir")
        );
        let files = repo
            .git
            .run(["ls-tree", "-r", "--name-only", base])
            .unwrap();
        assert!(
            !files.contains("debug.log"),
            "ignored files stay out: {files}"
        );
        assert!(
            !files.contains(".orch"),
            "orch's own files stay out: {files}"
        );
        assert_eq!(repo.untouched(), before, "index, tree, stash unchanged");
    }

    #[test]
    fn a_base_ref_is_resolved_and_a_bad_one_or_an_empty_repo_is_refused() {
        let repo = UserRepo::new();
        let first = repo.git.run(["rev-parse", "HEAD"]).unwrap();
        repo.git.run(["tag", "v1"]).unwrap();
        let (ws, _) = Workspace::prepare(
            &repo.root,
            "run-r",
            BaseChoice::Ref {
                reference: "v1".into(),
            },
        )
        .unwrap();
        assert_eq!(ws.base().commit, first);
        let err = Workspace::prepare(
            &repo.root,
            "run-x",
            BaseChoice::Ref {
                reference: "no-such-ref".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, WorkspaceError::BadBase { .. }), "{err}");
        assert!(err.to_string().contains("--base"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        Git::new(empty.path()).run(["init", "-q"]).unwrap();
        let err = Workspace::prepare(empty.path(), "run-e", BaseChoice::Head).unwrap_err();
        assert!(matches!(err, WorkspaceError::NoCommits { .. }), "{err}");
        assert!(err.to_string().contains("no commits yet"), "{err}");
        let not_repo = tempfile::tempdir().unwrap();
        let err = Workspace::prepare(not_repo.path(), "run-e", BaseChoice::Head).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::NotARepository { .. }),
            "{err}"
        );
        let err = Workspace::prepare(&repo.root, "../evil", BaseChoice::Head).unwrap_err();
        assert!(matches!(err, WorkspaceError::BadName { .. }), "{err}");
    }
}
