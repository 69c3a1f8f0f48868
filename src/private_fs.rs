//! Files only the user can read: every directory orch creates under `.orch/` is 0700
//! and every file 0600, whatever the umask.
//!
//! Modes are given when a path is created (`DirBuilder`/`OpenOptions` modes, then set
//! exactly in case the umask took owner bits away), never by changing the process
//! umask: agents inherit it. Also owns `.orch/.gitignore`, which keeps the store and
//! the logs out of `git status` without touching the user's own `.gitignore`. Does not
//! decide where files go (`paths` does).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::paths::RunPaths;

/// Mode of every directory orch creates for a run.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file orch writes for a run.
pub const FILE_MODE: u32 = 0o600;

/// Name of orch's own directory in a project.
const ORCH_DIR_NAME: &str = ".orch";
/// Ignores everything in `.orch/`, itself included.
const GITIGNORE: &str = "# Written by orch: runs, logs and the audit store stay out of git.\n*\n";

/// Creates `dir` and its missing parents, each 0700. A `.orch` directory it creates
/// gets its `.gitignore`. Directories that already exist are left as they are.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.is_dir())
        .collect();
    for path in missing.into_iter().rev() {
        match DirBuilder::new().mode(DIR_MODE).create(path) {
            Ok(()) => {
                std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))?;
                if path.file_name().is_some_and(|n| n == ORCH_DIR_NAME) {
                    write_gitignore(path)?;
                }
            }
            // Another process (a concurrent run) made it first.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Makes `<project>/.orch/` private and ignored by git, and the run's directories
/// under it: `.orch/` itself is set to 0700 even if an older orch made it 0755, and
/// gets its `.gitignore` if it lacks one.
pub fn prepare_run_dirs(paths: &RunPaths) -> io::Result<()> {
    let orch = crate::paths::orch_dir(&paths.project_root);
    if orch.is_dir() {
        std::fs::set_permissions(&orch, Permissions::from_mode(DIR_MODE))?;
        if !orch.join(".gitignore").exists() {
            write_gitignore(&orch)?;
        }
    }
    create_dir_all(&paths.logs_dir())
}

fn write_gitignore(orch: &Path) -> io::Result<()> {
    write(&orch.join(".gitignore"), GITIGNORE.as_bytes())
}

/// Opens `path` for appending, creating it 0600.
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Creates (or truncates) `path` 0600 for writing.
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Writes `path` whole, creating it (or truncating it) 0600.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    create(path)?.write_all(contents)
}

/// Creates `path` empty and 0600 unless it exists, so a library that creates files with
/// the default mode (SQLite and its -wal/-shm, which copy the main file's mode) makes
/// private ones.
pub fn touch(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => restrict(&file),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// Sets 0600 on a file whose mode is anything else (a umask that took owner bits, or
/// a file an older orch wrote 0644).
fn restrict(file: &File) -> io::Result<()> {
    if file.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_private_and_orch_is_ignored() {
        let root = tempfile::tempdir().unwrap();
        let project_mode = mode(root.path());
        let paths = RunPaths::new(root.path(), "run-1");
        prepare_run_dirs(&paths).unwrap();
        let orch = root.path().join(".orch");
        for dir in [&orch, &orch.join("runs"), &paths.run_dir, &paths.logs_dir()] {
            assert_eq!(mode(dir), DIR_MODE, "{}", dir.display());
        }
        assert_eq!(
            mode(root.path()),
            project_mode,
            "the project is not touched"
        );
        let ignore = std::fs::read_to_string(orch.join(".gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
        assert_eq!(mode(&orch.join(".gitignore")), FILE_MODE);

        let log = paths.timeline_log();
        open_append(&log).unwrap().write_all(b"a\n").unwrap();
        write(&paths.config_file(), b"{}").unwrap();
        touch(&paths.run_dir.join("store")).unwrap();
        for file in [log, paths.config_file(), paths.run_dir.join("store")] {
            assert_eq!(mode(&file), FILE_MODE, "{}", file.display());
        }
    }

    #[test]
    fn an_older_world_readable_orch_dir_and_file_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let orch = root.path().join(".orch");
        std::fs::create_dir(&orch).unwrap();
        std::fs::set_permissions(&orch, Permissions::from_mode(0o755)).unwrap();
        let old = orch.join("old.log");
        std::fs::write(&old, "x").unwrap();
        std::fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        prepare_run_dirs(&RunPaths::new(root.path(), "run-2")).unwrap();
        assert_eq!(mode(&orch), DIR_MODE);
        assert!(orch.join(".gitignore").exists());
        open_append(&old).unwrap();
        assert_eq!(mode(&old), FILE_MODE);
        // An existing .gitignore is the user's business.
        std::fs::write(orch.join(".gitignore"), "custom\n").unwrap();
        prepare_run_dirs(&RunPaths::new(root.path(), "run-3")).unwrap();
        assert_eq!(
            std::fs::read_to_string(orch.join(".gitignore")).unwrap(),
            "custom\n"
        );
    }
}
