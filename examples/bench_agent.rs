//! Bench-only: a fake `codex` for `scripts/bench.sh` (not part of the product).
//!
//! Answers `codex exec --json [...] -- -` and `codex exec --json [...] resume -- THREAD -`
//! (the prompt on stdin, as orch sends it; a last argument other than `-` is the
//! prompt) with a realistic `codex exec --json` stream (reasoning, todo lists,
//! commands, file changes, MCP tool calls, messages, cumulative usage), shaped like
//! `../shared/fixtures/agents/codex_success.jsonl`. Every item line yields exactly one
//! orch event and carries `t=<unix µs>` (taken just before the line is written) so the
//! bench can measure latency from the agent to the log file and to the audit store.
//!
//! The prompt steers it with whitespace-separated `bench:` words:
//! `bench:events=N` (item lines, default 8), `bench:rate=N` (events per second, 0 = as
//! fast as possible), `bench:sleep_ms=N` (sleep before streaming), `bench:flush=line`
//! (one write per line, as the real CLI does; the default for paced runs) or
//! `bench:flush=block` (64 KiB writes; the default for the unpaced firehose).
//! `bench:write=NAME` writes a small file `NAME` in the working directory (an agent's
//! change, for the isolation bench).
//! A prompt that asks for a blueprint (it mentions `dependsOn`) is answered with a
//! valid blueprint of four independent agents, so the built-in squad runs end to end.
//! `BENCH_AGENT_DEFAULTS` (same words) applies to every prompt that does not say.
//! For the resume bench, `BENCH_AGENT_STARTED=FILE` appends the process's start time
//! (µs) to FILE, and `BENCH_AGENT_FAIL=1` then exits 1 at once.

use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    Line,
    Block,
}

struct Plan {
    events: u64,
    rate: u64,
    sleep_ms: u64,
    flush: Option<Flush>,
    write: Option<String>,
}

impl Plan {
    fn read(words: &str, plan: &mut Plan) {
        for word in words.split_whitespace() {
            let Some(rest) = word.strip_prefix("bench:") else {
                continue;
            };
            let Some((key, value)) = rest.split_once('=') else {
                continue;
            };
            let number = value.parse::<u64>().ok();
            match (key, number) {
                ("events", Some(n)) => plan.events = n,
                ("rate", Some(n)) => plan.rate = n,
                ("sleep_ms", Some(n)) => plan.sleep_ms = n,
                ("write", _) if !value.is_empty() && !value.contains('/') => {
                    plan.write = Some(value.to_string())
                }
                ("flush", _) if value == "line" => plan.flush = Some(Flush::Line),
                ("flush", _) if value == "block" => plan.flush = Some(Flush::Block),
                _ => {}
            }
        }
    }
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// One realistic item line; `n` picks the kind, `t` is the timestamp it carries.
fn item_line(out: &mut Vec<u8>, n: u64, t: u128) {
    let i = n;
    let line = match n % 10 {
        0 => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"reasoning","text":"**Checking the tokenizer edge cases** t={t} Reading split_tokens and its callers to see where a trailing separator turns into an empty token."}}}}"#
        ),
        1 => format!(
            r#"{{"type":"item.started","item":{{"id":"item_{i}","type":"todo_list","items":[{{"text":"Reproduce the failing test t={t}","completed":false}},{{"text":"Fix off-by-one in split_tokens","completed":false}}]}}}}"#
        ),
        2 => format!(
            r#"{{"type":"item.started","item":{{"id":"item_{i}","type":"command_execution","command":"/bin/bash -lc 'cargo test -p parser' # t={t}","aggregated_output":"","exit_code":null,"status":"in_progress"}}}}"#
        ),
        3 => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"command_execution","command":"/bin/bash -lc 'cargo test -p parser' # t={t}","aggregated_output":"running 3 tests\ntest split_tokens_trailing ... FAILED\ntest result: FAILED. 2 passed; 1 failed\n","exit_code":101,"status":"failed"}}}}"#
        ),
        4 => format!(
            r#"{{"type":"item.updated","item":{{"id":"item_{i}","type":"todo_list","items":[{{"text":"Reproduce the failing test t={t}","completed":true}},{{"text":"Fix off-by-one in split_tokens","completed":false}}]}}}}"#
        ),
        5 => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"file_change","changes":[{{"path":"/work/repo/crates/parser/src/lib_t={t}.rs","kind":"update"}}],"status":"completed"}}}}"#
        ),
        6 => format!(
            r#"{{"type":"item.started","item":{{"id":"item_{i}","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{{"query":"split_tokens contract t={t}"}},"result":null,"error":null,"status":"in_progress"}}}}"#
        ),
        7 => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{{"query":"split_tokens contract t={t}"}},"result":{{"content":[{{"type":"text","text":"split_tokens must drop a trailing empty token"}}],"structured_content":null}},"error":null,"status":"completed"}}}}"#
        ),
        8 => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"agent_message","text":"Progress t={t}: the trailing separator produced an empty token; the fix is in split_tokens and the parser tests pass."}}}}"#
        ),
        _ => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"command_execution","command":"/bin/bash -lc 'cargo test -p parser --quiet' # t={t}","aggregated_output":"running 3 tests\ntest result: ok. 3 passed; 0 failed\n","exit_code":0,"status":"completed"}}}}"#
        ),
    };
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

