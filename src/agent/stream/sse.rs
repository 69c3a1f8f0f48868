//! A minimal, incremental Server-Sent Events decoder.
//!
//! Owns SSE framing (`event:`, `data:`, blank-line dispatch, comments, `\r\n`) on top
//! of `LineSplitter`, so chunk boundaries anywhere are harmless. Knows nothing about
//! what the events mean; the per-API parsers do.

use crate::agent::stream::lines::{Line, LineSplitter};

/// One dispatched SSE event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// What the decoder produced from a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A line over the size cap was dropped.
    TooLong {
        bytes: usize,
    },
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    lines: LineSplitter,
    event: Option<String>,
    data: Option<String>,
    scratch: Vec<Line>,
}

impl SseDecoder {
    pub fn new(max_line: usize) -> Self {
        SseDecoder {
            lines: LineSplitter::new(max_line),
            ..SseDecoder::default()
        }
    }

    /// Feeds a chunk; appends every event it completes.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseItem>) {
        let mut lines = std::mem::take(&mut self.scratch);
        self.lines.push(chunk, &mut lines);
        for line in lines.drain(..) {
            self.line(line, out);
        }
        self.scratch = lines;
    }

    /// Ends the stream. A trailing event without its blank line is dispatched too:
    /// servers that close right after the last `data:` line are common.
    pub fn finish(&mut self, out: &mut Vec<SseItem>) {
        let mut lines = Vec::new();
        self.lines.finish(&mut lines);
        for line in lines {
            self.line(line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: Line, out: &mut Vec<SseItem>) {
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong { bytes, .. } => {
                out.push(SseItem::TooLong { bytes });
                return;
            }
        };
        if text.is_empty() {
            self.dispatch(out);
            return;
        }
        if text.starts_with(':') {
            return;
        }
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_str(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            out.push(SseItem::Event(SseEvent { event, data }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut decoder = SseDecoder::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        })
    }

    #[test]
    fn events_survive_any_chunking_and_crlf() {
        let stream = "event: a\r\ndata: {\"t\":\"é\"}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\n"
            .as_bytes();
        let expected = vec![ev(Some("a"), "{\"t\":\"é\"}"), ev(None, "x\ny")];
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode(&[a, b]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_trailing_event_without_blank_line_is_dispatched() {
        assert_eq!(decode(&[b"data: [DONE]"]), vec![ev(None, "[DONE]")]);
    }
}
