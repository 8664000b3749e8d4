//! Watching a native Responses stream (`providers[].responses: native`): the provider's events
//! pass through untouched; this decoder only reads the terminal ones (`response.completed`,
//! `response.incomplete`, `response.failed`, `error`) for usage and for how the stream ended.
//! Deltas are never parsed. Also the usage of a whole native answer ([`response_usage`]).

use super::Turn;
use crate::canonical::*;
use crate::sse::{event_data, events, SseFramer};
use bytes::Bytes;
use memchr::memmem;
use serde_json::Value;
use std::sync::Arc;

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |cur, k| cur.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Responses `usage` in canonical form.
pub fn decode_usage(u: &Value) -> Usage {
    Usage {
        input_tokens: u64_at(u, &["input_tokens"]),
        output_tokens: u64_at(u, &["output_tokens"]),
        cache_read_tokens: u64_at(u, &["input_tokens_details", "cached_tokens"]),
        cache_write_tokens: 0,
        reasoning_tokens: u64_at(u, &["output_tokens_details", "reasoning_tokens"]),
    }
}

/// The usage of a whole `response` object, when it has one.
pub fn response_usage(body: &[u8]) -> Option<Usage> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("usage").filter(|u| u.is_object()).map(decode_usage)
}

/// The `error` event OpenAI ends a Responses stream with when it fails mid-way, for the
/// gateway's own failures on a native stream (upstream cut, budget cutoff).
pub fn error_event(code: &str, message: &str, sequence_number: u64) -> Bytes {
    let body = serde_json::json!({
        "type": "error",
        "code": code,
        "message": message,
        "param": null,
        "sequence_number": sequence_number,
    });
    let mut out = b"event: error\ndata: ".to_vec();
    out.extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Reads the terminal events of a native Responses stream.
#[derive(Default)]
pub struct StreamDecoder {
    framer: SseFramer,
    done: bool,
    /// Receives the provider's finished `response` object (to be stored).
    turn: Option<Arc<Turn>>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that hands the finished `response` object to `turn`.
    pub fn with_turn(turn: Arc<Turn>) -> Self {
        StreamDecoder {
            turn: Some(turn),
            ..Self::default()
        }
    }

    fn event(&mut self, ev: &[u8], out: &mut Vec<StreamEvent>) {
        if let Some(t) = &self.turn {
            t.note_event();
        }
        let terminal = [
            &b"response.completed"[..],
            b"response.incomplete",
            b"response.failed",
            b"event: error",
            b"\"type\":\"error\"",
        ];
        if self.done || !terminal.iter().any(|t| memmem::find(ev, t).is_some()) {
            return;
        }
        let Some(data) = event_data(ev) else { return };
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            return;
        };
        let response = v.get("response").unwrap_or(&Value::Null);
        match v.get("type").and_then(Value::as_str) {
            Some(kind @ ("response.completed" | "response.incomplete")) => {
                if let Some(t) = &self.turn {
                    t.finish(response);
                }
                if let Some(u) = response.get("usage").filter(|u| u.is_object()) {
                    out.push(StreamEvent::Usage(decode_usage(u)));
                }
                out.push(StreamEvent::Finish(if kind == "response.completed" {
                    FinishReason::Stop
                } else {
                    FinishReason::Length
                }));
                out.push(StreamEvent::End);
                self.done = true;
            }
            Some("response.failed") | Some("error") => {
                let message = response
                    .get("error")
                    .or(Some(&v))
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the provider's response failed");
                out.push(StreamEvent::Error(ProviderError::new(
                    ErrorKind::Server,
                    message,
                )));
                self.done = true;
            }
            _ => {}
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        if let Some(block) = self.framer.push(Bytes::copy_from_slice(chunk)) {
            for ev in events(&block) {
                self.event(&ev, out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(tail) = self.framer.finish() {
            self.event(&tail, out);
        }
        if !self.done {
            self.done = true;
            out.push(StreamEvent::Error(ProviderError::new(
                ErrorKind::Server,
                "the provider's Responses stream ended before response.completed",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_comes_from_the_completed_event_whatever_the_chunking() {
        let stream = b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":1}}}}\n\n";
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        for c in stream.chunks(9) {
            d.push(c, &mut out);
        }
        d.finish(&mut out);
        assert_eq!(
            out[0],
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 2,
                cache_read_tokens: 1,
                ..Default::default()
            })
        );
        assert_eq!(out.last(), Some(&StreamEvent::End));
    }

    #[test]
    fn the_finished_response_goes_to_the_turn() {
        let turn = Turn::new(Default::default());
        let mut d = StreamDecoder::with_turn(turn.clone());
        let mut out = Vec::new();
        d.push(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_9\"}}\n\n", &mut out);
        assert_eq!(
            turn.take_finished(),
            Some(serde_json::json!({"id": "resp_9"}))
        );
    }

    #[test]
    fn the_gateways_error_event_continues_the_sequence() {
        let turn = Turn::new(Default::default());
        let mut d = StreamDecoder::with_turn(turn.clone());
        let mut out = Vec::new();
        d.push(b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\nevent: response.in_progress\ndata: {}\n\n", &mut out);
        let ev = error_event("server_error", "cut", turn.next_sequence_number());
        let text = std::str::from_utf8(&ev).unwrap();
        assert!(text.starts_with("event: error\ndata: {"), "{text}");
        let v: Value = serde_json::from_slice(&event_data(&ev).unwrap()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "server_error");
        assert_eq!(v["sequence_number"], 2);
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        d.push(b"event: response.created\ndata: {}\n\n", &mut out);
        d.finish(&mut out);
        assert!(matches!(out.as_slice(), [StreamEvent::Error(_)]));
    }
}
