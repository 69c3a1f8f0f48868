//! Zellij and tmux: layouts, sessions, panes.

pub mod error;
mod exec;
pub mod kind;
pub mod layout;
pub mod live;
pub mod plan;
pub mod session;
pub mod shell_quote;
pub mod tmux;
pub mod zellij;
pub mod zellij_config;

pub use error::MuxError;
pub use kind::MuxKind;
pub use layout::{tail_argv, zellij_layout, zellij_tab_layout};
pub use live::{LiveSession, Stale, ZellijFiles, tmux_socket};
pub use plan::{
    AgentPane, LayoutPlan, PaneKind, PanePlan, SlotPlacement, TabAction, TabPlan, agent_pane,
    display_title, placement_for_slot, plan_layout,
};
pub use session::{
    MAX_SESSION_NAME, SessionInfo, SessionState, mux_session_name, parse_session_list,
    validate_session_name,
};
pub use shell_quote::{shell_join, shell_quote};
pub use tmux::{TMUX_KEY_HELP, TmuxClient, TmuxPane, run_shell_string};
pub use zellij::{PaneInfo, TabInfo, ZellijClient};
pub use zellij_config::{KEY_HELP, interrupt_argv, write_zellij_config_dir, zellij_config_kdl};
