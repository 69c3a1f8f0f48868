//! Agents config files and the resolved run configuration.
