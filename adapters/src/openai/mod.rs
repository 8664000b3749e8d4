//! The OpenAI Chat Completions wire format.
//!
//! The fast path for OpenAI-compatible upstreams lives here: [`inspect_chat_request`] reads only the
//! fields a routing decision needs (`model`, `stream`, `stream_options`, max tokens) while
//! validating that the body is one JSON object, and [`rewrite_chat_request`] produces the upstream
//! body by splicing the deployment's model name (and, for streams, `include_usage`) into the
//! caller's bytes — everything else is passed through byte for byte.
//!
//! For responses it extracts usage ([`response_usage`], [`classify_stream_event`]) without
//! building a tree, and renders OpenAI error bodies ([`error_body`]).
//!
//! No I/O here; the gateway decides what to do with the results.

pub mod codec;
pub mod completions;
pub mod responses;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;

/// Why a request body cannot be routed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InspectError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("missing required parameter: 'model'")]
    MissingModel,
    #[error("'model' must be a string")]
    ModelNotString,
    #[error("'{0}' has the wrong type: {1}")]
    WrongType(&'static str, String),
    #[error("'{0}' is out of range: {1}")]
    OutOfRange(&'static str, &'static str),
}

impl InspectError {
    /// The offending parameter, for the error body's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            InspectError::MissingModel | InspectError::ModelNotString => Some("model"),
            InspectError::WrongType(p, _) | InspectError::OutOfRange(p, _) => Some(p),
            _ => None,
        }
    }
}

/// What the gateway needs to know about a chat request, with byte spans into the original body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequestFacts<'a> {
    /// The public model name the caller asked for (unescaped).
    pub model: Cow<'a, str>,
    /// Byte span of the `model` value (including its quotes) in the body.
    model_span: Range<usize>,
    /// `stream: true` was given.
    pub stream: bool,
    /// The caller's `stream_options.include_usage`, if it sent one.
    pub include_usage: Option<bool>,
    /// Byte span of the `stream_options` value, when present.
    stream_options_span: Option<Range<usize>>,
    /// Offset just past the body's opening `{`.
    object_start: usize,
    /// `max_completion_tokens`, else `max_tokens`, when given.
    pub max_tokens: Option<u64>,
    /// The raw `metadata` object, when given (parsed only by routing rules that need it).
    pub metadata: Option<&'a str>,
    /// Completions the provider generates and bills: the larger of `n` and `best_of`, at least
    /// 1, so a fan-out is reserved and estimated in full.
    pub choices: u64,
    /// The raw `response_format` value, when given (parsed only when an answer is checked).
    pub response_format: Option<&'a str>,
}

#[derive(Deserialize)]
struct ChatRequestView<'a> {
    #[serde(borrow, default, deserialize_with = "raw_even_if_null")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_even_if_null")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    n: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_of: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
}

