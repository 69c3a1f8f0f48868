//! The single writer: one thread, one connection, group commit.
//!
//! Events arrive already encoded from `AuditSink`; the writer drains what is queued
//! (at most `MAX_BATCH` events), writes it in one transaction — `events` rows with
//! their hash chain, lines appended to the AgentFS events files, turn files, memory
//! artifacts, interrupt summaries, `tool_calls` rows — and commits. Barriers
//! (`flush`, `close`) are answered only after the commit that covers them.
//! There is no update or delete of history here, by design.
//!
//! A batch that fails to commit is never dropped and the chain is never re-based
//! over it: the events stay queued (bounded by the `Gate`, in events and bytes) and
//! are retried with backoff. A failure that lasts `FAIL_AFTER` is fatal: it is
//! reported once (`SinkFailure`), new events are refused, and when the run closes the
//! writer records the failure (and how many events were lost) as the chain's last
//! `sink_failed` event, using the room of a reserve file it set aside at the start.
//! WAL checkpoints run beside it on a second connection (`checkpoint`); they copy
//! committed pages and never write history.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use libsql::{Connection, Statement, Value, params_from_iter};

use crate::agent::id::is_valid_agent_id;
use crate::audit::checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};
use crate::audit::error::{AuditError, error_chain};
use crate::audit::fs::FsWriter;
pub use crate::audit::gate::{Gate, WriterShared};
use crate::audit::record::{
    artifact_document, artifact_path, changes_paths, interrupt_document, interrupt_path, to_bytes,
    tool_call_row, turn_document, turn_path,
};
use crate::audit::schema::{
    ByAgent, EventRowRef, KV_ROW, TOOL_CALL_ROW, ToolCallRef, event_digest, events_file, file_hash,
    files_genesis, head_key, hex_into, kv_canonical, run_hash, sha256_hex, tool_call_canonical,
    write_event_line,
};
use crate::audit::target::{AuditTarget, Store, open_for_writing, pragma};
use crate::events::event::{InterruptSummary, TurnRecord};
use crate::events::failure::SinkFailure;
use crate::events::wire::millis;
use crate::liveness::ProcessIdentity;

/// Most events per transaction.
pub const MAX_BATCH: usize = 1000;
/// Longest an event waits for its transaction when no barrier asks sooner, counted
/// from when it was published (its `ts`), so time spent queued behind a slow commit
/// counts too. DESIGN allows 50 ms; half that keeps a steady stream's rows within
/// ~50 ms of their event even when a commit has to wait for a core, and a saturated
/// stream fills its 1000 events long before either limit.
pub const MAX_DELAY: Duration = Duration::from_millis(25);
/// How often the writer looks for more events while it gathers a batch; a tick with
/// none commits what it has.
const GATHER_TICK: Duration = Duration::from_millis(2);
/// Roughly how many bytes of commits the WAL takes before the checkpointer is asked to
/// copy them into the database file: about SQLite's own default (1000 pages). Each
/// checkpoint syncs both files, so checkpointing much more often costs syncs that slow
/// every other write on the disk, the log files included.
const CHECKPOINT_EVERY_BYTES: usize = 4 << 20;
/// Rows per multi-row `INSERT INTO events`.
const EVENT_ROWS_PER_STATEMENT: usize = 100;
/// How long commits may keep failing (retried with backoff, nothing dropped) before
/// the failure is fatal for the run.
pub const FAIL_AFTER: Duration = Duration::from_secs(5);
/// First and longest wait between two attempts to commit what failed.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Room set aside at the start (a file in the run directory) and given back when the
/// store cannot be written, so the run's failure can still be recorded on a full disk.
const RESERVE_BYTES: usize = 1 << 20;
/// Name of that file.
pub const RESERVE_FILE: &str = "audit.reserve";
/// Kind of the event that records a sink's fatal failure (the run then reads as failed).
pub const SINK_FAILED: &str = "sink_failed";

/// What the run is, recorded once in `runs` (the start of its hash chain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMeta {
    pub session: String,
    pub started_at_ms: u64,
    pub prompt: String,
    pub backend: String,
    pub project_root: String,
}

/// Choices beyond the run itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditOptions {
    /// Also write each memory artifact as a plain file here (`--memory-dir`,
    /// `CODEX_MEMORY_DIR`); the store keeps its own copy either way.
    pub memory_dir: Option<std::path::PathBuf>,
    /// Where the writer sets aside `RESERVE_BYTES` (the run directory); none: no reserve.
    pub reserve_dir: Option<PathBuf>,
    /// The git repository that keeps the run's anchor (`refs/orch/audit/<session>`),
    /// written at the end of the run and after each interrupt summary.
    pub anchor_repo: Option<PathBuf>,
}

