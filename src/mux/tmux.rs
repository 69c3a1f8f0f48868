//! `--mux tmux`: the same tabs as tmux windows, on a private server (`tmux -L <socket>`).
//!
//! Owns the tmux argv: one window per planned tab, panes tiled, `remain-on-exit on`,
//! pane titles in the top border, and Ctrl+S bound in the root table of the private
//! server only (so it never reaches a pane as XOFF and never touches the user's own tmux).
//! The server starts with `-f /dev/null`: a user's `~/.tmux.conf` cannot rebind our keys.
//!
//! Pane commands are handed to tmux as separate arguments, which tmux 3.x executes
//! directly (no shell); only `run-shell` (the Ctrl+S binding) takes a shell string, and
//! that string is built with `shell_quote` plus tmux format escaping (`#` → `##`).
//!
//! Does not decide the tab plan (see `plan`) and does not find the binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::mux::error::MuxError;
use crate::mux::exec::{self, Tool};

const TOOL: Tool = Tool {
    name: "tmux",
    install: "tmux (your package manager's `tmux`)",
    env: "ORCH_TMUX_BIN",
};
use crate::mux::layout::path_str;
use crate::mux::plan::{LayoutPlan, PanePlan, SlotPlacement, TabAction};
use crate::mux::session::validate_session_name;
use crate::mux::shell_quote::shell_join;

/// The key hints of a tmux run (status line, timeline, `launch` output).
pub const TMUX_KEY_HELP: &str =
    "Ctrl+S pause the squad and show the interrupt summary · Ctrl+B d detach";

const INHERITED_SESSION_VARS: &[&str] = &["TMUX", "TMUX_PANE"];

/// A tmux binary talking to one private server.
#[derive(Clone, Debug)]
pub struct TmuxClient {
    pub bin: PathBuf,
    /// `-L` socket name; the server lives in `$TMUX_TMPDIR/tmux-<uid>/<socket>`.
    pub socket: String,
    pub env: Vec<(OsString, OsString)>,
}

/// One pane as `list-panes` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmuxPane {
    pub window_index: usize,
    pub window_name: String,
    /// `%<n>`, the stable target for other commands.
    pub pane_id: String,
    pub title: String,
    pub is_dead: bool,
}

/// The `run-shell` string that runs `argv` through `/bin/sh`, output discarded (else
/// tmux shows it over the pane), safe from tmux format expansion.
pub fn run_shell_string(argv: &[String]) -> String {
    format!("{} >/dev/null 2>&1", shell_join(argv)).replace('#', "##")
}

impl TmuxClient {
    pub fn new(bin: impl Into<PathBuf>, socket: impl Into<String>) -> Self {
        TmuxClient {
            bin: bin.into(),
            socket: socket.into(),
            env: Vec::new(),
        }
    }

    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `tmux -u -L <socket> -f /dev/null <args>`.
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

