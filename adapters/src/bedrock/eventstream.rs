//! AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), as ConverseStream
//! sends it: each message is a 12-byte prelude (total length, headers length, CRC32 of those 8
//! bytes), the headers, the payload, and a CRC32 of everything before it. [`Framer`] cuts
//! messages out of arbitrary chunks as they arrive (never waiting for the end of the stream),
//! checking both CRCs; a frame that fails a check or its limits ends the stream with an error
//! (the byte boundaries after it cannot be trusted). Pure: no I/O.

/// The largest message accepted (AWS's limit is 16 MiB, the same as the SSE event cap).
pub const MAX_MESSAGE_BYTES: usize = crate::sse::MAX_EVENT_BYTES;
const PRELUDE: usize = 12;
/// Prelude plus the trailing message CRC.
const MIN_MESSAGE: usize = PRELUDE + 4;

/// One decoded message: the headers that matter here, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `:message-type`: `event`, `exception` or `error`.
    pub message_type: Option<String>,
    /// `:event-type` (events) or `:exception-type` (exceptions).
    pub event_type: Option<String>,
    /// `:error-code` / `:error-message` (message type `error`).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub payload: Vec<u8>,
}

/// Why the framing broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream prelude CRC mismatch")]
    PreludeCrc,
    #[error("event-stream message CRC mismatch")]
    MessageCrc,
    #[error("event-stream message length {0} out of bounds")]
    Length(usize),
    #[error("malformed event-stream headers")]
    Headers,
}

/// Incremental framer: push chunks, take whole messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    failed: bool,
}

impl Framer {
    pub fn new() -> Self {
        Framer::default()
    }

    /// Appends `chunk` and returns every message it completes, in order. After an error nothing
    /// more comes out.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Result<Message, FrameError>>) {
        if self.failed {
            return;
        }
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(result) = self.next_message(&mut start) {
            let failed = result.is_err();
            out.push(result);
            if failed {
                self.failed = true;
                self.buf = Vec::new();
                return;
            }
        }
        self.buf.drain(..start);
    }

    /// Bytes held that do not yet make a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn next_message(&self, start: &mut usize) -> Option<Result<Message, FrameError>> {
        self.next_message_in(&self.buf, start)
    }

    fn next_message_in(
        &self,
        buf: &[u8],
        start: &mut usize,
    ) -> Option<Result<Message, FrameError>> {
        let rest = &buf[*start..];
        if rest.len() < PRELUDE {
            return None;
        }
        let total = be32(&rest[0..4]) as usize;
        let headers_len = be32(&rest[4..8]) as usize;
        if crc32fast::hash(&rest[0..8]) != be32(&rest[8..12]) {
            return Some(Err(FrameError::PreludeCrc));
        }
        if !(MIN_MESSAGE..=MAX_MESSAGE_BYTES).contains(&total) || headers_len > total - MIN_MESSAGE
        {
            return Some(Err(FrameError::Length(total)));
        }
        if rest.len() < total {
            return None;
        }
        let frame = &rest[..total];
        *start += total;
        if crc32fast::hash(&frame[..total - 4]) != be32(&frame[total - 4..]) {
            return Some(Err(FrameError::MessageCrc));
        }
        let headers = &frame[PRELUDE..PRELUDE + headers_len];
        let payload = &frame[PRELUDE + headers_len..total - 4];
        Some(parse_headers(headers).map(|mut m| {
            m.payload = payload.to_vec();
            m
        }))
    }
}

