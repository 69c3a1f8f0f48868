//! Splits a byte stream into lines without trusting it.
//!
//! Owns line framing for agent output: bytes arrive in arbitrary chunks (a chunk may end
//! inside a UTF-8 character or between `\r` and `\n`), lines are decoded lossily, and a
//! single line longer than the cap is dropped and reported instead of growing memory
//! without bound. Knows nothing about JSON or SSE.

/// Default cap on one line: far above any real event, small enough to stay flat.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024 * 1024;

/// One framed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its `\n` or `\r\n`, decoded lossily as UTF-8.
    Text(String),
    /// A line longer than the cap; its bytes were discarded.
    TooLong { bytes: usize },
}

/// Incremental line splitter with a per-line size cap.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
    /// Bytes of the current line already discarded because it exceeded `max_line`.
    discarded: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter::new(DEFAULT_MAX_LINE)
    }
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max_line: max_line.max(1),
            discarded: 0,
        }
    }

    /// Feeds a chunk and appends every line it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Line>) {
        self.push_with(chunk, |line| out.push(line.to_owned()));
    }

    /// Feeds a chunk and hands every line it completes to `emit`, borrowed: a line
    /// that lies whole in the chunk and is valid UTF-8 (nearly all of them) is neither
    /// copied nor allocated.
    pub fn push_with(&mut self, mut chunk: &[u8], mut emit: impl FnMut(LineRef<'_>)) {
        while let Some(pos) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = chunk.split_at(pos);
            chunk = &rest[1..];
            if self.discarded > 0 {
                emit(LineRef::TooLong {
                    bytes: self.discarded + self.buf.len() + head.len(),
                });
                self.discarded = 0;
                self.buf.clear();
                continue;
            }
            if self.buf.len() + head.len() > self.max_line {
                emit(LineRef::TooLong {
                    bytes: self.buf.len() + head.len(),
                });
                self.buf.clear();
                continue;
            }
            if self.buf.is_empty() {
                emit_text(head, &mut emit);
            } else {
                self.buf.extend_from_slice(head);
                emit_text(&self.buf, &mut emit);
                self.buf.clear();
            }
        }
        if self.discarded > 0 {
            self.discarded += chunk.len();
        } else if self.buf.len() + chunk.len() > self.max_line {
            self.discarded = self.buf.len() + chunk.len();
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Ends the stream: a final line without a newline is still a line.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        self.finish_with(|line| out.push(line.to_owned()));
    }

    /// `finish`, handing the last line to `emit`.
    pub fn finish_with(&mut self, mut emit: impl FnMut(LineRef<'_>)) {
        if self.discarded > 0 {
            emit(LineRef::TooLong {
                bytes: self.discarded,
            });
            self.discarded = 0;
        } else if !self.buf.is_empty() {
            emit_text(&self.buf, &mut emit);
            self.buf.clear();
        }
    }
}

/// A framed line lent to `push_with`'s callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineRef<'a> {
    /// A complete line, without its `\n` or `\r\n`, decoded lossily as UTF-8.
    Text(&'a str),
    /// A line longer than the cap; its bytes were discarded.
    TooLong { bytes: usize },
}

impl LineRef<'_> {
    pub fn to_owned(self) -> Line {
        match self {
            LineRef::Text(text) => Line::Text(text.to_owned()),
            LineRef::TooLong { bytes } => Line::TooLong { bytes },
        }
    }
}

/// Strips a trailing `\r` and decodes: borrowed when valid UTF-8, else a lossy copy.
fn emit_text(line: &[u8], emit: &mut impl FnMut(LineRef<'_>)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) => emit(LineRef::Text(text)),
        Err(_) => emit(LineRef::Text(&String::from_utf8_lossy(line))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<Line> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.to_string())
    }

    #[test]
    fn a_chunk_boundary_inside_a_utf8_character_keeps_the_character() {
        let bytes = "héllo\n→ok\n".as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(
                split_all(&[a, b], 1024),
                vec![text("héllo"), text("→ok")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn crlf_is_stripped_even_when_split_between_chunks() {
        assert_eq!(
            split_all(&[b"one\r", b"\ntwo\r\n"], 1024),
            vec![text("one"), text("two")]
        );
    }

    #[test]
    fn a_final_line_without_newline_is_kept() {
        assert_eq!(split_all(&[b"a\nb"], 1024), vec![text("a"), text("b")]);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        assert_eq!(split_all(&[b"a\xffb\n"], 1024), vec![text("a\u{fffd}b")]);
    }

    #[test]
    fn an_overlong_line_is_reported_and_the_next_line_survives() {
        let long = vec![b'x'; 100];
        let out = split_all(&[&long[..40], &long[40..], b"\nnext\n"], 64);
        assert_eq!(out, vec![Line::TooLong { bytes: 100 }, text("next")]);
        let out = split_all(&[&long, b"\n", b"y"], 64);
        assert_eq!(out, vec![Line::TooLong { bytes: 100 }, text("y")]);
    }

    /// Whole valid lines are lent straight from the chunk; a line that spans chunks
    /// comes from the splitter's buffer.
    #[test]
    fn whole_lines_are_borrowed_from_the_chunk() {
        let mut splitter = LineSplitter::new(1024);
        let chunk: &[u8] = b"one\r\ntwo\nthr";
        let mut seen = Vec::new();
        splitter.push_with(chunk, |line| {
            let LineRef::Text(text) = line else {
                panic!("{line:?}")
            };
            assert!(chunk.as_ptr_range().contains(&text.as_ptr()), "{text}");
            seen.push(text.to_owned());
        });
        splitter.push_with(b"ee\n", |line| seen.push(format!("{line:?}")));
        assert_eq!(seen, ["one", "two", "Text(\"three\")"]);
    }

    #[test]
    fn a_ten_megabyte_line_passes_under_the_default_cap() {
        let mut line = vec![b'a'; 10 * 1024 * 1024];
        line.push(b'\n');
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in line.chunks(8192) {
            splitter.push(chunk, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Line::Text(t) if t.len() == 10 * 1024 * 1024));
    }
}
