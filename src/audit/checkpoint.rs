//! Background WAL checkpoints for a local store.
//!
//! Copying committed WAL frames into the database file (and syncing it) took about a
//! third of the writer thread's time on a saturated stream (8.1 s of CPU per million
//! events before, 5.4 s after), and the writer is the pipeline's busiest stage. A second connection on its own thread does that copying
//! with `PASSIVE` checkpoints, which never block the writer, on whatever core is free.
//!
//! The writer keeps its own automatic checkpoint at `WRITER_AUTOCHECKPOINT_PAGES` as
//! the backstop: a `PASSIVE` checkpoint running beside a busy writer rarely catches up
//! to the last frame, and only a fully copied WAL starts over from its beginning. When
//! the WAL reaches that size the writer checkpoints the (short) rest itself, so the
//! WAL stays bounded even if this thread falls behind or could not be started.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libsql::{Builder, Connection};

use crate::audit::target::pragma;
use crate::audit::writer::{report_ready, yield_to_the_log_path};

/// The writer connection's `wal_autocheckpoint` while a checkpointer runs (16 MB of
/// 4 KiB pages). SQLite's default, used without one, is 1000.
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 4000;
/// Least time between two background checkpoints: each one syncs the WAL and the
/// database file, so checkpointing after every commit would mostly add syncs.
const INTERVAL: Duration = Duration::from_millis(50);
/// Pages the checkpointer's own connection may cache; it only copies frames.
const CACHE_PAGES: i64 = 64;

/// Handle to the checkpointer thread. Dropping it (or `stop`) ends the thread after
/// any checkpoint in progress.
pub struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread. An error means no
    /// background checkpoints; the writer's own remain.
    pub fn start(path: &Path) -> std::io::Result<Checkpointer> {
        let (nudge, rx) = sync_channel(1);
        let (ready_tx, ready_rx) = sync_channel(1);
        let path = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("orch-audit-ckpt".into())
            .spawn(move || run(path, rx, ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Checkpointer {
                nudge: Some(nudge),
                handle: Some(handle),
            }),
            Ok(Err(detail)) => {
                let _ = handle.join();
                Err(std::io::Error::other(detail))
            }
            Err(_) => {
                let _ = handle.join();
                Err(std::io::Error::other(
                    "the checkpointer thread ended while opening the store",
                ))
            }
        }
    }

    /// Tells the thread that a transaction committed. Never blocks: one pending nudge
    /// covers any number of commits.
    pub fn nudge(&self) {
        if let Some(tx) = &self.nudge
            && let Err(TrySendError::Disconnected(())) = tx.try_send(())
        {
            tracing::debug!("audit checkpointer has stopped");
        }
    }

    /// Ends the thread and waits for it, so a checkpoint on the writer's connection
    /// that follows does not wait on this one's lock.
    pub fn stop(&mut self) {
        self.nudge = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(path: PathBuf, rx: Receiver<()>, ready: SyncSender<Result<(), String>>) {
    yield_to_the_log_path();
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(format!("failed to start a runtime: {err}")));
            return;
        }
    };
    runtime.block_on(async move {
        let Some((_db, conn)) = report_ready(&ready, open(&path).await) else {
            return;
        };
        let mut last: Option<Instant> = None;
        while rx.recv().is_ok() {
            // Let commits that follow within the interval ride on this checkpoint. On
            // close the writer checkpoints everything itself, so stop right away.
            let wait = last.map_or(Duration::ZERO, |at| INTERVAL.saturating_sub(at.elapsed()));
            if !wait.is_zero() {
                match rx.recv_timeout(wait) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            last = Some(Instant::now());
            if let Err(err) = pragma(&conn, "PRAGMA wal_checkpoint(PASSIVE)").await {
                // Busy or failed: the writer's automatic checkpoint is the backstop.
                tracing::debug!(error = %err, "background checkpoint did not run");
            }
        }
    });
}

async fn open(path: &Path) -> Result<(libsql::Database, Connection), String> {
    let failed =
        |err: libsql::Error| format!("failed to open `{}` for checkpoints: {err}", path.display());
    let db = Builder::new_local(path).build().await.map_err(failed)?;
    let conn = db.connect().map_err(failed)?;
    conn.execute(&format!("PRAGMA cache_size={CACHE_PAGES}"), ())
        .await
        .map_err(failed)?;
    Ok((db, conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a nudge the committed frames are copied into the database file by the
    /// checkpointer's connection, not the writer's.
    #[tokio::test]
    async fn a_nudge_copies_committed_frames_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let db = Builder::new_local(&path).build().await.unwrap();
        let conn = db.connect().unwrap();
        pragma(&conn, "PRAGMA journal_mode=WAL").await.unwrap();
        pragma(&conn, "PRAGMA wal_autocheckpoint=0").await.unwrap();
        conn.execute("CREATE TABLE t (x BLOB)", ()).await.unwrap();
        for _ in 0..20 {
            conn.execute("INSERT INTO t VALUES (zeroblob(4000))", ())
                .await
                .unwrap();
        }
        let size_before = std::fs::metadata(&path).unwrap().len();
        let mut checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.nudge();
        // Only a checkpoint grows the database file; the writer's connection never
        // checkpoints here (autocheckpoint is off).
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).unwrap().len() < size_before + 20 * 4000 {
            assert!(Instant::now() < deadline, "no checkpoint within 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        checkpointer.stop();
        let mut rows = conn.query("SELECT count(*) FROM t", ()).await.unwrap();
        let count = rows.next().await.unwrap().unwrap().get::<i64>(0).unwrap();
        assert_eq!(count, 20);
    }

    /// Stopping without a nudge ends the thread; a nudge after the thread is gone is
    /// ignored.
    #[test]
    fn stop_ends_the_thread_and_later_nudges_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.stop();
        checkpointer.nudge();
        assert!(checkpointer.handle.is_none());
    }

    #[test]
    fn an_unopenable_store_is_an_error_not_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("audit.db");
        let err = Checkpointer::start(&path)
            .err()
            .expect("no directory, no store");
        assert!(err.to_string().contains("failed to open"), "{err}");
    }
}
