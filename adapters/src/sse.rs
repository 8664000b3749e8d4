//! Incremental Server-Sent-Events framing.
//!
//! Upstreams deliver SSE streams in arbitrary TCP-sized pieces: an event may be split across reads
//! and one read may hold many events. [`SseFramer`] buffers only the unfinished tail and hands out
//! complete events as zero-copy [`Bytes`] slices, each including its blank-line terminator, so a
//! relay can forward them byte-exactly. It understands `\n\n`, `\r\n\r\n` and `\r\r` terminators.
//!
//! Framing is O(total bytes): each chunk is scanned once (plus the last three bytes before it, where
//! a terminator may have started) and copied at most once, into the tail, only when it ends inside
//! an event. An event that grows past [`MAX_EVENT_BYTES`] without its terminator is dropped and the
//! framer stops taking input ([`SseFramer::over_limit`]), so it never holds more than that plus
//! one chunk.
//!
//! It owns framing only: what an event means is for the format modules.

use bytes::{Bytes, BytesMut};

/// Largest single stream event (or NDJSON line) any stream reader holds: a provider's events are
/// kilobytes, so one this big is a broken upstream, and holding more would let it take memory
/// without bound.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Longest terminator (`\r\n\r\n`) minus one: how far before the scanned end a terminator that
/// was still incomplete may have started.
const TERMINATOR_OVERLAP: usize = 3;

/// Splits a byte stream into complete SSE events.
#[derive(Debug, Default)]
pub struct SseFramer {
    /// Bytes of an event whose terminator has not arrived yet.
    tail: BytesMut,
    /// How much of `tail` was already scanned without finding a terminator (its last
    /// [`TERMINATOR_OVERLAP`] bytes are scanned again, with the bytes that follow them).
    scanned: usize,
    /// An event grew past [`MAX_EVENT_BYTES`]: its bytes were dropped and input is ignored.
    overflowed: bool,
}

impl SseFramer {
    /// A framer with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk and returns the complete events it finished, in order, as one contiguous
    /// block (`None` when the chunk finished no event). The block is a zero-copy slice of `chunk`
    /// when nothing was buffered from earlier reads, and of the tail otherwise. Once an event
    /// went over [`MAX_EVENT_BYTES`], nothing more comes out (see [`SseFramer::over_limit`]).
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.overflowed {
            return None;
        }
        let block = self.frame(chunk);
        if self.tail.len() > MAX_EVENT_BYTES {
            self.overflowed = true;
            self.tail = BytesMut::new();
            self.scanned = 0;
        }
        block
    }

    /// [`SseFramer::push`] without the limit.
    fn frame(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.tail.is_empty() {
            let end = last_event_end(&chunk, 0);
            let rest = match end {
                Some(e) if e == chunk.len() => return Some(chunk),
                Some(e) => &chunk[e..],
                None => &chunk[..],
            };
            self.tail.extend_from_slice(rest);
            self.scanned = self.tail.len();
            return end.map(|e| chunk.slice(..e));
        }
        // Grow by at least the tail's size, so a long event is copied O(1) times per byte.
        let free = self.tail.capacity() - self.tail.len();
        if free < chunk.len() {
            self.tail.reserve(chunk.len().max(self.tail.len()));
        }
        self.tail.extend_from_slice(&chunk);
        let from = self.scanned.saturating_sub(TERMINATOR_OVERLAP);
        match last_event_end(&self.tail, from) {
            Some(end) => {
                let block = self.tail.split_to(end).freeze();
                self.scanned = self.tail.len();
                Some(block)
            }
            None => {
                self.scanned = self.tail.len();
                None
            }
        }
    }

    /// Bytes left over at the end of the stream that never got a terminator.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        if self.tail.is_empty() {
            None
        } else {
            Some(self.tail.split().freeze())
        }
    }

    /// Number of bytes waiting for their event's terminator.
    pub fn buffered(&self) -> usize {
        self.tail.len()
    }

    /// Whether an event grew past [`MAX_EVENT_BYTES`] without its terminator (the stream is
    /// broken: its bytes were dropped and later input is ignored).
    pub fn over_limit(&self) -> bool {
        self.overflowed
    }
}

