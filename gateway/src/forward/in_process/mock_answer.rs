//! The built-in `mock` provider: deterministic OpenAI-format answers generated in-process.
//!
//! The answer is derived from the prompt (same prompt, same words), with realistic usage counts,
//! `max_tokens` honoured (`finish_reason: "length"`), and streaming in `chunks` pieces spaced by
//! `chunk_interval` after `latency`. It backs the quickstart (a first `curl` with no cloud keys)
//! and tests. Generation is pure ([`MockAnswer`]); [`crate::forward`] writes it to the caller.

use super::{mock_logprobs, mock_tools};
use bytes::Bytes;
use mock_tools::ToolCall;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_adapters::embeddings::{self, EmbeddingsRequest};

pub(super) const VOCABULARY: [&str; 32] = [
    "gateway", "route", "token", "stream", "model", "latency", "budget", "request", "provider",
    "answer", "edge", "policy", "cache", "shard", "quota", "signal", "packet", "switch", "yard",
    "rail", "track", "junction", "engine", "signal", "freight", "schedule", "platform", "relay",
    "buffer", "metric", "health", "fallback",
];

#[derive(Deserialize)]
struct MockRequest {
    messages: Vec<MockMessage>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

/// Why the mock cannot answer a request as written: the message, and the request field it is
/// about.
#[derive(Debug, Clone, PartialEq)]
pub struct MockRefusal {
    pub message: String,
    pub param: Option<&'static str>,
}

impl MockRefusal {
    pub fn new(message: impl Into<String>, param: &'static str) -> Self {
        MockRefusal {
            message: message.into(),
            param: Some(param),
        }
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct MockMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MockAnswer {
    pub words: Vec<&'static str>,
    pub prompt_tokens: u64,
    pub finish_reason: &'static str,
    pub include_usage: bool,
    /// The choices after the first when the request asked for `n` > 1 (non-stream only), each
    /// with its own words and finish reason.
    pub more: Vec<(Vec<&'static str>, &'static str)>,
    /// `logprobs: true`: the number of `top_logprobs` alternatives per token.
    pub logprobs: Option<usize>,
    /// `tool_choice` forced a call: every choice makes it (and has no words).
    pub tool_call: Option<ToolCall>,
}

impl MockAnswer {
    /// Generates the answer for a chat request body. Errors describe what is wrong with the body
    /// and name the field.
    pub fn generate(
        body: &[u8],
        max_tokens: Option<u64>,
        choices: u64,
    ) -> Result<MockAnswer, MockRefusal> {
        let req: MockRequest = serde_json::from_slice(body).map_err(|e| MockRefusal {
            message: e.to_string(),
            param: None,
        })?;
        if req.messages.is_empty() {
            return Err(MockRefusal::new(
                "'messages' must contain at least one message",
                "messages",
            ));
        }
        let logprobs = requested_logprobs(req.logprobs, req.top_logprobs.as_ref())?;
        let mut prompt_tokens = 3u64;
        let mut last_user = String::new();
        for m in &req.messages {
            let text = content_text(&m.content);
            prompt_tokens += 4 + text.split_whitespace().count() as u64;
            if m.role == "user" {
                last_user = text;
            }
        }
        let seed = fnv1a(last_user.as_bytes());
        let tool_call =
            mock_tools::forced_call(req.tools.as_deref(), req.tool_choice.as_ref(), seed)?;
        let limit = max_tokens.map(|m| m as usize).unwrap_or(usize::MAX);
        let (words, finish_reason, more) = if tool_call.is_some() {
            let more = (1..choices.max(1)).map(|_| (Vec::new(), "tool_calls"));
            (Vec::new(), "tool_calls", more.collect())
        } else {
            let (words, finish_reason) = choice_words(seed, limit);
            let more = (1..choices.max(1))
                .map(|i| choice_words(xorshift(seed ^ i.wrapping_mul(0x9E37_79B9)), limit))
                .collect();
            (words, finish_reason, more)
        };
        Ok(MockAnswer {
            words,
            prompt_tokens,
            finish_reason,
            more,
            logprobs,
            tool_call,
            include_usage: req
                .stream_options
                .and_then(|s| s.include_usage)
                .unwrap_or(false),
        })
    }

    pub fn content(&self) -> String {
        self.words.join(" ")
    }

    /// Completion tokens of every choice.
    fn completion_tokens(&self) -> u64 {
        let words = self.words.len() + self.more.iter().map(|(w, _)| w.len()).sum::<usize>();
        let calls = self
            .tool_call
            .as_ref()
            .map_or(0, |c| c.tokens() * (1 + self.more.len() as u64));
        words as u64 + calls
    }

    /// One choice's `message` (its words, or the forced tool call) and `logprobs`.
    fn message_and_logprobs(&self, words: &[&str]) -> (Value, Value) {
        let logprobs = match self.logprobs {
            Some(top) => mock_logprobs::object(mock_logprobs::entries(&tokens(words), top)),
            None => Value::Null,
        };
        let message = match &self.tool_call {
            Some(call) => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{"id": call.id, "type": "function",
                                "function": {"name": call.name, "arguments": call.arguments}}],
                "refusal": null,
            }),
            None => json!({"role": "assistant", "content": words.join(" "), "refusal": null}),
        };
        (message, logprobs)
    }

