//! `gen_ai.response.finish_reasons` for the trace: read from the answer's bytes as they are
//! written to the caller (whole bodies and stream events alike, in the caller's format), only
//! for a request whose trace will be exported — others carry `None` and nothing is scanned. It
//! finds `"finish_reason"` (OpenAI chat and completions, their chunks) and `"stop_reason"`
//! (Anthropic messages and `message_delta`) whatever the spacing, and keeps each distinct
//! string value. Owns that scan only; the span is built in [`crate::ops::otlp`].

use crate::proxy::context::RequestCtx;
use memchr::memmem;

/// At most this many distinct reasons are kept (one per choice, `n` is bounded elsewhere).
const MAX_REASONS: usize = 16;
const KEYS: [&[u8]; 2] = [b"\"finish_reason\"", b"\"stop_reason\""];

/// Notes the finish reasons in `bytes` when the request's trace wants them.
pub fn note(ctx: &mut RequestCtx, bytes: &[u8]) {
    let Some(reasons) = ctx.finish_reasons.as_mut() else {
        return;
    };
    scan(bytes, reasons);
}

/// Whether `bytes` hold a `"finish_reason"` whose value is `reason`.
pub fn has(bytes: &[u8], reason: &str) -> bool {
    find(bytes, reason).is_some()
}

/// Where the first `"finish_reason"` whose value is `reason` starts in `bytes`.
pub fn find(bytes: &[u8], reason: &str) -> Option<usize> {
    memmem::find_iter(bytes, KEYS[0])
        .find(|&at| string_value(&bytes[at + KEYS[0].len()..]) == Some(reason.as_bytes()))
}

fn scan(bytes: &[u8], reasons: &mut Vec<String>) {
    for key in KEYS {
        for at in memmem::find_iter(bytes, key) {
            let Some(value) = string_value(&bytes[at + key.len()..]) else {
                continue;
            };
            if reasons.len() < MAX_REASONS && !reasons.iter().any(|r| r.as_bytes() == value) {
                reasons.push(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
}

/// The string after `: ` (a JSON string without escapes); `None` for `null` or anything else.
fn string_value(rest: &[u8]) -> Option<&[u8]> {
    let skip = |s: &[u8]| {
        s.iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(s.len())
    };
    let rest = &rest[skip(rest)..];
    let rest = rest.strip_prefix(b":")?;
    let rest = &rest[skip(rest)..];
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest.get(end) == Some(&b'"') && end > 0 && end <= 64).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::scan;

    #[test]
    fn reasons_are_read_from_either_format_whatever_the_spacing() {
        let mut r = Vec::new();
        scan(
            br#"{"choices":[{"index":0,"finish_reason": "stop"},{"index":1,"finish_reason":"length"}]}"#,
            &mut r,
        );
        scan(
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":null}]}\n\n",
            &mut r,
        );
        scan(
            br#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
            &mut r,
        );
        scan(br#"{"finish_reason":"stop"}"#, &mut r);
        assert_eq!(r, ["stop", "length", "end_turn"]);
    }
}
