//! Command-line argument structs (clap derive), without logic.
