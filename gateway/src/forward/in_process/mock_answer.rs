//! The built-in `mock` provider: deterministic OpenAI-format answers generated in-process.
//!
//! The answer is derived from the prompt (same prompt, same words), with realistic usage counts,
//! `max_tokens` honoured (`finish_reason: "length"`), and streaming in `chunks` pieces spaced by
//! `chunk_interval` after `latency`. It backs the quickstart (a first `curl` with no cloud keys)
//! and tests. Generation is pure ([`MockAnswer`]); [`crate::forward`] writes it to the caller.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_adapters::embeddings::{self, EmbeddingsRequest};

const VOCABULARY: [&str; 32] = [
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
}

impl MockAnswer {
    /// Generates the answer for a chat request body. Errors describe what is wrong with the body.
    pub fn generate(
        body: &[u8],
        max_tokens: Option<u64>,
        choices: u64,
    ) -> Result<MockAnswer, String> {
        let req: MockRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if req.messages.is_empty() {
            return Err("'messages' must contain at least one message".into());
        }
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
        let limit = max_tokens.map(|m| m as usize).unwrap_or(usize::MAX);
        let (words, finish_reason) = choice_words(seed, limit);
        let more = (1..choices.max(1))
            .map(|i| choice_words(xorshift(seed ^ i.wrapping_mul(0x9E37_79B9)), limit))
            .collect();
        Ok(MockAnswer {
            words,
            prompt_tokens,
            finish_reason,
            more,
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
        (self.words.len() + self.more.iter().map(|(w, _)| w.len()).sum::<usize>()) as u64
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
                .map(|(index, (words, finish))| json!({
                    "index": index,
                    "message": {"role": "assistant", "content": words.join(" "), "refusal": null},
                    "logprobs": null,
                    "finish_reason": finish,
                }))
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
        let chunk = |delta: Value, finish: Value| {
            let mut v = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if let (Some(u), Some(obj)) = (&usage_field, v.as_object_mut()) {
                obj.insert("usage".into(), u.clone());
            }
            sse(&v)
        };
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        let pieces = chunks.clamp(1, self.words.len().max(1));
        let per = self.words.len().div_ceil(pieces).max(1);
        for (i, group) in self.words.chunks(per).enumerate() {
            let mut text = group.join(" ");
            if i > 0 {
                text.insert(0, ' ');
            }
            out.push(chunk(json!({"content": text}), Value::Null));
        }
        out.push(chunk(json!({}), json!(self.finish_reason)));
        if self.include_usage {
            out.push(sse(&json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": self.usage(),
            })));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
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
    let dims = req
        .dimensions
        .map_or(MOCK_EMBEDDING_DIMS, |d| d as usize);
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

fn fnv1a(bytes: &[u8]) -> u64 {
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
