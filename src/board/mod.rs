//! The status board: `launch status [--watch]`, one row per agent, live from the run's
//! control socket or, for a finished or crashed run, from its audit store.
//!
//! Owns the board's model (`model`), its drawing (`render`), the run-side feed that keeps
//! the model from the run's events (`feed`) and the terminal program (`app`).

pub mod app;
pub mod feed;
pub mod model;
pub mod render;

pub use feed::{BoardFeed, BoardSink};
pub use model::{Board, BoardAgent, Tone};