fn final_answer(prompt: &str) -> String {
    if prompt.contains("dependsOn") {
        let agents: Vec<serde_json::Value> = ["api", "storage", "cli", "docs"]
            .iter()
            .map(|id| {
                serde_json::json!({
                    "id": id,
                    "role": format!("{id} engineer"),
                    "prompt": format!("Implement the {id} part."),
                    "dependsOn": []
                })
            })
            .collect();
        serde_json::json!({ "agents": agents }).to_string()
    } else {
        "Done: the squad's part of the task is finished and checked.".to_owned()
    }
}

fn main() -> io::Result<()> {
    // The resume bench: when this process started (µs, one line per process).
    if let Some(path) = std::env::var_os("BENCH_AGENT_STARTED") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{}", now_us())?;
    }
    if std::env::var_os("BENCH_AGENT_FAIL").is_some() {
        eprintln!("bench_agent: failing as BENCH_AGENT_FAIL asks");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("exec") {
        eprintln!("bench_agent: fake `codex exec --json` for scripts/bench.sh");
        std::process::exit(2);
    }
    // orch passes the prompt on stdin (`-`), as the real CLI reads it.
    let prompt = match args.last().map(String::as_str) {
        Some("-") | None => {
            let mut text = String::new();
            io::Read::read_to_string(&mut io::stdin(), &mut text)?;
            text
        }
        Some(prompt) => prompt.to_owned(),
    };
    let thread = match args.iter().position(|a| a == "resume") {
        Some(pos) => args
            .get(pos + 1..)
            .and_then(|rest| rest.iter().find(|a| *a != "--"))
            .cloned()
            .unwrap_or_default(),
        None => format!("bench-{}-{}", std::process::id(), now_us()),
    };
    let mut plan = Plan {
        events: 8,
        rate: 0,
        sleep_ms: 0,
        flush: None,
        write: None,
    };
    if let Ok(defaults) = std::env::var("BENCH_AGENT_DEFAULTS") {
        Plan::read(&defaults, &mut plan);
    }
    Plan::read(&prompt, &mut plan);
    let flush = plan.flush.unwrap_or(if plan.rate > 0 {
        Flush::Line
    } else {
        Flush::Block
    });

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    writeln!(out, r#"{{"type":"thread.started","thread_id":"{thread}"}}"#)?;
    writeln!(out, r#"{{"type":"turn.started"}}"#)?;
    out.flush()?;
    if plan.sleep_ms > 0 {
        std::thread::sleep(Duration::from_millis(plan.sleep_ms));
    }
    if let Some(name) = &plan.write {
        std::fs::write(name, format!("written by {thread}\n"))?;
    }
    let started = Instant::now();
    let mut line = Vec::with_capacity(512);
    for n in 0..plan.events {
        if plan.rate > 0 {
            // Pace against the start, so a late wake-up is caught up rather than lost.
            let due = started + Duration::from_secs_f64(n as f64 / plan.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        line.clear();
        item_line(&mut line, n, now_us());
        out.write_all(&line)?;
        if flush == Flush::Line {
            out.flush()?;
        }
    }
    let answer = serde_json::json!({
        "type": "item.completed",
        "item": {"id": "item_final", "type": "agent_message", "text": final_answer(&prompt)}
    });
    writeln!(out, "{answer}")?;
    let input = 1000 + plan.events * 40;
    writeln!(
        out,
        r#"{{"type":"turn.completed","usage":{{"input_tokens":{input},"cached_input_tokens":{},"output_tokens":{}}}}}"#,
        input / 2,
        100 + plan.events * 10
    )?;
    out.flush()
}
