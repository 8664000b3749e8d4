//! Streams and the cache: a cached answer replayed as SSE in the caller's format (OpenAI chat or
//! `text_completion` chunks, Anthropic events, Responses events; usage when asked), and a streamed
//! miss recorded — the caller's own events decoded back to a whole answer — so it can be stored
//! once the stream ends normally. A Responses stream is recorded as the `response` object its
//! `response.completed` (or `.incomplete`) event carries, and replayed from it with the stored
//! ids ([`switchyard_adapters::openai::responses::replay`]). It owns only the conversion between
//! whole answers and events; what is stored and when is decided in [`super`], and it must not
//! write to the caller itself.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use switchyard_adapters::canonical::{
    ChatResponse, FinishReason, OutputPart, StreamDecode, StreamEvent, Usage,
};
use switchyard_adapters::openai::responses::{self, Turn};
use switchyard_adapters::providers::{self, Caller, StreamEncoder};

/// Most caller bytes recorded for one streamed miss; a longer stream is not stored.
const MAX_RECORDED: usize = 8 * 1024 * 1024;

/// Whether answers for `caller` can be replayed as a stream and recorded from one.
pub fn streams(caller: Caller) -> bool {
    matches!(
        caller,
        Caller::OpenAi | Caller::Anthropic | Caller::OpenAiCompletions | Caller::OpenAiResponses
    )
}

/// The events of a whole answer, in the order the stream decoders emit them.
fn events_of(resp: &ChatResponse) -> Vec<StreamEvent> {
    let mut out = vec![StreamEvent::Start {
        id: Some(resp.id.clone()),
        model: Some(resp.model.clone()),
    }];
    let mut tools = 0u32;
    for part in &resp.content {
        match part {
            OutputPart::Text(t) if !t.is_empty() => out.push(StreamEvent::TextDelta(t.clone())),
            OutputPart::Reasoning(t) if !t.is_empty() => {
                out.push(StreamEvent::ReasoningDelta(t.clone()))
            }
            OutputPart::ToolCall {
                id,
                name,
                arguments,
            } => {
                out.push(StreamEvent::ToolCallStart {
                    index: tools,
                    id: id.clone(),
                    name: name.clone(),
                });
                if !arguments.is_empty() {
                    out.push(StreamEvent::ToolCallDelta {
                        index: tools,
                        arguments: arguments.clone(),
                    });
                }
                tools += 1;
            }
            _ => {}
        }
    }
    if let Some(u) = resp.usage {
        out.push(StreamEvent::Usage(u));
    }
    out.push(StreamEvent::Finish(resp.finish.clone()));
    out.push(StreamEvent::End);
    out
}

/// A cached whole answer (`body`, in `caller`'s format) as the caller's SSE stream.
pub fn replay(caller: Caller, body: &[u8], include_usage: bool, created: u64) -> Option<Bytes> {
    if caller == Caller::OpenAiResponses {
        let object: serde_json::Value = serde_json::from_slice(body).ok()?;
        return responses::replay::replay(&object).map(BytesMut::freeze);
    }
    let resp = providers::decode_response(caller.dialect(), body).ok()?;
    let mut enc = StreamEncoder::new(caller, &resp.id, &resp.model, created, include_usage);
    let mut out = BytesMut::with_capacity(body.len() * 2);
    for ev in events_of(&resp) {
        enc.push(&ev, &mut out);
    }
    Some(out.freeze())
}

/// A streamed miss's events, decoded from what the caller was sent.
pub struct Recorder {
    /// In a mutex only so the request context stays `Sync` (used through `get_mut`: no lock).
    decoder: std::sync::Mutex<Box<dyn StreamDecode>>,
    events: Vec<StreamEvent>,
    bytes: usize,
    /// Too long to keep: never stored.
    over: bool,
    caller: Caller,
    /// A Responses stream: receives the `response` object of its terminal event.
    turn: Option<Arc<Turn>>,
}

impl Recorder {
    pub fn new(caller: Caller) -> Recorder {
        let (decoder, turn): (Box<dyn StreamDecode>, _) = if caller == Caller::OpenAiResponses {
            let turn = Turn::new(Default::default());
            let watcher = responses::native::StreamDecoder::with_turn(turn.clone());
            (Box::new(watcher), Some(turn))
        } else {
            (providers::stream_decoder(caller.dialect()), None)
        };
        Recorder {
            decoder: std::sync::Mutex::new(decoder),
            events: Vec::new(),
            bytes: 0,
            over: false,
            caller,
            turn,
        }
    }

