//! Where a run's control socket lives: a short path in a private directory, whatever
//! the length of the project root or the session name.
//!
//! A Unix socket address holds at most 107 bytes, so the socket cannot live in the run
//! directory (`<root>/.orch/runs/<session>/` is longer than that for an ordinary project
//! path). It goes into `$XDG_RUNTIME_DIR/orch/` when that directory is usable (absolute,
//! ours, mode 0700), else `/tmp/orch-<uid>/`; either is created 0700 and refused when
//! another user owns it. The file is named by a hash of project root and session, and
//! its path is recorded in the run directory (`control.path`), where `launch ctl`,
//! `launch ls` and `launch attach` read it.
//!
//! Owns the choice of that directory, the socket's file name and the record. Does not
//! bind or connect (see `server` and `client`).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::paths::RunPaths;

/// Longest path a Unix socket address can hold on Linux (108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Hex digits of the hash in the socket's file name.
const NAME_HEX: usize = 16;

/// Why no private socket directory could be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    #[error(
        "the control socket directory `{}` belongs to uid {owner}, not to you (uid {uid}): remove it, or set XDG_RUNTIME_DIR to a private directory", path.display()
    )]
    ForeignOwner { path: PathBuf, owner: u32, uid: u32 },
    #[error("the control socket directory `{}` is not a directory: remove it, or set XDG_RUNTIME_DIR to a private directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("failed to prepare the control socket directory `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The socket path of a run: `<private dir>/<hash of root and session>.sock`.
///
/// `runtime_dir` is `$XDG_RUNTIME_DIR` as the resolved environment has it. Creates the
/// private directory (0700) when it is missing, and tightens one of ours that is wider.
pub fn socket_path_for(
    runtime_dir: Option<&str>,
    project_root: &Path,
    session: &str,
) -> Result<PathBuf, SocketDirError> {
    let name = socket_file_name(project_root, session);
    let uid = nix::unistd::getuid().as_raw();
    if let Some(base) = runtime_dir
        .map(Path::new)
        .filter(|dir| is_usable_runtime_dir(dir, uid))
    {
        let dir = base.join("orch");
        if fits(&dir, &name)
            && let Ok(dir) = private_dir(&dir, uid)
        {
            return Ok(dir.join(&name));
        }
    }
    // `/tmp` itself, not `$TMPDIR`: the point is a short path.
    let dir = private_dir(&PathBuf::from(format!("/tmp/orch-{uid}")), uid)?;
    Ok(dir.join(name))
}