    fn usage(&self) -> Value {
        let completion = self.completion_tokens();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    /// Usage as the metering code sees it.
    pub fn usage_counts(&self) -> switchyard_adapters::openai::Usage {
        let completion = self.completion_tokens();
        switchyard_adapters::openai::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: completion,
            total_tokens: self.prompt_tokens + completion,
            ..Default::default()
        }
    }

    /// The non-stream `chat.completion` body.
    pub fn completion_body(&self, id: &str, model: &str, created: u64) -> Bytes {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": std::iter::once((&self.words, self.finish_reason))
                .chain(self.more.iter().map(|(w, f)| (w, *f)))
                .enumerate()
                .map(|(index, (words, finish))| {
                    let (message, logprobs) = self.message_and_logprobs(words);
                    json!({
                        "index": index,
                        "message": message,
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    })
                })
                .collect::<Vec<_>>(),
            "usage": self.usage(),
        });
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The stream's SSE events: role chunk, `chunks` content chunks, finish chunk, the usage
    /// chunk when asked for, `[DONE]`.
    pub fn stream_events(&self, id: &str, model: &str, created: u64, chunks: usize) -> Vec<Bytes> {
        let usage_field = if self.include_usage {
            Some(Value::Null)
        } else {
            None
        };
        let chunk = |delta: Value, logprobs: Value, finish: Value| {
            let mut v = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            });
            if let (Some(u), Some(obj)) = (&usage_field, v.as_object_mut()) {
                obj.insert("usage".into(), u.clone());
            }
            sse(&v)
        };
        if let Some(call) = &self.tool_call {
            return self
                .tool_call_events(call, chunks, chunk, || self.usage_event(id, model, created));
        }
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
        )];
        // Every token's entry, computed once so the stream shows what the whole answer shows.
        let mut entries = match self.logprobs {
            Some(top) => mock_logprobs::entries(&tokens(&self.words), top),
            None => Vec::new(),
        }
        .into_iter();
        let pieces = chunks.clamp(1, self.words.len().max(1));
        let per = self.words.len().div_ceil(pieces).max(1);
        for (i, group) in self.words.chunks(per).enumerate() {
            let mut text = group.join(" ");
            if i > 0 {
                text.insert(0, ' ');
            }
            let logprobs = match self.logprobs {
                Some(_) => mock_logprobs::object(entries.by_ref().take(group.len()).collect()),
                None => Value::Null,
            };
            out.push(chunk(json!({"content": text}), logprobs, Value::Null));
        }
        out.push(chunk(json!({}), Value::Null, json!(self.finish_reason)));
        if self.include_usage {
            out.push(self.usage_event(id, model, created));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }

    /// The usage chunk of a stream.
    fn usage_event(&self, id: &str, model: &str, created: u64) -> Bytes {
        sse(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": self.usage(),
        }))
    }

    /// A forced tool call's stream: the call's head (id, name) with the role, its arguments in
    /// up to `chunks` pieces, the `tool_calls` finish, usage when asked, `[DONE]`.
    fn tool_call_events(
        &self,
        call: &ToolCall,
        chunks: usize,
        chunk: impl Fn(Value, Value, Value) -> Bytes,
        usage_event: impl Fn() -> Bytes,
    ) -> Vec<Bytes> {
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}]}),
            Value::Null,
            Value::Null,
        )];
        let chars: Vec<char> = call.arguments.chars().collect();
        let per = chars.len().div_ceil(chunks.max(1)).max(1);
        for piece in chars.chunks(per) {
            let text: String = piece.iter().collect();
            out.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": text}}]}),
                Value::Null,
                Value::Null,
            ));
        }
        out.push(chunk(json!({}), Value::Null, json!("tool_calls")));
        if self.include_usage {
            out.push(usage_event());
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }
}

/// The tokens of an answer's words: each word, with its leading space after the first.
fn tokens(words: &[&str]) -> Vec<String> {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                (*w).to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// `logprobs` / `top_logprobs` as asked: `Some(alternatives)` when logprobs are on.
fn requested_logprobs(
    logprobs: Option<bool>,
    top: Option<&Value>,
) -> Result<Option<usize>, MockRefusal> {
    let top = match top {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n <= 20).ok_or_else(|| {
            MockRefusal::new(
                "'top_logprobs' must be an integer from 0 to 20",
                "top_logprobs",
            )
        })?),
    };
    match (logprobs.unwrap_or(false), top) {
        (true, top) => Ok(Some(top.unwrap_or(0) as usize)),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(MockRefusal::new(
            "'top_logprobs' needs 'logprobs': true",
            "top_logprobs",
        )),
    }
}