/// One event, encoded by the sink thread.
#[derive(Debug)]
pub struct PendingEvent {
    pub ts: i64,
    pub agent: Option<String>,
    pub turn: Option<i64>,
    pub kind: String,
    pub payload: String,
    pub extra: Extra,
}

/// Events that also become files.
#[derive(Debug)]
pub enum Extra {
    None,
    Turn(Box<TurnRecord>),
    Interrupt(Box<InterruptSummary>),
    /// What an agent changed: `changes.patch` and `changes.json` in its folder.
    Changes(Box<crate::events::event::AgentChanges>),
    /// A sink's failure, recorded by the writer itself: it never took room at the gate.
    Failure,
}

impl PendingEvent {
    /// What it weighs at the gate.
    fn gate_bytes(&self) -> usize {
        match &self.extra {
            Extra::Failure => 0,
            Extra::Changes(changes) => self.payload.len() + changes.patch.len(),
            _ => self.payload.len(),
        }
    }

    fn is_gated(&self) -> bool {
        !matches!(self.extra, Extra::Failure)
    }

    /// The event that records `failure` (and, for the writer's own, what it lost).
    fn failure(failure: &SinkFailure, lost_events: Option<usize>) -> PendingEvent {
        let mut payload = serde_json::json!({
            "sink": failure.sink,
            "path": failure.path.as_ref().map(|p| p.display().to_string()),
            "message": failure.message,
            "error": failure.to_string(),
        });
        if let Some(lost) = lost_events {
            payload["lost_events"] = serde_json::json!(lost);
        }
        PendingEvent {
            ts: millis(SystemTime::now()) as i64,
            agent: None,
            turn: None,
            kind: SINK_FAILED.to_owned(),
            payload: payload.to_string(),
            extra: Extra::Failure,
        }
    }
}

/// Closes the gate when the writer thread ends, however it ends.
struct CloseGate(Arc<Gate>);

impl Drop for CloseGate {
    fn drop(&mut self) {
        self.0.close();
    }
}

pub enum WriterMsg {
    Event(PendingEvent),
    /// Answered once everything sent before it is committed.
    Barrier(SyncSender<Result<(), String>>),
    /// Commit, checkpoint, answer, stop.
    Close(SyncSender<Result<(), String>>),
    /// Another sink failed: recorded as a `sink_failed` event.
    SinkFailed(SinkFailure),
}

/// Tells the thread that started a store thread how opening went (`ready`), and hands
/// back what was opened.
pub(crate) fn report_ready<T, E>(
    ready: &SyncSender<Result<(), E>>,
    opened: Result<T, E>,
) -> Option<T> {
    match opened {
        Ok(value) => {
            let _ = ready.send(Ok(()));
            Some(value)
        }
        Err(err) => {
            let _ = ready.send(Err(err));
            None
        }
    }
}

/// When an event stamped `ts_ms` (Unix ms) was published, as an `Instant` between
/// `MAX_DELAY` before `now` and `now`: a stamp from the future (the clock stepped back)
/// gives the batch its whole `MAX_DELAY`, and one from long ago ends the gathering
/// after what is already queued is taken.
fn published_at(ts_ms: i64, now: Instant) -> Instant {
    let age_ms = (millis(SystemTime::now()) as i64).saturating_sub(ts_ms);
    let age = Duration::from_millis(age_ms.clamp(0, MAX_DELAY.as_millis() as i64) as u64);
    now.checked_sub(age).unwrap_or(now)
}

struct WriterContext {
    _store: Store,
    conn: Connection,
    remote: bool,
    session: String,
    seq: i64,
    prev: String,
    files_seq: i64,
    files_prev: String,
    fs: FsWriter,
    memory_dir: Option<std::path::PathBuf>,
    /// The full-size `INSERT INTO events`, prepared once (local stores only): parsing a
    /// 100-row statement for every 100 events costs more than binding it.
    insert_full: Option<Statement>,
    /// Each agent's events file path (`None`: the run's timeline), built once.
    event_files: ByAgent<String>,
    /// Scratch space for the canonical form of a row while it is hashed.
    hash_buf: Vec<u8>,
    /// Copies committed WAL frames into the database file from another thread (local
    /// stores, when it could be started).
    checkpointer: Option<Checkpointer>,
    /// Estimated bytes committed since the checkpointer was last asked.
    uncheckpointed: usize,
    shared: Arc<WriterShared>,
    /// The database file (local stores), named by a failure.
    path: Option<PathBuf>,
    describe: String,
    /// Since when commits have been failing, and the last error.
    failing_since: Option<Instant>,
    last_error: String,
    retry_delay: Duration,
    /// The writer's own fatal failure: new events are refused from then on.
    fatal: Option<SinkFailure>,
    reserve: Option<PathBuf>,
    anchor_repo: Option<PathBuf>,
    /// A committed batch held an interrupt summary: write the anchor.
    anchor_due: bool,
}

