//! The agent panes of a Zellij or tmux run.
//!
//! Owns which agents have a pane, in which slot order (the core agents of the chosen
//! groups, then the autonomous orchestrator when enabled, then every agent that starts
//! mid-run, in start order), the `panes.json` record of that order, and the keeper: a
//! sink on the orchestrator's event stream plus a thread that adds the pane of every
//! agent that starts mid-run to the live session.
//!
//! The keeper never blocks the event stream: the sink only passes agent ids to the
//! thread, which runs the multiplexer commands. A pane that cannot be added yet (the
//! session is not open yet, or Zellij has no client to lay out a new tab) is tried again
//! every second until it is there, at most a minute past the end of the run; `launch attach` rebuilds a session
//! that lacks panes once the orchestrator is gone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agent::backend::AgentKind;
use crate::agent::permissions::Permissions;
use crate::cli::{IsolationChoice, MuxChoice};
use crate::config::{Config, resolve::group_settings};
use crate::events::Sink;
use crate::events::event::{OrchEvent, OrchEventKind};
use crate::mux::plan::{AgentPane, LayoutPlan, TIMELINE_PANE, plan_layout};
use crate::mux::{LiveSession, ZellijFiles};
use crate::orchestrator::AUTONOMOUS_ID;
use crate::paths::RunPaths;
use crate::workspace::agent_branch_name;

/// How long the keeper waits before trying a pane again.
const RETRY: Duration = Duration::from_secs(1);
/// How long after the run ended the keeper still tries to add a missing pane.
const END_GRACE: Duration = Duration::from_secs(60);

/// `panes.json`: the agents with a pane, in slot order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneRecord {
    /// Agent panes the session was created with (slots below this come from the layout;
    /// the keeper adds only the ones after).
    pub layout_slots: usize,
    pub agents: Vec<PaneAgent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneAgent {
    pub id: String,
    pub log: PathBuf,
    /// Where the agent works, shown after its id in the pane title: its branch, or
    /// `read-only`; none with `--isolation shared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
}

impl PaneAgent {
    /// The pane title: `backend-api · orch-agent/<session>/backend-api`.
    pub fn title(&self) -> String {
        match &self.place {
            Some(place) => format!("{} · {place}", self.id),
            None => self.id.clone(),
        }
    }
}

/// What a pane title says of where `agent` works, known before it starts: its branch
/// when it may change files, `read-only` when not; `None` without worktrees.
pub fn place_of(config: &Config, agent: &str, kind: AgentKind, backend: &str) -> Option<String> {
    if config.isolation != IsolationChoice::Worktree {
        return None;
    }
    Some(
        if config.permissions_for(agent, kind, backend) == Permissions::ReadOnly {
            READ_ONLY.to_owned()
        } else {
            agent_branch_name(&config.paths.session, agent)
        },
    )
}

const READ_ONLY: &str = "read-only";

impl PaneRecord {
    /// The panes of a run before it starts: core agents, then the autonomous one.
    pub fn initial(config: &Config) -> Self {
        let paths = config.run_paths();
        let mut seen = HashSet::new();
        let mut agents = Vec::new();
        let mut autonomous = false;
        for group in &config.agents.groups {
            autonomous |= group_settings(group, &config.cli_orchestration).autonomous;
            for agent in &group.agents {
                if seen.insert(agent.id.clone())
                    && let Some(log) = paths.agent_log(&agent.id)
                {
                    let backend = agent.backend.as_deref().unwrap_or(&config.backend);
                    agents.push(PaneAgent {
                        id: agent.id.clone(),
                        log,
                        place: place_of(config, &agent.id, AgentKind::Core, backend),
                    });
                }
            }
        }
        if autonomous
            && !matches!(config.concise, crate::config::Concise::NoWaves)
            && let Some(log) = paths.agent_log(AUTONOMOUS_ID)
        {
            agents.push(PaneAgent {
                id: AUTONOMOUS_ID.to_owned(),
                log,
                place: place_of(
                    config,
                    AUTONOMOUS_ID,
                    AgentKind::AutonomousOrchestrator,
                    &config.backend,
                ),
            });
        }
        PaneRecord {
            layout_slots: agents.len(),
            agents,
        }
    }

    /// The tab plan for every agent of the record.
    pub fn plan(&self, paths: &RunPaths) -> LayoutPlan {
        let agents: Vec<AgentPane> = self
            .agents
            .iter()
            .map(|agent| AgentPane::new(agent.title(), agent.log.as_path()))
            .collect();
        let plan = plan_layout(&agents, &paths.timeline_text(), None);
        match board_argv(paths) {
            Some(argv) => plan.with_board(argv),
            None => plan,
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
    }

    /// Writes the record atomically (a reader never sees half of it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        crate::private_fs::write(&tmp, &serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)
    }
}

/// `launch status --watch` of the run at `paths`, as the board pane runs it; `None` when
/// the running binary's path is unknown or not UTF-8.
fn board_argv(paths: &RunPaths) -> Option<Vec<String>> {
    let exe = std::env::current_exe().ok()?;
    Some(vec![
        exe.to_str()?.to_owned(),
        "status".into(),
        "--watch".into(),
        "--session".into(),
        paths.session.clone(),
        "--project-root".into(),
        paths.project_root.to_str()?.to_owned(),
    ])
}

