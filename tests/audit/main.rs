//! Integration tests of the audit store and `orch-audit`.

mod agentfs_sdk;
mod cli;
mod crashes;
mod memory;
mod remote;
mod support;
mod tamper;