/// Runs the writer on the current thread until `Close` or until every sender is gone.
/// `ready` gets the outcome of opening the store.
/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 1024;

pub fn run_writer(
    target: AuditTarget,
    meta: RunMeta,
    options: AuditOptions,
    rx: Receiver<WriterMsg>,
    gate: Arc<Gate>,
    shared: Arc<WriterShared>,
    ready: SyncSender<Result<(), AuditError>>,
) {
    let _close = CloseGate(gate.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            let _ = ready.send(Err(AuditError::Spawn(err)));
            return;
        }
    };
    runtime.block_on(async move {
        let Some(mut ctx) = report_ready(
            &ready,
            WriterContext::open(&target, &meta, options, shared).await,
        ) else {
            return;
        };
        // Opening the store is on the way to the run's start, which the user waits
        // for; what comes after is batch work.
        yield_to_the_log_path();
        ctx.serve(rx, &gate).await;
    });
}

impl WriterContext {
    async fn open(
        target: &AuditTarget,
        meta: &RunMeta,
        options: AuditOptions,
        shared: Arc<WriterShared>,
    ) -> Result<Self, AuditError> {
        let store = open_for_writing(target).await?;
        let conn = store.conn.clone();
        if !target.is_remote() {
            // The writer appends: the pages it touches are the right edges of a few
            // b-trees, so 1 MiB of page cache (not SQLite's default 2 MiB) holds them.
            conn.execute(&format!("PRAGMA cache_size=-{WRITER_CACHE_KIB}"), ())
                .await
                .map_err(AuditError::sql("set the page cache"))?;
        }
        let mut fs = FsWriter::default();
        fs.ensure_root(&conn).await?;
        let started = meta.started_at_ms as i64;
        let hash = run_hash(
            &meta.session,
            started,
            &meta.prompt,
            &meta.backend,
            &meta.project_root,
        );
        conn.execute(
            "INSERT OR IGNORE INTO runs (session, started_at_ms, prompt, backend, project_root, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (meta.session.as_str(), started, meta.prompt.as_str(), meta.backend.as_str(), meta.project_root.as_str(), hash.as_str()),
        )
        .await
        .map_err(AuditError::sql("record the run"))?;
        record_owner(&conn, &meta.session).await?;
        let (seq, prev) = last_link(
            &conn,
            "SELECT seq, hash FROM events WHERE run = ?1 ORDER BY seq DESC LIMIT 1",
            &meta.session,
        )
        .await?
        .unwrap_or((
            0,
            run_start_hash(&conn, &meta.session).await?.unwrap_or(hash),
        ));
        let (files_seq, files_prev) = last_link(
            &conn,
            "SELECT seq, hash FROM files WHERE run = ?1 ORDER BY seq DESC LIMIT 1",
            &meta.session,
        )
        .await?
        .unwrap_or((0, files_genesis()));
        let checkpointer = match target {
            AuditTarget::Local(path) => start_checkpointer(&conn, path).await,
            AuditTarget::Remote { .. } => None,
        };
        let reserve = options
            .reserve_dir
            .as_ref()
            .filter(|_| !target.is_remote())
            .and_then(|dir| set_aside(dir));
        Ok(WriterContext {
            _store: store,
            conn,
            remote: target.is_remote(),
            session: meta.session.clone(),
            seq,
            prev,
            files_seq,
            files_prev,
            fs,
            memory_dir: options.memory_dir,
            insert_full: None,
            event_files: ByAgent::default(),
            hash_buf: Vec::new(),
            checkpointer,
            uncheckpointed: 0,
            shared,
            path: match target {
                AuditTarget::Local(path) => Some(path.clone()),
                AuditTarget::Remote { .. } => None,
            },
            describe: target.describe(),
            failing_since: None,
            last_error: String::new(),
            retry_delay: RETRY_FIRST,
            fatal: None,
            reserve,
            anchor_repo: options.anchor_repo,
            anchor_due: false,
        })
    }

