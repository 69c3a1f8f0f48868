//! Command-line argument structs (clap derive), without logic.

pub mod audit_args;
pub mod launch_args;

pub use launch_args::{
    AttachArgs, CtlArgs, CtlCommand, LaunchCli, LaunchCommand, LsArgs, MuxChoice, OrchestrateArgs,
    RunArgs, WatchdogArgs,
};
