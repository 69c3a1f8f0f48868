//! One run's live multiplexer session, whichever multiplexer it is.
//!
//! Owns what the launcher and the orchestrator do to a run's session without caring
//! whether it is Zellij or tmux: check the binary, clear a stale session of the same
//! name, create the session (in the background, or in the user's terminal), attach, list
//! the agent panes it shows, and add the pane of an agent that started mid-run.
//!
//! Does not decide which agents exist (the caller passes a [`LayoutPlan`] or a slot) and
//! does not read the environment (binaries come from the resolved config).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mux::error::MuxError;
use crate::mux::layout::zellij_layout;
use crate::mux::plan::{LayoutPlan, PanePlan, placement_for_slot};
use crate::mux::session::{SessionState, mux_session_name};
use crate::mux::tmux::TmuxClient;
use crate::mux::zellij::{SESSION_WAIT, ZellijClient};
use crate::mux::zellij_config::write_zellij_config_dir;

/// The files a Zellij session of a run is made from.
#[derive(Clone, Debug)]
pub struct ZellijFiles {
    /// `layout.kdl` of the run.
    pub layout: PathBuf,
    /// The private `--config-dir` (holds `config.kdl` with the Ctrl+S binding).
    pub config_dir: PathBuf,
}

/// A run's session in Zellij or tmux.
#[derive(Clone, Debug)]
pub enum LiveSession {
    Zellij {
        client: ZellijClient,
        session: String,
        files: ZellijFiles,
    },
    Tmux {
        client: TmuxClient,
        session: String,
    },
}

/// What the name of a new session was taken by before we cleared it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    Running,
    Exited,
}

impl LiveSession {
    /// A Zellij session of run `session` that uses the run's private config dir,
    /// named [`mux_session_name`]`(session)`.
    pub fn zellij(bin: &Path, session: &str, files: ZellijFiles) -> Self {
        LiveSession::Zellij {
            client: ZellijClient::new(bin).with_config_dir(&files.config_dir),
            session: mux_session_name(session),
            files,
        }
    }

    /// A tmux session of run `session` on the run's own server (`-L orch-<name>`),
    /// named [`mux_session_name`]`(session)`.
    pub fn tmux(bin: &Path, session: &str) -> Self {
        let name = mux_session_name(session);
        LiveSession::Tmux {
            client: TmuxClient::new(bin, tmux_socket(&name)),
            session: name,
        }
    }

    pub fn session(&self) -> &str {
        match self {
            LiveSession::Zellij { session, .. } | LiveSession::Tmux { session, .. } => session,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            LiveSession::Zellij { .. } => "zellij",
            LiveSession::Tmux { .. } => "tmux",
        }
    }

