//! Response guardrails on native Responses streams (`providers[].responses: native`), whose
//! provider events pass through untouched otherwise: a [`NativeGuard`] rewrites the relay's
//! output event by event. Delta events (`response.output_text.delta`,
//! `response.function_call_arguments.delta`) pass their `delta` through one [`TextGuard`] per
//! output item and part (the same hold-back bound as other streams); held text is released as
//! one more delta event (a copy of that item's last one) before any other event. The events that
//! repeat the whole text (`.done` events, `response.completed`) are scanned whole and redacted the
//! same way. A block replaces the rest of the stream with the caller's error event.
//!
//! A redacted `response.completed` / `response.incomplete` also replaces the response object the
//! gateway stores for `previous_response_id` (the store never keeps text the caller was not
//! shown). Known limit: webhook guardrails are not asked on these streams.
//! It must not touch the relay's framing: each event it writes is a whole SSE event.

use super::request::scan;
use super::stream::{GuardRecord, SharedRecord, TextGuard};
use super::{Action, Applied, Phase};
use crate::proxy::context::RequestCtx;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use switchyard_adapters::openai::responses::Turn;
use switchyard_adapters::sse::{event_data, events};

/// Events whose `delta` is streamed text.
const DELTAS: [&str; 2] = [
    "response.output_text.delta",
    "response.function_call_arguments.delta",
];

/// Events that carry text whole (scanned as a whole answer is).
const WHOLE: [&str; 6] = [
    "response.output_text.done",
    "response.function_call_arguments.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
];

/// Events that end the stream with the whole response object (the one the gateway stores).
const TERMINAL: [&str; 2] = ["response.completed", "response.incomplete"];

/// One streamed text: its item and part, its guard and its last delta event.
struct Part {
    key: (String, u64),
    guard: TextGuard,
    last: Value,
}

/// Rewrites a native Responses stream's events for the request's response guardrails.
pub struct NativeGuard {
    base: TextGuard,
    parts: Vec<Part>,
    rails: Vec<Arc<super::Guardrail>>,
    record: SharedRecord,
    /// The stored conversation turn, when the response is stored.
    turn: Option<Arc<Turn>>,
}

impl NativeGuard {
    /// `None` when no response guardrail with a detector applies.
    pub fn open(ctx: &RequestCtx, turn: Option<Arc<Turn>>) -> Option<(NativeGuard, SharedRecord)> {
        let rails: Vec<_> = ctx
            .response_guardrails
            .iter()
            .filter(|g| g.detector.is_some())
            .cloned()
            .collect();
        if rails.is_empty() {
            return None;
        }
        let record = SharedRecord::new(Mutex::new(GuardRecord::default()));
        let guard = NativeGuard {
            base: TextGuard::new(rails.clone(), record.clone()),
            parts: Vec::new(),
            rails,
            record: record.clone(),
            turn,
        };
        Some((guard, record))
    }

    /// The caller's bytes for a block of whole events, or the name of the guardrail that blocked
    /// the answer (nothing of the block goes out then).
    pub fn rewrite(&mut self, block: Bytes) -> Result<Bytes, String> {
        let mut out = BytesMut::with_capacity(block.len());
        for ev in events(&block) {
            let parsed = event_data(&ev).and_then(|d| serde_json::from_slice::<Value>(&d).ok());
            let Some(mut v) = parsed else {
                out.extend_from_slice(&ev);
                continue;
            };
            let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
            if DELTAS.contains(&kind) {
                self.delta(v, &mut out)?;
                continue;
            }
            self.flush(&mut out)?;
            let (whole, terminal) = (WHOLE.contains(&kind), TERMINAL.contains(&kind));
            if whole && self.whole(&mut v)? {
                if let (true, Some(t), Some(r)) = (terminal, &self.turn, v.get("response")) {
                    t.replace_finished(r);
                }
                push_event(&v, &mut out);
            } else {
                out.extend_from_slice(&ev);
            }
        }
        Ok(out.freeze())
    }

