//! `orch-audit`: resolves arguments and environment into an `AuditConfig` (the only
//! place that reads the environment), runs one command, and maps failures to the
//! documented exit codes. Output goes to stdout; diagnostics go to stderr via tracing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audit::error::AuditError;
use crate::audit::memory::{self, MemorySource};
use crate::audit::reader::{AuditReader, EventFilter};
use crate::audit::target::AuditTarget;
use crate::audit::{render, report, show, verify};
use crate::cli::audit_args::{
    ArtifactTypeArg, AuditArgs, AuditCommand, MemoryCommand, TurnTypeArg,
};

pub const EXIT_OK: u8 = 0;
pub const EXIT_VERIFY_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_STORE: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;
/// `events --follow` on a run whose orchestrator is gone (`crashed`).
pub const EXIT_CRASHED: u8 = 5;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Events read per query by `events`, so a long run streams out in pages.
const EVENTS_PAGE: i64 = 5000;

/// Everything a command needs, resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    pub target: AuditTarget,
    pub memory_dir: Option<PathBuf>,
    pub json: bool,
    /// The git repository that keeps the runs' anchors, when a run's own project root
    /// is not a directory here.
    pub repo: Option<PathBuf>,
}

/// Flags win over the environment; `--audit-url` wins over a path.
pub fn resolve(args: &AuditArgs, env: impl Fn(&str) -> Option<String>, cwd: &Path) -> AuditConfig {
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    let target = match &args.store.audit_url {
        Some(url) => AuditTarget::Remote {
            url: url.clone(),
            token: nonempty("ORCH_AUDIT_TOKEN").unwrap_or_default(),
        },
        None => {
            let path = args
                .store
                .audit_path
                .clone()
                .or_else(|| nonempty("AGENTFS_PATH").map(PathBuf::from))
                .unwrap_or_else(|| {
                    let root = args.store.project_root.clone().unwrap_or_else(|| {
                        crate::paths::find_repo_root(cwd).unwrap_or_else(|| cwd.to_path_buf())
                    });
                    crate::paths::default_audit_path(&root)
                });
            AuditTarget::Local(if path.is_absolute() {
                path
            } else {
                cwd.join(path)
            })
        }
    };
    let memory_dir = args
        .store
        .memory_dir
        .clone()
        .or_else(|| nonempty("CODEX_MEMORY_DIR").map(PathBuf::from));
    let repo = args
        .store
        .project_root
        .clone()
        .or_else(|| crate::paths::find_repo_root(cwd));
    AuditConfig {
        target,
        memory_dir,
        json: args.json,
        repo,
    }
}

/// Runs `orch-audit` and returns its exit code.
pub fn main(args: AuditArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let config = resolve(&args, |name| std::env::var(name).ok(), &cwd);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "failed to start the async runtime");
            return EXIT_STORE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(&config, args.command) => result,
            _ = crate::control::signals::interrupted() => Ok(EXIT_INTERRUPTED),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(Failure::BrokenPipe) => EXIT_OK,
        Err(Failure::Audit(err)) => {
            eprintln!("orch-audit: {}", crate::audit::error::error_chain(&err));
            match err {
                AuditError::UnknownSession { .. }
                | AuditError::UnknownPath { .. }
                | AuditError::IsDirectory { .. } => EXIT_NOT_FOUND,
                _ => EXIT_STORE,
            }
        }
        Err(Failure::Io(err)) => {
            eprintln!("orch-audit: failed to write output: {err}");
            EXIT_STORE
        }
        Err(Failure::Report { path, err }) => {
            eprintln!(
                "orch-audit: failed to write the report to `{}`: {err}; check that its directory exists and is writable, or pass another --out",
                path.display()
            );
            EXIT_STORE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("orch-audit: {message}");
            EXIT_USAGE
        }
    }
}

enum Failure {
    Audit(AuditError),
    Io(std::io::Error),
    BrokenPipe,
    Usage(String),
    Report { path: PathBuf, err: std::io::Error },
}

impl From<AuditError> for Failure {
    fn from(err: AuditError) -> Self {
        Failure::Audit(err)
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Io(err)
        }
    }
}

fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn out_bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

