//! Files a run keeps an eye on while it goes on: the task file (`--task-file`), whose
//! edits steer the run, and its agents file (`orch.kdl`), whose edits do not: a run
//! checks against the gates and reviews it started with (they are in its
//! `run_started` event), and says so when the file changes under it.
//!
//! The files a user edits to steer the run (the task file, the features file) are
//! watched through the `notify` crate (inotify on Linux) on their directory, so a save by
//! rename is seen too, and looked at every 2 s anyway (every 250 ms where no watch can be
//! made). `orch.kdl`, whose edits only get named, is looked at every 250 ms: a watcher
//! thread and its buffers cost about 1 MB of memory, which every run would pay. A change
//! is read after a quiet moment (size and time first, the text only when those moved); a
//! new text counts once it is the same on two reads in a row, so an editor's save is
//! over. Owns that watching and what each change tells the run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::agents::AgentsConfig;
use crate::config::resolve::{read_agents_file, read_task_file};
use crate::events::EventBus;
use crate::events::OrchEventKind;
use crate::events::event::NoticeLevel;
use crate::orchestrator::RunLink;

/// How often a watched file is looked at when the file system does not report
/// changes (no inotify watch could be made).
const POLL: Duration = Duration::from_millis(250);
/// How often it is looked at anyway while the file system reports changes (a missed
/// event costs at most this long).
const POLL_WATCHED: Duration = Duration::from_secs(2);
/// Quiet time after a reported change before the file is read, and between the two
/// reads that must agree: an editor's save is several writes, or a write and a rename.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// One watched file: yields each new text once it has settled.
struct Settled {
    path: PathBuf,
    stamp: Option<(u64, Option<SystemTime>)>,
    known: String,
    candidate: Option<String>,
    /// The file could not be read at the last look (said once per spell).
    failing: bool,
    tick: tokio::time::Interval,
    /// Changes in the file's directory that name it, from a `notify` watcher (kept
    /// alive here); `None`: polling only.
    changes: Option<(
        notify::RecommendedWatcher,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    )>,
}

/// A `notify` watcher on `path`'s directory (editors save by writing a new file and
/// renaming it over the old one) that sends a unit for each event naming the file.
fn watch_changes(
    path: &Path,
) -> Option<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<()>,
)> {
    use notify::Watcher;
    let dir = path.parent()?.to_path_buf();
    let name = path.file_name()?.to_os_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()))
            {
                let _ = tx.send(());
            }
        }
    })
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .ok()?;
    Some((watcher, rx))
}

