//! A typed client for the `zellij` CLI: sessions, panes, tabs, pipes, layout checks.
//!
//! Owns the argv of every zellij invocation (never a shell string) and the reading of
//! its answers. Every command gets `--config-dir <run dir>/zellij` when one is set, the
//! client's explicit environment, stdin from /dev/null, and no inherited `ZELLIJ*`
//! session variables (so it also works when `launch` runs inside another session).
//!
//! Does not find the binary (`ORCH_ZELLIJ_BIN` or PATH is resolved by config) and does
//! not write layouts (see `layout`, `zellij_config`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::mux::error::MuxError;
use crate::mux::exec::{self, Tool};

const TOOL: Tool = Tool {
    name: "zellij",
    install: "zellij (`cargo install --locked zellij`)",
    env: "ORCH_ZELLIJ_BIN",
};
use crate::mux::layout::zellij_tab_layout;
use crate::mux::plan::{PanePlan, SlotPlacement, TabAction, TabPlan};
use crate::mux::session::{SessionInfo, SessionState, parse_session_list, validate_session_name};

/// How long a stale session may take to die before we give up on its name.
pub const SESSION_WAIT: Duration = Duration::from_secs(10);

/// How often an empty listing answer is asked again (see `json_action`).
const LISTING_TRIES: u64 = 6;

const INHERITED_SESSION_VARS: &[&str] = &["ZELLIJ", "ZELLIJ_SESSION_NAME", "ZELLIJ_PANE_ID"];

/// The `zellij` binary plus how to run it for one run.
#[derive(Clone, Debug)]
pub struct ZellijClient {
    pub bin: PathBuf,
    pub config_dir: Option<PathBuf>,
    /// Extra environment for every invocation (tests: HOME, XDG_*, ZELLIJ_SOCKET_DIR).
    pub env: Vec<(OsString, OsString)>,
}

/// One tab from `zellij action list-tabs --json` (unknown fields are ignored).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct TabInfo {
    pub position: usize,
    pub name: String,
    pub tab_id: usize,
    #[serde(default)]
    pub active: bool,
}

/// One pane from `zellij action list-panes --json --all` (unknown fields are ignored).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PaneInfo {
    pub id: u32,
    #[serde(default)]
    pub is_plugin: bool,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub tab_name: Option<String>,
    #[serde(default)]
    pub tab_position: Option<usize>,
    #[serde(default)]
    pub tab_id: Option<usize>,
    /// The command line of a terminal pane (`tail -n +1 -F …`).
    #[serde(default)]
    pub pane_command: Option<String>,
    #[serde(default)]
    pub exited: bool,
    #[serde(default)]
    pub is_floating: bool,
}

impl PaneInfo {
    /// The id other actions take: `terminal_<id>` or `plugin_<id>`.
    pub fn pane_id(&self) -> String {
        if self.is_plugin {
            format!("plugin_{}", self.id)
        } else {
            format!("terminal_{}", self.id)
        }
    }
}