    pub fn argv<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        // `-u`: UTF-8 whatever the locale says. Without it (no LANG, as under a scrubbed
        // environment) tmux prints tabs and non-ASCII in `-F` output as `_`.
        let mut argv: Vec<OsString> = vec![
            "-u".into(),
            "-L".into(),
            self.socket.clone().into(),
            "-f".into(),
            "/dev/null".into(),
        ];
        argv.extend(args.into_iter().map(|arg| literal_arg(arg.into())));
        argv
    }

    /// `tmux -V`; also the missing-binary check.
    pub fn version(&self) -> Result<String, MuxError> {
        let out = self.run(["-V"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The command that attaches the user's terminal to `session`.
    pub fn attach_command(&self, session: &str) -> Command {
        self.command(["attach-session".to_owned(), "-t".to_owned(), exact(session)])
    }

    /// Argv (after the program) attaching the user's terminal to `session`.
    pub fn attach_argv(&self, session: &str) -> Vec<OsString> {
        self.argv(["attach-session".to_owned(), "-t".to_owned(), exact(session)])
    }

    pub fn has_session(&self, session: &str) -> Result<bool, MuxError> {
        Ok(self
            .output(["has-session".to_owned(), "-t".to_owned(), exact(session)])?
            .status
            .success())
    }

    /// Kills a session of the same name left by an earlier run; true when there was one.
    pub fn remove_stale_session(&self, session: &str) -> Result<bool, MuxError> {
        validate_session_name(session)?;
        if !self.has_session(session)? {
            return Ok(false);
        }
        self.run(["kill-session".to_owned(), "-t".to_owned(), exact(session)])?;
        Ok(true)
    }

    /// Stops the private server and every session on it.
    pub fn kill_server(&self) -> Result<(), MuxError> {
        self.output(["kill-server"]).map(drop)
    }

    /// Creates `session` detached with one window per planned tab, binds Ctrl+S to
    /// `interrupt_argv` and focuses the first window.
    pub fn create_session(
        &self,
        session: &str,
        plan: &LayoutPlan,
        cwd: &Path,
        interrupt_argv: &[String],
    ) -> Result<(), MuxError> {
        validate_session_name(session)?;
        if interrupt_argv.is_empty() {
            return Err(MuxError::EmptyCommand);
        }
        // Window index = tab index, so no tab may be empty (the first holds agents).
        if plan.tabs.iter().any(|tab| tab.panes.is_empty()) {
            return Err(MuxError::NoAgents);
        }
        let cwd = format_literal(path_str(cwd)?);
        for (index, tab) in plan.tabs.iter().enumerate() {
            for (position, pane) in tab.panes.iter().enumerate() {
                let pane_id = if index == 0 && position == 0 {
                    let mut args = strings(&[
                        "new-session",
                        "-d",
                        "-P",
                        "-F",
                        "#{pane_id}",
                        "-s",
                        session,
                        "-n",
                        &format_literal(&tab.name),
                        "-c",
                        &cwd,
                        "-x",
                        "200",
                        "-y",
                        "50",
                    ]);
                    args.extend(pane_command(pane)?);
                    let id = self.run_for_id(args)?;
                    self.configure_server(interrupt_argv)?;
                    id
                } else if position == 0 {
                    self.new_window(session, &tab.name, &cwd, pane)?
                } else {
                    self.split_window(session, index, &cwd, pane)?
                };
                self.set_title(&pane_id, &pane.title)?;
            }
        }
        self.run(strings(&[
            "select-window",
            "-t",
            &format!("{}:0", exact(session)),
        ]))
        .map(drop)
    }

    /// Adds the pane of a mid-run agent where [`placement_for_slot`] put it; returns the
    /// new pane id.
    ///
    /// [`placement_for_slot`]: crate::mux::plan::placement_for_slot
    pub fn add_pane(
        &self,
        session: &str,
        placement: &SlotPlacement,
        cwd: &Path,
        pane: &PanePlan,
    ) -> Result<String, MuxError> {
        let cwd = format_literal(path_str(cwd)?);
        let pane_id = match placement.tab_action {
            TabAction::CreateNew => self.new_window(session, &placement.tab_name, &cwd, pane)?,
            TabAction::UseExisting => {
                self.split_window(session, placement.tab_index, &cwd, pane)?
            }
        };
        self.set_title(&pane_id, &pane.title)?;
        Ok(pane_id)
    }

    /// Every pane of `session`, window by window.
    pub fn list_panes(&self, session: &str) -> Result<Vec<TmuxPane>, MuxError> {
        let format = "#{window_index}\t#{pane_id}\t#{pane_dead}\t#{window_name}\t#{pane_title}";
        let out = self.run(strings(&[
            "list-panes",
            "-s",
            "-t",
            &exact(session),
            "-F",
            format,
        ]))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(5, '\t');
                Some(TmuxPane {
                    window_index: fields.next()?.parse().ok()?,
                    pane_id: fields.next()?.to_owned(),
                    is_dead: fields.next()? == "1",
                    window_name: fields.next()?.to_owned(),
                    title: fields.next()?.to_owned(),
                })
            })
            .collect())
    }

    /// The visible text of a pane (`capture-pane -p`).
    pub fn capture_pane(&self, pane_id: &str) -> Result<String, MuxError> {
        let out = self.run(["capture-pane", "-p", "-t", pane_id])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn configure_server(&self, interrupt_argv: &[String]) -> Result<(), MuxError> {
        let settings: &[&[&str]] = &[
            &["set-option", "-g", "remain-on-exit", "on"],
            &["set-option", "-g", "pane-border-status", "top"],
            &["set-option", "-g", "pane-border-format", " #{pane_title} "],
            &["set-option", "-g", "allow-rename", "off"],
            &["set-option", "-g", "automatic-rename", "off"],
            &[
                "set-option",
                "-g",
                "status-right",
                " Ctrl+S pause · prefix d detach ",
            ],
        ];
        for args in settings {
            self.run(args.iter().copied())?;
        }
        // Root table (`-n`): no prefix needed, and the key never reaches the pane. The
        // server is private to this run, so the binding is too.
        self.run(strings(&[
            "bind-key",
            "-n",
            "C-s",
            "run-shell",
            "-b",
            &run_shell_string(interrupt_argv),
        ]))
        .map(drop)
    }

    fn new_window(
        &self,
        session: &str,
        name: &str,
        cwd: &str,
        pane: &PanePlan,
    ) -> Result<String, MuxError> {
        let target = format!("{}:", exact(session));
        let mut args = strings(&[
            "new-window",
            "-d",
            "-P",
            "-F",
            "#{pane_id}",
            "-t",
            &target,
            "-n",
            &format_literal(name),
            "-c",
            cwd,
        ]);
        args.extend(pane_command(pane)?);
        self.run_for_id(args)
    }

    fn split_window(
        &self,
        session: &str,
        window: usize,
        cwd: &str,
        pane: &PanePlan,
    ) -> Result<String, MuxError> {
        let target = format!("{}:{window}", exact(session));
        let mut args = strings(&[
            "split-window",
            "-d",
            "-P",
            "-F",
            "#{pane_id}",
            "-t",
            &target,
            "-c",
            cwd,
        ]);
        args.extend(pane_command(pane)?);
        let id = self.run_for_id(args)?;
        self.run(strings(&["select-layout", "-t", &target, "tiled"]))?;
        Ok(id)
    }

    fn set_title(&self, pane_id: &str, title: &str) -> Result<(), MuxError> {
        self.run(["select-pane", "-t", pane_id, "-T", &format_literal(title)])
            .map(drop)
    }

    fn run_for_id(&self, args: Vec<String>) -> Result<String, MuxError> {
        let out = self.run(args)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn run<I, S>(&self, args: I) -> Result<Output, MuxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let out = self.output(args.clone())?;
        exec::check(out, &TOOL, &args)
    }

    fn output<I, S>(&self, args: I) -> Result<Output, MuxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        exec::output(self.command(args), &self.bin, &TOOL)
    }
}

