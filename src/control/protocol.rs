//! The control socket's wire format: one JSON line in, one JSON line out.

use serde::{Deserialize, Serialize};

use crate::orchestrator::{RunMode, StatusReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlCommand {
    Pause,
    Resume,
    Status,
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub command: ControlCommand,
    /// Who asked (`ctl`, `ctrl-s`, `SIGINT`...), for the timeline.
    #[serde(default)]
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    pub mode: RunMode,
    pub message: String,
    #[serde(default)]
    pub status: Option<StatusReport>,
}
