//! `orch-audit`: read the audit store of past and running squads.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("orch-audit: not yet: the audit store reader is being built (see the issue tracker)");
    ExitCode::from(2)
}