/// Parses an optional field's raw value as `T`, naming the field when its type is wrong.
fn typed_field<'a, T: Deserialize<'a>>(
    name: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Option<T>, InspectError> {
    raw.map(|r| serde_json::from_str::<Option<T>>(r.get()))
        .transpose()
        .map(Option::flatten)
        .map_err(|e| InspectError::WrongType(name, e.to_string()))
}

/// `Option<&RawValue>` maps JSON `null` to `None`; this keeps the raw `null` so its span is known.
fn raw_even_if_null<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&'de RawValue as Deserialize<'de>>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptionsView {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Reads the routing-relevant fields of a chat completions request. The whole body is validated
/// as JSON (unknown fields are skipped without being materialised).
pub fn inspect_chat_request(body: &[u8]) -> Result<ChatRequestFacts<'_>, InspectError> {
    let text = std::str::from_utf8(body).map_err(|e| InspectError::Json(e.to_string()))?;
    let first = text
        .find(|c: char| !c.is_ascii_whitespace())
        .ok_or_else(|| InspectError::Json("empty body".into()))?;
    if text.as_bytes()[first] != b'{' {
        // Still report malformed JSON as such rather than as a type problem.
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| InspectError::Json(e.to_string()))?;
        return Err(InspectError::NotAnObject);
    }
    let view: ChatRequestView<'_> =
        serde_json::from_str(text).map_err(|e| InspectError::Json(e.to_string()))?;
    let stream: Option<bool> = typed_field("stream", view.stream)?;
    let max_tokens: Option<u64> = typed_field("max_tokens", view.max_tokens)?;
    let max_completion_tokens: Option<u64> =
        typed_field("max_completion_tokens", view.max_completion_tokens)?;
    let choices = choice_count("n", view.n)?.max(choice_count("best_of", view.best_of)?);
    let raw_model = view.model.ok_or(InspectError::MissingModel)?;
    let raw = raw_model.get();
    if !raw.starts_with('"') {
        return Err(InspectError::ModelNotString);
    }
    let model: Cow<'_, str> =
        serde_json::from_str(raw).map_err(|_| InspectError::ModelNotString)?;
    let model_span = span_of(text, raw);
    let (include_usage, stream_options_span) = match view.stream_options {
        None => (None, None),
        Some(so) if so.get() == "null" => (None, Some(span_of(text, so.get()))),
        Some(so) => {
            let parsed: StreamOptionsView = serde_json::from_str(so.get())
                .map_err(|e| InspectError::WrongType("stream_options", e.to_string()))?;
            (parsed.include_usage, Some(span_of(text, so.get())))
        }
    };
    Ok(ChatRequestFacts {
        model,
        model_span,
        stream: stream.unwrap_or(false),
        include_usage,
        stream_options_span,
        object_start: first + 1,
        max_tokens: max_completion_tokens.or(max_tokens),
        metadata: view.metadata.map(RawValue::get),
        choices,
        response_format: view.response_format.map(RawValue::get),
    })
}

/// `n` / `best_of`: absent or `null` is 1; otherwise an integer from 1 to [`MAX_CHOICES`].
fn choice_count(name: &'static str, raw: Option<&RawValue>) -> Result<u64, InspectError> {
    match typed_field::<u64>(name, raw)? {
        None => Ok(1),
        Some(0) => Err(InspectError::OutOfRange(name, "must be at least 1")),
        Some(n) if n > MAX_CHOICES => Err(InspectError::OutOfRange(name, "must be at most 128")),
        Some(n) => Ok(n),
    }
}

/// The most completions one request may ask for (OpenAI's own limit for `n`).
pub const MAX_CHOICES: u64 = 128;