    /// Notes bytes written to the caller.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.over {
            return;
        }
        self.bytes += chunk.len();
        if self.bytes > MAX_RECORDED {
            self.over = true;
            self.events = Vec::new();
            return;
        }
        let decoder = self.decoder.get_mut().unwrap_or_else(|p| p.into_inner());
        decoder.push(chunk, &mut self.events);
    }

    /// The caller was sent the stream's end marker.
    pub fn ended(&self) -> bool {
        matches!(self.events.last(), Some(StreamEvent::End))
    }

    /// The whole answer the stream carried, in the caller's format, when it ended normally (its
    /// end marker, no error); `usage` (the relay's count) fills in what the caller's events did
    /// not carry; `created` stamps a re-encoded answer.
    pub fn finish(mut self, usage: Option<Usage>, created: u64) -> Option<Bytes> {
        if self.over {
            return None;
        }
        let decoder = self.decoder.get_mut().unwrap_or_else(|p| p.into_inner());
        decoder.finish(&mut self.events);
        if let Some(turn) = &self.turn {
            let ended = matches!(self.events.last(), Some(StreamEvent::End))
                && !self
                    .events
                    .iter()
                    .any(|e| matches!(e, StreamEvent::Error(_)));
            let object = turn.take_finished().filter(|_| ended)?;
            return serde_json::to_vec(&object).ok().map(Bytes::from);
        }
        let resp = response_of(self.events, usage)?;
        let body = self
            .caller
            .encode_response(&resp, &resp.id, &resp.model, created);
        Some(Bytes::from(body))
    }
}

/// Folds a stream's events back into a whole answer; `None` unless it ended with `End`.
fn response_of(events: Vec<StreamEvent>, usage: Option<Usage>) -> Option<ChatResponse> {
    let mut resp = ChatResponse {
        id: String::new(),
        model: String::new(),
        content: Vec::new(),
        finish: FinishReason::Stop,
        usage,
    };
    let (mut text, mut reasoning) = (String::new(), String::new());
    let mut tools: Vec<(String, String, String)> = Vec::new();
    let mut ended = false;
    for ev in events {
        match ev {
            StreamEvent::Start { id, model } => {
                resp.id = id.unwrap_or_default();
                resp.model = model.unwrap_or_default();
            }
            StreamEvent::TextDelta(t) => text.push_str(&t),
            StreamEvent::ReasoningDelta(t) => reasoning.push_str(&t),
            StreamEvent::ToolCallStart { id, name, .. } => tools.push((id, name, String::new())),
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(t) = tools.get_mut(index as usize) {
                    t.2.push_str(&arguments);
                }
            }
            StreamEvent::Usage(u) => {
                if resp.usage.is_none_or(|have| u.total() >= have.total()) {
                    resp.usage = Some(u);
                }
            }
            StreamEvent::Finish(f) => resp.finish = f,
            StreamEvent::End => ended = true,
            StreamEvent::Error(_) => return None,
        }
    }
    if !ended {
        return None;
    }
    if !reasoning.is_empty() {
        resp.content.push(OutputPart::Reasoning(reasoning));
    }
    if !text.is_empty() {
        resp.content.push(OutputPart::Text(text));
    }
    for (id, name, arguments) in tools {
        resp.content.push(OutputPart::ToolCall {
            id,
            name,
            arguments,
        });
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

    #[test]
    fn a_whole_answer_replays_as_a_stream_that_records_back_to_it() {
        for caller in [Caller::OpenAi, Caller::Anthropic] {
            let first = providers::decode_response(Caller::OpenAi.dialect(), CHAT.as_bytes())
                .expect("decodes");
            let body = caller.encode_response(&first, &first.id, &first.model, 1);
            let sse = replay(caller, &body, true, 1).expect("replays");
            let mut rec = Recorder::new(caller);
            for piece in sse.chunks(7) {
                rec.push(piece);
            }
            let body = rec.finish(None, 1).expect("ended normally");
            let back = providers::decode_response(caller.dialect(), &body).expect("decodes");
            assert_eq!(back.content, vec![OutputPart::Text("Hello there.".into())]);
            assert_eq!(back.finish, FinishReason::Stop);
            assert_eq!(back.usage.map(|u| u.output_tokens), Some(4), "{caller:?}");
        }
    }

    #[test]
    fn a_cut_stream_is_not_an_answer() {
        let first =
            providers::decode_response(Caller::OpenAi.dialect(), CHAT.as_bytes()).expect("decodes");
        let body = Caller::OpenAi.encode_response(&first, "x", "m", 1);
        let sse = replay(Caller::OpenAi, &body, false, 1).expect("replays");
        let mut rec = Recorder::new(Caller::OpenAi);
        rec.push(&sse[..sse.len() / 2]);
        assert!(rec.finish(None, 1).is_none());
    }

    #[test]
    fn a_responses_answer_replays_and_records_back_to_the_same_object() {
        let first =
            providers::decode_response(Caller::OpenAi.dialect(), CHAT.as_bytes()).expect("decodes");
        let body = responses::encode_response(&first, "resp_1", "m", 1, None);
        let sse = replay(Caller::OpenAiResponses, &body, false, 1).expect("replays");
        let mut rec = Recorder::new(Caller::OpenAiResponses);
        for piece in sse.chunks(5) {
            rec.push(piece);
            if rec.ended() {
                break;
            }
        }
        assert!(rec.ended());
        let back = rec.finish(None, 1).expect("completed");
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&body).unwrap(),
            serde_json::from_slice(&back).unwrap(),
        );
        assert_eq!(a, b);
        // Cut before `response.completed`: nothing to store.
        let mut rec = Recorder::new(Caller::OpenAiResponses);
        rec.push(&sse[..sse.len() - 20]);
        assert!(rec.finish(None, 1).is_none());
    }
}
