//! Zellij and tmux: layouts, sessions, panes.