/// Byte span of `part` (a slice borrowed from `whole`) within `whole`.
fn span_of(whole: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// The upstream body produced by [`rewrite_chat_request`].
#[derive(Debug, Clone)]
pub struct RewrittenRequest {
    pub body: Bytes,
    /// The gateway turned on `stream_options.include_usage` for metering: the extra usage chunk
    /// (and the `"usage":null` fields it implies) must be hidden from the caller.
    pub usage_injected: bool,
}

/// Builds the upstream body: the caller's bytes with the model name replaced by `upstream_model`
/// and, for streams whose caller did not ask for usage, `stream_options.include_usage` turned on.
/// One allocation of the final size; no JSON tree is built.
pub fn rewrite_chat_request(
    body: &[u8],
    facts: &ChatRequestFacts<'_>,
    upstream_model: &str,
) -> RewrittenRequest {
    let model_json = json_string(upstream_model);
    let inject = facts.stream && facts.include_usage != Some(true);
    // Replacement edits sorted by position: (span, new bytes).
    let mut edits: Vec<(Range<usize>, Cow<'_, [u8]>)> = Vec::with_capacity(2);
    edits.push((
        facts.model_span.clone(),
        Cow::Owned(model_json.into_bytes()),
    ));
    if inject {
        match &facts.stream_options_span {
            None => edits.push((
                facts.object_start..facts.object_start,
                Cow::Borrowed(b"\"stream_options\":{\"include_usage\":true},".as_slice()),
            )),
            Some(span) => {
                let new_opts = with_include_usage(&body[span.clone()]);
                edits.push((span.clone(), Cow::Owned(new_opts)));
            }
        }
    }
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits.iter().map(|(_, b)| b.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut pos = 0;
    for (span, bytes) in &edits {
        out.extend_from_slice(&body[pos..span.start]);
        out.extend_from_slice(bytes);
        pos = span.end;
    }
    out.extend_from_slice(&body[pos..]);
    RewrittenRequest {
        body: out.freeze(),
        usage_injected: inject,
    }
}

/// The caller's bytes with only the model name replaced (same-format passthrough for formats
/// that need no usage injection, e.g. Anthropic to Anthropic).
pub fn rewrite_model(body: &[u8], facts: &ChatRequestFacts<'_>, upstream_model: &str) -> Bytes {
    let model_json = json_string(upstream_model);
    let span = facts.model_span.clone();
    let mut out = BytesMut::with_capacity(body.len() + model_json.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(model_json.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    out.freeze()
}

/// `stream_options` value with `include_usage: true`, other options kept.
fn with_include_usage(raw: &[u8]) -> Vec<u8> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).unwrap_or_default();
    map.insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&map).unwrap_or_else(|_| b"{\"include_usage\":true}".to_vec())
}

/// A JSON string literal for `s`.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// Token counts reported by an OpenAI-compatible provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Prompt tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, part of `prompt_tokens`): not an OpenAI field, priced at
    /// `cache_write_input_per_mtok`.
    #[serde(skip)]
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Prompt tokens served from the provider's cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }
}

#[derive(Deserialize)]
struct UsageView {
    #[serde(default)]
    usage: Option<Usage>,
}

/// Usage of a non-stream chat completion body, if it has one.
///
/// Reads only the `usage` object: its key is found from the end of the body (OpenAI puts it
/// last; a `"usage":` inside a string value would be escaped, so a raw match is a real key) and
/// just that object is parsed. Falls back to a full parse when that fails.
pub fn response_usage(body: &[u8]) -> Option<Usage> {
    if let Some(pos) = finders().usage_key.rfind(body) {
        let mut de = serde_json::Deserializer::from_slice(&body[pos + 8..]);
        if let Ok(Some(u)) = <Option<Usage>>::deserialize(&mut de) {
            return Some(u);
        }
    }
    serde_json::from_slice::<UsageView>(body).ok()?.usage
}

/// Substring searchers built once (building one per call costs more than the search itself on
/// a short SSE event).
struct Finders {
    /// `"usage":` from the end (a whole answer's usage comes last).
    usage_key: memchr::memmem::FinderRev<'static>,
    /// `"usage":` from the start (a stream chunk's).
    usage: memchr::memmem::Finder<'static>,
}

fn finders() -> &'static Finders {
    static FINDERS: std::sync::OnceLock<Finders> = std::sync::OnceLock::new();
    FINDERS.get_or_init(|| Finders {
        usage_key: memchr::memmem::FinderRev::new(b"\"usage\":"),
        usage: memchr::memmem::Finder::new(b"\"usage\":"),
    })
}

/// What one upstream stream event is, as far as the relay cares.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// An ordinary chunk (content, tool calls, finish reason...).
    Chunk,
    /// The final usage chunk (`"choices":[]` with a `usage` object).
    Usage(Usage),
    /// `data: [DONE]`.
    Done,
    /// A comment, keep-alive or event without data.
    Other,
}

/// Classifies one complete SSE event of an OpenAI chat stream. Only events that can carry usage
/// are parsed.
pub fn classify_stream_event(event: &[u8]) -> StreamEvent {
    classify_located(event).0
}

/// Where an event's `"usage":` member is in the event's own bytes, as far as its classification
/// found out: `Some(None)` when its (single-line) data has none, `None` when it was not looked
/// for (no data, `[DONE]`, a usage chunk, or data joined from several lines).
type UsageAt = Option<Option<(usize, usize)>>;

/// [`classify_stream_event`], and where the event's `"usage":` member is ([`UsageAt`]): the
/// pass-through relay strips `"usage":null` with the offsets of the search that classified the
/// event instead of searching it again.
fn classify_located(event: &[u8]) -> (StreamEvent, UsageAt) {
    let Some(data) = crate::sse::event_data(event) else {
        return (StreamEvent::Other, None);
    };
    if data.starts_with(b"[DONE]") {
        return (StreamEvent::Done, None);
    }
    let member = usage_member(&data);
    if member.is_some_and(|(_, value)| data.get(value) == Some(&b'{')) {
        if let Some(u) = serde_json::from_slice::<UsageView>(&data)
            .ok()
            .and_then(|v| v.usage)
        {
            return (StreamEvent::Usage(u), None);
        }
    }
    let at = match data {
        // Borrowed data is a slice of `event`: its offsets move by where it starts.
        std::borrow::Cow::Borrowed(d) => {
            let base = d.as_ptr() as usize - event.as_ptr() as usize;
            Some(member.map(|(key, value)| (base + key, base + value)))
        }
        std::borrow::Cow::Owned(_) => None,
    };
    (StreamEvent::Chunk, at)
}

