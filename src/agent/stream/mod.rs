//! Pure stream parsers: bytes or lines in, normalized `AgentEvent`s and a `TurnResult`
//! out. No I/O; the backends feed them.

pub mod anthropic;
pub mod claude;
pub mod codex;
pub mod feed;
pub mod gemini;
pub mod lines;
pub mod openai;
pub mod sse;
pub mod turn;

pub use anthropic::AnthropicParser;
pub use claude::ClaudeParser;
pub use codex::CodexParser;
pub use feed::{LineFeed, SseFeed, parse_lines, parse_sse};
pub use gemini::GeminiParser;
pub use lines::{DEFAULT_MAX_LINE, Line, LineRef, LineSplitter};
pub use openai::OpenAiChatParser;
pub use sse::{SseDecoder, SseEvent, SseItem};
pub use turn::{LineParser, SseParser, TurnState};