impl ZellijClient {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        ZellijClient {
            bin: bin.into(),
            config_dir: None,
            env: Vec::new(),
        }
    }

    pub fn with_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `zellij [--config-dir D] <args>`, ready to run or exec.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        exec::command(
            &self.bin,
            INHERITED_SESSION_VARS,
            &self.env,
            self.argv(args),
        )
    }

    /// The argv after the program name, with the config dir first.
    pub fn argv<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(dir) = &self.config_dir {
            argv.push("--config-dir".into());
            argv.push(dir.into());
        }
        argv.extend(args.into_iter().map(Into::into));
        argv
    }

    /// `zellij --version`, e.g. `zellij 0.45.1`. Also the missing-binary check.
    pub fn version(&self) -> Result<String, MuxError> {
        let out = self.run(["--version"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Parses the config dir and `layout` the way a session would, without starting one:
    /// `zellij --config-dir D -l FILE setup --check`.
    pub fn check_layout(&self, layout: &Path) -> Result<String, MuxError> {
        let args: Vec<OsString> = vec![
            "--layout".into(),
            layout.into(),
            "setup".into(),
            "--check".into(),
        ];
        let out = self.output(args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A broken layout fails the command; a broken config.kdl is only reported as
        // `[CONFIG ERROR]` (Zellij would fall back to its defaults): both are failures.
        if !out.status.success() || text.contains("[CONFIG ERROR]") {
            return Err(MuxError::CommandFailed {
                command: format!("zellij setup --check --layout {}", layout.display()),
                status: out.status.to_string(),
                stderr: text.trim().to_owned(),
            });
        }
        Ok(text)
    }

    /// Sessions known to this server directory, running or exited.
    pub fn list_sessions(&self) -> Result<Vec<SessionInfo>, MuxError> {
        let out = self.output(["list-sessions", "--no-formatting"])?;
        // "No active zellij sessions found." comes with a failure status.
        Ok(parse_session_list(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The session named `name`, if zellij knows it.
    pub fn session(&self, name: &str) -> Result<Option<SessionInfo>, MuxError> {
        Ok(self
            .list_sessions()?
            .into_iter()
            .find(|session| session.name == name))
    }

    pub fn kill_session(&self, name: &str) -> Result<(), MuxError> {
        self.run(["kill-session", name]).map(drop)
    }

    /// Deletes a session, killing it first if it still runs.
    pub fn delete_session(&self, name: &str) -> Result<(), MuxError> {
        self.run(["delete-session", "--force", name]).map(drop)
    }

    /// Makes `name` free for a new session: a stale one (running from an earlier attempt,
    /// or exited but resurrectable) is killed, then deleted. Returns what was there.
    pub fn remove_stale_session(&self, name: &str) -> Result<Option<SessionState>, MuxError> {
        validate_session_name(name)?;
        let Some(existing) = self.session(name)? else {
            return Ok(None);
        };
        if existing.state == SessionState::Running {
            // `delete-session --force` kills, then races the dying server and may fail
            // with "not found"; kill, wait for it to go, then delete what is left.
            let _ = self.kill_session(name);
            if !self.wait_for_session(name, |state| state != Some(SessionState::Running))? {
                return Err(stale(name));
            }
        }
        if self.session(name)?.is_some() {
            let _ = self.delete_session(name);
            if !self.wait_for_session(name, |state| state.is_none())? {
                return Err(stale(name));
            }
        }
        Ok(Some(existing.state))
    }

    /// Polls `list-sessions` until `done(state of name)`; `false` if [`SESSION_WAIT`]
    /// passes first.
    pub fn wait_for_session(
        &self,
        name: &str,
        done: impl Fn(Option<SessionState>) -> bool,
    ) -> Result<bool, MuxError> {
        let start = Instant::now();
        loop {
            let state = self.session(name)?.map(|session| session.state);
            if done(state) {
                return Ok(true);
            }
            if start.elapsed() >= SESSION_WAIT {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many real clients (terminals) are attached to `session`.
    pub fn attached_clients(&self, session: &str) -> Result<usize, MuxError> {
        let out = self.action(session, ["list-clients"])?;
        // A header line, then one line per client; the asking CLI is not listed.
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|line| !line.trim().is_empty())
            .count())
    }

    /// Starts `session` headless with `layout` (no terminal needed); returns once the
    /// server is up. `zellij --config-dir D --layout L attach --create-background S`.
    pub fn attach_create_background(&self, session: &str, layout: &Path) -> Result<(), MuxError> {
        validate_session_name(session)?;
        let args: Vec<OsString> = vec![
            "--layout".into(),
            layout.into(),
            "attach".into(),
            "--create-background".into(),
            session.into(),
        ];
        self.run(args).map(drop)
    }

    /// Argv (after the program) that attaches the user's terminal to `session`.
    pub fn attach_argv(&self, session: &str) -> Vec<OsString> {
        self.argv(["attach", session])
    }

    /// `zellij -s S action <args>`.
    pub fn action<I, S>(&self, session: &str, args: I) -> Result<Output, MuxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = vec!["--session".into(), session.into(), "action".into()];
        argv.extend(args.into_iter().map(Into::into));
        self.run(argv)
    }

    /// Opens a tiled pane named `name` running `command` in the session's focused tab;
    /// returns the new pane id (`terminal_<n>`).
    pub fn new_pane(
        &self,
        session: &str,
        name: &str,
        cwd: &Path,
        command: &[String],
    ) -> Result<String, MuxError> {
        let mut args: Vec<OsString> = vec![
            "new-pane".into(),
            // `--opt=value`: a value starting with `-` is still a value.
            opt_eq("--name", name),
            opt_eq("--cwd", cwd),
            "--".into(),
        ];
        args.extend(command.iter().map(OsString::from));
        let out = self.action(session, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Opens a tab named `name` from a tab layout file (see `zellij_tab_layout`).
    pub fn new_tab(&self, session: &str, name: &str, layout: &Path) -> Result<(), MuxError> {
        let args: Vec<OsString> = vec![
            "new-tab".into(),
            opt_eq("--name", name),
            opt_eq("--layout", layout),
        ];
        self.action(session, args).map(drop)
    }

    pub fn go_to_tab_name(&self, session: &str, name: &str) -> Result<(), MuxError> {
        self.action(session, ["go-to-tab-name", name]).map(drop)
    }

    /// Name of the tab the session's focus is on (`action current-tab-info`).
    pub fn current_tab_name(&self, session: &str) -> Result<String, MuxError> {
        let out = self.action(session, ["current-tab-info"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        // 0.45 prints "name: <tab>", "id: <n>", "position: <n>", one per line.
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix("name:"))
            .or_else(|| text.lines().next())
            .unwrap_or_default();
        Ok(line.trim().to_owned())
    }

    /// Adds the pane of an agent spawned mid-run where `placement_for_slot` put it: into
    /// a new tab (with the bars, like the generated ones) or into its existing tab. No
    /// client's focus moves (`--no-focus`, `--tab-id`). Returns the new pane's id when
    /// zellij reports one.
    pub fn add_agent_pane(
        &self,
        session: &str,
        placement: &SlotPlacement,
        pane: &PanePlan,
        cwd: &Path,
    ) -> Result<String, MuxError> {
        let out = match placement.tab_action {
            TabAction::CreateNew => {
                // Zellij 0.45 lays out a new tab at the clients' size; with none attached
                // it has 0x0, logs "Not enough room for panes", drops the panes and still
                // exits 0. Say so instead, so the caller can add the pane after attach.
                if self.attached_clients(session)? == 0 {
                    return Err(MuxError::NoClientForNewTab {
                        session: session.to_owned(),
                        tab: placement.tab_name.clone(),
                    });
                }
                let tab = TabPlan {
                    name: placement.tab_name.clone(),
                    panes: vec![pane.clone()],
                };
                let layout = zellij_tab_layout(&tab, cwd)?;
                self.action::<_, OsString>(
                    session,
                    [
                        "new-tab".into(),
                        "--no-focus".into(),
                        opt_eq("--name", &placement.tab_name),
                        opt_eq("--layout-string", &layout),
                    ],
                )?
            }
            TabAction::UseExisting => {
                let tab_id = self
                    .list_tabs(session)?
                    .into_iter()
                    .find(|tab| tab.name == placement.tab_name)
                    .map(|tab| tab.tab_id)
                    .ok_or_else(|| MuxError::MissingTab {
                        session: session.to_owned(),
                        tab: placement.tab_name.clone(),
                    })?;
                let mut args: Vec<OsString> = vec![
                    "new-pane".into(),
                    "--no-focus".into(),
                    opt_eq("--tab-id", tab_id.to_string()),
                    opt_eq("--name", &pane.title),
                    opt_eq("--cwd", cwd),
                    "--".into(),
                ];
                args.extend(pane.argv()?.into_iter().map(OsString::from));
                self.action(session, args)?
            }
        };
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Every tab of the session (`action list-tabs --json`).
    pub fn list_tabs(&self, session: &str) -> Result<Vec<TabInfo>, MuxError> {
        self.json_action(session, &["list-tabs", "--json"])
    }

    /// Every pane of the session with its tab.
    pub fn list_panes(&self, session: &str) -> Result<Vec<PaneInfo>, MuxError> {
        self.json_action(session, &["list-panes", "--json", "--all"])
    }

    /// Runs a listing action and parses its JSON answer. A busy server (laying out a
    /// tab, starting panes) sometimes answers a listing with nothing at all and exit 0;
    /// that empty answer is asked again a few times before it counts as an error.
    fn json_action<T: serde::de::DeserializeOwned>(
        &self,
        session: &str,
        args: &[&str],
    ) -> Result<T, MuxError> {
        let mut tries = 0;
        loop {
            let out = self.action(session, args.iter().copied())?;
            tries += 1;
            if out.stdout.iter().all(u8::is_ascii_whitespace) && tries < LISTING_TRIES {
                std::thread::sleep(Duration::from_millis(50 * tries));
                continue;
            }
            return serde_json::from_slice(&out.stdout).map_err(|source| MuxError::PaneList {
                session: session.to_owned(),
                source,
            });
        }
    }

    /// The visible text of a pane (`terminal_3`, `plugin_1` or `3`).
    pub fn dump_screen(&self, session: &str, pane_id: &str) -> Result<String, MuxError> {
        let out = self.action(session, ["dump-screen", "--pane-id", pane_id])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends `payload` down pipe `name` to every plugin listening (or to `plugin`).
    pub fn pipe(
        &self,
        session: &str,
        name: &str,
        payload: &str,
        plugin: Option<&str>,
    ) -> Result<(), MuxError> {
        let mut args: Vec<OsString> = vec!["pipe".into(), opt_eq("--name", name)];
        if let Some(plugin) = plugin {
            args.push(opt_eq("--plugin", plugin));
        }
        args.push("--".into());
        args.push(payload.into());
        self.action(session, args).map(drop)
    }

    /// Runs zellij and fails on a non-zero status.
    fn run<I, S>(&self, args: I) -> Result<Output, MuxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let out = self.output(args.clone())?;
        exec::check(out, &TOOL, &args)
    }

    /// Runs zellij and returns whatever it answered.
    fn output<I, S>(&self, args: I) -> Result<Output, MuxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        exec::output(self.command(args), &self.bin, &TOOL)
    }
}

/// `--opt=value` as one argument, so clap never mistakes a value for a flag.
fn opt_eq(opt: &str, value: impl AsRef<std::ffi::OsStr>) -> OsString {
    let mut arg = OsString::from(opt);
    arg.push("=");
    arg.push(value);
    arg
}

/// A session of that name would not go away within [`SESSION_WAIT`].
fn stale(name: &str) -> MuxError {
    MuxError::StaleSession {
        session: name.to_owned(),
        waited: SESSION_WAIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_puts_the_config_dir_first() {
        let client = ZellijClient::new("/bin/zellij").with_config_dir("/run/zellij");
        assert_eq!(
            client.attach_argv("run-x"),
            ["--config-dir", "/run/zellij", "attach", "run-x"].map(OsString::from)
        );
    }

    #[test]
    fn a_missing_binary_says_what_to_do() {
        let client = ZellijClient::new("/nonexistent/zellij-for-orch-tests");
        let err = client.version().unwrap_err();
        assert!(matches!(err, MuxError::ProgramNotFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("ORCH_ZELLIJ_BIN"), "{message}");
        assert!(
            message.contains("cargo install --locked zellij"),
            "{message}"
        );
    }
}