/// Where `bytes`' first `"usage":` member is: its key's offset and where its value starts (after
/// any spaces). One search serves every question asked of an event's usage (an object, `null`)
/// instead of one search per spelling (four a chunk once `include_usage` was injected).
fn usage_member(bytes: &[u8]) -> Option<(usize, usize)> {
    let key = finders().usage.find(bytes)?;
    let mut value = key + b"\"usage\":".len();
    while bytes.get(value) == Some(&b' ') {
        value += 1;
    }
    Some((key, value))
}

/// Appends `event` to `out` without the `"usage":null` member that OpenAI adds to every chunk
/// once `include_usage` is on, so a caller who did not ask for usage sees the chunk the provider
/// would have sent.
pub fn push_without_null_usage(event: &[u8], out: &mut BytesMut) {
    push_without_null_usage_at(event, None, out)
}

/// [`push_without_null_usage`] with the member's place when the event's classification found it
/// (searched for here otherwise).
fn push_without_null_usage_at(event: &[u8], at: UsageAt, out: &mut BytesMut) {
    let member = match at {
        Some(found) => found,
        None => usage_member(event),
    };
    if let Some((key, value)) = member {
        if key > 0 && event[key - 1] == b',' && event[value..].starts_with(b"null") {
            out.extend_from_slice(&event[..key - 1]);
            out.extend_from_slice(&event[value + b"null".len()..]);
            return;
        }
    }
    out.extend_from_slice(event);
}

/// Relays an OpenAI-compatible SSE stream to an OpenAI caller, chunk by chunk.
///
/// Complete events are forwarded as soon as their terminator arrives (a partial event waits for
/// the rest of its bytes, nothing more). When the gateway injected `include_usage`, the usage
/// chunk and the `"usage":null` members are removed so the caller sees what the provider would
/// have sent without it; otherwise blocks pass through as zero-copy slices. Usage is captured
/// either way.
///
/// An event longer than [`crate::sse::MAX_EVENT_BYTES`] without its terminator stops the relay
/// ([`PassthroughStream::oversized`]): the buffered part is dropped and nothing more is taken in,
/// so a broken upstream cannot make it hold more than that.
#[derive(Debug)]
pub struct PassthroughStream {
    framer: crate::sse::SseFramer,
    usage_injected: bool,
    usage: Option<Usage>,
    saw_done: bool,
}

impl PassthroughStream {
    pub fn new(usage_injected: bool) -> Self {
        PassthroughStream {
            framer: crate::sse::SseFramer::new(),
            usage_injected,
            usage: None,
            saw_done: false,
        }
    }

