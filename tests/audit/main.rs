//! Integration tests of the audit store and `orch-audit`.

mod agentfs_sdk;
mod anchors;
mod cli;
mod crashed;
mod crashes;
mod disk_full;
mod foreign;
mod hygiene;
mod interrupts;
mod memory;
mod remote;
#[allow(dead_code)]
#[path = "../support/repo.rs"]
mod repo;
mod report;
mod secrets;
mod support;
mod tamper;