/// tmux reads an argument ending in `;` as a command separator (the `;` is dropped) and
/// `\;` at the end as a literal `;`. We never chain commands, so a final `;` always gets
/// a backslash in front: `foo;` → `foo\;`, which tmux turns back into `foo;`.
fn literal_arg(arg: OsString) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let bytes = arg.as_bytes();
    match bytes.split_last() {
        Some((b';', rest)) => {
            let mut escaped = rest.to_vec();
            escaped.extend_from_slice(b"\\;");
            OsString::from_vec(escaped)
        }
        _ => arg,
    }
}

/// `=name`: tmux matches the session name exactly, not as a prefix or pattern.
fn exact(session: &str) -> String {
    format!("={session}")
}

/// tmux expands `#{…}`/`#(…)` in start directories, window names and pane titles;
/// `##` is a literal `#`, so doubling every `#` keeps the text as data.
fn format_literal(text: &str) -> String {
    text.replace('#', "##")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The pane's command as separate arguments after `--`, which tmux executes directly.
/// Every pane command has several arguments; a single one would go through `sh -c`.
fn pane_command(pane: &PanePlan) -> Result<Vec<String>, MuxError> {
    let mut args = vec!["--".to_owned()];
    args.extend(pane.argv()?);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_shell_strings_escape_formats_and_quote_words() {
        let argv: Vec<String> = [
            "/opt/my launch",
            "ctl",
            "interrupt",
            "--session",
            "#{x}'$(id)",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            run_shell_string(&argv),
            "'/opt/my launch' ctl interrupt --session '##{x}'\\''$(id)' >/dev/null 2>&1"
        );
    }

    #[test]
    fn attach_argv_targets_the_exact_session_on_the_private_socket() {
        let client = TmuxClient::new("tmux", "orch-run-x");
        assert_eq!(
            client.attach_argv("run-x"),
            [
                "-u",
                "-L",
                "orch-run-x",
                "-f",
                "/dev/null",
                "attach-session",
                "-t",
                "=run-x"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn a_missing_binary_says_what_to_do() {
        let client = TmuxClient::new("/nonexistent/tmux-for-orch-tests", "orch-x");
        let err = client.has_session("run-x").unwrap_err();
        assert!(matches!(err, MuxError::ProgramNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("ORCH_TMUX_BIN"), "{err}");
    }

    #[test]
    fn a_final_semicolon_stays_data() {
        let lit = |s: &str| literal_arg(s.into()).into_string().unwrap();
        assert_eq!(lit("foo;"), "foo\\;");
        assert_eq!(lit(";"), "\\;");
        assert_eq!(lit("x\\;"), "x\\\\;");
        assert_eq!(lit("a;b"), "a;b");
    }
}
