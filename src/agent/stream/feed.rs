//! Glue between framing and parsing: raw chunks in, events out.
//!
//! Used by the backends on live streams and by tests on fixture files, so both take
//! exactly the same path.

use crate::agent::backend::TurnResult;
use crate::agent::event::AgentEvent;
use crate::agent::stream::lines::{LineRef, LineSplitter};
use crate::agent::stream::sse::{SseDecoder, SseItem};
use crate::agent::stream::turn::{LineParser, SseParser};

/// Frames JSONL bytes and parses every complete line.
pub struct LineFeed<P> {
    splitter: LineSplitter,
    parser: P,
}

impl<P: LineParser> LineFeed<P> {
    pub fn new(parser: P, max_line: usize) -> Self {
        LineFeed {
            splitter: LineSplitter::new(max_line),
            parser,
        }
    }

    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<AgentEvent>) {
        let parser = &mut self.parser;
        self.splitter
            .push_with(chunk, |line| parse_line(parser, line, out));
    }

    pub fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult {
        let parser = &mut self.parser;
        self.splitter
            .finish_with(|line| parse_line(parser, line, out));
        self.parser.finish(out)
    }

    pub fn parser(&self) -> &P {
        &self.parser
    }

    pub fn into_parser(self) -> P {
        self.parser
    }
}

fn parse_line<P: LineParser>(parser: &mut P, line: LineRef<'_>, out: &mut Vec<AgentEvent>) {
    match line {
        LineRef::Text(text) => parser.line(text, out),
        // Cut JSON is no event: shown as the agent's raw text, marked.
        LineRef::TooLong { head, bytes } => out.push(AgentEvent::RawLine {
            text: format!("{head}… [cut: a {bytes}-byte line, longer than the line limit]"),
        }),
    }
}

/// Decodes SSE bytes and parses every event.
pub struct SseFeed<P> {
    decoder: SseDecoder,
    parser: P,
    scratch: Vec<SseItem>,
}

impl<P: SseParser> SseFeed<P> {
    pub fn new(parser: P, max_line: usize) -> Self {
        SseFeed {
            decoder: SseDecoder::new(max_line),
            parser,
            scratch: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<AgentEvent>) {
        self.decoder.push(chunk, &mut self.scratch);
        self.drain(out);
    }

    pub fn finish(&mut self, out: &mut Vec<AgentEvent>) -> TurnResult {
        self.decoder.finish(&mut self.scratch);
        self.drain(out);
        self.parser.finish(out)
    }

    fn drain(&mut self, out: &mut Vec<AgentEvent>) {
        for item in std::mem::take(&mut self.scratch) {
            match item {
                SseItem::Event(event) => self.parser.event(&event, out),
                SseItem::TooLong { bytes } => out.push(AgentEvent::Error {
                    message: format!("skipped a {bytes}-byte line: longer than the line limit"),
                }),
            }
        }
    }
}

/// Parses a whole JSONL stream delivered in chunks of `chunk_size` bytes.
pub fn parse_lines<P: LineParser>(
    parser: P,
    bytes: &[u8],
    chunk_size: usize,
) -> (Vec<AgentEvent>, TurnResult) {
    let mut feed = LineFeed::new(parser, crate::agent::stream::lines::DEFAULT_MAX_LINE);
    let mut out = Vec::new();
    for chunk in bytes.chunks(chunk_size.max(1)) {
        feed.push(chunk, &mut out);
    }
    let result = feed.finish(&mut out);
    (out, result)
}

/// Parses a whole SSE stream delivered in chunks of `chunk_size` bytes.
pub fn parse_sse<P: SseParser>(
    parser: P,
    bytes: &[u8],
    chunk_size: usize,
) -> (Vec<AgentEvent>, TurnResult) {
    let mut feed = SseFeed::new(parser, crate::agent::stream::lines::DEFAULT_MAX_LINE);
    let mut out = Vec::new();
    for chunk in bytes.chunks(chunk_size.max(1)) {
        feed.push(chunk, &mut out);
    }
    let result = feed.finish(&mut out);
    (out, result)
}
