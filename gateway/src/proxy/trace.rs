//! W3C Trace Context (`traceparent`): continue the caller's trace or start one, and give this hop
//! its own span id so the upstream call is a child of the gateway's span.

/// Appends `v` as 16 lowercase hex digits. By hand because `format!("{v:016x}")` goes through
/// the formatting machinery (~300 instructions); ids are made on every request.
pub fn push_hex16(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Every byte is an ASCII hex digit, so the check cannot fail; it costs ~20 instructions
    // where pushing 16 chars one by one cost ~400.
    if let Ok(hex) = std::str::from_utf8(&buf) {
        out.push_str(hex);
    }
}

/// The trace this request belongs to and the gateway's span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-{trace id}-{this hop's span}-{flags}`: the `traceparent` sent upstream, written once;
    /// the ids are read out of it (one string a request instead of four).
    traceparent: String,
    /// The caller's span (16 hex), when the caller sent a valid `traceparent`.
    pub parent_id: Option<String>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// Continues a valid version-00 `traceparent`, or starts a new trace. `random` supplies
    /// 64-bit random values.
    pub fn from_header(header: Option<&[u8]>, mut random: impl FnMut() -> u64) -> TraceContext {
        let span = random() | 1;
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        if let Some((trace_id, parent_id, flags)) = header
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(parse)
        {
            traceparent.push_str(trace_id);
            traceparent.push('-');
            push_hex16(&mut traceparent, span);
            traceparent.push('-');
            traceparent.push_str(flags);
            return TraceContext {
                traceparent,
                parent_id: Some(parent_id.to_string()),
            };
        }
        push_hex16(&mut traceparent, random());
        push_hex16(&mut traceparent, random() | 1);
        traceparent.push('-');
        push_hex16(&mut traceparent, span);
        traceparent.push_str("-01");
        TraceContext {
            traceparent,
            parent_id: None,
        }
    }

    /// A context from its parts (tests and span export).
    pub fn of(trace_id: &str, parent_id: Option<&str>, span_id: &str, flags: &str) -> Self {
        TraceContext {
            traceparent: format!("00-{trace_id}-{span_id}-{flags}"),
            parent_id: parent_id.map(String::from),
        }
    }

    /// 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or("")
    }

    /// This hop's span (16 hex), sent upstream as the parent.
    pub fn span_id(&self) -> &str {
        self.traceparent.get(36..52).unwrap_or("")
    }

    /// Trace flags (2 hex), `01` (sampled) for new traces.
    pub fn flags(&self) -> &str {
        self.traceparent.get(53..).unwrap_or("")
    }

    /// The `traceparent` to send upstream: same trace, this hop as parent.
    pub fn upstream_header(&self) -> &str {
        &self.traceparent
    }
}

/// `(trace_id, parent_id, flags)` of a valid version-00 header; all-zero ids are invalid.
fn parse(h: &str) -> Option<(&str, &str, &str)> {
    let mut parts = h.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    if !is_hex(trace, 32) || !is_hex(parent, 16) || !is_hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace, parent, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex16(v: u64) -> String {
        let mut s = String::with_capacity(16);
        push_hex16(&mut s, v);
        s
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0x1234u64;
        move || {
            n += 1;
            n
        }
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        for v in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(hex16(v), format!("{v:016x}"));
        }
    }

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let h = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::from_header(Some(h), counter());
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.flags(), "01");
        assert!(is_hex(t.span_id(), 16));
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        let up = t.upstream_header();
        assert!(up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!up.contains("00f067aa0ba902b7"));
        assert!(up.ends_with("-01"));
    }

    #[test]
    fn starts_a_trace_when_absent_or_invalid() {
        for h in [
            None,
            Some(&b"garbage"[..]),
            Some(&b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..]),
            Some(&b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..]),
            Some(&b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..]),
        ] {
            let t = TraceContext::from_header(h, counter());
            assert!(t.parent_id.is_none());
            assert!(is_hex(t.trace_id(), 32));
            assert!(is_hex(t.span_id(), 16));
            assert_eq!(t.flags(), "01");
            assert!(parse(t.upstream_header()).is_some());
        }
    }
}
