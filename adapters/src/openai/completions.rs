//! The legacy OpenAI Completions format (`POST /v1/completions`) as a caller format, for the
//! deployments that do not speak it (every provider kind but OpenAI-compatible ones, which get
//! the caller's bytes as they are through the chat fast path's splicing).
//!
//! The request's prompt becomes a single user turn of a canonical [`ChatRequest`]; the answer is
//! encoded as a `text_completion` object, streams as `text_completion` chunks with `text` deltas
//! then `data: [DONE]`. Fields with no chat equivalent (`suffix`, `echo`, `best_of` > 1,
//! `logprobs`) are refused naming the parameter, unless trivially honoured (`echo: false`,
//! `best_of: 1`). Errors use the OpenAI error format ([`super::codec::encode_error`]).
//!
//! It must not touch the chat codecs' behaviour: it reuses them (the request decoder, usage and
//! finish-reason spelling) and owns only what differs. No I/O here.

use super::codec::{
    finish_reason_str, usage_json, write_data, write_stream_end, write_stream_error, ChunkHead,
};
use crate::canonical::*;
use bytes::BytesMut;
use serde_json::{json, Map, Value};

/// OpenAI's documented default `max_tokens` for completions.
pub const DEFAULT_MAX_TOKENS: u64 = 16;

/// Keys of a completions request that have no chat counterpart: checked here, never copied.
const COMPLETIONS_ONLY: &[&str] = &["prompt", "suffix", "echo", "best_of", "logprobs"];

fn invalid(message: impl Into<String>, param: &str) -> TranslateError {
    TranslateError::invalid(message, Some(param.to_string()))
}

/// The prompt text: a string, or an array holding exactly one string.
fn prompt_text(v: Option<&Value>) -> Result<String, TranslateError> {
    let shape = "`prompt` must be a string or an array of one string for this model's provider";
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 => a[0]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| invalid(shape, "prompt")),
        None | Some(Value::Null) => Err(invalid("`prompt` is required", "prompt")),
        Some(_) => Err(invalid(shape, "prompt")),
    }
}

/// Refuses the completions-only fields a chat provider cannot honour.
fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), TranslateError> {
    let unsupported = |p: &str| {
        invalid(
            format!("`{p}` is only supported by OpenAI-compatible deployments"),
            p,
        )
    };
    match obj.get("suffix") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => return Err(unsupported("suffix")),
    }
    match obj.get("echo") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(_) => return Err(unsupported("echo")),
    }
    match obj.get("best_of") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(_) => return Err(unsupported("best_of")),
    }
    match obj.get("logprobs") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(unsupported("logprobs")),
    }
}

/// Decodes a completions request into the canonical model: the prompt as one user message,
/// `max_tokens` defaulting to 16 as OpenAI documents; every other field as the chat decoder
/// reads it (so its checks and parameter names are the chat request's).
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError::invalid(format!("request body is not valid JSON: {e}"), None)
    })?;
    let Value::Object(mut obj) = root else {
        return Err(TranslateError::invalid(
            "request body must be a JSON object",
            None,
        ));
    };
    let prompt = prompt_text(obj.get("prompt"))?;
    refuse_unsupported(&obj)?;
    if obj.contains_key("messages") {
        return Err(invalid(
            "`messages` belongs to /v1/chat/completions; completions take `prompt`",
            "messages",
        ));
    }
    for k in COMPLETIONS_ONLY {
        obj.remove(*k);
    }
    if obj.get("max_tokens").is_none_or(Value::is_null) {
        obj.insert("max_tokens".into(), json!(DEFAULT_MAX_TOKENS));
    }
    obj.insert(
        "messages".into(),
        json!([{"role": "user", "content": prompt}]),
    );
    let chat = serde_json::to_vec(&Value::Object(obj)).map_err(|e| {
        TranslateError::invalid(format!("request body cannot be re-read: {e}"), None)
    })?;
    super::codec::decode_request(&chat)
}

/// The answer's text: its text parts, in order (reasoning and tool calls have no place in a
/// text completion).
fn answer_text(resp: &ChatResponse) -> String {
    let mut text = String::new();
    for p in &resp.content {
        if let OutputPart::Text(t) = p {
            text.push_str(t);
        }
    }
    text
}

/// A completion's `finish_reason`: `stop`, `length` or `content_filter`.
fn finish_str(f: &FinishReason) -> &'static str {
    match finish_reason_str(f) {
        "tool_calls" => "stop",
        s => s,
    }
}