/// Iterates over the complete events of a block returned by [`SseFramer::push`]; each item is a
/// zero-copy slice including its terminator.
pub fn events(block: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if start >= block.len() {
            return None;
        }
        let rest = &block[start..];
        let end = match first_event_end(rest) {
            Some(e) => start + e,
            None => block.len(),
        };
        let ev = block.slice(start..end);
        start = end;
        Some(ev)
    })
}

/// The payload of an event's `data:` lines, joined with `\n` as the SSE spec says. Borrowed when
/// the event has a single data line (the common case).
pub fn event_data(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut found: Option<std::borrow::Cow<'_, [u8]>> = None;
    let mut rest = event;
    // Lines found with memchr (an event's lines are long JSON; a byte-wise split was the
    // stream path's most expensive function).
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(value) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        found = Some(match found {
            None => std::borrow::Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                std::borrow::Cow::Owned(joined)
            }
        });
    }
    found
}

/// Offset just past the first event terminator in `buf`.
fn first_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let p = i + p;
        if let Some(len) = terminator_at(buf, p) {
            return Some(p + len);
        }
        i = p + 1;
    }
    None
}

/// Offset just past the last event terminator in `buf`, scanning from `from` (no terminator
/// ends before it).
fn last_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut end = None;
    let mut i = from;
    while let Some(e) = first_event_end(&buf[i..]) {
        i += e;
        end = Some(i);
    }
    end
}

