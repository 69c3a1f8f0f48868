//! Splits a byte stream into lines without trusting it.
//!
//! Owns line framing for agent output: bytes arrive in arbitrary chunks (a chunk may end
//! inside a UTF-8 character or between `\r` and `\n`), lines are decoded lossily, and a
//! single line longer than the cap is cut: its first bytes are kept to show, the rest
//! is counted and dropped, so memory stays at the cap however long the line. Knows
//! nothing about JSON or SSE.

/// Default cap on one line: above any real event (a 10 MiB command output fits), low
/// enough that a runaway line costs at most this much memory while it is read.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// Bytes kept from the start of a line longer than the cap, to show what it was.
pub const CUT_LINE_HEAD: usize = 4 * 1024;

/// One framed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its `\n` or `\r\n`, decoded lossily as UTF-8.
    Text(String),
    /// A line longer than the cap: its first `CUT_LINE_HEAD` bytes (decoded lossily)
    /// and its whole length; the rest was discarded.
    TooLong { head: String, bytes: usize },
}

/// Incremental line splitter with a per-line size cap.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
    /// Bytes of the current line already discarded because it exceeded `max_line`
    /// (then `buf` holds only the line's head).
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
                self.discarded += head.len();
                self.emit_cut(&mut emit);
                continue;
            }
            if self.buf.len() + head.len() > self.max_line {
                self.start_cut(head);
                self.emit_cut(&mut emit);
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
            self.start_cut(chunk);
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The current line went over the cap with `more`: keep its head, count the rest,
    /// and give the buffer's memory back.
    fn start_cut(&mut self, more: &[u8]) {
        let total = self.buf.len() + more.len();
        let keep = CUT_LINE_HEAD.min(self.max_line);
        if self.buf.len() < keep {
            let take = (keep - self.buf.len()).min(more.len());
            self.buf.extend_from_slice(&more[..take]);
        }
        self.buf.truncate(keep);
        self.buf.shrink_to(keep);
        self.discarded = total - self.buf.len();
    }

    /// Hands out the cut line (its head and length) and resets for the next line.
    fn emit_cut(&mut self, emit: &mut impl FnMut(LineRef<'_>)) {
        let bytes = self.buf.len() + self.discarded;
        emit(LineRef::TooLong {
            head: &String::from_utf8_lossy(&self.buf),
            bytes,
        });
        self.discarded = 0;
        self.buf.clear();
    }

    /// Ends the stream: a final line without a newline is still a line.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        self.finish_with(|line| out.push(line.to_owned()));
    }

    /// `finish`, handing the last line to `emit`.
    pub fn finish_with(&mut self, mut emit: impl FnMut(LineRef<'_>)) {
        if self.discarded > 0 {
            self.emit_cut(&mut emit);
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
    /// A line longer than the cap: its head and its whole length.
    TooLong { head: &'a str, bytes: usize },
}

impl LineRef<'_> {
    pub fn to_owned(self) -> Line {
        match self {
            LineRef::Text(text) => Line::Text(text.to_owned()),
            LineRef::TooLong { head, bytes } => Line::TooLong {
                head: head.to_owned(),
                bytes,
            },
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
    fn an_overlong_line_is_cut_to_its_head_and_the_next_line_survives() {
        let long: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        let head = String::from_utf8(long[..64].to_vec()).unwrap();
        let cut = |bytes| Line::TooLong {
            head: head.clone(),
            bytes,
        };
        let out = split_all(&[&long[..40], &long[40..], b"\nnext\n"], 64);
        assert_eq!(out, vec![cut(100), text("next")]);
        let out = split_all(&[&long, b"\n", b"y"], 64);
        assert_eq!(out, vec![cut(100), text("y")]);
        // Cut without a final newline, and cut inside one chunk.
        let out = split_all(&[&long[..70], &long[70..]], 64);
        assert_eq!(out, vec![cut(100)]);
        let mut one = long.clone();
        one.extend_from_slice(b"\nz\n");
        assert_eq!(split_all(&[&one], 64), vec![cut(100), text("z")]);
    }

    /// However long the line, the splitter holds at most the cap, then only the head.
    #[test]
    fn a_line_far_over_the_cap_keeps_memory_at_the_cap() {
        let max = 1024 * 1024;
        let mut splitter = LineSplitter::new(max);
        let chunk = vec![b'{'; 64 * 1024];
        let mut out = Vec::new();
        for _ in 0..(65 * 16) {
            splitter.push(&chunk, &mut out);
            assert!(
                splitter.buf.capacity() <= max,
                "{}",
                splitter.buf.capacity()
            );
        }
        assert!(splitter.buf.capacity() <= CUT_LINE_HEAD);
        splitter.push(b"\n", &mut out);
        let [Line::TooLong { head, bytes }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(*bytes, 65 * 1024 * 1024);
        assert_eq!(head.len(), CUT_LINE_HEAD);
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