/// A `text_completion` body for `resp`.
pub fn encode_response(resp: &ChatResponse, id: &str, model: &str, created: u64) -> Vec<u8> {
    let mut body = json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{
            "text": answer_text(resp),
            "index": 0,
            "logprobs": null,
            "finish_reason": finish_str(&resp.finish),
        }],
    });
    if let (Some(u), Some(obj)) = (resp.usage, body.as_object_mut()) {
        obj.insert("usage".into(), usage_json(&u));
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Re-encodes canonical stream events as `text_completion` chunks: a chunk per text delta, one
/// with the finish reason, the usage chunk when asked (`stream_options.include_usage`), then
/// `data: [DONE]`. An error ends the stream with OpenAI's error event.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    finished: bool,
    done: bool,
    usage: Option<Usage>,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str, created: u64, include_usage: bool) -> Self {
        StreamEncoder {
            id: id.to_string(),
            model: model.to_string(),
            created,
            include_usage,
            finished: false,
            done: false,
            usage: None,
        }
    }

    fn chunk(&self, out: &mut BytesMut, text: &str, finish: Option<&str>) {
        let body = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        });
        write_data(out, &body);
    }

    /// Appends the caller bytes for one event to `out`.
    pub fn push(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::TextDelta(t) if !t.is_empty() => self.chunk(out, t, None),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) if !self.finished => {
                self.finished = true;
                self.chunk(out, "", Some(finish_str(f)));
            }
            StreamEvent::End => {
                if !self.finished {
                    self.finished = true;
                    self.chunk(out, "", Some("stop"));
                }
                let usage = self.include_usage.then(|| self.usage.unwrap_or_default());
                let head = ChunkHead {
                    id: &self.id,
                    object: "text_completion",
                    created: self.created,
                    model: &self.model,
                };
                write_stream_end(out, &head, usage.as_ref());
                self.done = true;
            }
            StreamEvent::Error(e) => {
                write_stream_error(out, e);
                self.done = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn the_documented_request_becomes_one_user_turn() {
        // OpenAI's documented example: prompt "Say this is a test", max_tokens 7, temperature 0.
        let body = br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"temperature":0,"stop":"\n","stream_options":{"include_usage":true},"stream":true}"#;
        let req = decode_request(body).unwrap();
        assert_eq!(req.model, "gpt-3.5-turbo-instruct");
        assert_eq!(
            req.messages,
            vec![Message {
                role: Role::User,
                content: vec![Part::Text("Say this is a test".into())],
            }]
        );
        assert_eq!(req.max_tokens, Some(7));
        assert_eq!(req.temperature, Some(0.0));
        assert_eq!(req.stop, vec!["\n".to_string()]);
        assert!(req.stream && req.include_usage);
        assert!(req.extra.is_empty(), "{:?}", req.extra);
    }

    #[test]
    fn max_tokens_defaults_to_sixteen_and_a_one_string_array_is_a_prompt() {
        let req = decode_request(br#"{"model":"m","prompt":["hello"]}"#).unwrap();
        assert_eq!(req.max_tokens, Some(16));
        assert_eq!(req.messages[0].content, vec![Part::Text("hello".into())]);
    }

    #[test]
    fn other_shapes_and_unsupported_fields_are_refused_naming_the_param() {
        for (body, param) in [
            (r#"{"model":"m","prompt":["a","b"]}"#, "prompt"),
            (r#"{"model":"m","prompt":[1,2,3]}"#, "prompt"),
            (r#"{"model":"m"}"#, "prompt"),
            (r#"{"model":"m","prompt":"x","suffix":"y"}"#, "suffix"),
            (r#"{"model":"m","prompt":"x","echo":true}"#, "echo"),
            (r#"{"model":"m","prompt":"x","best_of":2}"#, "best_of"),
            (r#"{"model":"m","prompt":"x","logprobs":2}"#, "logprobs"),
            (
                r#"{"model":"m","prompt":"x","temperature":"hot"}"#,
                "temperature",
            ),
        ] {
            let e = decode_request(body.as_bytes()).unwrap_err();
            assert_eq!(e.param(), Some(param), "{body}: {e}");
        }
        // Trivially honoured.
        decode_request(br#"{"model":"m","prompt":"x","echo":false,"best_of":1,"suffix":null}"#)
            .unwrap();
    }

    #[test]
    fn a_response_is_a_text_completion() {
        let resp = ChatResponse {
            id: "x".into(),
            model: "m".into(),
            content: vec![
                OutputPart::Reasoning("hmm".into()),
                OutputPart::Text("This is a test.".into()),
            ],
            finish: FinishReason::Length,
            usage: Some(Usage {
                input_tokens: 5,
                output_tokens: 7,
                ..Default::default()
            }),
        };
        let v: Value = serde_json::from_slice(&encode_response(&resp, "cmpl-1", "m", 9)).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["id"], "cmpl-1");
        assert_eq!(v["created"], 9);
        assert_eq!(v["choices"][0]["text"], "This is a test.");
        assert_eq!(v["choices"][0]["index"], 0);
        assert!(v["choices"][0]["logprobs"].is_null());
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["total_tokens"], 12);
    }

    #[test]
    fn a_stream_is_text_chunks_then_usage_then_done() {
        let mut enc = StreamEncoder::new("cmpl-2", "m", 3, true);
        let mut out = BytesMut::new();
        for ev in [
            StreamEvent::Start {
                id: None,
                model: None,
            },
            StreamEvent::TextDelta("This is".into()),
            StreamEvent::TextDelta(" a test.".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 4,
                ..Default::default()
            }),
            StreamEvent::End,
        ] {
            enc.push(&ev, &mut out);
        }
        assert!(out.ends_with(b"data: [DONE]\n\n"));
        let events = data_events(&out);
        assert_eq!(events.len(), 4, "{events:?}");
        for e in &events {
            assert_eq!(e["object"], "text_completion");
            assert_eq!(e["id"], "cmpl-2");
        }
        let text: String = events[..3]
            .iter()
            .map(|e| e["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "This is a test.");
        assert_eq!(events[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[3]["choices"], json!([]));
        assert_eq!(events[3]["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn a_stream_error_ends_with_the_openai_error_event() {
        let mut enc = StreamEncoder::new("cmpl-3", "m", 3, false);
        let mut out = BytesMut::new();
        enc.push(&StreamEvent::TextDelta("a".into()), &mut out);
        enc.push(
            &StreamEvent::Error(ProviderError::new(ErrorKind::Overloaded, "busy")),
            &mut out,
        );
        enc.push(&StreamEvent::End, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(r#""error":{"#), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
    }
}