/// Whether a stream's first bytes start a plausible message: an empty chunk or a short one is
/// given the benefit of the doubt; 12 bytes or more must be a prelude whose CRC and lengths
/// check out.
pub fn check_start(chunk: &[u8]) -> Result<(), FrameError> {
    if chunk.len() < PRELUDE {
        return Ok(());
    }
    let f = Framer::new();
    let mut start = 0;
    // Only the prelude checks run: a longer message simply is not complete yet.
    match f.next_message_in(chunk, &mut start) {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads the header block, keeping the string headers this module names.
fn parse_headers(mut h: &[u8]) -> Result<Message, FrameError> {
    let mut m = Message {
        message_type: None,
        event_type: None,
        error_code: None,
        error_message: None,
        payload: Vec::new(),
    };
    let take = |h: &mut &[u8], n: usize| -> Result<Vec<u8>, FrameError> {
        if h.len() < n {
            return Err(FrameError::Headers);
        }
        let (a, b) = h.split_at(n);
        *h = b;
        Ok(a.to_vec())
    };
    while !h.is_empty() {
        let name_len = take(&mut h, 1)?[0] as usize;
        let name = take(&mut h, name_len)?;
        let value_type = take(&mut h, 1)?[0];
        let fixed = match value_type {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            _ => return Err(FrameError::Headers),
        };
        let value = match fixed {
            Some(n) => take(&mut h, n)?,
            None => {
                let len = take(&mut h, 2)?;
                take(&mut h, u16::from_be_bytes([len[0], len[1]]) as usize)?
            }
        };
        if value_type != 7 {
            continue;
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        match name.as_slice() {
            b":message-type" => m.message_type = Some(value),
            b":event-type" | b":exception-type" => m.event_type = Some(value),
            b":error-code" => m.error_code = Some(value),
            b":error-message" => m.error_message = Some(value),
            _ => {}
        }
    }
    Ok(m)
}

/// Encodes one message with string headers (for mocks, tests and the fuzz corpus).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hb = Vec::new();
    for (name, value) in headers {
        hb.push(name.len() as u8);
        hb.extend_from_slice(name.as_bytes());
        hb.push(7);
        hb.extend_from_slice(&(value.len() as u16).to_be_bytes());
        hb.extend_from_slice(value.as_bytes());
    }
    let total = (MIN_MESSAGE + hb.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(hb.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hb);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An event message as ConverseStream sends it.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example message: `{'foo':'bar'}` with no headers
    /// (awslabs/aws-c-event-stream test vectors, "payload_no_headers").
    const AWS_NO_HEADERS: [u8; 29] = [
        0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b, 0x27, 0x66,
        0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39, 0x36,
    ];

    #[test]
    fn decodes_aws_vector_byte_by_byte() {
        let mut f = Framer::new();
        let mut out = Vec::new();
        for b in AWS_NO_HEADERS {
            f.push(&[b], &mut out);
        }
        assert_eq!(out.len(), 1);
        let m = out.pop().unwrap().unwrap();
        assert_eq!(m.payload, b"{'foo':'bar'}");
        assert_eq!(encode(&[], b"{'foo':'bar'}"), AWS_NO_HEADERS);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn round_trips_events_split_anywhere() {
        let mut all = encode_event("messageStart", br#"{"role":"assistant"}"#);
        all.extend(encode_event(
            "contentBlockDelta",
            br#"{"delta":{"text":"Hi"}}"#,
        ));
        for split in 0..all.len() {
            let mut f = Framer::new();
            let mut out = Vec::new();
            f.push(&all[..split], &mut out);
            f.push(&all[split..], &mut out);
            let events: Vec<_> = out.into_iter().map(|m| m.unwrap()).collect();
            assert_eq!(events.len(), 2);
            assert_eq!(events[1].event_type.as_deref(), Some("contentBlockDelta"));
            assert_eq!(events[1].message_type.as_deref(), Some("event"));
        }
    }

    #[test]
    fn corrupt_frames_are_refused() {
        let good = encode_event("messageStop", br#"{"stopReason":"end_turn"}"#);
        let mut bad = good.clone();
        bad[20] ^= 1;
        let mut out = Vec::new();
        Framer::new().push(&bad, &mut out);
        assert_eq!(out, vec![Err(FrameError::MessageCrc)]);
        let mut bad = good.clone();
        bad[1] ^= 1;
        out.clear();
        Framer::new().push(&bad, &mut out);
        assert_eq!(out, vec![Err(FrameError::PreludeCrc)]);
        // A valid prelude claiming more than the limit is refused before buffering it.
        let mut huge = ((MAX_MESSAGE_BYTES + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&huge);
        huge.extend_from_slice(&crc.to_be_bytes());
        out.clear();
        Framer::new().push(&huge, &mut out);
        assert!(matches!(out[..], [Err(FrameError::Length(_))]));
        assert_eq!(
            check_start(&huge),
            Err(FrameError::Length(MAX_MESSAGE_BYTES + 1))
        );
        assert_eq!(check_start(&good[..12]), Ok(()));
        assert_eq!(
            check_start(b"data: {\"x\":1}\n\n"),
            Err(FrameError::PreludeCrc)
        );
    }
}
