//! Canonical stream events as Responses stream events, each written as OpenAI sends them
//! (`event: <type>` then `data: <json>` with a `sequence_number`): `response.created`,
//! `response.in_progress`, then per output item `response.output_item.added`, its deltas
//! (`response.content_part.added` + `response.output_text.delta`…, or
//! `response.function_call_arguments.delta`…, or for reasoning the provider exposed
//! `response.reasoning_summary_part.added` + `response.reasoning_summary_text.delta`…) and its
//! `.done` events, and finally
//! `response.completed` / `response.incomplete` (or `response.failed` on an error), whose
//! `response` is the same object a non-stream answer gets. Every delta goes out as it arrives.

use super::response::{
    function_call_item, message_item, reasoning_item, response_object, status_of, Head,
};
use super::{id_seed, Turn};
use crate::canonical::*;
use bytes::BytesMut;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One output item being streamed.
#[derive(Debug)]
enum Item {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        /// The canonical tool-call index.
        index: u32,
    },
}

impl Item {
    fn done_value(&self) -> Value {
        match self {
            Item::Reasoning { id, text } => reasoning_item(id, text),
            Item::Message { id, text } => message_item(id, text),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => function_call_item(id, call_id, name, arguments),
        }
    }
}

/// Re-encodes canonical stream events as Responses stream events.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    turn: Option<Arc<Turn>>,
    seq: u64,
    started: bool,
    done: bool,
    items: Vec<Item>,
    /// The item still receiving deltas (an index into `items`).
    open: Option<usize>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str, created: u64, turn: Option<Arc<Turn>>) -> Self {
        StreamEncoder {
            id: id.to_string(),
            model: model.to_string(),
            created,
            turn,
            seq: 0,
            started: false,
            done: false,
            items: Vec::new(),
            open: None,
            usage: None,
            finish: None,
        }
    }

    /// Attaches the request's echo fields and finished-response slot.
    pub fn set_turn(&mut self, turn: Arc<Turn>) {
        self.turn = Some(turn);
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    }

    fn echo(&self) -> Map<String, Value> {
        self.turn
            .as_ref()
            .map(|t| t.echo.clone())
            .unwrap_or_default()
    }

    fn object(&self, status: &str, details: Value, output: Vec<Value>) -> Value {
        let head = Head {
            id: &self.id,
            model: &self.model,
            created: self.created,
        };
        response_object(
            head,
            status,
            details,
            output,
            self.usage.as_ref(),
            &self.echo(),
        )
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.object("in_progress", Value::Null, Vec::new());
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    /// Opens a new output item (closing the open one first) and announces it.
    fn open_item(&mut self, out: &mut BytesMut, item: Item) -> usize {
        self.close_open(out);
        let index = self.items.len();
        let mut added = item.done_value();
        added["status"] = json!("in_progress");
        match &item {
            Item::Message { .. } => added["content"] = json!([]),
            Item::Call { .. } => added["arguments"] = json!(""),
            Item::Reasoning { .. } => {
                added["summary"] = json!([]);
                if let Some(o) = added.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        match &item {
            Item::Message { id, .. } => {
                let id = id.clone();
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                );
            }
            Item::Reasoning { id, .. } => {
                let id = id.clone();
                self.emit(
                    out,
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                );
            }
            Item::Call { .. } => {}
        }
        self.items.push(item);
        if !matches!(self.items[index], Item::Call { .. }) {
            self.open = Some(index);
        }
        index
    }

    /// Sends the `.done` events of item `index`.
    fn close_item(&mut self, out: &mut BytesMut, index: usize) {
        let done = self.items[index].done_value();
        match &self.items[index] {
            Item::Message { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
                );
            }
            Item::Call {
                id,
                name,
                arguments,
                ..
            } => {
                let body = json!({"item_id": id, "output_index": index, "name": name,
                                  "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", body);
            }
            Item::Reasoning { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                );
            }
        }
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
    }

    fn close_open(&mut self, out: &mut BytesMut) {
        if let Some(i) = self.open.take() {
            self.close_item(out, i);
        }
    }

    fn text(&mut self, out: &mut BytesMut, delta: &str) {
        let index = match self.open {
            Some(i) if matches!(self.items[i], Item::Message { .. }) => i,
            _ => {
                let id = format!("msg_{}", id_seed(&self.id));
                self.open_item(
                    out,
                    Item::Message {
                        id,
                        text: String::new(),
                    },
                )
            }
        };
        let Item::Message { id, text } = &mut self.items[index] else {
            return;
        };
        text.push_str(delta);
        let id = id.clone();
        self.emit(
            out,
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                   "delta": delta, "logprobs": []}),
        );
    }

    /// A reasoning delta, streamed as the reasoning item's summary text.
    fn reasoning(&mut self, out: &mut BytesMut, delta: &str) {
        let Some(index) = self.open else { return };
        let Item::Reasoning { id, text } = &mut self.items[index] else {
            return;
        };
        text.push_str(delta);
        let id = id.clone();
        self.emit(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": delta}),
        );
    }

    fn call_delta(&mut self, out: &mut BytesMut, call: u32, delta: &str) {
        let found = self
            .items
            .iter()
            .rposition(|i| matches!(i, Item::Call { index, .. } if *index == call));
        let Some(pos) = found else { return };
        let Item::Call { id, arguments, .. } = &mut self.items[pos] else {
            return;
        };
        arguments.push_str(delta);
        let id = id.clone();
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": pos, "delta": delta}),
        );
    }

    /// The end: every item closed, then the final `response` event.
    fn end(&mut self, out: &mut BytesMut) {
        self.close_open(out);
        let calls: Vec<usize> = (0..self.items.len())
            .filter(|i| matches!(self.items[*i], Item::Call { .. }))
            .collect();
        for i in calls {
            self.close_item(out, i);
        }
        let finish = self.finish.clone().unwrap_or(FinishReason::Stop);
        let (status, details) = status_of(&finish);
        let output = self.items.iter().map(Item::done_value).collect();
        let response = self.object(status, details, output);
        if let Some(t) = &self.turn {
            t.finish(&response);
        }
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": response}));
    }

    fn fail(&mut self, out: &mut BytesMut, e: &ProviderError) {
        let (_, _, code) = crate::openai::codec::error_status_and_type(e.kind);
        self.fail_with(out, code, &e.message);
    }

    /// Ends the stream with `response.failed` carrying `code` and `message` (the output so far
    /// included), unless it already ended.
    pub fn fail_with(&mut self, out: &mut BytesMut, code: &str, message: &str) {
        if self.done {
            return;
        }
        self.start(out);
        let output = self.items.iter().map(Item::done_value).collect();
        let mut response = self.object("failed", Value::Null, output);
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": response}));
        self.done = true;
    }

    /// Appends the caller bytes for one event to `out`.
    pub fn push(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.start(out);
        match event {
            StreamEvent::Start { .. } => {}
            StreamEvent::TextDelta(t) if !t.is_empty() => self.text(out, t),
            StreamEvent::ReasoningDelta(t) if !t.is_empty() => {
                if !matches!(
                    self.open.map(|i| &self.items[i]),
                    Some(Item::Reasoning { .. })
                ) {
                    let id = format!("rs_{}", id_seed(&self.id));
                    self.open_item(
                        out,
                        Item::Reasoning {
                            id,
                            text: String::new(),
                        },
                    );
                }
                self.reasoning(out, t);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.close_open(out);
                let calls = self
                    .items
                    .iter()
                    .filter(|i| matches!(i, Item::Call { .. }))
                    .count();
                let item = Item::Call {
                    id: format!("fc_{}_{calls}", id_seed(&self.id)),
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    index: *index,
                };
                self.open_item(out, item);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.call_delta(out, *index, arguments)
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(f.clone()),
            StreamEvent::End => {
                self.end(out);
                self.done = true;
            }
            StreamEvent::Error(e) => {
                self.fail(out, e);
                self.done = true;
            }
            StreamEvent::TextDelta(_) | StreamEvent::ReasoningDelta(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (head, data) = e.split_once('\n').unwrap();
                let kind = head.strip_prefix("event: ").unwrap().to_string();
                let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(v["type"], kind.as_str());
                (kind, v)
            })
            .collect()
    }

    #[test]
    fn text_then_a_call_is_the_documented_event_sequence() {
        let turn = Turn::new(Map::new());
        let mut enc = StreamEncoder::new("resp_1", "m", 5, Some(turn.clone()));
        let mut out = BytesMut::new();
        for ev in [
            StreamEvent::Start {
                id: None,
                model: None,
            },
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_9".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\"".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: ":1}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                input_tokens: 2,
                output_tokens: 3,
                ..Default::default()
            }),
            StreamEvent::End,
        ] {
            enc.push(&ev, &mut out);
        }
        let evs = events(&out);
        let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, v)) in evs.iter().enumerate() {
            assert_eq!(v["sequence_number"], i as u64);
        }
        assert_eq!(evs[6].1["text"], "Hello");
        assert_eq!(evs[12].1["arguments"], "{\"a\":1}");
        let done = &evs[14].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["call_id"], "call_9");
        assert_eq!(done["usage"]["total_tokens"], 5);
        assert_eq!(turn.take_finished().as_ref(), Some(done));
    }

    /// The events one encoder writes for `input`.
    fn encode_all<const N: usize>(input: [StreamEvent; N]) -> Vec<(String, Value)> {
        let mut enc = StreamEncoder::new("resp_r", "m", 5, None);
        let mut out = BytesMut::new();
        for ev in &input {
            enc.push(ev, &mut out);
        }
        events(&out)
    }

    #[test]
    fn reasoning_streams_as_summary_text_before_the_message() {
        let usage = Usage {
            input_tokens: 2,
            output_tokens: 9,
            reasoning_tokens: 5,
            ..Default::default()
        };
        let evs = encode_all([
            StreamEvent::ReasoningDelta("Think".into()),
            StreamEvent::ReasoningDelta("ing.".into()),
            StreamEvent::TextDelta("Answer".into()),
            StreamEvent::Usage(usage),
            StreamEvent::End,
        ]);
        let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds[2..9],
            [
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
            ]
        );
        assert_eq!(evs[4].1["delta"], "Think");
        assert_eq!(evs[4].1["item_id"], "rs_r");
        assert_eq!(evs[6].1["text"], "Thinking.");
        assert_eq!(evs[9].0, "response.output_item.added");
        assert_eq!(evs[9].1["output_index"], 1);
        let done = &evs.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["type"], "reasoning");
        assert_eq!(done["output"][0]["summary"][0]["text"], "Thinking.");
        assert_eq!(done["output"][1]["content"][0]["text"], "Answer");
        assert_eq!(
            done["usage"]["output_tokens_details"]["reasoning_tokens"],
            5
        );
    }

    #[test]
    fn a_cut_stream_is_incomplete_and_an_error_fails() {
        let mut enc = StreamEncoder::new("resp_2", "m", 5, None);
        let mut out = BytesMut::new();
        enc.push(&StreamEvent::TextDelta("a".into()), &mut out);
        enc.push(&StreamEvent::Finish(FinishReason::Length), &mut out);
        enc.push(&StreamEvent::End, &mut out);
        let last = events(&out).pop().unwrap();
        assert_eq!(last.0, "response.incomplete");
        assert_eq!(
            last.1["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );

        let mut enc = StreamEncoder::new("resp_3", "m", 5, None);
        let mut out = BytesMut::new();
        enc.push(&StreamEvent::TextDelta("a".into()), &mut out);
        enc.push(
            &StreamEvent::Error(ProviderError::new(ErrorKind::Overloaded, "busy")),
            &mut out,
        );
        enc.push(&StreamEvent::End, &mut out);
        let last = events(&out).pop().unwrap();
        assert_eq!(last.0, "response.failed");
        assert_eq!(last.1["response"]["error"]["message"], "busy");
    }
}
