//! Runs seen from outside, through the real `launch` binary: the control socket at any
//! project-root and session length and under attack (idle connections, a low file
//! limit, hostile request text), a live session name refused, a killed run seen as
//! crashed and cleared, a failed start that does not look running.

#[path = "runs/control_socket.rs"]
mod control_socket;
#[path = "support/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "runs/sessions.rs"]
mod sessions;
#[path = "runs/support.rs"]
mod support;