    /// The keys of the session, as we show them to users.
    pub fn key_help(&self) -> &'static str {
        match self {
            LiveSession::Zellij { .. } => crate::mux::zellij_config::KEY_HELP,
            LiveSession::Tmux { .. } => crate::mux::tmux::TMUX_KEY_HELP,
        }
    }

    /// Fails with `ProgramNotFound` (and how to install it) when the binary is missing.
    pub fn check_installed(&self) -> Result<(), MuxError> {
        match self {
            LiveSession::Zellij { client, .. } => client.version().map(drop),
            LiveSession::Tmux { client, .. } => client.version().map(drop),
        }
    }

    /// Whether a live (running) session of this name exists.
    pub fn is_running(&self) -> Result<bool, MuxError> {
        match self {
            LiveSession::Zellij {
                client, session, ..
            } => Ok(client
                .session(session)?
                .is_some_and(|s| s.state == SessionState::Running)),
            LiveSession::Tmux { client, session } => client.has_session(session),
        }
    }

    /// Frees the name for a new session; says what held it.
    pub fn remove_stale(&self) -> Result<Option<Stale>, MuxError> {
        match self {
            LiveSession::Zellij {
                client, session, ..
            } => Ok(client
                .remove_stale_session(session)?
                .map(|state| match state {
                    SessionState::Running => Stale::Running,
                    SessionState::Exited => Stale::Exited,
                })),
            LiveSession::Tmux { client, session } => Ok(client
                .remove_stale_session(session)?
                .then_some(Stale::Running)),
        }
    }

    /// Writes what the session is made from: Zellij's layout and config dir. tmux needs
    /// no files (the session is built command by command).
    pub fn write_files(
        &self,
        plan: &LayoutPlan,
        cwd: &Path,
        interrupt_argv: &[String],
    ) -> Result<(), MuxError> {
        if let LiveSession::Zellij { files, .. } = self {
            write_zellij_config_dir(&files.config_dir, interrupt_argv)?;
            let layout = zellij_layout(plan, cwd)?;
            crate::private_fs::write(&files.layout, layout.as_bytes()).map_err(|source| {
                MuxError::Write {
                    path: files.layout.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Creates the session without a terminal (`launch` then attaches the user's terminal
    /// when there is one): `plan` must be the one `write_files` got.
    pub fn create_in_background(
        &self,
        plan: &LayoutPlan,
        cwd: &Path,
        interrupt_argv: &[String],
    ) -> Result<(), MuxError> {
        match self {
            LiveSession::Zellij {
                client,
                session,
                files,
            } => create_zellij_session(client, session, &files.layout),
            LiveSession::Tmux { client, session } => {
                client.create_session(session, plan, cwd, interrupt_argv)
            }
        }
    }

    /// The command that shows the (already created) session in the user's terminal.
    pub fn terminal_command(&self) -> Command {
        match self {
            LiveSession::Zellij {
                client, session, ..
            } => client.command(["attach", session.as_str()]),
            LiveSession::Tmux { client, session } => client.attach_command(session),
        }
    }

    /// `(tab, pane title)` of every pane the session shows.
    pub fn panes(&self) -> Result<Vec<(String, String)>, MuxError> {
        match self {
            LiveSession::Zellij {
                client, session, ..
            } => Ok(client
                .list_panes(session)?
                .into_iter()
                .filter(|pane| !pane.is_plugin)
                .map(|pane| (pane.tab_name.unwrap_or_default(), pane.title))
                .collect()),
            LiveSession::Tmux { client, session } => Ok(client
                .list_panes(session)?
                .into_iter()
                .map(|pane| (pane.window_name, pane.title))
                .collect()),
        }
    }

    /// Adds the pane of the agent in `slot` (see [`placement_for_slot`]).
    pub fn add_pane(&self, pane: &PanePlan, slot: usize, cwd: &Path) -> Result<(), MuxError> {
        let placement = placement_for_slot(slot);
        match self {
            LiveSession::Zellij {
                client, session, ..
            } => client
                .add_agent_pane(session, &placement, pane, cwd)
                .map(drop),
            LiveSession::Tmux { client, session } => {
                client.add_pane(session, &placement, cwd, pane).map(drop)
            }
        }
    }

    /// Adds every agent pane of `plan` from slot `from_slot` on that the session lacks
    /// (`live`: its panes, from [`LiveSession::panes`]),
    /// in slot order, and returns how many it added. Stops at the first pane that cannot
    /// be added yet (e.g. a new Zellij tab while no client is attached); calling again
    /// later picks up from there. Slots below `from_slot` came with the session's layout
    /// and are never added twice, even while the session is still laying them out.
    pub fn add_missing_panes(
        &self,
        plan: &LayoutPlan,
        live: &[(String, String)],
        from_slot: usize,
        cwd: &Path,
    ) -> Result<usize, MuxError> {
        let mut added = 0;
        for pane in plan.missing_agent_panes(live) {
            let crate::mux::plan::PaneKind::Agent { slot } = pane.kind else {
                continue;
            };
            if slot < from_slot {
                continue;
            }
            self.add_pane(&pane, slot, cwd)?;
            added += 1;
        }
        Ok(added)
    }
}

/// How many times a Zellij session is created before we give up on it.
const CREATE_TRIES: u32 = 3;

/// `attach --create-background`, checked: the session must then show up as running.
/// Right after a session of the same name was killed (a stale one, or one the user quit),
/// Zellij 0.45 sometimes never starts the new server, or its client waits forever; the
/// name is cleared again and the creation retried.
fn create_zellij_session(
    client: &ZellijClient,
    session: &str,
    layout: &Path,
) -> Result<(), MuxError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = match client.attach_create_background(session, layout) {
            // The client may hang after its server came up fine: a running session counts.
            Ok(()) | Err(MuxError::TimedOut { .. }) => wait_until_running(client, session),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(err @ (MuxError::ProgramNotFound { .. } | MuxError::BadSessionName { .. })) => {
                return Err(err);
            }
            Err(err) if tries >= CREATE_TRIES => return Err(err),
            Err(_) => {
                client.remove_stale_session(session)?;
            }
        }
    }
}

/// A created session must show up as running within [`SESSION_WAIT`].
fn wait_until_running(client: &ZellijClient, session: &str) -> Result<(), MuxError> {
    if client.wait_for_session(session, |state| state == Some(SessionState::Running))? {
        Ok(())
    } else {
        Err(MuxError::SessionDidNotStart {
            session: session.to_owned(),
            waited: SESSION_WAIT,
        })
    }
}

/// The `-L` socket name of a run's private tmux server.
pub fn tmux_socket(session: &str) -> String {
    format!("orch-{session}")
}
