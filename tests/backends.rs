//! Integration tests for the agent backends: parsers over the shared fixtures, the
//! real Codex CLI and the HTTP backends against a scripted local model server, and
//! the failure paths.

mod support;

#[path = "backends/parsers.rs"]
mod parsers;

#[path = "backends/codex_cli.rs"]
mod codex_cli;

#[path = "backends/http.rs"]
mod http;

#[path = "backends/codex_failures.rs"]
mod codex_failures;

#[path = "backends/fake_cli.rs"]
mod fake_cli;

#[path = "backends/cli_process.rs"]
mod cli_process;

#[path = "backends/codex_resume.rs"]
mod codex_resume;

#[path = "backends/launch_stop.rs"]
mod launch_stop;

#[path = "backends/launch_prompt.rs"]
mod launch_prompt;

#[path = "backends/claude_cli.rs"]
mod claude_cli;

#[path = "backends/gemini_cli.rs"]
mod gemini_cli;

#[path = "backends/codex_squad.rs"]
mod codex_squad;

#[path = "backends/http_squad.rs"]
mod http_squad;

#[path = "backends/squad_failures.rs"]
mod squad_failures;

#[path = "backends/codex_isolation.rs"]
mod codex_isolation;

#[path = "backends/acting_http.rs"]
mod acting_http;
