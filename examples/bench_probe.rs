//! Bench-only: the latency probe of `scripts/bench.sh` (not part of the product).
//!
//! Watches a run while it streams: tails the agents' log files (polling every
//! `--log-poll-us`, default 200 µs) and polls the audit store's `events` table (every
//! `--db-poll-ms`, default 2 ms) through its own connection. Every line or row that
//! carries `t=<unix µs>` (stamped by `bench_agent` just before it wrote the event) gives
//! one latency sample: time seen here minus `t`. The poll period bounds how late a
//! sample can be observed, so it is part of what is measured (and reported).
//!
//! With `--tailers N` (N > 1) N threads tail the logs independently, each pinned to its
//! own CPU, and a line's sample uses the first of them to read it: on a VM whose CPUs
//! the hypervisor sometimes stops, one observer's stall would otherwise count as the
//! pipeline's latency. `--dump FILE` writes every stamped log line as
//! `agent stamp seen-by-tailer-1 [seen-by-tailer-2 ...]` for analysis.
//!
//! Prints one JSON object: samples, p50, p90, p99, max in microseconds for the logs (first
//! tailer to see each line), the logs as the first tailer alone saw them, and the store.
//!
//! `bench_probe --logs DIR --agents a,b --expect N [--db FILE --session S]
//!  [--timeout-s 120] [--tailers 1] [--dump FILE]`

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
    tailers: usize,
    dump: Option<PathBuf>,
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
        tailers: 1,
        dump: None,
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
            "--tailers" => args.tailers = number as usize,
            "--dump" => args.dump = Some(PathBuf::from(value)),
            other => {
                eprintln!("bench_probe: unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    args
}

/// One tailer's view of the logs: per agent, in file order, each stamped line's
/// `(stamp, seen)` pair.
type Sightings = Vec<Vec<(i64, i64)>>;

/// Tails every agent's log until `expect` stamped lines are seen (or the timeout),
/// noting when each stamped line was first read.
fn tail_logs(args: &Args) -> Sightings {
    let mut files: Vec<Option<(File, Vec<u8>)>> = args.agents.iter().map(|_| None).collect();
    let mut seen: Sightings = args.agents.iter().map(|_| Vec::new()).collect();
    let mut total = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + args.timeout;
    while total < args.expect && Instant::now() < deadline {
        let mut got = false;
        for (k, agent) in args.agents.iter().enumerate() {
            if files[k].is_none() {
                match File::open(args.logs.join(format!("{agent}.log"))) {
                    Ok(file) => files[k] = Some((file, Vec::new())),
                    Err(_) => continue,
                }
            }
            let Some((file, pending)) = files[k].as_mut() else {
                continue;
            };
            loop {
                let n = file.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got = true;
                let now = now_us();
                pending.extend_from_slice(&chunk[..n]);
                let end = pending
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
                for line in pending[..end].split(|b| *b == b'\n') {
                    if let Some(t) = stamp(&String::from_utf8_lossy(line)) {
                        seen[k].push((t, now));
                        total += 1;
                    }
                }
                pending.drain(..end);
            }
        }
        if !got {
            std::thread::sleep(args.log_poll);
        }
    }
    seen
}

/// Pins the calling thread to one CPU (best effort: the tailer still works unpinned).
fn pin_to(cpu: usize) {
    use nix::libc;
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays inside it for any
    // cpu below CPU_SETSIZE, and the call only changes this thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Runs `args.tailers` tailers at once, each pinned to its own CPU, and gives each line
/// the earliest time any of them saw it: the line was in the file by then, so this is
/// still an upper bound on its latency, but one that a single stalled observer (its CPU
/// taken by the hypervisor or by the system under test) no longer inflates.
/// Returns the combined samples and those of the first tailer alone.
fn watch_logs(args: &Arc<Args>) -> (Vec<i64>, Vec<i64>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tailers: Vec<_> = (0..args.tailers.max(1))
        .map(|i| {
            let args = args.clone();
            std::thread::spawn(move || {
                if args.tailers > 1 {
                    pin_to(i % cpus);
                }
                tail_logs(&args)
            })
        })
        .collect();
    let views: Vec<Sightings> = tailers
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .collect();
    let first: Vec<i64> = views
        .first()
        .map(|view| view.iter().flatten().map(|(t, seen)| seen - t).collect())
        .unwrap_or_default();
    let mut earliest = Vec::with_capacity(args.expect);
    let mut dump = String::new();
    for (k, agent) in args.agents.iter().enumerate() {
        let lines = views
            .iter()
            .map(|v| v.get(k).map_or(0, Vec::len))
            .max()
            .unwrap_or(0);
        for line in 0..lines {
            // What each tailer saw of this line (a tailer that timed out may lack it).
            let sightings: Vec<Option<&(i64, i64)>> = views
                .iter()
                .map(|v| v.get(k).and_then(|a| a.get(line)))
                .collect();
            let Some(t) = sightings.iter().flatten().map(|(t, _)| *t).next() else {
                continue;
            };
            let seen = sightings
                .iter()
                .flatten()
                .map(|(_, s)| *s)
                .min()
                .unwrap_or(t);
            earliest.push(seen - t);
            if args.dump.is_some() {
                dump.push_str(&format!("{agent} {t}"));
                for sighting in &sightings {
                    match sighting {
                        Some((_, s)) => dump.push_str(&format!(" {s}")),
                        None => dump.push_str(" -"),
                    }
                }
                dump.push('\n');
            }
        }
    }
    if let Some(path) = &args.dump {
        if let Err(err) = std::fs::write(path, dump) {
            eprintln!("bench_probe: writing {}: {err}", path.display());
        }
    }
    (earliest, first)
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
    let logs = std::thread::spawn(move || watch_logs(&log_args));
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
    let (logs, first) = logs.join().unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "log": summary(logs),
            "log_one_tailer": summary(first),
            "audit": summary(db),
        })
    );
}
