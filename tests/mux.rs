//! Multiplexer tests against real tools: `zellij setup --check` on generated layouts,
//! live Zellij and tmux sessions tailing logs, Ctrl+S through a real attached client.
//!
//! A missing tool skips the test with a message, or fails it under
//! `ORCH_TEST_REQUIRE_TOOLS=1`.

#[path = "mux/launcher_live.rs"]
mod launcher_live;
#[path = "support/repo.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod repo;
#[path = "mux/support.rs"]
mod support;
#[path = "mux/tmux_live.rs"]
mod tmux_live;
#[path = "mux/zellij_live.rs"]
mod zellij_live;
