//! Integration tests of the audit store and `orch-audit`.

mod cli;
mod support;
