//! Integration tests of the audit store and `orch-audit`.

mod agentfs_sdk;
mod cli;
mod crashes;
mod hygiene;
mod interrupts;
mod memory;
mod remote;
#[allow(dead_code)]
#[path = "../support/repo.rs"]
mod repo;
mod secrets;
mod support;
mod tamper;
