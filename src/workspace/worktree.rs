//! One git worktree per agent: `.orch/worktrees/<session>/<agent>` on branch
//! `orch-agent/<session>/<agent>`, created from the run branch's tip when the agent
//! starts, so a dependant sees its parents' merged work. Core agents get a detached,
//! read-only view of the base instead.
//!
//! Owns creating, finding and describing worktrees (`.meta/agents/<agent>.json`
//! beside them). Does not commit or merge (`commit.rs`, `merge.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workspace::base::{
    Workspace, check_name, meta_dir, read_json, session_worktrees_dir, write_json,
};
use crate::workspace::error::WorkspaceError;
use crate::workspace::git::Git;
use crate::workspace::setup::{SetupReport, apply};

/// Whether orch commits and integrates what an agent does in its worktree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorktreeAccess {
    /// On its own branch; committed and merged into the run branch.
    Write,
    /// Detached at the base; never committed or merged (core agents).
    ReadOnly,
}

/// An agent's worktree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentWorktree {
    pub agent: String,
    pub session: String,
    /// The agent's cwd and its sandbox's writable root.
    pub path: PathBuf,
    /// `orch-agent/<session>/<agent>`; `None` for a read-only worktree.
    pub branch: Option<String>,
    /// The commit its work is measured from: the run branch's tip when it was created,
    /// and the tip it was rebased onto after an integration.
    pub base: String,
    pub access: WorktreeAccess,
    /// What set-up placed (kept out of the agent's commits).
    pub setup: SetupReport,
    /// Made but not yet handed to its agent: its files may be missing or behind the
    /// run branch, and set-up has not run. `finish_worktree` brings it to the run
    /// branch's tip and clears this. Worktrees are made ahead, while the agents they
    /// wait for still work, so a dependant does not wait for its checkout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

impl AgentWorktree {
    pub(crate) fn git(&self, workspace: &Workspace) -> Git {
        workspace.git.at(&self.path)
    }

    /// The branch, or an error for a read-only worktree.
    pub fn writable_branch(&self) -> Result<&str, WorkspaceError> {
        match (&self.branch, self.access) {
            (Some(branch), WorktreeAccess::Write) => Ok(branch),
            _ => Err(WorkspaceError::ReadOnly {
                agent: self.agent.clone(),
            }),
        }
    }

    /// A label for pane titles and logs: the branch, or `read-only <short base>`.
    pub fn label(&self) -> String {
        match &self.branch {
            Some(branch) => branch.clone(),
            None => format!("read-only {}", &self.base[..self.base.len().min(10)]),
        }
    }
}

/// `orch-agent/<session>/<agent>`.
pub fn agent_branch_name(session: &str, agent: &str) -> String {
    format!("orch-agent/{session}/{agent}")
}

pub(crate) fn agent_meta_file(root: &Path, session: &str, agent: &str) -> PathBuf {
    meta_dir(root, session)
        .join("agents")
        .join(format!("{agent}.json"))
}

impl Workspace {
    /// Where agent `agent`'s worktree is (or will be).
    pub fn agent_path(&self, agent: &str) -> PathBuf {
        session_worktrees_dir(&self.root, self.session()).join(agent)
    }

    /// Creates agent `agent`'s worktree on its own branch at the run branch's current
    /// tip, then applies the set-up.
    pub fn create_agent(&self, agent: &str) -> Result<AgentWorktree, WorkspaceError> {
        let mut worktree = self.begin_worktree(agent, true)?;
        self.check_out(&mut worktree, None)?;
        self.finish_worktree(&mut worktree)?;
        Ok(worktree)
    }

    /// Creates a read-only view of the run's base for agent `agent` (core agents):
    /// detached, never committed or merged.
    pub fn create_readonly(&self, agent: &str) -> Result<AgentWorktree, WorkspaceError> {
        let mut worktree = self.begin_worktree(agent, false)?;
        self.check_out(&mut worktree, None)?;
        self.finish_worktree(&mut worktree)?;
        Ok(worktree)
    }