/// `<16 hex digits of sha256(root NUL session)>.sock`.
pub fn socket_file_name(project_root: &Path, session: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(project_root.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(session.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.sock", &hex[..NAME_HEX])
}

fn fits(dir: &Path, name: &str) -> bool {
    dir.as_os_str().len() + 1 + name.len() <= MAX_SOCKET_PATH
}

/// `$XDG_RUNTIME_DIR` as the spec has it: absolute, a directory, ours, no access for
/// others.
fn is_usable_runtime_dir(dir: &Path, uid: u32) -> bool {
    dir.is_absolute()
        && std::fs::symlink_metadata(dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

/// Creates `dir` with mode 0700, or checks an existing one: a real directory (not a
/// symlink) owned by `uid`; a wider mode is tightened to 0700.
fn private_dir(dir: &Path, uid: u32) -> Result<PathBuf, SocketDirError> {
    let io = |source| SocketDirError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io(err)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(SocketDirError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    if meta.uid() != uid {
        return Err(SocketDirError::ForeignOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(dir.to_path_buf())
}

/// Writes `<run dir>/control.path` (mode 0600): the socket path, one line.
pub fn record(paths: &RunPaths, socket: &Path) -> std::io::Result<()> {
    let target = paths.control_path_file();
    let tmp = target.with_extension("path.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(socket.as_os_str().as_encoded_bytes())?;
    file.write_all(b"\n")?;
    drop(file);
    std::fs::rename(&tmp, &target)
}

/// The socket path a run recorded, if it did.
pub fn recorded(paths: &RunPaths) -> Option<PathBuf> {
    let text = std::fs::read_to_string(paths.control_path_file()).ok()?;
    let line = text.lines().next()?.trim_end();
    (!line.is_empty()).then(|| PathBuf::from(line))
}

/// Removes the run's socket (only if it is a socket) and its record. For a run that has
/// ended or crashed; never call it for a live one.
pub fn remove(paths: &RunPaths) {
    let mut sockets = vec![paths.legacy_control_socket()];
    sockets.extend(recorded(paths));
    for socket in sockets {
        if std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&socket);
        }
    }
    let _ = std::fs::remove_file(paths.control_path_file());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_short_and_depends_on_root_and_session() {
        let long_root = PathBuf::from(format!("/{}", "r".repeat(300)));
        let a = socket_file_name(&long_root, &"s".repeat(64));
        assert_eq!(a.len(), NAME_HEX + ".sock".len());
        assert_ne!(a, socket_file_name(&long_root, "other"));
        assert_ne!(a, socket_file_name(Path::new("/r"), &"s".repeat(64)));
        // Root and session are separated: ("/ab", "c") is not ("/a", "bc").
        assert_ne!(
            socket_file_name(Path::new("/ab"), "c"),
            socket_file_name(Path::new("/a"), "bc")
        );
    }

    #[test]
    fn a_private_runtime_dir_is_used_and_a_wide_orch_dir_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = tmp.path().join("run");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&runtime)
            .unwrap();
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(runtime.join("orch"))
            .unwrap();
        std::fs::set_permissions(runtime.join("orch"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let root = PathBuf::from(format!("/{}", "p".repeat(200)));
        let path = socket_path_for(runtime.to_str(), &root, &"s".repeat(64)).unwrap();
        assert_eq!(path.parent().unwrap(), runtime.join("orch"));
        assert!(path.as_os_str().len() <= MAX_SOCKET_PATH);
        let mode = std::fs::metadata(runtime.join("orch")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700, "tightened to 0700");
    }

    #[test]
    fn an_unusable_runtime_dir_falls_back_to_tmp() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let fallback = PathBuf::from(format!("/tmp/orch-{uid}"));
        // Missing, world-readable, relative and too long runtime dirs are all skipped.
        let wide = tmp.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
        let deep = tmp.path().join("d".repeat(100));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&deep)
            .unwrap();
        for runtime in [
            tmp.path().join("missing"),
            wide,
            PathBuf::from("relative"),
            deep,
        ] {
            let path = socket_path_for(runtime.to_str(), Path::new("/r"), "s").unwrap();
            assert_eq!(path.parent().unwrap(), fallback, "{}", runtime.display());
        }
        let meta = std::fs::symlink_metadata(&fallback).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), uid);
    }

    #[test]
    fn a_symlink_or_a_file_is_not_a_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let target = tmp.path().join("target");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            private_dir(&link, uid),
            Err(SocketDirError::NotADirectory { .. })
        ));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(private_dir(&file, uid).is_err());
        // Someone else's directory (as root: any uid but ours) is refused.
        assert!(matches!(
            private_dir(&target, uid + 1),
            Err(SocketDirError::ForeignOwner { .. })
        ));
    }

    #[test]
    fn the_record_round_trips_and_remove_deletes_only_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(tmp.path(), "run-x");
        std::fs::create_dir_all(&paths.run_dir).unwrap();
        let socket = tmp.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        record(&paths, &socket).unwrap();
        assert_eq!(recorded(&paths), Some(socket.clone()));
        let mode = std::fs::metadata(paths.control_path_file()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove(&paths);
        assert!(!socket.exists());
        assert_eq!(recorded(&paths), None);
        // A record naming a regular file never deletes it.
        let precious = tmp.path().join("precious");
        std::fs::write(&precious, "keep").unwrap();
        record(&paths, &precious).unwrap();
        remove(&paths);
        assert!(precious.exists());
    }
}
