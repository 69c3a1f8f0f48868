//! The control socket `.orch/runs/<session>/control.sock` (mode 0600).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::control::handler::ControlHandler;
use crate::control::protocol::{ControlCommand, ControlRequest, ControlResponse};

/// Longest path a Unix socket address can hold on Linux.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket path `{}` is too long ({len} bytes; Unix sockets allow {MAX_SOCKET_PATH}): use a shorter --project-root or --session", path.display())]
    PathTooLong { path: PathBuf, len: usize },
    #[error("failed to open control socket `{}`", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no run is listening on `{}` (is it finished?)", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run at `{}` sent an unreadable answer: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
}

pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    pub fn start(path: &Path, handler: ControlHandler) -> Result<Self, ControlError> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ControlError::PathTooLong {
                path: path.to_path_buf(),
                len,
            });
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ControlError::Bind {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut line = String::new();
                    let mut reader = BufReader::new(read.take(64 * 1024));
                    if reader.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let response = match serde_json::from_str::<ControlRequest>(&line) {
                        Ok(request) => handler.handle(request.command, &request.source).await,
                        Err(err) => ControlResponse {
                            ok: false,
                            mode: handler.handle(ControlCommand::Status, "").await.mode,
                            message: format!("bad request: {err}"),
                            status: None,
                        },
                    };
                    let mut text = serde_json::to_string(&response).unwrap_or_default();
                    text.push('\n');
                    let _ = write.write_all(text.as_bytes()).await;
                });
            }
        });
        Ok(ControlServer {
            path: path.to_path_buf(),
            task,
        })
    }

    pub fn shutdown(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

use tokio::io::AsyncReadExt as _;
