//! `orch-audit`: reads the audit store. Parses arguments, runs the command in the
//! library, exits with its code (documented in `orch-audit --help`).

use std::process::ExitCode;

use clap::Parser;
use orch::audit::commands;
use orch::cli::audit_args::AuditArgs;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    orch::alloc::configure();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let args = AuditArgs::parse();
    ExitCode::from(commands::main(args))
}
