//! The control socket, `launch ctl`, and signal handling.

pub mod client;
pub mod handler;
pub mod protocol;
pub mod server;
pub mod signals;
pub mod socket_dir;

pub use handler::ControlHandler;
pub use protocol::{ControlCommand, ControlRequest, ControlResponse};
pub use server::{ControlError, ControlServer, ControlService};