/// Length of a blank-line terminator starting at `p` (which holds `\n` or `\r`).
fn terminator_at(buf: &[u8], p: usize) -> Option<usize> {
    let rest = &buf[p..];
    if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
        Some(2)
    } else if rest.starts_with(b"\r\n\r\n") {
        Some(4)
    } else if rest.starts_with(b"\n\r\n") {
        Some(3)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &mut SseFramer, chunks: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for c in chunks {
            if let Some(block) = f.push(Bytes::copy_from_slice(c.as_bytes())) {
                for ev in events(&block) {
                    out.push(String::from_utf8(ev.to_vec()).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn whole_events_pass_through_without_copy() {
        let mut f = SseFramer::new();
        let chunk = Bytes::from_static(b"data: a\n\ndata: b\n\n");
        let block = f.push(chunk.clone()).unwrap();
        assert_eq!(block.as_ptr(), chunk.as_ptr());
        assert_eq!(events(&block).count(), 2);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn split_events_are_reassembled() {
        let mut f = SseFramer::new();
        let evs = collect(
            &mut f,
            &["data: one\n", "\ndata: tw", "o\n\ndata: three\n\n"],
        );
        assert_eq!(
            evs,
            vec!["data: one\n\n", "data: two\n\n", "data: three\n\n"]
        );
    }

    #[test]
    fn crlf_terminators() {
        let mut f = SseFramer::new();
        let evs = collect(&mut f, &["data: x\r\n\r", "\ndata: y\r\n\r\n"]);
        assert_eq!(evs, vec!["data: x\r\n\r\n", "data: y\r\n\r\n"]);
    }

    #[test]
    fn unterminated_tail_is_returned_by_finish() {
        let mut f = SseFramer::new();
        assert!(f.push(Bytes::from_static(b"data: partial")).is_none());
        assert_eq!(f.finish().unwrap(), Bytes::from_static(b"data: partial"));
        assert!(f.finish().is_none());
    }

    #[test]
    fn data_lines_are_joined() {
        assert_eq!(
            event_data(b"data: {\"a\":1}\n\n").unwrap().as_ref(),
            b"{\"a\":1}"
        );
        assert_eq!(
            event_data(b"event: x\ndata: a\ndata: b\n\n")
                .unwrap()
                .as_ref(),
            b"a\nb"
        );
        assert_eq!(
            event_data(b"data:[DONE]\r\n\r\n").unwrap().as_ref(),
            b"[DONE]"
        );
        assert!(event_data(b": comment\n\n").is_none());
    }

    #[test]
    fn byte_by_byte_feeding_matches_whole() {
        let stream = "data: {\"x\":1}\n\ndata: {\"y\":2}\r\n\r\ndata: [DONE]\n\n";
        let mut f = SseFramer::new();
        let pieces: Vec<String> = stream.chars().map(|c| c.to_string()).collect();
        let refs: Vec<&str> = pieces.iter().map(|s| s.as_str()).collect();
        let evs = collect(&mut f, &refs);
        assert_eq!(evs.concat(), stream);
        assert_eq!(evs.len(), 3);
    }

    /// Every complete event of `stream`, fed as `chunks`, plus the unterminated tail.
    fn frame_all(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut f = SseFramer::new();
        let mut out = Vec::new();
        for c in chunks {
            if let Some(block) = f.push(Bytes::copy_from_slice(c)) {
                out.extend(events(&block).map(|e| e.to_vec()));
            }
        }
        (out, f.finish().map(|t| t.to_vec()))
    }

    const MIXED: &[u8] =
        b"data: a\n\nevent: x\r\ndata: b\r\n\r\ndata: c\r\rdata: d\n\r\ndata: e\n\ndata: tail";

    #[test]
    fn an_event_split_at_every_position_frames_as_a_whole() {
        let whole = frame_all(&[MIXED]);
        assert_eq!(whole.0.len(), 5);
        assert_eq!(whole.1.as_deref(), Some(&b"data: tail"[..]));
        for i in 0..=MIXED.len() {
            assert_eq!(
                frame_all(&[&MIXED[..i], &MIXED[i..]]),
                whole,
                "split at {i}"
            );
            for j in i..=MIXED.len() {
                let three = frame_all(&[&MIXED[..i], &MIXED[i..j], &MIXED[j..]]);
                assert_eq!(three, whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn crlf_terminators_split_inside_the_terminator() {
        for chunks in [
            &[&b"data: x\r"[..], b"\n", b"\r", b"\ndata: y\r\n\r\n"][..],
            &[b"data: x\r\n", b"\r\n", b"data: y\r", b"\n\r\n"],
            &[
                b"data: x",
                b"\r",
                b"\n",
                b"\r",
                b"\n",
                b"data: y\r\n\r",
                b"\n",
            ],
        ] {
            let (evs, tail) = frame_all(chunks);
            assert_eq!(
                evs,
                vec![b"data: x\r\n\r\n".to_vec(), b"data: y\r\n\r\n".to_vec()]
            );
            assert_eq!(tail, None);
        }
    }

    #[test]
    fn many_tiny_chunks_of_a_long_event_are_buffered_once() {
        let mut f = SseFramer::new();
        let piece = Bytes::from_static(b"xxxxxxxxxxxxxxxx");
        assert!(f.push(Bytes::from_static(b"data: ")).is_none());
        for _ in 0..100_000 {
            assert!(f.push(piece.clone()).is_none());
        }
        assert_eq!(f.buffered(), 6 + 16 * 100_000);
        // Only the bytes after the last scan are looked at again: the terminator is found at
        // once, and the event comes out whole.
        let block = f.push(Bytes::from_static(b"\n\ndata: next")).unwrap();
        assert_eq!(block.len(), 6 + 16 * 100_000 + 2);
        assert!(block.ends_with(b"x\n\n"));
        assert_eq!(events(&block).count(), 1);
        assert_eq!(f.buffered(), b"data: next".len());
        assert!(!f.over_limit());
    }

    #[test]
    fn an_event_over_the_limit_is_reported_and_cleared() {
        let mut f = SseFramer::new();
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        for _ in 0..16 {
            assert!(f.push(chunk.clone()).is_none());
        }
        assert!(!f.over_limit());
        assert!(f.push(Bytes::from_static(b"x")).is_none());
        assert!(f.over_limit());
        assert_eq!(f.buffered(), 0);
        assert!(f.push(Bytes::from_static(b"\n\ndata: x\n\n")).is_none());
        assert!(f.finish().is_none());
    }

    #[test]
    fn a_block_after_a_buffered_tail_is_a_slice_of_the_tail() {
        let mut f = SseFramer::new();
        assert!(f.push(Bytes::from_static(b"data: a")).is_none());
        let block = f
            .push(Bytes::from_static(b"\n\ndata: b\n\ndata: c"))
            .unwrap();
        assert_eq!(&block[..], b"data: a\n\ndata: b\n\n");
        assert_eq!(f.finish().unwrap(), Bytes::from_static(b"data: c"));
    }
}
