//! The control socket, `launch ctl`, and signal handling.
