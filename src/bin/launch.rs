//! `launch`: turn one prompt into a squad of AI coding agents.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    orch::alloc::configure();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("ORCH_LOG"))
        .init();
    orch::launcher::main(orch::cli::LaunchCli::parse())
}
