//! Orchestration: groups, core agents, blueprints, waves.
