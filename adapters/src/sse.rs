//! Incremental Server-Sent-Events framing.
//!
//! Upstreams deliver SSE streams in arbitrary TCP-sized pieces: an event may be split across reads
//! and one read may hold many events. [`SseFramer`] buffers only the unfinished tail and hands out
//! complete events as zero-copy [`Bytes`] slices, each including its blank-line terminator, so a
//! relay can forward them byte-exactly. It understands `\n\n`, `\r\n\r\n` and `\r\r` terminators.
//!
//! It owns framing only: what an event means is for the format modules.

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into complete SSE events.
#[derive(Debug, Default)]
pub struct SseFramer {
    /// Bytes of an event whose terminator has not arrived yet.
    tail: BytesMut,
}

impl SseFramer {
    /// A framer with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk and returns the complete events it finished, in order, as one contiguous
    /// block (`None` when the chunk finished no event). The block is a zero-copy slice of `chunk`
    /// when nothing was buffered from earlier reads.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let mut data = if self.tail.is_empty() {
            chunk
        } else {
            self.tail.extend_from_slice(&chunk);
            self.tail.split().freeze()
        };
        match last_event_end(&data) {
            Some(end) if end == data.len() => Some(data),
            Some(end) => {
                let rest = data.split_off(end);
                self.tail.extend_from_slice(&rest);
                Some(data)
            }
            None => {
                self.tail.extend_from_slice(&data);
                None
            }
        }
    }

    /// Bytes left over at the end of the stream that never got a terminator.
    pub fn finish(&mut self) -> Option<Bytes> {
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
    for line in event.split(|b| *b == b'\n') {
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

/// Offset just past the last event terminator in `buf`.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    let mut end = None;
    let mut i = 0;
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
}
