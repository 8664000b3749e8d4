//! A finished `response` object (a cached answer, from a whole answer or a recorded stream) as
//! the Responses stream that carries it: `response.created`, `response.in_progress`, per output
//! item its `.added` event, one delta with its whole text or arguments and its `.done` events,
//! then `response.completed` / `response.incomplete` with the object itself. Ids (response and
//! items) are the stored object's, so a replay and a whole hit name the same items; items the
//! gateway does not translate (a native provider's tool calls) are announced and finished
//! unchanged. It owns only this conversion and must not decide what is cached.
//!
//! [`super::stream::StreamEncoder`] is not reused: it mints item ids from the response id and
//! knows only the canonical parts, while a replay must keep whatever the stored object holds.

use bytes::BytesMut;
use serde_json::{json, Value};

/// Writes numbered events.
struct Events {
    out: BytesMut,
    seq: u64,
}

impl Events {
    fn emit(&mut self, kind: &str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        self.out
            .extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
        self.out.extend_from_slice(b"\n\n");
    }
}

/// The stream of a finished `response` object; `None` when it is not one that ended normally
/// (status `completed` or `incomplete`).
pub fn replay(response: &Value) -> Option<BytesMut> {
    let terminal = match response.get("status").and_then(Value::as_str)? {
        "completed" => "response.completed",
        "incomplete" => "response.incomplete",
        _ => return None,
    };
    let output = response.get("output")?.as_array()?;
    let mut ev = Events {
        out: BytesMut::with_capacity(1024 + 3 * response.to_string().len()),
        seq: 0,
    };
    let mut started = response.clone();
    if let Some(o) = started.as_object_mut() {
        o.insert("status".into(), json!("in_progress"));
        o.insert("output".into(), json!([]));
        o.insert("incomplete_details".into(), Value::Null);
        o.insert("usage".into(), Value::Null);
    }
    ev.emit("response.created", json!({ "response": started }));
    ev.emit("response.in_progress", json!({ "response": started }));
    for (index, item) in output.iter().enumerate() {
        replay_item(&mut ev, index, item);
    }
    ev.emit(terminal, json!({ "response": response }));
    Some(ev.out)
}