    /// The first half of making an agent's worktree, the one that must not run beside
    /// another `git worktree add` of the run: the worktree registered with git, its
    /// branch (`write`: at the run branch's tip) or a detached view of the base, no
    /// files checked out yet, `staged`. `check_out` and `finish_worktree` do the rest,
    /// and may run beside others.
    pub fn begin_worktree(
        &self,
        agent: &str,
        write: bool,
    ) -> Result<AgentWorktree, WorkspaceError> {
        check_name("agent id", agent)?;
        let (start, branch) = if write {
            (
                self.run_tip()?,
                Some(agent_branch_name(self.session(), agent)),
            )
        } else {
            (self.base.commit.clone(), None)
        };
        let path = self.agent_path(agent);
        // What an earlier making of it left, killed before its agent had it: gone.
        if let Some(left) = self.staged_record(agent) {
            self.remove_staged(&left)?;
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(WorkspaceError::WorktreeExists {
                agent: agent.to_owned(),
                path,
            });
        }
        let worktree = AgentWorktree {
            agent: agent.to_owned(),
            session: self.session().to_owned(),
            path,
            access: if branch.is_some() {
                WorktreeAccess::Write
            } else {
                WorktreeAccess::ReadOnly
            },
            branch,
            base: start,
            setup: SetupReport::default(),
            staged: true,
        };
        // Recorded, as staged, before git makes it: whatever a crash leaves of it from
        // here on is known to be orch's and no agent's (`remove_staged`).
        self.save_agent(&worktree)?;
        let mut cmd = self
            .git
            .cmd(["worktree", "add", "--quiet", "--no-checkout"]);
        cmd = match &worktree.branch {
            Some(branch) => cmd.args(["-b", branch]),
            None => cmd.arg("--detach"),
        };
        if let Err(err) = cmd.arg(&worktree.path).arg(&worktree.base).run() {
            let _ = self.remove_staged(&worktree);
            return Err(err);
        }
        Ok(worktree)
    }

    /// The record of agent `agent`'s worktree when it says staged, whether or not the
    /// worktree itself is there.
    fn staged_record(&self, agent: &str) -> Option<AgentWorktree> {
        read_json::<AgentWorktree>(&agent_meta_file(&self.root, self.session(), agent))
            .ok()
            .filter(|w| w.staged)
    }

    /// Removes what there is of a staged worktree: the worktree (or its directory, when
    /// git does not know it), its branch and its record. The branch goes only when the
    /// run branch holds its commit (a staged branch sits at an earlier tip): anything
    /// else on it is kept, and said.
    fn remove_staged(&self, worktree: &AgentWorktree) -> Result<(), WorkspaceError> {
        // Twice forced: `git worktree add` keeps a worktree locked while it makes it.
        let removed = self
            .git
            .cmd(["worktree", "remove", "--force", "--force"])
            .arg(&worktree.path)
            .output()?;
        if !removed.status.success() && std::fs::symlink_metadata(&worktree.path).is_ok() {
            // Made only in part: not a worktree git knows.
            std::fs::remove_dir_all(&worktree.path).map_err(|source| WorkspaceError::Io {
                action: "remove",
                path: worktree.path.clone(),
                source,
            })?;
        }
        self.git.run(["worktree", "prune"])?;
        if let Some(branch) = &worktree.branch
            && let Some(at) = self.git.resolve_commit(&format!("refs/heads/{branch}"))?
        {
            if !self.git.is_ancestor(&at, &self.run_tip()?)? {
                return Err(WorkspaceError::WorktreeExists {
                    agent: worktree.agent.clone(),
                    path: worktree.path.clone(),
                });
            }
            self.git
                .cmd(["branch", "--quiet", "-D", "--end-of-options"])
                .arg(branch)
                .run()?;
        }
        let file = agent_meta_file(&self.root, self.session(), &worktree.agent);
        match std::fs::remove_file(&file) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                Err(WorkspaceError::Io {
                    action: "remove",
                    path: file,
                    source,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks out a staged worktree's files: at `tip` (the run branch's tip now, for
    /// one made ahead), which moves its branch there and rewrites only the files that
    /// differ, or at its base. Touches only this worktree and its branch.
    pub fn check_out(
        &self,
        worktree: &mut AgentWorktree,
        tip: Option<&str>,
    ) -> Result<(), WorkspaceError> {
        let git = self.git.at(&worktree.path);
        match tip {
            Some(tip) if worktree.access == WorktreeAccess::Write => {
                // Only a worktree its agent has not had yet may move.
                if !worktree.staged {
                    return Err(WorkspaceError::NotStaged {
                        agent: worktree.agent.clone(),
                    });
                }
                git.cmd(["reset", "--hard", "--quiet", tip]).run()?;
                worktree.base = tip.to_owned();
            }
            _ => {
                git.cmd(["reset", "--hard", "--quiet"]).run()?;
            }
        }
        Ok(())
    }

    /// The last step: the set-up (copies, links, commands), then the worktree is its
    /// agent's. Touches only this worktree.
    pub fn finish_worktree(&self, worktree: &mut AgentWorktree) -> Result<(), WorkspaceError> {
        worktree.setup = apply(
            &self.setup,
            &self.git,
            &self.root,
            &worktree.path,
            &worktree.agent,
            self.session(),
        )?;
        worktree.staged = false;
        self.save_agent(worktree)?;
        Ok(())
    }

    /// Removes a staged worktree that no agent got (its agent never started): the
    /// worktree, its branch and its record. Must not run beside another `git worktree`
    /// command of the run. A worktree its agent had is never removed here.
    pub fn discard_staged(&self, worktree: &AgentWorktree) -> Result<(), WorkspaceError> {
        match read_json::<AgentWorktree>(&agent_meta_file(
            &self.root,
            self.session(),
            &worktree.agent,
        )) {
            Ok(current) if current.staged => self.remove_staged(&current),
            Ok(_) => Err(WorkspaceError::NotStaged {
                agent: worktree.agent.clone(),
            }),
            Err(_) => Ok(()),
        }
    }

    /// Agent `agent`'s existing worktree, as it is (resume).
    pub fn open_agent(&self, agent: &str) -> Result<AgentWorktree, WorkspaceError> {
        check_name("agent id", agent)?;
        let file = agent_meta_file(&self.root, self.session(), agent);
        let path = self.agent_path(agent);
        if !file.exists() || !path.is_dir() {
            return Err(WorkspaceError::NoWorktree {
                agent: agent.to_owned(),
                session: self.session().to_owned(),
                path,
            });
        }
        read_json(&file)
    }

    /// The agents with a worktree in this run, sorted.
    pub fn agents(&self) -> Vec<String> {
        let dir = meta_dir(&self.root, self.session()).join("agents");
        let mut agents: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_owned)
            })
            .collect();
        agents.sort();
        agents
    }

