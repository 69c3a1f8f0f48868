//! Per-agent log files and the timeline: `.orch/runs/<s>/logs/<agent>.log`,
//! `timeline.log` (machine lines), `timeline.txt` (the same run for people) and
//! `interrupt.log`, written as events arrive so a pane tailing a
//! file sees each event at once. A write that fails is a fatal failure of the sink
//! that names the file and the OS error (`failure::write_error`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::events::event::{OrchEvent, OrchEventKind};
use crate::events::failure::write_error;
use crate::events::render::{agent_line, interrupt_text, push_clock, timeline_line, timestamp};
use crate::events::sink::Sink;
use crate::events::story::Story;
use crate::paths::RunPaths;

pub struct LogSink {
    paths: RunPaths,
    agents: HashMap<String, LogFile>,
    timeline: LogFile,
    /// `timeline.txt`, the timeline for people.
    readable: LogFile,
    story: Story,
    interrupt: Option<LogFile>,
    /// The agent line being written, reused.
    line: String,
}

/// Buffer per log file. One per running agent, so it counts towards peak RSS with 32
/// agents; a burst is still written in large writes.
const LOG_BUFFER: usize = 32 * 1024;

/// A log file and its path, which every error it returns names.
struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl LogFile {
    fn open(path: PathBuf) -> std::io::Result<LogFile> {
        let file = crate::private_fs::open_append(&path).map_err(|err| write_error(&path, err))?;
        Ok(LogFile {
            out: BufWriter::with_capacity(LOG_BUFFER, file),
            path,
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|err| write_error(&self.path, err))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().map_err(|err| write_error(&self.path, err))
    }
}

fn open_append(path: &Path) -> std::io::Result<LogFile> {
    LogFile::open(path.to_path_buf())
}

impl LogSink {
    pub fn create(paths: RunPaths) -> std::io::Result<Self> {
        crate::private_fs::create_dir_all(&paths.logs_dir())
            .map_err(|err| write_error(&paths.logs_dir(), err))?;
        let timeline = open_append(&paths.timeline_log())?;
        let readable = open_append(&paths.timeline_text())?;
        Ok(LogSink {
            paths,
            agents: HashMap::new(),
            timeline,
            readable,
            story: Story::default(),
            interrupt: None,
            line: String::new(),
        })
    }

    fn agent_writer(&mut self, agent: &str) -> std::io::Result<Option<&mut LogFile>> {
        if !self.agents.contains_key(agent) {
            // Ids are validated before they reach the bus; this is the last guard.
            let Some(path) = self.paths.agent_log(agent) else {
                return Ok(None);
            };
            let writer = open_append(&path)?;
            self.agents.insert(agent.to_owned(), writer);
        }
        Ok(self.agents.get_mut(agent))
    }
}

impl Sink for LogSink {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
        if let Some((agent, body)) = agent_line(event) {
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            push_clock(&mut line, event.at);
            line.push(' ');
            line.push_str(&body);
            line.push('\n');
            let written = self
                .agent_writer(agent)
                .and_then(|writer| writer.map_or(Ok(()), |w| w.write_all(line.as_bytes())));
            self.line = line;
            written?;
        }
        if let Some(body) = timeline_line(event) {
            let line = format!("{} {body}\n", timestamp(event.at));
            self.timeline.write_all(line.as_bytes())?;
        }
        if let Some(line) = self.story.line(event) {
            self.readable.write_all(line.as_bytes())?;
        }
        if let OrchEventKind::RunPaused(summary) = &event.kind {
            if self.interrupt.is_none() {
                self.interrupt = Some(open_append(&self.paths.interrupt_log())?);
            }
            if let Some(writer) = self.interrupt.as_mut() {
                let text = format!("{} {}\n", timestamp(event.at), interrupt_text(summary));
                writer.write_all(text.as_bytes())?;
                writer.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        for writer in self.agents.values_mut() {
            writer.flush()?;
        }
        self.timeline.flush()?;
        self.readable.flush()
    }
}