/// The live session of a run, from its resolved config; `None` with `--mux none`.
pub fn live_session(config: &Config) -> Option<LiveSession> {
    let paths = config.run_paths();
    match config.mux {
        MuxChoice::None => None,
        MuxChoice::Zellij => Some(LiveSession::zellij(
            &config.mux_programs.zellij,
            &config.paths.session,
            ZellijFiles {
                layout: paths.layout_file(),
                config_dir: paths.zellij_config_dir(),
            },
        )),
        MuxChoice::Tmux => Some(LiveSession::tmux(
            &config.mux_programs.tmux,
            &config.paths.session,
        )),
    }
}

/// Adds the panes of `record` that the session lacks, from slot `layout_slots` on.
/// `Ok(())` when nothing is missing any more; the error says why a pane is not there
/// yet (the session is not open, or is still being laid out, or a command failed).
pub fn fill_panes(live: &LiveSession, record: &PaneRecord, paths: &RunPaths) -> Result<(), String> {
    let plan = record.plan(paths);
    let panes = live.panes().map_err(|err| err.to_string())?;
    if !panes.iter().any(|(_, title)| title == TIMELINE_PANE) {
        return Err("the session is still being laid out".to_owned());
    }
    live.add_missing_panes(&plan, &panes, record.layout_slots, &paths.project_root)
        .map(drop)
        .map_err(|err| err.to_string())
}

/// The keeper's sink: hands every agent that starts to the keeper thread, with its
/// branch once its worktree is ready (with worktrees, the pane waits for that).
pub struct PaneSink {
    seen: HashSet<String>,
    /// Agents started whose worktree is not ready yet.
    waiting: HashSet<String>,
    worktrees: bool,
    tx: Option<mpsc::Sender<(String, Option<String>)>>,
    thread: Option<JoinHandle<()>>,
}

impl PaneSink {
    /// Starts the keeper of `config`'s session; `None` with `--mux none`.
    pub fn start(config: &Config) -> Option<Self> {
        let live = live_session(config)?;
        let paths = config.run_paths();
        let record =
            PaneRecord::read(&paths.panes_file()).unwrap_or_else(|_| PaneRecord::initial(config));
        let seen = record.agents.iter().map(|a| a.id.clone()).collect();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("orch-panes".into())
            .spawn(move || keep_panes(&rx, &live, record, &paths))
            .ok()?;
        Some(PaneSink {
            seen,
            waiting: HashSet::new(),
            worktrees: config.isolation == IsolationChoice::Worktree,
            tx: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Sink for PaneSink {
    fn name(&self) -> &'static str {
        "panes"
    }

    fn handle(&mut self, event: &OrchEvent) -> std::io::Result<()> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        match &event.kind {
            OrchEventKind::AgentStarted { agent, .. } if self.seen.insert(agent.clone()) => {
                if self.worktrees {
                    self.waiting.insert(agent.clone());
                } else {
                    let _ = tx.send((agent.clone(), None));
                }
            }
            OrchEventKind::WorktreeReady { agent, branch, .. } if self.waiting.remove(agent) => {
                let place = branch.clone().unwrap_or_else(|| READ_ONLY.to_owned());
                let _ = tx.send((agent.clone(), Some(place)));
            }
            // An agent that ended before its worktree was ready still gets its pane.
            OrchEventKind::AgentFinished { agent, .. } if self.waiting.remove(agent) => {
                let _ = tx.send((agent.clone(), None));
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Ok(())
    }
}

fn keep_panes(
    rx: &mpsc::Receiver<(String, Option<String>)>,
    live: &LiveSession,
    mut record: PaneRecord,
    paths: &RunPaths,
) {
    let file = paths.panes_file();
    let mut missing = false;
    let mut last_problem = String::new();
    let mut ended: Option<Instant> = None;
    loop {
        let next = match (ended, missing) {
            (Some(_), _) => {
                std::thread::sleep(RETRY);
                Err(RecvTimeoutError::Disconnected)
            }
            (None, true) => rx.recv_timeout(RETRY),
            (None, false) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let add = |(agent, place): (String, Option<String>), record: &mut PaneRecord| {
            if let Some(log) = paths.agent_log(&agent) {
                record.agents.push(PaneAgent {
                    id: agent,
                    log,
                    place,
                });
            }
        };
        match next {
            Ok(agent) => {
                add(agent, &mut record);
                while let Ok(agent) = rx.try_recv() {
                    add(agent, &mut record);
                }
                if let Err(err) = record.write(&file) {
                    tracing::warn!(error = %err, path = %file.display(), "failed to record the agent panes");
                }
                missing = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                ended.get_or_insert_with(Instant::now);
            }
        }
        if missing {
            match fill_panes(live, &record, paths) {
                Ok(()) => missing = false,
                // Said once per new problem, in orchestrator.log; retried every second.
                Err(problem) if problem != last_problem => {
                    eprintln!("note: an agent pane is not added yet: {problem}");
                    last_problem = problem;
                }
                Err(_) => {}
            }
        }
        match ended {
            Some(_) if !missing => return,
            // The session was closed after the run: nothing to add panes to.
            Some(_) if matches!(live.is_running(), Ok(false)) => {
                eprintln!(
                    "note: the session is closed, so the remaining agent panes are not added; `launch attach` rebuilds the session with them"
                );
                return;
            }
            // The run is over, but a pane is still missing (e.g. a new Zellij tab waits
            // for a client): keep trying a while, then leave it to `launch attach`.
            Some(since) if since.elapsed() >= END_GRACE => {
                eprintln!(
                    "note: gave up adding agent panes {END_GRACE:?} after the run ended; `launch attach` rebuilds the session with them"
                );
                return;
            }
            _ => {}
        }
    }
}
