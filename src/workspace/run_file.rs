//! A file orch itself writes on the run branch (the statuses of `--features`): read at
//! the branch's tip, and committed on top of it without a worktree, through a private
//! index, with the same guarded `update-ref` as the merge queue.

use crate::workspace::{Workspace, WorkspaceError};

impl Workspace {
    /// The text of `path` at the run branch's tip; `None` when the tip has no such file
    /// (or it is not UTF-8).
    pub fn run_file(&self, path: &str) -> Result<Option<String>, WorkspaceError> {
        let tip = self.run_tip()?;
        let spec = format!("{tip}:{path}");
        // `rev-parse --verify --quiet` exits 1, saying nothing, when there is no such file.
        if !self
            .git()
            .cmd(["rev-parse", "--verify", "--quiet", &spec])
            .success()?
        {
            return Ok(None);
        }
        let bytes = self.git().cmd(["cat-file", "blob", &spec]).run_raw()?;
        Ok(String::from_utf8(bytes).ok())
    }

    /// Commits `text` as `path` on the run branch, on top of its tip. Returns the new
    /// tip, or `None` when the file already held `text`.
    pub fn write_run_file(
        &self,
        path: &str,
        text: &str,
        message: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let git = self.git();
        let tip = self.run_tip()?;
        let blob = git
            .cmd(["hash-object", "-w", "--stdin"])
            .stdin(text.as_bytes().to_vec())
            .run()?;
        let (_temp, index) = crate::workspace::base::private_index("orch-run-file")?;
        git.cmd(["read-tree", &tip])
            .env("GIT_INDEX_FILE", &index)
            .run()?;
        git.cmd([
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{},{path}", blob.trim()),
        ])
        .env("GIT_INDEX_FILE", &index)
        .run()?;
        let tree = git
            .cmd(["write-tree"])
            .env("GIT_INDEX_FILE", &index)
            .run()?;
        let old_tree = git.run(["rev-parse", &format!("{tip}^{{tree}}")])?;
        if tree.trim() == old_tree.trim() {
            return Ok(None);
        }
        let commit = git
            .cmd([
                "commit-tree",
                tree.trim(),
                "-p",
                &tip,
                "-m",
                &format!("{message}\n\nOrch-Session: {}", self.session()),
            ])
            .run()?;
        git.update_ref(&self.run_ref(), commit.trim(), Some(&tip), message)?;
        Ok(Some(commit.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use crate::workspace::test_support::*;
    use crate::workspace::{BaseChoice, Workspace};

    #[test]
    fn a_file_is_committed_on_the_run_branch_only() {
        let repo = UserRepo::new();
        let before_user = repo.untouched();
        let (ws, _) = Workspace::prepare(&repo.root, "s1", BaseChoice::Head).unwrap();
        let before = ws.run_tip().unwrap();
        assert_eq!(ws.run_file("dir/features.json").unwrap(), None);
        let tip = ws
            .write_run_file("dir/features.json", "[1]\n", "orch: features")
            .unwrap()
            .expect("a new commit");
        assert_eq!(ws.run_tip().unwrap(), tip);
        assert_eq!(
            ws.run_file("dir/features.json").unwrap().as_deref(),
            Some("[1]\n")
        );
        // The same text again makes no commit.
        assert_eq!(
            ws.write_run_file("dir/features.json", "[1]\n", "x")
                .unwrap(),
            None
        );
        let parent = ws.git().run(["rev-parse", &format!("{tip}^")]).unwrap();
        assert_eq!(parent, before);
        assert_eq!(
            repo.untouched(),
            before_user,
            "the user's repository is untouched"
        );
    }
}
