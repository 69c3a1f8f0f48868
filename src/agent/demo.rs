//! The built-in demo backend.
