//! The control socket of a run: one JSON request line in, one JSON answer line out.
//!
//! The socket lives in a private 0700 directory (see `socket_dir`), so nobody else can
//! connect in the moment between bind and the chmod to 0600. It serves at most
//! [`MAX_CONNECTIONS`] connections at once (one more gets a one-line refusal and is
//! closed), gives each [`REQUEST_WAIT`] to send its request, and keeps accepting after
//! errors such as EMFILE (it backs off briefly instead). The `source` a request names
//! is cleaned (see `protocol::clean_source`) before the handler sees it.
//!
//! Owns the listener and the connection rules. Does not decide what a request does
//! (a [`ControlService`] does).

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::board::{Board, BoardFeed};
use crate::control::handler::ControlHandler;
use crate::control::protocol::{
    ControlBusy, ControlCommand, ControlRequest, ControlResponse, clean_source, clean_text,
};
use crate::control::socket_dir::{MAX_SOCKET_PATH, SocketDirError};
use crate::orchestrator::RunMode;

/// Connections served at once; one more is refused with [`ControlBusy`].
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request line.
pub const REQUEST_WAIT: Duration = Duration::from_secs(3);
/// How long writing the answer may take (a client that never reads).
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// Longest request line read.
const MAX_REQUEST: u64 = 64 * 1024;
/// Pauses of the accept loop after a failed accept (EMFILE, ENFILE, ENOMEM...).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket path `{}` is too long ({len} bytes; Unix sockets allow {MAX_SOCKET_PATH})", path.display())]
    PathTooLong { path: PathBuf, len: usize },
    #[error(transparent)]
    SocketDir(#[from] SocketDirError),
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
    #[error("run {session} has no control socket (no `{}`): it has ended, or has not opened it yet", path.display())]
    NoSocket { session: String, path: PathBuf },
    #[error("the run at `{}` is busy ({message}); try again", path.display())]
    Busy { path: PathBuf, message: String },
    #[error("the run at `{}` sent an unreadable answer: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
}

/// What answers the requests of a control socket.
pub trait ControlService: Clone + Send + Sync + 'static {
    /// Carries out `command`; `source` is already cleaned.
    fn handle(
        &self,
        command: ControlCommand,
        source: String,
    ) -> impl Future<Output = ControlResponse> + Send;

    /// The run's mode now, for answers that carry no result (bad request, busy).
    fn mode(&self) -> RunMode;

    /// The status board `watch` streams, if the run keeps one.
    fn board(&self) -> Option<BoardFeed> {
        None
    }
}

impl ControlService for ControlHandler {
    async fn handle(&self, command: ControlCommand, source: String) -> ControlResponse {
        ControlHandler::handle(self, command, &source).await
    }

    fn mode(&self) -> RunMode {
        ControlHandler::mode(self)
    }

    fn board(&self) -> Option<BoardFeed> {
        ControlHandler::board(self).cloned()
    }
}

pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Binds `path` (in a private directory: see `socket_dir`), sets it to 0600 and
    /// serves `service` until [`ControlServer::shutdown`].
    pub fn start<S: ControlService>(path: &Path, service: S) -> Result<Self, ControlError> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ControlError::PathTooLong {
                path: path.to_path_buf(),
                len,
            });
        }
        let bind_err = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        // A socket left by a crashed run of this session (the caller holds the claim on
        // the session, so no live run listens here).
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        // The directory is 0700: nobody else reaches the socket before this.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        let task = tokio::spawn(accept_loop(listener, service));
        Ok(ControlServer {
            path: path.to_path_buf(),
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shutdown(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop<S: ControlService>(listener: UnixListener, service: S) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    // One descriptor kept in reserve: out of descriptors, it is freed to accept the
    // waiting connection and refuse it at once, so the queue keeps moving instead of
    // holding every later asker behind it.
    let mut spare = open_spare();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(err) => {
                let out_of_fds = matches!(
                    err.raw_os_error(),
                    Some(libc_errno::EMFILE | libc_errno::ENFILE)
                );
                if out_of_fds && let Some(file) = spare.take() {
                    drop(file);
                    if let Ok(Ok((stream, _))) =
                        tokio::time::timeout(ACCEPT_BACKOFF_MIN, listener.accept()).await
                    {
                        refuse_busy(
                            &stream,
                            service.mode(),
                            "the run is out of file descriptors",
                        );
                    }
                    spare = open_spare();
                    continue;
                }
                // EMFILE and friends pass once connections close; the listener stays.
                tracing::warn!(error = %err, "control socket: accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                spare = spare.or_else(open_spare);
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let service = service.clone();
                tokio::spawn(async move {
                    serve(stream, &service).await;
                    drop(slot);
                });
            }
            Err(_) => refuse_busy(
                &stream,
                service.mode(),
                &format!("{MAX_CONNECTIONS} control connections are open"),
            ),
        }
    }
}

/// The reserve descriptor of the accept loop.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Raw errno values of running out of descriptors (Linux).
mod libc_errno {
    pub const EMFILE: i32 = nix::errno::Errno::EMFILE as i32;
    pub const ENFILE: i32 = nix::errno::Errno::ENFILE as i32;
}

/// One line saying why, written without waiting (a fresh socket's buffer takes it);
/// the connection closes when `stream` is dropped.
fn refuse_busy(stream: &UnixStream, mode: RunMode, why: &str) {
    let busy = ControlBusy {
        busy: true,
        mode,
        message: why.to_owned(),
    };
    let mut line = serde_json::to_string(&busy).unwrap_or_default();
    line.push('\n');
    let _ = stream.try_write(line.as_bytes());
}

async fn serve<S: ControlService>(stream: UnixStream, service: &S) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_WAIT, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return, // closed, unreadable, or silent for too long
    }
    let response = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(request) if request.command == ControlCommand::Watch && service.board().is_some() => {
            if let Some(feed) = service.board() {
                watch_board(&feed, &mut write).await;
            }
            return;
        }
        Ok(request) => {
            service
                .handle(request.command, clean_source(&request.source))
                .await
        }
        Err(err) => ControlResponse {
            ok: false,
            mode: service.mode(),
            // serde quotes the input; the asker may print this on a terminal.
            message: clean_text(&format!("bad request: {err}"), 200),
            status: None,
            board: None,
        },
    };
    let mut text = serde_json::to_string(&response).unwrap_or_default();
    text.push('\n');
    let _ = tokio::time::timeout(ANSWER_WAIT, write.write_all(text.as_bytes())).await;
}

/// Longest a watcher goes between two boards while the run changes: the board is
/// sent at most this often, so a firehose of events costs a few lines a second.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// `watch`: the board now, then again after each change, until the run ends, the
/// watcher goes away or does not read for [`ANSWER_WAIT`].
async fn watch_board(feed: &BoardFeed, write: &mut tokio::net::unix::OwnedWriteHalf) {
    let mut changes = feed.changes();
    let send = async |write: &mut tokio::net::unix::OwnedWriteHalf, board: &Board| {
        let mut text = serde_json::to_string(board).unwrap_or_default();
        text.push('\n');
        matches!(
            tokio::time::timeout(ANSWER_WAIT, write.write_all(text.as_bytes())).await,
            Ok(Ok(()))
        )
    };
    loop {
        changes.borrow_and_update();
        let board = feed.snapshot();
        if !send(write, &board).await || !board.live {
            return;
        }
        let sent = tokio::time::Instant::now();
        if changes.changed().await.is_err() {
            // The run dropped its feed: the last board, if anything changed since.
            let last = feed.snapshot();
            if last != board {
                send(write, &last).await;
            }
            return;
        }
        // At most one board per WATCH_EVERY, but the run's end goes out at once: the
        // process exits right after.
        if feed.snapshot().live {
            tokio::time::sleep_until(sent + WATCH_EVERY).await;
        }
    }
}
