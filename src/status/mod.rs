//! What a user sees of a run's state, drawn from plain data: the HTML run report
//! (`orch-audit report`). Loading that data from the audit store is `audit::report`.

mod gantt;
pub mod report;
pub mod report_model;