/// Writes the report beside its final name, then renames it, so a reader never sees
/// half a page.
fn write_report(path: &Path, html: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(html.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn json_out<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Io(e.into()))?;
    out(&format!("{text}\n"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `--since`: RFC 3339, or an age such as `30s`, `10m`, `2h`, `1d`.
pub fn parse_since(text: &str, now_ms: i64) -> Option<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(now_ms - n * unit_ms)
}

/// Statuses after which a run writes no more events.
fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "stopped" | "finished")
}

async fn run(config: &AuditConfig, command: AuditCommand) -> Result<u8, Failure> {
    if let AuditCommand::Memory(cmd) = &command
        && let Some(dir) = &config.memory_dir
    {
        return memory_command(config, &MemorySource::Dir(dir.clone()), cmd).await;
    }
    let reader = AuditReader::open(&config.target).await?;
    match command {
        AuditCommand::Runs { limit } => {
            let mut runs = reader.runs().await?;
            runs.truncate(limit.unwrap_or(usize::MAX));
            if config.json {
                json_out(&runs)?
            } else {
                out(&render::runs(&runs))?
            }
        }
        AuditCommand::Show { session } => {
            let detail = show::run_detail(&reader, &session).await?;
            if config.json {
                json_out(&detail)?
            } else {
                out(&show::render(&detail))?
            }
        }
        AuditCommand::Turns {
            session,
            agent,
            turn_type,
            limit,
            content,
        } => {
            let mut turns = reader.turns(&session, agent.as_deref()).await?;
            if let Some(kind) = turn_type {
                let want = match kind {
                    TurnTypeArg::Plan => "plan",
                    TurnTypeArg::FollowUp => "follow-up",
                };
                turns.retain(|t| t.kind.as_str() == want);
            }
            turns.truncate(limit.unwrap_or(usize::MAX));
            if !content {
                for t in &mut turns {
                    t.prompt = memory::truncate(&t.prompt, 200);
                    t.response = memory::truncate(&t.response, 200);
                }
            }
            if config.json {
                json_out(&turns)?
            } else {
                let lines: Vec<String> = turns
                    .iter()
                    .map(|t| render::turn_line(t, content))
                    .collect();
                out(&format!("{}\n", lines.join("\n")))?
            }
        }
        AuditCommand::Events {
            session,
            agent,
            kind,
            since,
            limit,
            follow,
        } => {
            reader.ensure_run(&session).await?;
            let since_ms = match since {
                Some(text) => Some(parse_since(&text, now_ms()).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--since `{text}` is neither RFC 3339 nor an age like 30s, 10m, 2h, 1d"
                    ))
                })?),
                None => None,
            };
            let mut filter = EventFilter {
                agent,
                kind,
                since_ms,
                after_seq: 0,
                limit: Some(EVENTS_PAGE),
            };
            let mut left = limit.unwrap_or(usize::MAX);
            while left > 0 {
                filter.limit = Some(EVENTS_PAGE.min(i64::try_from(left).unwrap_or(i64::MAX)));
                let rows = reader.events(&session, &filter).await?;
                left -= rows.len();
                let mut text = String::new();
                for row in &rows {
                    if config.json {
                        text.push_str(
                            &serde_json::to_string(row).map_err(|e| Failure::Io(e.into()))?,
                        );
                    } else {
                        text.push_str(&render::event_line(row));
                    }
                    text.push('\n');
                }
                out(&text)?;
                let batch_full = rows.len() as i64 == filter.limit.unwrap_or(i64::MAX);
                if let Some(last) = rows.last() {
                    filter.after_seq = last.seq;
                }
                if batch_full {
                    continue;
                }
                if !follow {
                    break;
                }
                if rows.is_empty() {
                    // Ends with the run: finished (exit 0), or its orchestrator gone.
                    let status = reader.run(&session).await?.status;
                    if is_final(&status) {
                        break;
                    }
                    if status == "crashed" {
                        eprintln!(
                            "orch-audit: run `{session}` crashed: its orchestrator is gone; `orch-audit show {session}` shows how far it got"
                        );
                        return Ok(EXIT_CRASHED);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        AuditCommand::Report {
            session,
            out: out_path,
        } => {
            let data = report::load_report(&reader, &session).await?;
            let html = crate::status::report::render_html(&data);
            let path = out_path.unwrap_or_else(|| PathBuf::from(format!("{session}.html")));
            if path.as_os_str() == "-" {
                out_bytes(html.as_bytes())?;
            } else {
                write_report(&path, &html).map_err(|err| Failure::Report {
                    path: path.clone(),
                    err,
                })?;
                if config.json {
                    json_out(
                        &serde_json::json!({"path": path, "bytes": html.len(), "agents": data.agents.len()}),
                    )?
                } else {
                    out(&format!(
                        "wrote {} ({} agents, {:.1} KiB)\n",
                        path.display(),
                        data.agents.len(),
                        html.len() as f64 / 1024.0
                    ))?
                }
            }
        }
        AuditCommand::Verify { session } => {
            let mut report = verify::verify(reader.conn(), session.as_deref()).await?;
            verify::check_anchors(
                reader.conn(),
                config.repo.as_deref(),
                session.as_deref(),
                &mut report,
            )
            .await?;
            for warning in &report.warnings {
                eprintln!("orch-audit: warning: {warning}");
            }
            if config.json {
                json_out(&report)?
            } else if report.is_ok() {
                out(&format!(
                    "ok: {} runs, {} events, {} files verified\n",
                    report.runs, report.events, report.files
                ))?
            } else {
                out(&format!(
                    "FAILED: {} problems\n{}\n",
                    report.problems.len(),
                    report.problems.join("\n")
                ))?
            }
            return Ok(if report.is_ok() {
                EXIT_OK
            } else {
                EXIT_VERIFY_FAILED
            });
        }
        AuditCommand::Export { session, format: _ } => {
            reader.ensure_run(&session).await?;
            let mut filter = EventFilter {
                limit: Some(5000),
                ..EventFilter::default()
            };
            loop {
                let rows = reader.events(&session, &filter).await?;
                let Some(last) = rows.last() else { break };
                filter.after_seq = last.seq;
                let mut text = String::new();
                for row in &rows {
                    text.push_str(&serde_json::to_string(row).map_err(|e| Failure::Io(e.into()))?);
                    text.push('\n');
                }
                out(&text)?;
            }
        }
        AuditCommand::Ls { path } => {
            let entries = reader.ls(&path).await?;
            if config.json {
                json_out(&entries)?
            } else {
                out(&render::dir_entries(&entries))?
            }
        }
        AuditCommand::Diff { session, agent } => {
            let dir = format!("/runs/{session}/agents");
            let mut agents: Vec<String> = reader
                .ls(&dir)
                .await?
                .into_iter()
                .map(|entry| entry.name)
                .filter(|name| agent.as_ref().is_none_or(|wanted| wanted == name))
                .collect();
            agents.sort();
            let mut shown = 0;
            let mut stdout = std::io::stdout().lock();
            for name in agents {
                let (patch, summary) = crate::audit::record::changes_paths(&session, &name);
                let Ok(bytes) = reader.cat(&patch).await else {
                    continue;
                };
                shown += 1;
                let summary: serde_json::Value = reader
                    .cat(&summary)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                writeln!(
                    stdout,
                    "### {name}: {} → {}",
                    short(&summary["base"]),
                    short(&summary["head"])
                )?;
                for commit in summary["commits"].as_array().into_iter().flatten() {
                    writeln!(
                        stdout,
                        "    {} {}",
                        short(&commit["oid"]),
                        commit["subject"].as_str().unwrap_or("")
                    )?;
                }
                if let Some(stat) = summary["diffstat"].as_str() {
                    writeln!(stdout, "{stat}")?;
                }
                writeln!(stdout)?;
                stdout.write_all(&bytes)?;
                writeln!(stdout)?;
            }
            stdout.flush()?;
            if shown == 0 {
                let whom = agent
                    .map(|a| format!("agent `{a}` of "))
                    .unwrap_or_default();
                eprintln!(
                    "orch-audit: {whom}run `{session}` has no stored changes (no agent committed work, or the run used --isolation shared)"
                );
                return Ok(EXIT_NOT_FOUND);
            }
        }
        AuditCommand::Cat { path } => out_bytes(&reader.cat(&path).await?)?,
        AuditCommand::Memory(cmd) => {
            return memory_command(config, &MemorySource::Store(&reader), &cmd).await;
        }
    }
    Ok(EXIT_OK)
}

/// The first 10 characters of a commit id held in a JSON value.
fn short(value: &serde_json::Value) -> &str {
    let oid = value.as_str().unwrap_or("?");
    oid.get(..10).unwrap_or(oid)
}

async fn memory_command(
    config: &AuditConfig,
    source: &MemorySource<'_>,
    cmd: &MemoryCommand,
) -> Result<u8, Failure> {
    let artifacts = memory::load(source).await?;
    match cmd {
        MemoryCommand::Inspect {
            agent,
            artifact_type,
            limit,
            content,
        } => {
            let want = artifact_type.map(|t| match t {
                ArtifactTypeArg::Plan => "plan",
                ArtifactTypeArg::FollowUp => "follow-up",
                ArtifactTypeArg::Summary => "summary",
            });
            let mut chosen: Vec<_> = artifacts
                .into_iter()
                .rev()
                .filter(|a| {
                    agent
                        .as_deref()
                        .is_none_or(|want| a.str_field("agent") == want)
                })
                .filter(|a| want.is_none_or(|want| a.str_field("type") == want))
                .take(*limit)
                .collect();
            if !content {
                for a in &mut chosen {
                    for key in ["prompt", "response", "summary"] {
                        if let Some(serde_json::Value::String(text)) = a.document.get_mut(key) {
                            *text = memory::truncate(text, 200);
                        }
                    }
                }
            }
            if config.json {
                json_out(&chosen)?
            } else {
                out(&chosen
                    .iter()
                    .map(|a| render::artifact(a, *content))
                    .collect::<String>())?
            }
        }
        MemoryCommand::Condense {
            days,
            min_group_size,
        } => {
            let now = now_ms() as u64;
            let cutoff = now.saturating_sub(days * 86_400_000);
            let summaries = memory::plan_condense(&artifacts, cutoff, *min_group_size, now);
            let paths = memory::append_summaries(source, &summaries).await?;
            if config.json {
                json_out(&serde_json::json!({"appended": paths}))?
            } else if paths.is_empty() {
                out("nothing to condense\n")?
            } else {
                out(&format!(
                    "appended {} summaries:\n{}\n",
                    paths.len(),
                    paths.join("\n")
                ))?
            }
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(argv: &[&str], env: &[(&str, &str)]) -> AuditConfig {
        let args = AuditArgs::parse_from(argv);
        resolve(
            &args,
            |name| {
                env.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            },
            Path::new("/nonexistent/proj"),
        )
    }

    #[test]
    fn store_location_comes_from_flags_then_env_then_project_root() {
        assert_eq!(
            config(&["orch-audit", "runs"], &[]).target,
            AuditTarget::Local("/nonexistent/proj/.orch/audit.db".into())
        );
        assert_eq!(
            config(&["orch-audit", "runs"], &[("AGENTFS_PATH", "/x.db")]).target,
            AuditTarget::Local("/x.db".into())
        );
        assert_eq!(
            config(
                &["orch-audit", "--agentfs-path", "/y.db", "runs"],
                &[("AGENTFS_PATH", "/x.db")]
            )
            .target,
            AuditTarget::Local("/y.db".into())
        );
        assert_eq!(
            config(
                &["orch-audit", "runs", "--audit-url", "http://127.0.0.1:1"],
                &[("ORCH_AUDIT_TOKEN", "t0k")]
            )
            .target,
            AuditTarget::Remote {
                url: "http://127.0.0.1:1".into(),
                token: "t0k".into()
            }
        );
        assert_eq!(
            config(
                &["orch-audit", "memory", "inspect"],
                &[("CODEX_MEMORY_DIR", "/m")]
            )
            .memory_dir,
            Some(PathBuf::from("/m"))
        );
    }

    #[test]
    fn since_accepts_ages_and_timestamps() {
        assert_eq!(parse_since("10m", 1_000_000), Some(400_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0), Some(1000));
        assert_eq!(parse_since("soon", 0), None);
    }
}
