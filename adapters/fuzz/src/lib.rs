//! Shared checks for the fuzz targets in `fuzz_targets/` (one target per decoder and dialect).
//!
//! Every target feeds arbitrary bytes to one decoder of `switchyard-adapters` and asserts that it
//! does not panic and that what it returns keeps the documented invariants (the stream event order
//! of `canonical::StreamEvent`, encodable responses and errors, encodable requests).

use switchyard_adapters::canonical::{Dialect, EncodeOptions, ProviderError, StreamEvent};
use switchyard_adapters::capabilities::prune;
use switchyard_adapters::providers::{self, Caller};

/// Splits `body` into chunks at positions derived from the two control bytes: `count` (how many
/// cut points; 255 means one byte per chunk) and `seed` (where they fall).
pub fn chunks(count: u8, seed: u8, body: &[u8]) -> Vec<&[u8]> {
    if body.is_empty() {
        return vec![body];
    }
    if count == 255 {
        return body.chunks(1).collect();
    }
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut cuts: Vec<usize> = (0..count % 32)
        .map(|_| {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize % (body.len() + 1)
        })
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut prev = 0;
    for c in cuts {
        out.push(&body[prev..c]);
        prev = c;
    }
    out.push(&body[prev..]);
    out
}

/// Asserts the order contract of [`StreamEvent`]: at most one `Start`, first; `ToolCallStart`
/// indexes counted from 0 and announced before their deltas; non-empty deltas; at most one
/// `Finish`; exactly one terminal `End` / `Error`, last.
pub fn assert_event_order(events: &[StreamEvent]) {
    let starts = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Start { .. }))
        .count();
    assert!(starts <= 1, "more than one Start: {events:?}");
    if starts == 1 {
        assert!(
            matches!(events[0], StreamEvent::Start { .. }),
            "Start is not the first event: {events:?}"
        );
    }
    let terminal = |e: &StreamEvent| matches!(e, StreamEvent::End | StreamEvent::Error(_));
    assert_eq!(
        events.iter().filter(|e| terminal(e)).count(),
        1,
        "not exactly one terminal event: {events:?}"
    );
    assert!(
        events.last().is_some_and(terminal),
        "the terminal event is not last: {events:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Finish(_)))
            .count()
            <= 1,
        "more than one Finish: {events:?}"
    );
    let mut tools = 0u32;
    for e in events {
        match e {
            StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => {
                assert!(!t.is_empty(), "empty delta: {events:?}")
            }
            StreamEvent::ToolCallStart { index, .. } => {
                assert_eq!(*index, tools, "tool indexes must count from 0: {events:?}");
                tools += 1;
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                assert!(*index < tools, "delta before its ToolCallStart: {events:?}");
                assert!(!arguments.is_empty(), "empty arguments delta: {events:?}");
            }
            _ => {}
        }
    }
}

/// `[count, seed, body...]`: the body fed to the dialect's stream decoder in chunks, then
/// `finish`; afterwards more input and another `finish` must add nothing.
pub fn check_stream(dialect: Dialect, data: &[u8]) {
    let (count, seed, body) = match data {
        [c, s, rest @ ..] => (*c, *s, rest),
        _ => (0, 0, data),
    };
    let mut dec = providers::stream_decoder(dialect);
    let mut events = Vec::new();
    for chunk in chunks(count, seed, body) {
        dec.push(chunk, &mut events);
    }
    dec.finish(&mut events);
    assert_event_order(&events);
    let n = events.len();
    dec.push(b"data: {}\n\n", &mut events);
    dec.push(body, &mut events);
    dec.finish(&mut events);
    assert_eq!(events.len(), n, "events after the terminal one: {events:?}");
    // Whatever came out can be re-encoded for both caller formats.
    for caller in [Caller::OpenAi, Caller::Anthropic] {
        let mut enc = providers::StreamEncoder::new(caller, "id", "m", 0, true);
        let mut out = bytes::BytesMut::new();
        for e in &events {
            enc.push(e, &mut out);
        }
    }
}

/// The body decoded as a whole response; an `Ok` must encode for both caller formats.
pub fn check_response(dialect: Dialect, data: &[u8]) {
    if let Ok(resp) = providers::decode_response(dialect, data) {
        for caller in [Caller::OpenAi, Caller::Anthropic] {
            let body = caller.encode_response(&resp, "id", "m", 0);
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "{caller:?} response body is not JSON"
            );
        }
    }
}

/// `[status_hi, status_lo, retry, body...]`: an error body with an arbitrary status; the result
/// must encode for both caller formats.
pub fn check_error(dialect: Dialect, data: &[u8]) {
    let (status, retry, body) = match data {
        [h, l, r, rest @ ..] => (u16::from_be_bytes([*h, *l]), *r, rest),
        _ => (500, 0, data),
    };
    let retry = (retry != 0).then_some(u64::from(retry));
    let err: ProviderError = providers::decode_error(dialect, status, body, retry);
    for caller in [Caller::OpenAi, Caller::Anthropic] {
        let (_, body) = caller.encode_error(&err, "req");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
            "{caller:?} error body is not JSON"
        );
    }
}

/// The body decoded as a caller request; an `Ok` must prune (strict and not) and encode for every
/// provider dialect without panicking, into JSON.
pub fn check_request(caller: Caller, data: &[u8]) {
    let Ok(req) = caller.decode_request(data) else {
        return;
    };
    let opts = EncodeOptions {
        model: "fuzz-model",
        default_max_tokens: 1024,
    };
    for dialect in Dialect::ALL {
        let mut strict = req.clone();
        let _ = prune(&mut strict, dialect, true);
        let mut r = req.clone();
        prune(&mut r, dialect, false).expect("lenient prune never fails");
        if let Ok(enc) = providers::encode_request(dialect, &r, &opts) {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&enc.body).is_ok(),
                "{dialect:?} request body is not JSON"
            );
        }
    }
}
