//! Command-line argument structs (clap derive), without logic.

pub mod audit_args;
pub mod launch_args;

pub use launch_args::{
    AttachArgs, CleanArgs, ContinueArgs, CtlArgs, CtlCommand, DiffArgs, IsolationChoice, LaunchCli,
    LaunchCommand, LsArgs, MergeArgs, MuxChoice, NotifyWay, OrchestrateArgs, ResumeArgs, RunArgs,
    StatusArgs, WatchdogArgs,
};
