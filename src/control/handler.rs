//! What a control request does to a run: pause (then write the interrupt summary once
//! running turns finish), resume, stop, status. Used by the socket and by signals.

use std::sync::Arc;

use crate::control::protocol::{ControlCommand, ControlResponse};
use crate::events::EventBus;
use crate::events::event::OrchEventKind;
use crate::orchestrator::control::{PauseAck, RunControl};

#[derive(Clone)]
pub struct ControlHandler {
    pub control: Arc<RunControl>,
    pub bus: EventBus,
    pub session: String,
    pub interrupt_log: String,
}

impl ControlHandler {
    fn respond(&self, ok: bool, message: String) -> ControlResponse {
        ControlResponse {
            ok,
            mode: self.control.mode(),
            message,
            status: None,
        }
    }

    fn next_steps(&self) -> Vec<String> {
        vec![
            format!("continue: launch ctl resume --session {}", self.session),
            format!("stop for good: launch ctl stop --session {}", self.session),
        ]
    }

    pub async fn handle(&self, command: ControlCommand, source: &str) -> ControlResponse {
        match command {
            ControlCommand::Pause => match self.control.request_pause(source) {
                PauseAck::Started { in_flight, .. } => {
                    self.bus
                        .publish(OrchEventKind::PauseRequested {
                            source: source.to_owned(),
                        })
                        .await;
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.control.wait_idle().await;
                        let ended = this.control.summary_gate().await;
                        if *ended || this.control.is_stopping() {
                            return; // the stop's summary covers this pause
                        }
                        let summary = this.control.interrupt_summary(this.next_steps());
                        this.bus
                            .publish(OrchEventKind::RunPaused(Box::new(summary)))
                            .await;
                        this.bus.flush().await;
                    });
                    let waiting = if in_flight.is_empty() {
                        "nothing was running".to_owned()
                    } else {
                        format!(
                            "waiting for {} to finish the running turn",
                            in_flight.join(", ")
                        )
                    };
                    self.respond(
                        true,
                        format!(
                            "pausing: {waiting}; the summary goes to {}",
                            self.interrupt_log
                        ),
                    )
                }
                PauseAck::AlreadyPaused => self.respond(
                    true,
                    format!("already paused; the summary is in {}", self.interrupt_log),
                ),
                PauseAck::Stopping => self.respond(false, "the run is stopping".into()),
            },
            ControlCommand::Resume => {
                if self.control.resume() {
                    self.bus.publish(OrchEventKind::RunResumed).await;
                    self.respond(true, "resumed".into())
                } else {
                    self.respond(false, "the run is not paused".into())
                }
            }
            ControlCommand::Stop => {
                if self.control.stop(source) {
                    self.bus
                        .publish(OrchEventKind::StopRequested {
                            source: source.to_owned(),
                        })
                        .await;
                    self.respond(true, "stopping: running turns are being ended".into())
                } else {
                    self.respond(true, "already stopping".into())
                }
            }
            ControlCommand::Status => {
                let status = self.control.status();
                ControlResponse {
                    ok: true,
                    mode: status.mode,
                    message: String::new(),
                    status: Some(status),
                }
            }
        }
    }
}