/// One choice's words from `seed` (the same prompt gives the same words), at most `limit`, and
/// its finish reason.
fn choice_words(mut h: u64, limit: usize) -> (Vec<&'static str>, &'static str) {
    let natural = 12 + (h % 12) as usize;
    let count = natural.min(limit);
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        h = xorshift(h);
        words.push(VOCABULARY[(h % VOCABULARY.len() as u64) as usize]);
    }
    (words, if count < natural { "length" } else { "stop" })
}

fn sse(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Dimensions of the mock provider's embeddings when the request names none.
pub const MOCK_EMBEDDING_DIMS: usize = 16;

/// A mock `/v1/embeddings` answer: one deterministic unit vector per input (same text, same
/// vector) of `dimensions` (default [`MOCK_EMBEDDING_DIMS`]), as floats or base64 as asked;
/// usage counted in words. Returns (body, tokens).
pub fn embeddings_body(req: &EmbeddingsRequest, model: &str) -> (Bytes, u64) {
    let dims = req.dimensions.map_or(MOCK_EMBEDDING_DIMS, |d| d as usize);
    let mut tokens = 0u64;
    let vectors: Vec<Vec<f32>> = req
        .inputs
        .iter()
        .map(|text| {
            tokens += text.split_whitespace().count().max(1) as u64;
            let mut h = fnv1a(text.as_bytes());
            let vec: Vec<f64> = (0..dims)
                .map(|_| {
                    h = xorshift(h);
                    (h % 2001) as f64 / 1000.0 - 1.0
                })
                .collect();
            let norm = vec.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            vec.iter().map(|x| (x / norm) as f32).collect()
        })
        .collect();
    let body = embeddings::encode_response(&vectors, model, tokens, req.base64);
    (Bytes::from(body), tokens)
}

/// The text of a message's content: a string, or the text parts of a part list.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = br#"{"model":"chat","messages":[{"role":"user","content":"hello"}]}"#;

    #[test]
    fn same_prompt_same_answer_different_prompt_different_answer() {
        let a = MockAnswer::generate(HELLO, None, 1).unwrap();
        let b = MockAnswer::generate(HELLO, None, 1).unwrap();
        let c = MockAnswer::generate(
            br#"{"model":"chat","messages":[{"role":"user","content":"goodbye"}]}"#,
            None,
            1,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_ne!(a.content(), c.content());
        assert_eq!(a.finish_reason, "stop");
        assert!(a.prompt_tokens > 0 && !a.words.is_empty());
    }

    #[test]
    fn max_tokens_truncates_with_length() {
        let a = MockAnswer::generate(HELLO, Some(2), 1).unwrap();
        assert_eq!(a.words.len(), 2);
        assert_eq!(a.finish_reason, "length");
    }

    #[test]
    fn stream_reassembles_to_the_non_stream_content() {
        let a = MockAnswer::generate(HELLO, None, 1).unwrap();
        let events = a.stream_events("id", "mock-1", 1, 4);
        let mut text = String::new();
        for ev in &events[..events.len() - 1] {
            let data = &ev[6..ev.len() - 2];
            let v: Value = serde_json::from_slice(data).unwrap();
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(c);
            }
            assert!(v.get("usage").is_none());
        }
        assert_eq!(text, a.content());
        assert_eq!(events.len(), 1 + 4 + 1 + 1);
        assert_eq!(&events[events.len() - 1][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn usage_chunk_only_when_asked() {
        let body = br#"{"model":"c","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
        let a = MockAnswer::generate(body, None, 1).unwrap();
        let events = a.stream_events("id", "m", 1, 3);
        let usage_ev = &events[events.len() - 2];
        let v: Value = serde_json::from_slice(&usage_ev[6..usage_ev.len() - 2]).unwrap();
        assert_eq!(v["choices"], json!([]));
        assert_eq!(
            v["usage"]["total_tokens"].as_u64().unwrap(),
            a.usage_counts().total_tokens
        );
    }

    #[test]
    fn bad_bodies_are_described() {
        assert!(MockAnswer::generate(br#"{"model":"c"}"#, None, 1)
            .unwrap_err()
            .message
            .contains("messages"));
        assert!(MockAnswer::generate(br#"{"model":"c","messages":[]}"#, None, 1).is_err());
    }

    #[test]
    fn n_choices_have_their_own_words_and_are_all_counted() {
        let one = MockAnswer::generate(HELLO, None, 1).unwrap();
        let three = MockAnswer::generate(HELLO, None, 3).unwrap();
        assert_eq!(
            three.words, one.words,
            "the first choice is the single answer"
        );
        assert_eq!(three.more.len(), 2);
        assert_ne!(three.more[0].0, three.more[1].0);
        let body: Value = serde_json::from_slice(&three.completion_body("id", "m", 1)).unwrap();
        let choices = body["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        assert_eq!(choices[2]["index"], 2);
        let words: usize = choices
            .iter()
            .map(|c| c["message"]["content"].as_str().unwrap().split(' ').count())
            .sum();
        assert_eq!(body["usage"]["completion_tokens"], words as u64);
        assert_eq!(three.usage_counts().completion_tokens, words as u64);
    }
}