    async fn serve(&mut self, rx: Receiver<WriterMsg>, gate: &Gate) {
        // Events accepted and not committed yet, oldest first: the batch being gathered,
        // or everything a failing store has not taken (bounded by the gate).
        let mut pending: Vec<PendingEvent> = Vec::with_capacity(MAX_BATCH);
        let mut waiters: Vec<SyncSender<Result<(), String>>> = Vec::new();
        let mut closing: Option<SyncSender<Result<(), String>>> = None;
        let mut disconnected = false;
        loop {
            // Block for the first message (while commits fail, only until the next
            // attempt), then gather: take what is queued, and while events keep coming,
            // look again every `GATHER_TICK` (sleeping, not waking per event) until the
            // batch is full, a barrier asks, `MAX_DELAY` passes, or a whole tick brings
            // nothing.
            let failing = self.failing_since.is_some();
            if failing {
                match rx.recv_timeout(self.retry_delay) {
                    Ok(msg) => self.take(msg, &mut pending, &mut waiters, &mut closing),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            } else {
                match rx.recv() {
                    Ok(msg) => self.take(msg, &mut pending, &mut waiters, &mut closing),
                    Err(_) => disconnected = true,
                }
            }
            let gathering = Instant::now();
            let oldest = pending
                .first()
                .map_or(gathering, |first| published_at(first.ts, gathering));
            loop {
                let mut arrived = false;
                // A failing store takes everything queued: the gate bounds it.
                while !disconnected && (failing || pending.len() < MAX_BATCH) {
                    match rx.try_recv() {
                        Ok(msg) => {
                            arrived = true;
                            self.take(msg, &mut pending, &mut waiters, &mut closing);
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => disconnected = true,
                    }
                }
                let left = MAX_DELAY.saturating_sub(oldest.elapsed());
                if failing
                    || disconnected
                    || closing.is_some()
                    || !waiters.is_empty()
                    || pending.len() >= MAX_BATCH
                    || left.is_zero()
                    || (!arrived && gathering.elapsed() >= GATHER_TICK)
                {
                    break;
                }
                std::thread::sleep(left.min(GATHER_TICK));
            }
            let mut outcome = self.commit_pending(&mut pending, gate).await;
            if outcome.is_err() && (closing.is_some() || disconnected) {
                // The run is ending: keep trying until the failure is fatal.
                while outcome.is_err() && self.fatal.is_none() {
                    self.escalate(gate);
                    if self.fatal.is_some() {
                        break;
                    }
                    std::thread::sleep(self.retry_delay);
                    outcome = self.commit_pending(&mut pending, gate).await;
                }
            }
            if outcome.is_err() {
                self.escalate(gate);
            }
            // A barrier is answered once what it covers is committed, or the failure is
            // fatal; while commits are retried it waits (at most `FAIL_AFTER`).
            if outcome.is_ok() || self.fatal.is_some() {
                let answer = match &self.fatal {
                    Some(failure) => Err(failure.to_string()),
                    None => Ok(()),
                };
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(answer.clone());
                }
            }
            if closing.is_none() && !disconnected {
                if self.anchor_due && self.fatal.is_none() {
                    self.anchor_due = false;
                    self.write_anchor();
                }
                continue;
            }
            let result = self.finish(&mut pending, gate).await;
            if let Some(done) = closing.take() {
                let _ = done.send(result);
            }
            return;
        }
    }

    fn take(
        &self,
        msg: WriterMsg,
        pending: &mut Vec<PendingEvent>,
        waiters: &mut Vec<SyncSender<Result<(), String>>>,
        closing: &mut Option<SyncSender<Result<(), String>>>,
    ) {
        match msg {
            WriterMsg::Event(event) => pending.push(event),
            WriterMsg::Barrier(done) => waiters.push(done),
            WriterMsg::Close(done) => *closing = Some(done),
            WriterMsg::SinkFailed(failure) => pending.push(PendingEvent::failure(&failure, None)),
        }
    }

    /// Commits what is pending, a batch at a time, oldest first. A batch that fails
    /// stays pending, whole, and nothing after it is committed before it.
    async fn commit_pending(
        &mut self,
        pending: &mut Vec<PendingEvent>,
        gate: &Gate,
    ) -> Result<(), ()> {
        while !pending.is_empty() {
            let n = pending.len().min(MAX_BATCH);
            if let Err(err) = self.commit(&pending[..n]).await {
                let detail = error_chain(&err);
                if self.failing_since.is_none() {
                    tracing::error!(error = %detail, store = %self.describe, "audit writer failed to commit a batch; keeping it and retrying");
                    self.failing_since = Some(Instant::now());
                    self.retry_delay = RETRY_FIRST;
                } else {
                    self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
                }
                self.last_error = store_error_text(&err, &detail);
                return Err(());
            }
            let (events, bytes) = pending[..n]
                .iter()
                .filter(|event| event.is_gated())
                .fold((0, 0), |(n, b), event| (n + 1, b + event.gate_bytes()));
            pending.drain(..n);
            gate.leave(events, bytes);
            if self.failing_since.take().is_some() {
                tracing::warn!(store = %self.describe, "audit writer committed the events it had kept");
            }
        }
        Ok(())
    }

    /// Makes a failure that has lasted `FAIL_AFTER` fatal: reported once, and from
    /// then on new events are refused (the bound on what is kept).
    fn escalate(&mut self, gate: &Gate) {
        if self.fatal.is_some() {
            return;
        }
        let Some(since) = self.failing_since else {
            return;
        };
        if since.elapsed() < FAIL_AFTER {
            return;
        }
        let failure = SinkFailure {
            sink: "audit".to_owned(),
            path: self.path.clone(),
            message: match &self.path {
                Some(_) => self.last_error.clone(),
                None => format!("{} ({})", self.last_error, self.describe),
            },
        };
        tracing::error!(error = %failure, "the audit store cannot be written; the run fails");
        self.shared.fail(failure.clone());
        self.fatal = Some(failure);
        gate.close();
    }

    /// The end of the run: after a fatal failure, records it (with the events that
    /// were lost) as the chain's last event, in the room the reserve gives back; then
    /// the anchor and a checkpoint.
    async fn finish(&mut self, pending: &mut Vec<PendingEvent>, gate: &Gate) -> Result<(), String> {
        let mut result = Ok(());
        if let Some(failure) = self.fatal.clone() {
            self.give_back_reserve();
            // What could not be committed is lost with this process; other sinks'
            // failures are kept, and the record says how much was lost.
            let before = pending.len();
            pending.retain(|event| !event.is_gated());
            let lost = before - pending.len() + gate.refused();
            pending.push(PendingEvent::failure(&failure, Some(lost)));
            self.failing_since = None;
            if self.commit_pending(pending, gate).await.is_err() {
                tracing::error!(error = %self.last_error, "failed to record the audit failure in the store");
            }
            result = Err(failure.to_string());
        }
        self.give_back_reserve();
        if self.fatal.is_none()
            && let Err(err) = self.record_head().await
        {
            tracing::warn!(error = %error_chain(&err), "failed to record the run's head in kv_store");
        }
        if result.is_ok() || self.failing_since.is_none() {
            self.write_anchor();
        }
        let checkpoint = self.checkpoint().await;
        result.and(checkpoint)
    }

    /// Keeps the run's head in AgentFS's key-value store (`head_key`), where AgentFS
    /// tools see where the run ended; the `files` chain vouches for the row.
    async fn record_head(&mut self) -> Result<(), AuditError> {
        let key = head_key(&self.session);
        let value = serde_json::json!({
            "session": self.session,
            "seq": self.seq,
            "hash": self.prev,
        })
        .to_string();
        let begin = if self.remote {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        self.conn
            .execute(begin, ())
            .await
            .map_err(AuditError::sql("begin a transaction"))?;
        let files_link = (self.files_seq, self.files_prev.clone());
        let written = async {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO kv_store (key, value) VALUES (?1, ?2)",
                    (key.as_str(), value.as_str()),
                )
                .await
                .map_err(AuditError::sql("record the run's head"))?;
            self.record_file(&format!("{KV_ROW}{key}"), &kv_canonical(&key, &value))
                .await?;
            self.conn
                .execute("COMMIT", ())
                .await
                .map_err(AuditError::sql("commit the run's head"))?;
            Ok(())
        }
        .await;
        if written.is_err() {
            let _ = self.conn.execute("ROLLBACK", ()).await;
            (self.files_seq, self.files_prev) = files_link;
        }
        written
    }

    fn give_back_reserve(&mut self) {
        if let Some(path) = self.reserve.take() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Writes the batch in one transaction. On failure the transaction is rolled back
    /// and the writer is as it was before it: the chain continues from the last commit.
    async fn commit(&mut self, batch: &[PendingEvent]) -> Result<(), AuditError> {
        if batch.is_empty() {
            return Ok(());
        }
        let files_link = (self.files_seq, self.files_prev.clone());
        let result = self.write_batch(batch).await;
        if result.is_err() {
            let _ = self.conn.execute("ROLLBACK", ()).await;
            self.fs.forget();
            self.insert_full = None;
            (self.files_seq, self.files_prev) = files_link;
        }
        if result.is_ok() {
            if batch
                .iter()
                .any(|event| matches!(event.extra, Extra::Interrupt(_)))
            {
                self.anchor_due = true;
            }
            // Each event is about twice its payload in the store (the row and its line).
            self.uncheckpointed += batch
                .iter()
                .map(|event| 2 * event.payload.len() + 200)
                .sum::<usize>();
            if self.uncheckpointed >= CHECKPOINT_EVERY_BYTES
                && let Some(checkpointer) = &self.checkpointer
            {
                checkpointer.nudge();
                self.uncheckpointed = 0;
            }
        }
        result
    }

    async fn write_batch(&mut self, batch: &[PendingEvent]) -> Result<(), AuditError> {
        let begin = if self.remote {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        self.conn
            .execute(begin, ())
            .await
            .map_err(AuditError::sql("begin a transaction"))?;
        self.fs.begin();
        let (mut seq, mut prev) = (self.seq, self.prev.clone());
        let mut digest_hex = String::with_capacity(64);
        // `?1` is the run in every row of a statement; each row adds seven values.
        let session = self.session.clone();
        let new_values = || {
            let mut values = Vec::with_capacity(1 + EVENT_ROWS_PER_STATEMENT * 7);
            values.push(Value::Text(session.clone()));
            values
        };
        let mut values: Vec<Value> = new_values();
        let mut rows_in_statement = 0;
        for event in batch {
            seq += 1;
            let row = EventRowRef {
                run: &self.session,
                seq,
                agent: event.agent.as_deref(),
                turn: event.turn,
                ts: event.ts,
                kind: &event.kind,
                payload: &event.payload,
            };
            hex_into(
                &event_digest(&mut self.hash_buf, &prev, &row),
                &mut digest_hex,
            );
            std::mem::swap(&mut prev, &mut digest_hex);
            let path = self
                .event_files
                .get_or_insert_with(row.agent, || events_file(&self.session, row.agent));
            write_event_line(
                self.fs.append_buffer(path),
                seq,
                event.ts,
                row.agent,
                event.turn,
                &event.kind,
                &event.payload,
            );
            values.extend([
                Value::Integer(seq),
                event.agent.clone().map_or(Value::Null, Value::Text),
                event.turn.map_or(Value::Null, Value::Integer),
                Value::Integer(event.ts),
                Value::Text(event.kind.clone()),
                Value::Text(event.payload.clone()),
                Value::Text(prev.clone()),
            ]);
            rows_in_statement += 1;
            if rows_in_statement == EVENT_ROWS_PER_STATEMENT {
                let full = std::mem::replace(&mut values, new_values());
                self.insert_full_statement(full).await?;
                rows_in_statement = 0;
            }
        }
        if rows_in_statement > 0 {
            insert_events(&self.conn, rows_in_statement, values).await?;
        }
        for event in batch {
            match &event.extra {
                Extra::None | Extra::Failure => {}
                Extra::Turn(record) => self.write_turn(record).await?,
                Extra::Interrupt(summary) => {
                    let path = interrupt_path(&self.session, summary);
                    self.write_file(&path, &to_bytes(&interrupt_document(summary)))
                        .await?;
                }
                Extra::Changes(changes) => {
                    let (patch, summary) = changes_paths(&self.session, &changes.agent);
                    self.write_file(&patch, changes.patch.as_bytes()).await?;
                    let json = serde_json::to_value(changes.as_ref()).unwrap_or_default();
                    self.write_file(&summary, &to_bytes(&json)).await?;
                }
            }
        }
        self.fs.flush_appends(&self.conn).await?;
        self.conn
            .execute("COMMIT", ())
            .await
            .map_err(AuditError::sql("commit a batch"))?;
        self.seq = seq;
        self.prev = prev;
        Ok(())
    }

    /// Inserts exactly `EVENT_ROWS_PER_STATEMENT` rows, through the prepared statement
    /// when the store is local.
    async fn insert_full_statement(&mut self, values: Vec<Value>) -> Result<(), AuditError> {
        if self.remote {
            return insert_events(&self.conn, EVENT_ROWS_PER_STATEMENT, values).await;
        }
        if self.insert_full.is_none() {
            let sql = insert_events_sql(EVENT_ROWS_PER_STATEMENT);
            let statement = self
                .conn
                .prepare(&sql)
                .await
                .map_err(AuditError::sql("prepare the events insert"))?;
            self.insert_full = Some(statement);
        }
        let Some(statement) = &self.insert_full else {
            return Ok(());
        };
        let result = statement.execute(params_from_iter(values)).await;
        statement.reset();
        result.map_err(AuditError::sql("insert events"))?;
        Ok(())
    }

    async fn write_turn(&mut self, record: &TurnRecord) -> Result<(), AuditError> {
        if !is_valid_agent_id(&record.agent) || !is_valid_agent_id(&self.session) {
            // Ids are validated upstream; an unsafe one never becomes a path.
            tracing::warn!(agent = %record.agent.escape_debug(), "turn file skipped: agent id or session is not path-safe");
            return Ok(());
        }
        let path = turn_path(&self.session, record);
        let path = self
            .write_file(&path, &to_bytes(&turn_document(&self.session, record)))
            .await?;
        let artifact = artifact_path(&self.session, record);
        let artifact_bytes = to_bytes(&artifact_document(&self.session, record));
        let artifact = self.write_file(&artifact, &artifact_bytes).await?;
        if let Some(dir) = &self.memory_dir {
            let name = artifact.rsplit('/').next().unwrap_or(&artifact);
            // The store is the record; a failed mirror copy is reported, not fatal.
            if let Err(err) = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(dir.join(name), &artifact_bytes))
            {
                tracing::warn!(dir = %dir.display(), error = %err, "failed to mirror a memory artifact");
            }
        }
        let row = tool_call_row(&self.session, record, &path);
        let mut ids = self
            .conn
            .query(
                "INSERT INTO tool_calls (name, parameters, result, error, status, started_at, completed_at, duration_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                (row.name.as_str(), row.parameters.as_str(), row.result.as_deref(), row.error.as_deref(), row.status, row.started_at, row.completed_at, row.duration_ms),
            )
            .await
            .map_err(AuditError::sql("record a tool call"))?;
        let id = match ids
            .next()
            .await
            .map_err(AuditError::sql("record a tool call"))?
        {
            Some(found) => found
                .get::<i64>(0)
                .map_err(AuditError::sql("record a tool call"))?,
            None => {
                return Err(AuditError::Malformed {
                    detail: "inserting a tool call returned no id".into(),
                });
            }
        };
        drop(ids);
        // The row joins the `files` chain, so changing it breaks `verify`.
        let canonical = tool_call_canonical(&ToolCallRef {
            id,
            name: &row.name,
            parameters: Some(&row.parameters),
            result: row.result.as_deref(),
            error: row.error.as_deref(),
            status: row.status,
            started_at: row.started_at,
            completed_at: Some(row.completed_at),
            duration_ms: Some(row.duration_ms),
        });
        self.record_file(&format!("{TOOL_CALL_ROW}{id}"), &canonical)
            .await?;
        Ok(())
    }

    /// A whole file plus its `files` row, whose hash chain makes the content tamper-evident.
    async fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<String, AuditError> {
        let path = self.fs.create_file(&self.conn, path, bytes).await?;
        self.record_file(&path, bytes).await?;
        Ok(path)
    }

    /// The `files` row that vouches for `bytes` at `path`.
    async fn record_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), AuditError> {
        let (seq, prev) = (self.files_seq + 1, self.files_prev.clone());
        let sha = sha256_hex(bytes);
        let size = bytes.len() as i64;
        let hash = file_hash(&prev, &self.session, seq, path, size, &sha);
        self.conn
            .execute(
                "INSERT INTO files (run, seq, path, size, sha256, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (self.session.as_str(), seq, path, size, sha.as_str(), hash.as_str()),
            )
            .await
            .map_err(AuditError::sql("record a file"))?;
        self.files_seq = seq;
        self.files_prev = hash;
        Ok(())
    }

    /// Points `refs/orch/audit/<session>` at the chain's head (see `anchor`), when the
    /// project is a git repository; a failure is a warning (the store is still whole).
    fn write_anchor(&mut self) {
        let Some(repo) = self.anchor_repo.clone() else {
            return;
        };
        let head = crate::audit::anchor::Anchor {
            session: self.session.clone(),
            seq: self.seq,
            hash: self.prev.clone(),
            files_seq: self.files_seq,
            files_hash: self.files_prev.clone(),
        };
        match crate::audit::anchor::write(&repo, &head) {
            Ok(Some(line)) => {
                self.shared.set_anchor(line);
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "failed to write the audit anchor"),
        }
    }

    /// Folds the WAL into the main file so a copy of the file alone is complete.
    async fn checkpoint(&mut self) -> Result<(), String> {
        if self.remote {
            return Ok(());
        }
        // A background checkpoint in progress would make this one wait for its lock.
        if let Some(mut checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        pragma(&self.conn, "PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .map_err(|err| format!("failed to checkpoint the audit store: {err}"))
    }
}

/// Starts background checkpoints and raises the writer's own automatic checkpoint to
/// the backstop size; without a checkpointer the writer keeps SQLite's default.
async fn start_checkpointer(conn: &Connection, path: &std::path::Path) -> Option<Checkpointer> {
    let checkpointer = match Checkpointer::start(path) {
        Ok(checkpointer) => checkpointer,
        Err(err) => {
            tracing::warn!(error = %err, "no background checkpoints; the audit writer checkpoints by itself");
            return None;
        }
    };
    let sql = format!("PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}");
    if let Err(err) = pragma(conn, &sql).await {
        tracing::warn!(error = %err, "failed to set wal_autocheckpoint; no background checkpoints");
        return None;
    }
    Some(checkpointer)
}

/// The writer is batch work: its transactions may wait a few milliseconds, while a
/// log line an agent pane is tailing should not. On a busy machine the scheduler
/// otherwise lets a running commit finish its slice before the sink thread that writes
/// the logs gets a core, which is most of the log path's tail latency. So this thread
/// runs as `SCHED_BATCH` at nice 10; it still takes any core nobody else wants.
pub(crate) fn yield_to_the_log_path() {
    #[cfg(target_os = "linux")]
    {
        use nix::libc;
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: both calls only change the calling thread's scheduling (pid/tid 0 and
        // our own tid); a failure leaves it as it was, which is only slower.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
        }
    }
}

/// `rows` rows: `?1` is the run, bound once; each row numbers its own seven values.
fn insert_events_sql(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(80 + rows * 48);
    sql.push_str("INSERT INTO events (run, seq, agent, turn, ts, kind, payload, hash) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        let first = 2 + i * 7;
        sql.push_str("(?1");
        for n in first..first + 7 {
            let _ = write!(sql, ",?{n}");
        }
        sql.push(')');
    }
    sql
}

async fn insert_events(
    conn: &Connection,
    rows: usize,
    values: Vec<Value>,
) -> Result<(), AuditError> {
    conn.execute(&insert_events_sql(rows), params_from_iter(values))
        .await
        .map_err(AuditError::sql("insert events"))?;
    Ok(())
}

/// The store's error for a failure message: a full disk says so in the OS's words.
fn store_error_text(err: &AuditError, detail: &str) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(libsql::Error::SqliteFailure(code, _)) = current.downcast_ref::<libsql::Error>()
        {
            // SQLITE_FULL: the database or the disk under it is full.
            if code & 0xff == 13 {
                return "No space left on device (the database or disk is full)".to_owned();
            }
        }
        source = current.source();
    }
    detail.to_owned()
}