    fn delta(&mut self, mut v: Value, out: &mut BytesMut) -> Result<(), String> {
        let item = v.get("item_id").and_then(Value::as_str).unwrap_or_default();
        let key = (
            item.to_string(),
            v.get("content_index").and_then(Value::as_u64).unwrap_or(0),
        );
        let text = v.get("delta").and_then(Value::as_str).unwrap_or_default();
        let at = match self.parts.iter().position(|p| p.key == key) {
            Some(at) => at,
            None => {
                self.parts.push(Part {
                    key,
                    guard: self.base.another(),
                    last: Value::Null,
                });
                self.parts.len() - 1
            }
        };
        let part = &mut self.parts[at];
        let released = part.guard.push(text)?;
        v["delta"] = Value::String(released);
        push_event(&v, out);
        part.last = v;
        Ok(())
    }

    /// Releases all held text, each part as one more delta event.
    fn flush(&mut self, out: &mut BytesMut) -> Result<(), String> {
        for p in &mut self.parts {
            let rest = p.guard.flush()?;
            if !rest.is_empty() && p.last.is_object() {
                p.last["delta"] = Value::String(rest);
                push_event(&p.last, out);
            }
        }
        Ok(())
    }

    /// Scans an event that carries text whole; whether it was redacted.
    fn whole(&mut self, v: &mut Value) -> Result<bool, String> {
        let mut changed = false;
        for g in &self.rails {
            if scan(g, v, &mut changed).is_none() {
                continue;
            }
            let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
            if !r
                .applied
                .iter()
                .any(|a| Arc::ptr_eq(&a.guardrail, g) && a.action == g.action)
            {
                r.applied.push(Applied::new(g, g.action, Phase::Response));
            }
            if g.action == Action::Block {
                r.blocked = true;
                return Err(g.name.clone());
            }
        }
        Ok(changed)
    }
}

/// Whether a native stream's guard blocked the answer.
pub fn blocked(record: &SharedRecord) -> bool {
    record.lock().map(|r| r.blocked).unwrap_or(true)
}

/// `v` as a whole SSE event, named by its `type`.
fn push_event(v: &Value, out: &mut BytesMut) {
    if let Some(kind) = v.get("type").and_then(Value::as_str) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(action: Action) -> NativeGuard {
        let g = crate::guardrails::card_rail(action);
        let record = SharedRecord::default();
        NativeGuard {
            base: TextGuard::new(vec![g.clone()], record.clone()),
            parts: Vec::new(),
            rails: vec![g],
            record,
            turn: None,
        }
    }

    fn delta(seq: u64, d: &str) -> String {
        let v = serde_json::json!({"type": "response.output_text.delta", "sequence_number": seq,
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": d});
        format!("event: response.output_text.delta\ndata: {v}\n\n")
    }

    fn deltas(out: &[u8]) -> String {
        let block = Bytes::copy_from_slice(out);
        events(&block)
            .filter_map(|e| serde_json::from_slice::<Value>(&event_data(&e)?).ok())
            .filter(|v| v["type"] == "response.output_text.delta")
            .filter_map(|v| v["delta"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn held_text_goes_out_as_one_more_delta_before_the_next_event() {
        let mut n = native(Action::Redact);
        let mut out = n
            .rewrite(Bytes::from(delta(3, "pay 4111 1111")))
            .unwrap()
            .to_vec();
        out.extend_from_slice(&n.rewrite(Bytes::from(delta(4, " 1111 1111 ok"))).unwrap());
        let done = "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"text\":\"pay 4111 1111 1111 1111 ok\"}\n\n";
        let tail = n.rewrite(Bytes::from(done)).unwrap();
        out.extend_from_slice(&tail);
        assert_eq!(deltas(&out), "pay [REDACTED:CREDIT_CARD] ok");
        let text = String::from_utf8(tail.to_vec()).unwrap();
        assert!(
            text.contains("\"text\":\"pay [REDACTED:CREDIT_CARD] ok\""),
            "{text}"
        );
        assert!(!text.contains("4111"), "{text}");
    }

    #[test]
    fn a_block_sends_nothing_of_the_match() {
        let mut n = native(Action::Block);
        let first = n.rewrite(Bytes::from(delta(3, "pay 4111 1111"))).unwrap();
        assert!(!String::from_utf8_lossy(&first).contains("4111"));
        assert_eq!(
            n.rewrite(Bytes::from(delta(4, " 1111 1111 ok")))
                .unwrap_err(),
            "g"
        );
        assert!(blocked(&n.record));
    }
}