impl Settled {
    /// `notify`: be woken by the file system's change events (a watcher thread and its
    /// buffers; worth it for the files a user edits to steer the run).
    fn new(path: PathBuf, known: String, notify: bool) -> Self {
        let changes = if notify { watch_changes(&path) } else { None };
        let every = if changes.is_some() {
            POLL_WATCHED
        } else {
            POLL
        };
        // The first look comes at once, then one every `every`.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + DEBOUNCE, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Settled {
            // The first look reads the file: it may differ already from `known` (a
            // resumed run's task file edited while it was not running).
            stamp: None,
            path,
            known,
            candidate: None,
            failing: false,
            tick,
            changes,
        }
    }

    /// Waits until the file is worth another look: a reported change (then a quiet
    /// moment), the poll's tick, or, while a new text waits to be confirmed, a moment.
    async fn wait(&mut self) {
        if self.candidate.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            return;
        }
        let reported = match &mut self.changes {
            Some((_, rx)) => {
                tokio::select! {
                    got = rx.recv() => got.is_some(),
                    _ = self.tick.tick() => false,
                }
            }
            None => {
                self.tick.tick().await;
                false
            }
        };
        if reported {
            tokio::time::sleep(DEBOUNCE).await;
            if let Some((_, rx)) = &mut self.changes {
                while rx.try_recv().is_ok() {}
            }
        }
    }

    /// The next settled text that differs from the last one, or why the file cannot be
    /// read (`Err`, once per spell of trouble).
    async fn next(
        &mut self,
        read: impl Fn(&Path) -> Result<String, String>,
    ) -> Result<String, String> {
        loop {
            self.wait().await;
            let now = stamp(&self.path);
            if now == self.stamp && self.candidate.is_none() {
                continue;
            }
            self.stamp = now;
            let text = match read(&self.path) {
                Ok(text) => text,
                Err(why) => {
                    self.candidate = None;
                    if !self.failing {
                        self.failing = true;
                        return Err(why);
                    }
                    continue;
                }
            };
            self.failing = false;
            if text == self.known {
                self.candidate = None;
            } else if self.candidate.as_deref() == Some(text.as_str()) {
                self.candidate = None;
                self.known = text.clone();
                return Ok(text);
            } else {
                self.candidate = Some(text);
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

async fn warn(bus: &EventBus, message: String) {
    bus.publish(OrchEventKind::Notice {
        level: NoticeLevel::Warning,
        message,
    })
    .await;
}

/// Watches the task file: each settled new text goes to the dispatcher (a revision).
/// An empty or unreadable file keeps the task as it was, said once per spell.
pub async fn task_file(path: PathBuf, known: String, link: RunLink, bus: EventBus) {
    let mut file = Settled::new(path, known, true);
    loop {
        let read = |path: &Path| match read_task_file(path) {
            Ok(text) if text.trim().is_empty() => {
                Err(format!("task file {}: empty", path.display()))
            }
            Ok(text) => Ok(text),
            Err(err) => Err(err.to_string()),
        };
        match file.next(read).await {
            Ok(text) => link.task_revised(text),
            Err(why) => {
                warn(
                    &bus,
                    format!("{why}; the run goes on with the task as it was"),
                )
                .await
            }
        }
    }
}

/// The loop of a file whose edits a run names but does not follow: each settled new
/// text is read (`read`: its path and text) into what the run checks against; a change
/// from what was last said is named (`describe`: the text of the notice, from what the
/// run started with and what the file now says). A text that no longer reads is said,
/// and the run goes on with `kept`, as it started.
async fn name_changes<C: PartialEq + Clone>(
    mut file: Settled,
    bus: &EventBus,
    first: C,
    kept: &str,
    read: impl Fn(&Path, &str) -> Result<C, String>,
    describe: impl Fn(&C, &C) -> String,
) {
    let path = file.path.clone();
    let mut said = first.clone();
    loop {
        let text = |path: &Path| std::fs::read_to_string(path).map_err(|err| err.to_string());
        let Ok(text) = file.next(text).await else {
            continue; // an editor between delete and write; nothing applies anyway
        };
        let now = match read(&path, &text) {
            Ok(now) => now,
            Err(err) => {
                warn(bus, format!(
                    "{} changed and no longer reads ({err}); this run goes on with {kept} it started with",
                    path.display()
                ))
                .await;
                continue;
            }
        };
        if now != said {
            warn(bus, describe(&first, &now)).await;
            said = now;
        }
    }
}

/// Watches the agents file the run started from: an edit that changes its gates or
/// reviews is named in the timeline, and the run keeps the ones it started with.
pub async fn agents_file(path: PathBuf, started: AgentsConfig, bus: EventBus) {
    let known = std::fs::read_to_string(&path).unwrap_or_default();
    let file = Settled::new(path.clone(), known, false);
    let read = |path: &Path, _: &str| {
        read_agents_file(path)
            .map(|config| contract(&config))
            .map_err(|err| err.to_string())
    };
    let describe = |first: &BTreeSet<String>, now: &BTreeSet<String>| {
        let removed: Vec<&String> = first.difference(now).collect();
        let added: Vec<&String> = now.difference(first).collect();
        let mut parts = Vec::new();
        if !removed.is_empty() {
            parts.push(format!("no longer {}", list(&removed)));
        }
        if !added.is_empty() {
            parts.push(format!("now also {}", list(&added)));
        }
        if parts.is_empty() {
            parts.push("back to what the run started with".into());
        }
        format!(
            "{} changed while the run goes on: its checks say {}. This run keeps checking against the gates and reviews it started with (its `run_started` event holds them); the next run takes the new ones",
            path.display(),
            parts.join("; ")
        )
    };
    let first = contract(&started);
    name_changes(
        file,
        &bus,
        first,
        "the agents, gates and reviews",
        read,
        describe,
    )
    .await;
}

/// Watches the features file (`--features`): an edit of what a feature asks (its name,
/// description, steps or category, or features added or removed) is named in the
/// timeline, and the run keeps the backlog it started with. Statuses and attempts are
/// not part of that (orch writes them itself without isolation).
pub async fn features_file(backlog: crate::config::features::Backlog, bus: EventBus) {
    let path = backlog.file.clone();
    let file = Settled::new(path.clone(), backlog.text.clone(), true);
    let read =
        |_: &Path, text: &str| crate::config::features::parse(text).map(|f| feature_contract(&f));
    let describe = |first: &BTreeMap<String, String>, now: &BTreeMap<String, String>| {
        let changed: Vec<&String> = first
            .iter()
            .filter(|(id, text)| now.get(*id).is_some_and(|t| t != *text))
            .map(|(id, _)| id)
            .collect();
        let removed: Vec<&String> = first.keys().filter(|id| !now.contains_key(*id)).collect();
        let added: Vec<&String> = now.keys().filter(|id| !first.contains_key(*id)).collect();
        let mut parts = Vec::new();
        for (what, ids) in [("changed", changed), ("removed", removed), ("added", added)] {
            if !ids.is_empty() {
                parts.push(format!("{what} {}", list(&ids)));
            }
        }
        if parts.is_empty() {
            parts.push("back to what the run started with".into());
        }
        format!(
            "{} changed while the run goes on: features {}. This run keeps the features and steps it started with (its `run_started` event holds them); the next run takes the new ones",
            path.display(),
            parts.join("; ")
        )
    };
    let first = feature_contract(&backlog.features);
    name_changes(file, &bus, first, "the features", read, describe).await;
}

/// What a run was asked for each feature, by id: all but its status and attempts.
fn feature_contract(features: &[crate::config::features::Feature]) -> BTreeMap<String, String> {
    features
        .iter()
        .map(|f| {
            (
                format!("`{}`", f.id),
                format!(
                    "{}\n{}\n{}\n{}",
                    f.category,
                    f.name,
                    f.description,
                    f.steps.join("\n")
                ),
            )
        })
        .collect()
}

fn list(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a run checks its agents against, one line each: every gate and review step,
/// with where it applies.
fn contract(config: &AgentsConfig) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let gate = |scope: &str, g: &crate::config::agents::GateSpec| {
        format!(
            "gate `{}` ({scope}, timeout-s={}, max-attempts={})",
            g.command, g.timeout_s, g.max_attempts
        )
    };
    let review = |scope: &str, r: &crate::config::agents::ReviewSpec| {
        format!(
            "review by `{}` ({scope}, backend {}, max-rounds={}): {}",
            r.name,
            r.backend.as_deref().unwrap_or("the agent's"),
            r.max_rounds,
            r.instructions.trim()
        )
    };
    for g in &config.gates {
        out.insert(gate("every agent", g));
    }
    for r in &config.reviews {
        out.insert(review("every agent", r));
    }
    for group in &config.groups {
        let scope = format!("group {}", group.name);
        for g in &group.gates {
            out.insert(gate(&scope, g));
        }
        for r in &group.reviews {
            out.insert(review(&scope, r));
        }
        for agent in &group.agents {
            let scope = format!("agent {}", agent.id);
            for g in &agent.gates {
                out.insert(gate(&scope, g));
            }
            for r in &agent.reviews {
                out.insert(review(&scope, r));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::agents::GateSpec;

    #[test]
    fn the_contract_names_each_gate_with_where_it_applies() {
        let mut config = crate::config::defaults::default_agents().unwrap();
        config.gates.push(GateSpec::new("cargo test"));
        config.groups[0].gates.push(GateSpec::new("npm test"));
        let lines = contract(&config);
        assert!(lines.contains("gate `cargo test` (every agent, timeout-s=600, max-attempts=3)"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("gate `npm test` (group "))
        );
        let mut changed = config.clone();
        changed.gates[0].command = "cargo test --all".into();
        assert_ne!(contract(&changed), lines);
    }
}
