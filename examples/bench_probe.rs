//! Bench-only: the latency probe of `scripts/bench.sh` (not part of the product).
//!
//! Watches a run while it streams: tails the agents' log files (polling every
//! `--log-poll-us`, default 200 µs) and polls the audit store's `events` table (every
//! `--db-poll-ms`, default 2 ms) through its own connection. Every line or row that
//! carries `t=<unix µs>` (stamped by `bench_agent` just before it wrote the event) gives
//! one latency sample: time seen here minus `t`. The poll period bounds how late a
//! sample can be observed, so it is part of what is measured (and reported).
//!
//! Prints one JSON object: samples, p50, p90, p99, max in microseconds per target.
//!
//! `bench_probe --logs DIR --agents a,b --expect N [--db FILE --session S]
//!  [--timeout-s 120]`

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

/// The `t=<digits>` stamp in a line, if any.
fn stamp(text: &str) -> Option<i64> {
    let at = text.find("t=")?;
    let digits: String = text[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.len() < 15 {
        // Not ours (a stamp is µs since 1970: 16 digits).
        return text[at + 2..]
            .find("t=")
            .and_then(|next| stamp(&text[at + 2 + next..]));
    }
    digits.parse().ok()
}

struct Args {
    logs: PathBuf,
    agents: Vec<String>,
    expect: usize,
    db: Option<PathBuf>,
    session: String,
    timeout: Duration,
    log_poll: Duration,
    db_poll: Duration,
}

fn parse_args() -> Args {
    let mut args = Args {
        logs: PathBuf::new(),
        agents: Vec::new(),
        expect: 0,
        db: None,
        session: String::new(),
        timeout: Duration::from_secs(120),
        log_poll: Duration::from_micros(200),
        db_poll: Duration::from_millis(2),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let value = argv[i + 1].clone();
        let number = value.parse::<u64>().unwrap_or(0);
        match argv[i].as_str() {
            "--logs" => args.logs = PathBuf::from(value),
            "--agents" => args.agents = value.split(',').map(str::to_owned).collect(),
            "--expect" => args.expect = number as usize,
            "--db" => args.db = Some(PathBuf::from(value)),
            "--session" => args.session = value,
            "--timeout-s" => args.timeout = Duration::from_secs(number),
            "--log-poll-us" => args.log_poll = Duration::from_micros(number),
            "--db-poll-ms" => args.db_poll = Duration::from_millis(number),
            other => {
                eprintln!("bench_probe: unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    args
}

fn tail_logs(args: &Args) -> Vec<i64> {
    let mut files: HashMap<String, (File, Vec<u8>)> = HashMap::new();
    let mut samples = Vec::with_capacity(args.expect);
    let mut chunk = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + args.timeout;
    while samples.len() < args.expect && Instant::now() < deadline {
        let mut got = false;
        for agent in &args.agents {
            if !files.contains_key(agent) {
                match File::open(args.logs.join(format!("{agent}.log"))) {
                    Ok(file) => {
                        files.insert(agent.clone(), (file, Vec::new()));
                    }
                    Err(_) => continue,
                }
            }
            let Some((file, pending)) = files.get_mut(agent) else {
                continue;
            };
            loop {
                let n = file.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got = true;
                let seen = now_us();
                pending.extend_from_slice(&chunk[..n]);
                let end = pending
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
                for line in pending[..end].split(|b| *b == b'\n') {
                    if let Some(t) = stamp(&String::from_utf8_lossy(line)) {
                        samples.push(seen - t);
                    }
                }
                pending.drain(..end);
            }
        }
        if !got {
            std::thread::sleep(args.log_poll);
        }
    }
    samples
}

async fn poll_db(args: &Args) -> Result<Vec<i64>, libsql::Error> {
    let mut samples = Vec::with_capacity(args.expect);
    let Some(path) = &args.db else {
        return Ok(samples);
    };
    let deadline = Instant::now() + args.timeout;
    while !path.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let db = libsql::Builder::new_local(path).build().await?;
    let conn = db.connect()?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut after = 0i64;
    while samples.len() < args.expect && Instant::now() < deadline {
        let result = conn
            .query(
                "SELECT seq, payload FROM events WHERE run = ?1 AND seq > ?2 ORDER BY seq LIMIT 20000",
                (args.session.as_str(), after),
            )
            .await;
        let mut rows = match result {
            Ok(rows) => rows,
            // The writer may still be creating the schema.
            Err(_) => {
                tokio::time::sleep(args.db_poll).await;
                continue;
            }
        };
        let mut got = 0;
        let mut stamps = Vec::new();
        while let Some(row) = rows.next().await? {
            after = row.get::<i64>(0)?;
            if let Some(t) = stamp(&row.get::<String>(1)?) {
                stamps.push(t);
            }
            got += 1;
        }
        let seen = now_us();
        samples.extend(stamps.into_iter().map(|t| seen - t));
        if got == 0 {
            tokio::time::sleep(args.db_poll).await;
        }
    }
    Ok(samples)
}

fn summary(mut samples: Vec<i64>) -> serde_json::Value {
    samples.sort_unstable();
    let at = |q: f64| -> i64 {
        if samples.is_empty() {
            return 0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i]
    };
    serde_json::json!({
        "samples": samples.len(),
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "max_us": samples.last().copied().unwrap_or(0),
    })
}

fn main() {
    let args = Arc::new(parse_args());
    let log_args = args.clone();
    let logs = std::thread::spawn(move || tail_logs(&log_args));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bench_probe: {err}");
            std::process::exit(1);
        }
    };
    let db = runtime.block_on(poll_db(&args)).unwrap_or_else(|err| {
        eprintln!("bench_probe: reading the audit store failed: {err}");
        Vec::new()
    });
    let logs = logs.join().unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({ "log": summary(logs), "audit": summary(db) })
    );
}
