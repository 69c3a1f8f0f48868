//! Running a multiplexer's CLI (zellij, tmux) as argv, with errors that say what to do.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::mux::error::MuxError;

/// How to name a multiplexer in errors.
pub(crate) struct Tool {
    /// The program name as typed on a command line.
    pub name: &'static str,
    /// How to install it, for `ProgramNotFound`.
    pub install: &'static str,
    /// The env var that points at its binary.
    pub env: &'static str,
}

/// Runs `command` with stdin closed and returns whatever it answered.
pub(crate) fn output(mut command: Command, bin: &Path, tool: &Tool) -> Result<Output, MuxError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                MuxError::ProgramNotFound {
                    program: bin.to_path_buf(),
                    tool: tool.install,
                    env: tool.env,
                }
            } else {
                MuxError::Spawn {
                    program: bin.to_path_buf(),
                    source,
                }
            }
        })
}

/// Turns a non-zero exit into `CommandFailed`, naming the command and its stderr.
pub(crate) fn check(out: Output, tool: &Tool, args: &[OsString]) -> Result<Output, MuxError> {
    if out.status.success() {
        return Ok(out);
    }
    let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    Err(MuxError::CommandFailed {
        command: format!("{} {}", tool.name, shown.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}
