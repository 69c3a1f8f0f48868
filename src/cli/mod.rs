//! Command-line argument structs (clap derive), without logic.
pub mod audit_args;