    /// Feeds one upstream chunk; returns the bytes to send to the caller now, if any (the events
    /// the chunk completed, even when the event after them is oversized).
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let block = self.framer.push(chunk)?;
        if !self.usage_injected {
            for ev in crate::sse::events(&block) {
                self.observe(&ev);
            }
            return Some(block);
        }
        let mut out = BytesMut::with_capacity(block.len());
        for ev in crate::sse::events(&block) {
            let (kind, at) = self.observe(&ev);
            if let StreamEvent::Usage(_) = kind {
                continue;
            }
            push_without_null_usage_at(&ev, at, &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn observe(&mut self, event: &[u8]) -> (StreamEvent, UsageAt) {
        let (kind, at) = classify_located(event);
        match &kind {
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Done => self.saw_done = true,
            _ => {}
        }
        (kind, at)
    }

    /// Bytes of an unterminated last event, forwarded as they are at the end of the stream.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.framer.finish()
    }

    /// An event grew past [`crate::sse::MAX_EVENT_BYTES`] without its terminator: the stream
    /// cannot go on.
    pub fn oversized(&self) -> bool {
        self.framer.over_limit()
    }

    /// Usage reported by the provider, once its usage chunk has passed.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The provider sent `data: [DONE]`.
    pub fn completed(&self) -> bool {
        self.saw_done
    }
}

/// A stream error event in OpenAI's format (`data: {"error":{...}}`), which the official SDKs
/// raise as an `APIError`.
pub fn stream_error_event(message: &str, error_type: &str, code: &str) -> Bytes {
    let body = error_body(message, error_type, None, Some(code));
    let mut out = BytesMut::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// An OpenAI-format error body: `{"error":{"message","type","param","code"}}`.
pub fn error_body(
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code,
        }
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_only_what_routing_needs() {
        let body = br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":7}"#;
        let f = inspect_chat_request(body).unwrap();
        assert_eq!(f.model, "chat");
        assert!(f.stream);
        assert_eq!(f.max_tokens, Some(7));
        assert_eq!(f.include_usage, None);
    }

    #[test]
    fn max_completion_tokens_wins() {
        let body = br#"{"model":"m","max_tokens":7,"max_completion_tokens":9}"#;
        assert_eq!(inspect_chat_request(body).unwrap().max_tokens, Some(9));
    }

    #[test]
    fn choices_are_the_larger_of_n_and_best_of() {
        let choices = |b: &str| inspect_chat_request(b.as_bytes()).map(|f| f.choices);
        assert_eq!(choices(r#"{"model":"m"}"#), Ok(1));
        assert_eq!(choices(r#"{"model":"m","n":null}"#), Ok(1));
        assert_eq!(choices(r#"{"model":"m","n":4}"#), Ok(4));
        assert_eq!(choices(r#"{"model":"m","n":2,"best_of":5}"#), Ok(5));
        assert_eq!(
            choices(r#"{"model":"m","n":0}"#),
            Err(InspectError::OutOfRange("n", "must be at least 1"))
        );
        assert_eq!(
            choices(r#"{"model":"m","best_of":129}"#),
            Err(InspectError::OutOfRange("best_of", "must be at most 128"))
        );
        assert!(matches!(
            choices(r#"{"model":"m","n":-1}"#),
            Err(InspectError::WrongType("n", _))
        ));
    }

    #[test]
    fn rejects_bad_bodies() {
        assert!(matches!(
            inspect_chat_request(b"{\"model\":"),
            Err(InspectError::Json(_))
        ));
        assert!(matches!(
            inspect_chat_request(b""),
            Err(InspectError::Json(_))
        ));
        assert_eq!(
            inspect_chat_request(b"[1,2]"),
            Err(InspectError::NotAnObject)
        );
        assert_eq!(
            inspect_chat_request(b"{\"messages\":[]}"),
            Err(InspectError::MissingModel)
        );
        assert_eq!(
            inspect_chat_request(b"{\"model\":5}"),
            Err(InspectError::ModelNotString)
        );
        assert_eq!(
            inspect_chat_request(b"{\"model\":null}"),
            Err(InspectError::ModelNotString)
        );
        assert!(matches!(
            inspect_chat_request(b"{\"model\":\"m\",\"stream\":\"yes\"}"),
            Err(InspectError::WrongType("stream", _))
        ));
        assert!(matches!(
            inspect_chat_request(b"{\"model\":\"m\",\"model\":\"n\"}"),
            Err(InspectError::Json(_))
        ));
    }

    #[test]
    fn escaped_model_names_are_unescaped() {
        let f = inspect_chat_request(br#"{"model":"a\"b\u00e9"}"#).unwrap();
        assert_eq!(f.model, "a\"b\u{e9}");
    }

    #[test]
    fn rewrite_swaps_model_and_keeps_everything_else() {
        let body = br#" { "messages" : [ {"role":"user","content":"x \"model\": y"} ], "model" : "chat" , "temperature":0.5 }"#;
        let f = inspect_chat_request(body).unwrap();
        let out = rewrite_chat_request(body, &f, "gpt-4o-mini");
        assert!(!out.usage_injected);
        let expected = body
            .iter()
            .map(|b| *b as char)
            .collect::<String>()
            .replace("\"model\" : \"chat\"", "\"model\" : \"gpt-4o-mini\"");
        assert_eq!(std::str::from_utf8(&out.body).unwrap(), expected);
    }

    #[test]
    fn rewrite_injects_usage_for_streams() {
        let body = br#"{"model":"chat","stream":true,"messages":[]}"#;
        let f = inspect_chat_request(body).unwrap();
        let out = rewrite_chat_request(body, &f, "up");
        assert!(out.usage_injected);
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "up");
    }

    #[test]
    fn rewrite_merges_existing_stream_options() {
        for so in [
            r#"{"include_obfuscation":false}"#,
            r#"{"include_usage":false}"#,
            "null",
        ] {
            let body = format!(r#"{{"stream_options":{so},"model":"chat","stream":true}}"#);
            let f = inspect_chat_request(body.as_bytes()).unwrap();
            let out = rewrite_chat_request(body.as_bytes(), &f, "up");
            assert!(out.usage_injected, "{so}");
            let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true, "{so}");
            if so.contains("obfuscation") {
                assert_eq!(v["stream_options"]["include_obfuscation"], false);
            }
        }
    }

    #[test]
    fn caller_usage_request_is_left_alone() {
        let body = br#"{"model":"chat","stream":true,"stream_options":{"include_usage":true}}"#;
        let f = inspect_chat_request(body).unwrap();
        let out = rewrite_chat_request(body, &f, "chat");
        assert!(!out.usage_injected);
        assert_eq!(&out.body[..], &body[..]);
    }

    #[test]
    fn non_stream_never_injects() {
        let body = br#"{"model":"chat"}"#;
        let f = inspect_chat_request(body).unwrap();
        assert!(!rewrite_chat_request(body, &f, "x").usage_injected);
    }

    #[test]
    fn usage_from_documented_response() {
        // OpenAI's documented text response (wire-formats reference, OAI-SPEC example).
        let body = br#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-5.4","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}"#;
        let u = response_usage(body).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (19, 10, 29)
        );
        assert_eq!(u.cached_tokens(), 0);
    }

    #[test]
    fn classifies_documented_stream_events() {
        let usage = br#"data: {"id":"chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh","object":"chat.completion.chunk","created":1727346171,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_7568d46099","choices":[],"usage":{"prompt_tokens":79,"completion_tokens":1,"total_tokens":80,"completion_tokens_details":{"reasoning_tokens":0}}}

"#;
        match classify_stream_event(usage) {
            StreamEvent::Usage(u) => assert_eq!(u.total_tokens, 80),
            other => panic!("{other:?}"),
        }
        let chunk = br#"data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"{\""},"logprobs":null,"finish_reason":null}],"usage":null}

"#;
        assert_eq!(classify_stream_event(chunk), StreamEvent::Chunk);
        assert_eq!(
            classify_stream_event(b"data: [DONE]\n\n"),
            StreamEvent::Done
        );
        assert_eq!(
            classify_stream_event(b": keep-alive\n\n"),
            StreamEvent::Other
        );
    }

    #[test]
    fn strips_null_usage_member() {
        let mut out = BytesMut::new();
        push_without_null_usage(br#"data: {"id":"c","choices":[],"usage":null}"#, &mut out);
        assert_eq!(&out[..], br#"data: {"id":"c","choices":[]}"#);
        out.clear();
        push_without_null_usage(b"data: {\"id\":\"c\"}", &mut out);
        assert_eq!(&out[..], b"data: {\"id\":\"c\"}");
        out.clear();
        // Spaced as some compatible servers write it; a usage object is never stripped.
        push_without_null_usage(br#"data: {"id":"c", "x":1,"usage": null}"#, &mut out);
        assert_eq!(&out[..], br#"data: {"id":"c", "x":1}"#);
        out.clear();
        let with_usage = br#"data: {"id":"c","choices":[],"usage":{"total_tokens":3}}"#;
        push_without_null_usage(with_usage, &mut out);
        assert_eq!(&out[..], &with_usage[..]);
    }

    #[test]
    fn a_usage_chunk_is_told_apart_from_a_null_one_in_either_spelling() {
        let spaced = b"data: {\"choices\":[],\"usage\": {\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
        assert!(
            matches!(classify_stream_event(spaced), StreamEvent::Usage(u) if u.total_tokens == 3)
        );
        let null = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n";
        assert_eq!(classify_stream_event(null), StreamEvent::Chunk);
    }

    #[test]
    fn usage_is_found_wherever_it_sits() {
        let first = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},"choices":[{"message":{"content":"say \"usage\": 5"}}]}"#;
        assert_eq!(response_usage(first).unwrap().total_tokens, 3);
        let tricky = br#"{"choices":[{"message":{"content":"x"}}],"usage":null}"#;
        assert_eq!(response_usage(tricky), None);
        assert_eq!(response_usage(b"{}"), None);
    }

    #[test]
    fn error_body_has_all_four_keys() {
        let b = error_body(
            "nope",
            "invalid_request_error",
            None,
            Some("model_not_found"),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["message"], "nope");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
        assert_eq!(v["error"]["code"], "model_not_found");
    }

    const STREAM_WITH_USAGE: &str = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run_stream(injected: bool, piece: usize) -> (String, Option<Usage>, bool) {
        let mut relay = PassthroughStream::new(injected);
        let mut out = Vec::new();
        for c in STREAM_WITH_USAGE.as_bytes().chunks(piece) {
            if let Some(b) = relay.push(Bytes::copy_from_slice(c)) {
                out.extend_from_slice(&b);
            }
        }
        assert!(relay.finish().is_none());
        (
            String::from_utf8(out).unwrap(),
            relay.usage(),
            relay.completed(),
        )
    }

    #[test]
    fn an_oversized_event_stops_the_pass_through_after_the_events_before_it() {
        let mut relay = PassthroughStream::new(false);
        let first = relay.push(Bytes::from_static(b"data: {\"a\":1}\n\ndata: {\"b\":\""));
        assert_eq!(first.as_deref(), Some(&b"data: {\"a\":1}\n\n"[..]));
        let mib = Bytes::from(vec![b'x'; 1024 * 1024]);
        // 13 bytes of the event came with the first chunk: 16 MiB more is over the limit.
        for _ in 0..15 {
            assert!(relay.push(mib.clone()).is_none());
            assert!(!relay.oversized());
        }
        assert!(relay.push(mib.clone()).is_none());
        assert!(relay.oversized());
        // Nothing more is taken in, not even a terminator.
        assert!(relay
            .push(Bytes::from_static(b"\n\ndata: [DONE]\n\n"))
            .is_none());
        assert!(relay.finish().is_none());
        assert!(!relay.completed());
    }

    #[test]
    fn injected_usage_is_hidden_but_metered() {
        for piece in [1, 7, 64, 10_000] {
            let (out, usage, done) = run_stream(true, piece);
            assert!(!out.contains("usage"), "{out}");
            assert!(out.ends_with("data: [DONE]\n\n"));
            assert_eq!(out.matches("data: ").count(), 4);
            assert_eq!(usage.unwrap().total_tokens, 4);
            assert!(done);
        }
    }

    #[test]
    fn injected_null_usage_is_stripped_where_classification_found_it() {
        // An `id:` line and CRLF ends move the data within the event; data over two lines is
        // joined (its offsets are not the event's): the member is searched for again there.
        let cases: [(&[u8], &[u8]); 3] = [
            (
                b"id: 7\r\ndata: {\"id\":\"c\",\"choices\":[],\"usage\":null}\r\n\r\n",
                b"id: 7\r\ndata: {\"id\":\"c\",\"choices\":[]}\r\n\r\n",
            ),
            (
                b"data: {\"id\":\"c\"\ndata: ,\"usage\": null}\n\n",
                b"data: {\"id\":\"c\"\ndata: }\n\n",
            ),
            (b": keep-alive\n\n", b": keep-alive\n\n"),
        ];
        for (event, expected) in cases {
            let mut relay = PassthroughStream::new(true);
            let out = relay.push(Bytes::copy_from_slice(event));
            assert_eq!(out.as_deref(), Some(expected));
            let mut searched = BytesMut::new();
            push_without_null_usage(event, &mut searched);
            assert_eq!(&searched[..], expected);
        }
    }

    #[test]
    fn requested_usage_passes_through_byte_exact() {
        for piece in [1, 13, 10_000] {
            let (out, usage, _) = run_stream(false, piece);
            assert_eq!(out, STREAM_WITH_USAGE);
            assert_eq!(usage.unwrap().prompt_tokens, 3);
        }
    }

    #[test]
    fn stream_error_event_is_sse() {
        let ev = stream_error_event("upstream stalled", "upstream_error", "stream_timeout");
        let s = std::str::from_utf8(&ev).unwrap();
        assert!(s.starts_with("data: {\"error\":"));
        assert!(s.ends_with("\n\n"));
    }
}