fn text_of(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// One output item: `.added`, its content, `.done`.
fn replay_item(ev: &mut Events, index: usize, item: &Value) {
    let id = item.get("id").cloned().unwrap_or(Value::Null);
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    let mut added = item.clone();
    if let Some(o) = added.as_object_mut() {
        match kind {
            "message" => {
                o.insert("content".into(), json!([]));
                o.insert("status".into(), json!("in_progress"));
            }
            "function_call" => {
                o.insert("arguments".into(), json!(""));
                o.insert("status".into(), json!("in_progress"));
            }
            "reasoning" => {
                o.insert("summary".into(), json!([]));
            }
            _ => {}
        }
    }
    ev.emit(
        "response.output_item.added",
        json!({"output_index": index, "item": added}),
    );
    let at = |extra: Value| {
        let mut body = json!({"item_id": id, "output_index": index});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    };
    match kind {
        "message" => {
            let parts = item.get("content").and_then(Value::as_array);
            for (ci, part) in parts.into_iter().flatten().enumerate() {
                let part_kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                let mut empty = part.clone();
                match part_kind {
                    "output_text" => {
                        let text = text_of(part, "text");
                        empty["text"] = json!("");
                        ev.emit(
                            "response.content_part.added",
                            at(json!({"content_index": ci, "part": empty})),
                        );
                        ev.emit(
                            "response.output_text.delta",
                            at(json!({"content_index": ci, "delta": text, "logprobs": []})),
                        );
                        ev.emit(
                            "response.output_text.done",
                            at(json!({"content_index": ci, "text": text, "logprobs": []})),
                        );
                    }
                    "refusal" => {
                        let refusal = text_of(part, "refusal");
                        empty["refusal"] = json!("");
                        ev.emit(
                            "response.content_part.added",
                            at(json!({"content_index": ci, "part": empty})),
                        );
                        ev.emit(
                            "response.refusal.delta",
                            at(json!({"content_index": ci, "delta": refusal})),
                        );
                        ev.emit(
                            "response.refusal.done",
                            at(json!({"content_index": ci, "refusal": refusal})),
                        );
                    }
                    _ => ev.emit(
                        "response.content_part.added",
                        at(json!({"content_index": ci, "part": part})),
                    ),
                }
                ev.emit(
                    "response.content_part.done",
                    at(json!({"content_index": ci, "part": part})),
                );
            }
        }
        "function_call" => {
            let arguments = text_of(item, "arguments");
            ev.emit(
                "response.function_call_arguments.delta",
                at(json!({"delta": arguments})),
            );
            ev.emit(
                "response.function_call_arguments.done",
                at(json!({"name": text_of(item, "name"), "arguments": arguments})),
            );
        }
        "reasoning" => {
            let parts = item.get("summary").and_then(Value::as_array);
            for (si, part) in parts.into_iter().flatten().enumerate() {
                let text = text_of(part, "text");
                ev.emit(
                    "response.reasoning_summary_part.added",
                    at(json!({"summary_index": si, "part": {"type": "summary_text", "text": ""}})),
                );
                ev.emit(
                    "response.reasoning_summary_text.delta",
                    at(json!({"summary_index": si, "delta": text})),
                );
                ev.emit(
                    "response.reasoning_summary_text.done",
                    at(json!({"summary_index": si, "text": text})),
                );
                ev.emit(
                    "response.reasoning_summary_part.done",
                    at(json!({"summary_index": si, "part": part})),
                );
            }
        }
        _ => {}
    }
    ev.emit(
        "response.output_item.done",
        json!({"output_index": index, "item": item}),
    );
}

#[cfg(test)]
mod tests {
    use super::super::native::StreamDecoder;
    use super::super::Turn;
    use super::*;
    use crate::canonical::{StreamDecode, StreamEvent};
    use crate::sse::{event_data, events};

    fn finished() -> Value {
        json!({
            "id": "resp_abc", "object": "response", "created_at": 7, "status": "completed",
            "model": "m", "error": null, "incomplete_details": null,
            "output": [
                {"id": "rs_abc", "type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
                {"id": "msg_abc", "type": "message", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": "Hello there.", "annotations": [], "logprobs": []}]},
                {"id": "fc_abc_0", "type": "function_call", "call_id": "call_1", "name": "f",
                 "arguments": "{\"a\":1}", "status": "completed"},
                {"id": "ws_1", "type": "web_search_call", "status": "completed"}
            ],
            "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
        })
    }

    #[test]
    fn a_replay_carries_every_item_and_ends_with_the_object_itself() {
        let resp = finished();
        let sse = replay(&resp).expect("completed");
        let evs: Vec<Value> = events(&sse.freeze())
            .map(|e| serde_json::from_slice(&event_data(&e).unwrap()).unwrap())
            .collect();
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds[0], "response.created");
        assert_eq!(evs[0]["response"]["status"], "in_progress");
        assert_eq!(evs[0]["response"]["output"], json!([]));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        assert_eq!(evs.last().unwrap()["response"], resp);
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        let delta = evs
            .iter()
            .find(|e| e["type"] == "response.output_text.delta")
            .unwrap();
        assert_eq!(
            (&delta["item_id"], &delta["delta"]),
            (&json!("msg_abc"), &json!("Hello there."))
        );
        let args = evs
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .unwrap();
        assert_eq!(args["arguments"], "{\"a\":1}");
        let done: Vec<&Value> = evs
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .map(|e| &e["item"])
            .collect();
        assert_eq!(done.len(), 4);
        assert_eq!(done[3]["type"], "web_search_call");
    }

    #[test]
    fn a_replay_records_back_to_the_same_object() {
        let resp = finished();
        let sse = replay(&resp).expect("completed");
        let turn = Turn::new(Default::default());
        let mut d = StreamDecoder::with_turn(turn.clone());
        let mut out = Vec::new();
        for piece in sse.chunks(11) {
            d.push(piece, &mut out);
        }
        assert_eq!(out.last(), Some(&StreamEvent::End));
        assert_eq!(turn.take_finished(), Some(resp));
    }

    #[test]
    fn a_failed_response_is_not_replayed() {
        let mut resp = finished();
        resp["status"] = json!("failed");
        assert!(replay(&resp).is_none());
        resp["status"] = json!("incomplete");
        let sse = replay(&resp).expect("incomplete ends normally");
        assert!(std::str::from_utf8(&sse)
            .unwrap()
            .contains("event: response.incomplete\n"));
    }
}
