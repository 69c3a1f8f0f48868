//! A user's repository for the workspace tests: real git, a stash entry, an
//! uncommitted edit and an untracked file, and a byte-level snapshot of everything
//! orch must leave alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::workspace::git::Git;

pub struct UserRepo {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub git: Git,
}

/// The user's branch, HEAD, index bytes, working tree bytes and stash.
#[derive(Debug, PartialEq, Eq)]
pub struct Untouched {
    branch: String,
    head: String,
    index: Vec<u8>,
    tree: BTreeMap<String, Vec<u8>>,
    stash: String,
}

pub fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

fn files(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".git" || rel == ".orch" {
            continue;
        }
        if path.is_dir() {
            files(root, &path, out);
        } else {
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

impl UserRepo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-ws")
            .tempdir()
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let git = Git::new(&root);
        git.run(["init", "-q", "-b", "main"]).unwrap();
        git.run(["config", "user.name", "Test User"]).unwrap();
        git.run(["config", "user.email", "user@example.com"])
            .unwrap();
        write(
            &root,
            "README.md",
            "# Project\n\nline one\nline two\nline three\n",
        );
        write(&root, "src/app.txt", "alpha\nbeta\ngamma\ndelta\nepsilon\n");
        write(
            &root,
            ".gitignore",
            "*.log\n.env\nnode_modules/\nconfig/local.toml\nbuild/\n",
        );
        git.run(["add", "-A"]).unwrap();
        git.run(["commit", "-q", "-m", "initial"]).unwrap();
        // A stash entry, an uncommitted edit, an untracked file, an ignored file.
        write(
            &root,
            "src/app.txt",
            "alpha\nbeta (stashed)\ngamma\ndelta\nepsilon\n",
        );
        git.run(["stash", "-q"]).unwrap();
        write(
            &root,
            "README.md",
            "# Project\n\nline one (edited, uncommitted)\nline two\nline three\n",
        );
        write(&root, "notes.txt", "untracked notes\n");
        write(&root, "debug.log", "ignored\n");
        UserRepo {
            _dir: dir,
            root,
            git,
        }
    }

    pub fn untouched(&self) -> Untouched {
        let mut tree = BTreeMap::new();
        files(&self.root, &self.root, &mut tree);
        Untouched {
            branch: self.git.run(["symbolic-ref", "HEAD"]).unwrap(),
            head: self.git.run(["rev-parse", "HEAD"]).unwrap(),
            index: std::fs::read(self.root.join(".git/index")).unwrap(),
            tree,
            stash: self.git.run(["stash", "list", "--format=%H %gs"]).unwrap(),
        }
    }

    pub fn show(&self, rev_path: &str) -> String {
        self.git.run(["show", rev_path]).unwrap()
    }
}
