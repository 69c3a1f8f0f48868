//! A full disk is a failed run, never a success: on a 5 MB tmpfs a firehose run exits
//! non-zero naming the file it could not write; once space is freed the store verifies
//! (nothing dropped from the middle of the chain) and shows the run as failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::repo::TestRepo;
use crate::support::*;

/// A tmpfs mounted over a directory; unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when mounting is not permitted here (not root, or no mount namespace).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: mounting a tmpfs is not permitted here ({}); the disk-full test needs root",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_run_and_the_store_still_verifies() {
    let repo = TestRepo::new();
    let root = repo.root();
    let Some(disk) = Tmpfs::mount(&root, "5m") else {
        return;
    };
    // The tmpfs hides the test repo's .git: a marker with a HEAD (what makes a `.git`
    // a repository's) is enough for a shared run.
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let mut launch = repo.launch();
    launch.args([
        // The run's own record is what fills the disk here, not agents' worktrees.
        "--isolation",
        "shared",
        "--prompt",
        "Ship the MVP",
        "--backend",
        "demo",
        "--mux",
        "none",
        "--demo-scenario",
        "delay=0,events=40000",
    ]);
    let out = launch.output().expect("run launch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a run that could not write its logs and store must fail:\n{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("run ") && l.contains(" succeeded")),
        "never a success on a full disk:\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:") && l.contains("failed to write `"))
        .unwrap_or_else(|| panic!("no line names the file it could not write:\n{stderr}"));
    assert!(
        line.contains("No space left on device"),
        "the OS error is named: {line}"
    );
    assert!(
        line.contains(&root.display().to_string()),
        "the file is named: {line}"
    );

    // Free space, then read the store as a user would.
    disk.resize("64m");
    let db = repo_db(&repo);
    let verify = orch_audit(&db, &["verify"]);
    assert!(
        verify.status.success(),
        "the store verifies after a full disk:\n{}{}",
        stdout(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );
    let runs = json(&orch_audit(&db, &["runs", "--json"]));
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let session = runs[0]["session"].as_str().unwrap().to_owned();
    let failed = orch_audit(
        &db,
        &["events", &session, "--kind", "sink_failed", "--json"],
    );
    assert!(
        stdout(&failed).contains("No space left on device"),
        "the store records why the run failed: {}",
        stdout(&failed)
    );
    assert!(
        !repo.only_run().join("audit.reserve").exists(),
        "the reserve is given back"
    );
    // The run is over: following it ends at once.
    let mut follow = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_orch-audit"))
            .arg("--audit-path")
            .arg(&db)
            .args(["events", &session, "--follow", "--kind", "run_finished"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = follow
        .wait_exit(Duration::from_secs(10))
        .expect("--follow ends with the run");
    assert!(status.success());
}