/// Writes the reserve file; `None` when it cannot be (no room already: nothing to
/// give back later).
fn set_aside(dir: &std::path::Path) -> Option<PathBuf> {
    let path = dir.join(RESERVE_FILE);
    match std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, vec![0u8; RESERVE_BYTES]))
    {
        Ok(()) => Some(path),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "no reserve for recording a failure of the audit store");
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Records which process owns the run (this one), so a reader can tell a run whose
/// orchestrator is gone (`crashed`) from a running one. A resumed run is owned anew.
async fn record_owner(conn: &Connection, session: &str) -> Result<(), AuditError> {
    let me = ProcessIdentity::current();
    let host = crate::audit::owner::host_name();
    let boot = crate::audit::owner::boot_id();
    conn.execute(
        "UPDATE runs SET host = ?1, boot_id = ?2, pid = ?3, pid_start = ?4 WHERE session = ?5",
        (
            host,
            boot,
            i64::from(me.pid),
            me.start_ticks as i64,
            session,
        ),
    )
    .await
    .map_err(AuditError::sql("record the run's owner"))?;
    Ok(())
}

async fn last_link(
    conn: &Connection,
    sql: &str,
    session: &str,
) -> Result<Option<(i64, String)>, AuditError> {
    let mut rows = conn
        .query(sql, [session])
        .await
        .map_err(AuditError::sql("read the end of the hash chain"))?;
    match rows
        .next()
        .await
        .map_err(AuditError::sql("read the end of the hash chain"))?
    {
        Some(row) => Ok(Some((
            row.get::<i64>(0)
                .map_err(AuditError::sql("read the end of the hash chain"))?,
            row.get::<String>(1)
                .map_err(AuditError::sql("read the end of the hash chain"))?,
        ))),
        None => Ok(None),
    }
}

async fn run_start_hash(conn: &Connection, session: &str) -> Result<Option<String>, AuditError> {
    let mut rows = conn
        .query("SELECT hash FROM runs WHERE session = ?1", [session])
        .await
        .map_err(AuditError::sql("read the run"))?;
    match rows.next().await.map_err(AuditError::sql("read the run"))? {
        Some(row) => Ok(Some(
            row.get::<String>(0)
                .map_err(AuditError::sql("read the run"))?,
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A batch's deadline counts from its oldest event's stamp, within `MAX_DELAY`.
    #[test]
    fn the_batch_deadline_counts_from_the_oldest_events_stamp() {
        let now = Instant::now();
        let stamp_now = millis(SystemTime::now()) as i64;
        let age = now.duration_since(published_at(stamp_now - 10, now));
        assert!(
            age >= Duration::from_millis(9) && age <= Duration::from_millis(15),
            "an event published 10 ms ago: {age:?}"
        );
        assert_eq!(
            published_at(stamp_now + 60_000, now),
            now,
            "a stamp from the future"
        );
        assert_eq!(
            now.duration_since(published_at(0, now)),
            MAX_DELAY,
            "a stamp from long ago waits no longer"
        );
    }
}