    pub(crate) fn save_agent(&self, worktree: &AgentWorktree) -> Result<(), WorkspaceError> {
        write_json(
            &agent_meta_file(&self.root, self.session(), &worktree.agent),
            worktree,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::base::BaseChoice;
    use crate::workspace::setup::WorktreeSetup;
    use crate::workspace::test_support::{UserRepo, write};

    #[test]
    fn a_worktree_made_ahead_moves_to_the_tip_when_its_agent_starts_or_is_discarded() {
        let repo = UserRepo::new();
        write(&repo.root, ".env", "SECRET=1\n");
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-s", BaseChoice::Head).unwrap();
        let ws = ws.with_setup(WorktreeSetup {
            copy: vec![".env".into()],
            ..WorktreeSetup::default()
        });
        // Made ahead, in the background, while its parent works: files, no set-up.
        let ahead = ws.in_background();
        let mut tests = ahead.begin_worktree("tests", true).unwrap();
        ahead.check_out(&mut tests, None).unwrap();
        assert!(tests.staged && tests.path.join("src/app.txt").is_file());
        assert!(
            !tests.path.join(".env").exists(),
            "set-up waits for the start"
        );
        assert!(
            ws.open_agent("tests").unwrap().staged,
            "known as staged on disk"
        );
        let mut unused = ahead.begin_worktree("unused", true).unwrap();
        ahead.check_out(&mut unused, None).unwrap();

        // The parent's work lands on the run branch.
        let mut api = ws.create_agent("api").unwrap();
        write(&api.path, "src/api.txt", "api\n");
        ws.commit_agent(
            &api,
            &crate::workspace::CommitInfo {
                role: "API".into(),
                summary: String::new(),
            },
        )
        .unwrap();
        ws.integrate(&mut api, crate::workspace::MergeMode::Rebase)
            .unwrap();
        let tip = ws.run_tip().unwrap();

        // The dependant starts: its worktree moves to the tip, then set-up runs.
        ws.check_out(&mut tests, Some(&tip)).unwrap();
        ws.finish_worktree(&mut tests).unwrap();
        assert_eq!(tests.base, tip);
        assert!(!tests.staged);
        let git = repo.git.at(&tests.path);
        assert_eq!(git.run(["rev-parse", "HEAD"]).unwrap(), tip);
        assert!(tests.path.join("src/api.txt").is_file());
        assert!(tests.path.join(".env").is_file());
        assert_eq!(git.run(["status", "--porcelain"]).unwrap(), "");
        assert_eq!(ws.open_agent("tests").unwrap(), tests);
        // Its agent has it now: it is never moved or removed as staged again.
        assert!(matches!(
            ws.check_out(&mut tests.clone(), Some(&tip)),
            Err(WorkspaceError::NotStaged { .. })
        ));
        assert!(matches!(
            ws.discard_staged(&tests),
            Err(WorkspaceError::NotStaged { .. })
        ));

        // The one whose agent never started goes, branch and record with it.
        ws.discard_staged(&unused).unwrap();
        assert!(!unused.path.exists());
        assert!(ws.open_agent("unused").is_err());
        assert_eq!(
            repo.git
                .resolve_commit("refs/heads/orch-agent/run-s/unused")
                .unwrap(),
            None
        );
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn what_a_killed_making_left_is_removed_before_the_worktree_is_made_again() {
        let repo = UserRepo::new();
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-k", BaseChoice::Head).unwrap();
        // Killed after `git worktree add`, before the checkout.
        let first = ws.begin_worktree("last", true).unwrap();
        assert!(ws.open_agent("last").unwrap().staged);
        let mut again = ws.begin_worktree("last", true).unwrap();
        ws.check_out(&mut again, None).unwrap();
        ws.finish_worktree(&mut again).unwrap();
        assert_eq!(again.path, first.path);
        assert!(again.path.join("src/app.txt").is_file());
        // Killed inside `git worktree add`: a directory git does not know, and the
        // record made before it.
        let (ws2, _) = Workspace::prepare(&repo.root, "run-k2", BaseChoice::Head).unwrap();
        let left = ws2.begin_worktree("last", true).unwrap();
        ws2.git
            .cmd(["worktree", "remove", "--force"])
            .arg(&left.path)
            .run()
            .unwrap();
        write(&left.path, "half-made", "x\n");
        let mut made = ws2.begin_worktree("last", true).unwrap();
        ws2.check_out(&mut made, None).unwrap();
        assert!(!made.path.join("half-made").exists());
        assert!(made.path.join("src/app.txt").is_file());
        // Killed while git held it locked, its directory gone.
        let (ws3, _) = Workspace::prepare(&repo.root, "run-k3", BaseChoice::Head).unwrap();
        let locked = ws3.begin_worktree("last", true).unwrap();
        ws3.git
            .cmd(["worktree", "lock", "--reason", "initializing"])
            .arg(&locked.path)
            .run()
            .unwrap();
        std::fs::remove_dir_all(&locked.path).unwrap();
        let mut made = ws3.begin_worktree("last", true).unwrap();
        ws3.check_out(&mut made, None).unwrap();
        assert!(made.path.join("src/app.txt").is_file());
        // A worktree its agent had is never taken for a leftover.
        let mut had = ws2.create_agent("had").unwrap();
        write(&had.path, "work.txt", "the agent's\n");
        had.setup = SetupReport::default();
        assert!(matches!(
            ws2.begin_worktree("had", true),
            Err(WorkspaceError::WorktreeExists { .. })
        ));
        assert!(had.path.join("work.txt").is_file());
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn an_agent_worktree_gets_its_branch_and_set_up_and_is_found_again() {
        let repo = UserRepo::new();
        write(&repo.root, ".env", "SECRET=1\n");
        write(&repo.root, "config/local.toml", "port = 1\n");
        write(&repo.root, "build/out.bin", "not wanted\n");
        write(
            &repo.root,
            "node_modules/pkg/index.js",
            "module.exports = 1;\n",
        );
        // The include file itself is untracked here: it is read from the user's tree.
        write(
            &repo.root,
            ".worktreeinclude",
            "config/local.toml\n# comments are fine\n",
        );
        let before = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "run-w", BaseChoice::Head).unwrap();
        let ws = ws.with_setup(WorktreeSetup {
            copy: vec![".env".into(), "missing.txt".into()],
            link: vec!["node_modules".into()],
            commands: vec!["echo ran > setup-ran.txt".into()],
            ..WorktreeSetup::default()
        });
        let wt = ws.create_agent("api").unwrap();
        assert_eq!(wt.path, repo.root.join(".orch/worktrees/run-w/api"));
        assert_eq!(wt.branch.as_deref(), Some("orch-agent/run-w/api"));
        assert_eq!(wt.base, ws.run_tip().unwrap());
        assert_eq!(
            std::fs::read_to_string(wt.path.join(".env")).unwrap(),
            "SECRET=1\n"
        );
        assert_eq!(
            std::fs::read_to_string(wt.path.join("config/local.toml")).unwrap(),
            "port = 1\n"
        );
        assert!(
            !wt.path.join("build/out.bin").exists(),
            "not in .worktreeinclude"
        );
        assert!(!wt.path.join("debug.log").exists());
        assert!(
            !wt.path.join("notes.txt").exists(),
            "the base is HEAD, not the tree"
        );
        let link = std::fs::read_link(wt.path.join("node_modules")).unwrap();
        assert_eq!(link, repo.root.join("node_modules"));
        assert!(wt.path.join("setup-ran.txt").exists());
        assert_eq!(wt.setup.copied, [".env", "config/local.toml"]);
        assert_eq!(wt.setup.linked, ["node_modules"]);
        let head = repo.git.at(&wt.path).run(["symbolic-ref", "HEAD"]).unwrap();
        assert_eq!(head, "refs/heads/orch-agent/run-w/api");

        // Resume: the same worktree, as it is.
        write(&wt.path, "work-in-progress.txt", "half done\n");
        let reopened = Workspace::open(&repo.root, "run-w")
            .unwrap()
            .open_agent("api")
            .unwrap();
        assert_eq!(reopened, wt);
        assert!(reopened.path.join("work-in-progress.txt").exists());
        let err = ws.create_agent("api").unwrap_err();
        assert!(
            matches!(err, WorkspaceError::WorktreeExists { .. }),
            "{err}"
        );
        let err = ws.open_agent("ghost").unwrap_err();
        assert!(matches!(err, WorkspaceError::NoWorktree { .. }), "{err}");

        // A read-only view for a core agent: detached at the base.
        let core = ws.create_readonly("planner").unwrap();
        assert_eq!(core.access, WorktreeAccess::ReadOnly);
        assert_eq!(core.branch, None);
        assert!(core.label().starts_with("read-only "));
        let detached = repo
            .git
            .at(&core.path)
            .cmd(["symbolic-ref", "-q", "HEAD"])
            .success()
            .unwrap();
        assert!(!detached);
        assert_eq!(ws.agents(), ["api", "planner"]);
        assert_eq!(repo.untouched(), before);
    }

    #[test]
    fn a_failing_or_hanging_set_up_command_fails_clearly_and_its_processes_die() {
        let repo = UserRepo::new();
        let (ws, _) = Workspace::prepare(&repo.root, "run-t", BaseChoice::Head).unwrap();
        let failing = ws.clone().with_setup(WorktreeSetup {
            commands: vec!["echo installing; echo 'npm ERR! missing' >&2; exit 3".into()],
            ..WorktreeSetup::default()
        });
        let err = failing.create_agent("fails").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, WorkspaceError::SetupFailed { .. }), "{text}");
        assert!(
            text.contains("npm ERR! missing") && text.contains("exit status: 3"),
            "{text}"
        );
        assert!(text.contains("agent `fails`"), "{text}");

        let hanging = ws.with_setup(WorktreeSetup {
            commands: vec!["sleep 30 & echo $! > bg.pid; sleep 30".into()],
            command_timeout: std::time::Duration::from_millis(300),
            ..WorktreeSetup::default()
        });
        let started = std::time::Instant::now();
        let err = hanging.create_agent("hangs").unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(matches!(err, WorkspaceError::SetupTimedOut { .. }), "{err}");
        assert!(
            err.to_string().contains("did not finish within 300ms"),
            "{err}"
        );
        let pid: i32 = std::fs::read_to_string(hanging.agent_path("hangs").join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child was in the killed group (a zombie at most, reaped by init).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z"))
                .unwrap_or(false)
        };
        let waited = std::time::Instant::now();
        while alive() && waited.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(), "background child {pid} survived the timeout");
    }
}

#[cfg(test)]
mod parallel_tests {
    use crate::workspace::base::{BaseChoice, Workspace};
    use crate::workspace::test_support::UserRepo;

    #[test]
    fn parallel_agents_get_their_worktrees_at_the_same_time() {
        let repo = UserRepo::new();
        let (ws, _) = Workspace::prepare(&repo.root, "run-par", BaseChoice::Head).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let ws = ws.clone();
                std::thread::spawn(move || ws.create_agent(&format!("agent-{i}")))
            })
            .collect();
        for handle in handles {
            let wt = handle.join().unwrap().unwrap();
            assert!(wt.path.join("README.md").is_file(), "{wt:?}");
        }
        assert_eq!(ws.agents().len(), 4);
    }
}
