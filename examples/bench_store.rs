//! Bench-only: store-side measurements for `scripts/bench.sh` (not part of the product).
//!
//! - `audit STREAM DB [AGENT]`: orch's audit write path alone. Parses a saved
//!   `codex exec --json` stream (untimed), then times `AuditSink::handle` for every
//!   event plus the closing commit and checkpoint, into a fresh store.
//! - `raw SRC DST SESSION`: the reference. Copies a run's `events` rows from a store
//!   into a fresh file holding only an `events` table of the same shape, with the same
//!   settings (WAL, synchronous=NORMAL), multi-row inserts of 100 rows and one
//!   transaction per 1000 rows, and the same indexes; no hash chain and no AgentFS
//!   files. Reading the rows is not timed.
//! - `export SRC SESSION OUT`: writes the run's events as the JSON lines orch keeps in
//!   `/runs/<session>/events/<agent>.jsonl`, prefixed `<agent>\t`, for the AgentFS SDK
//!   script.
//!
//! Each timed mode prints one JSON object: events, seconds, events_per_s.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libsql::{Connection, Value, params_from_iter};
use orch::agent::stream::{CodexParser, DEFAULT_MAX_LINE, LineFeed};
use orch::agent::{AgentEvent, Usage};
use orch::audit::schema::event_line;
use orch::audit::{AuditSink, AuditTarget, RunMeta};
use orch::events::{OrchEvent, OrchEventKind, Sink};
use orch::redact::Redactor;

type Error = Box<dyn std::error::Error>;

fn report(events: usize, took: Duration) {
    println!(
        "{}",
        serde_json::json!({
            "events": events,
            "seconds": took.as_secs_f64(),
            "events_per_s": events as f64 / took.as_secs_f64(),
        })
    );
}

fn audit(stream: &Path, db: &Path, agent: &str) -> Result<(), Error> {
    let bytes = std::fs::read(stream)?;
    let mut feed = LineFeed::new(
        CodexParser::new(Usage::default(), time::OffsetDateTime::now_utc()),
        DEFAULT_MAX_LINE,
    );
    let mut parsed: Vec<AgentEvent> = Vec::new();
    feed.push(&bytes, &mut parsed);
    feed.finish(&mut parsed);
    drop(bytes);
    let events: Vec<OrchEvent> = parsed
        .into_iter()
        .map(|event| {
            OrchEvent::now(OrchEventKind::Agent {
                agent: agent.to_owned(),
                turn: 1,
                event,
            })
        })
        .collect();
    let session = "run-bench-audit".to_owned();
    let meta = RunMeta {
        session,
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        prompt: "bench".into(),
        backend: "codex".into(),
        project_root: "/bench".into(),
    };
    let redactor = Redactor::from_env(std::iter::empty());
    let mut sink = AuditSink::open(AuditTarget::Local(db.to_path_buf()), meta, &redactor)?;
    let started = Instant::now();
    for event in &events {
        sink.handle(event)?;
    }
    sink.close()?;
    report(events.len(), started.elapsed());
    Ok(())
}

async fn open(path: &Path) -> Result<(libsql::Database, Connection), Error> {
    let db = libsql::Builder::new_local(path).build().await?;
    let conn = db.connect()?;
    Ok((db, conn))
}

async fn raw(src: &Path, dst: &Path, session: &str) -> Result<(), Error> {
    let (_src_db, src) = open(src).await?;
    let (_dst_db, dst) = open(dst).await?;
    let mut rows = dst.query("PRAGMA journal_mode=WAL", ()).await?;
    while rows.next().await?.is_some() {}
    dst.execute("PRAGMA synchronous=NORMAL", ()).await?;
    dst.execute(
        "CREATE TABLE events (run TEXT NOT NULL, seq INTEGER NOT NULL, agent TEXT, turn INTEGER, \
         ts INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, hash TEXT NOT NULL, \
         PRIMARY KEY (run, seq)) STRICT",
        (),
    )
    .await?;
    dst.execute("CREATE INDEX idx_events_kind ON events(run, kind, seq)", ())
        .await?;
    let mut after = 0i64;
    let mut total = 0usize;
    let mut took = Duration::ZERO;
    loop {
        // Read a slice of rows (untimed), then insert it (timed).
        let mut rows = src
            .query(
                "SELECT run, seq, agent, turn, ts, kind, payload, hash FROM events \
                 WHERE run = ?1 AND seq > ?2 ORDER BY seq LIMIT 100000",
                (session, after),
            )
            .await?;
        let mut slice: Vec<[Value; 8]> = Vec::new();
        while let Some(row) = rows.next().await? {
            after = row.get::<i64>(1)?;
            slice.push([
                row.get_value(0)?,
                row.get_value(1)?,
                row.get_value(2)?,
                row.get_value(3)?,
                row.get_value(4)?,
                row.get_value(5)?,
                row.get_value(6)?,
                row.get_value(7)?,
            ]);
        }
        if slice.is_empty() {
            break;
        }
        total += slice.len();
        let started = Instant::now();
        for txn in slice.chunks(1000) {
            dst.execute("BEGIN IMMEDIATE", ()).await?;
            for statement in txn.chunks(100) {
                let mut sql = String::from(
                    "INSERT INTO events (run, seq, agent, turn, ts, kind, payload, hash) VALUES ",
                );
                for i in 0..statement.len() {
                    sql.push_str(if i == 0 {
                        "(?,?,?,?,?,?,?,?)"
                    } else {
                        ",(?,?,?,?,?,?,?,?)"
                    });
                }
                let values: Vec<Value> = statement.iter().flat_map(|r| r.iter().cloned()).collect();
                dst.execute(&sql, params_from_iter(values)).await?;
            }
            dst.execute("COMMIT", ()).await?;
        }
        took += started.elapsed();
    }
    let started = Instant::now();
    let mut rows = dst.query("PRAGMA wal_checkpoint(TRUNCATE)", ()).await?;
    while rows.next().await?.is_some() {}
    took += started.elapsed();
    report(total, took);
    Ok(())
}

async fn export(src: &Path, session: &str, out: &Path) -> Result<(), Error> {
    let (_db, src) = open(src).await?;
    let mut rows = src
        .query(
            "SELECT seq, ts, agent, turn, kind, payload FROM events WHERE run = ?1 ORDER BY seq",
            [session],
        )
        .await?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut n = 0usize;
    while let Some(row) = rows.next().await? {
        let agent: Option<String> = row.get(2)?;
        let line = event_line(
            row.get(0)?,
            row.get(1)?,
            agent.as_deref(),
            row.get(3)?,
            &row.get::<String>(4)?,
            &row.get::<String>(5)?,
        );
        write!(file, "{}\t{line}", agent.as_deref().unwrap_or("timeline"))?;
        n += 1;
    }
    file.flush()?;
    println!("{}", serde_json::json!({ "events": n }));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result: Result<(), Error> = match (arg(0), runtime) {
        ("audit", _) => audit(
            Path::new(arg(1)),
            Path::new(arg(2)),
            args.get(3).map_or("firehose", String::as_str),
        ),
        ("raw", Ok(rt)) => rt.block_on(raw(Path::new(arg(1)), Path::new(arg(2)), arg(3))),
        ("export", Ok(rt)) => rt.block_on(export(Path::new(arg(1)), arg(2), Path::new(arg(3)))),
        (_, Err(err)) => Err(err.into()),
        (other, _) => Err(format!("unknown mode `{other}` (audit, raw, export)").into()),
    };
    if let Err(err) = result {
        eprintln!("bench_store: {err}");
        std::process::exit(1);
    }
}
