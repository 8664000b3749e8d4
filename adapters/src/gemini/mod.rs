//! The Google Gemini Developer API as a provider format: canonical request → `generateContent` /
//! `streamGenerateContent?alt=sse` body, `GenerateContentResponse` → canonical response, the SSE
//! stream → canonical [`StreamEvent`]s, and Google-shaped error bodies → [`ProviderError`].
//!
//! Pure translation: no I/O, no clocks, no randomness. Requests reaching [`encode_request`] have
//! already been pruned by [`crate::capabilities::prune`] for [`Dialect::Gemini`], so every field
//! still present is one the table marks forward or translate, and all of them are encoded.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use crate::canonical::*;

mod stream;
pub use stream::*;

/// Gemini's documented placeholder signature for function calls from other providers.
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// Largest single SSE event (or raw JSON error body) the stream decoder buffers.
pub use crate::sse::MAX_EVENT_BYTES;

/// Longest error message taken from an unparseable error body, in characters.
const MAX_ERROR_TEXT: usize = 500;

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Encodes a (pruned) canonical request. Path below `base_url` (e.g.
/// `https://generativelanguage.googleapis.com/v1beta`): `/models/{model}:generateContent`, or
/// `/models/{model}:streamGenerateContent?alt=sse` when `req.stream`.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    let mut body = Map::new();

    if let Some(system) = system_text(&req.messages) {
        body.insert(
            "systemInstruction".into(),
            json!({ "parts": [{ "text": system }] }),
        );
    }
    body.insert(
        "contents".into(),
        Value::Array(encode_contents(&req.messages)?),
    );

    let config = generation_config(req);
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }

    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), Value::String(t.name.clone()));
                if let Some(desc) = t.description.as_deref().filter(|d| !d.is_empty()) {
                    d.insert("description".into(), Value::String(desc.to_string()));
                }
                if let Some(p) = &t.parameters {
                    d.insert("parametersJsonSchema".into(), p.clone());
                }
                Value::Object(d)
            })
            .collect();
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
    }

    if let Some(choice) = &req.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({ "mode": "AUTO" }),
            ToolChoice::None => json!({ "mode": "NONE" }),
            ToolChoice::Required => json!({ "mode": "ANY" }),
            ToolChoice::Function(name) => {
                json!({ "mode": "ANY", "allowedFunctionNames": [name] })
            }
        };
        body.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }

    let model = opts.model.strip_prefix("models/").unwrap_or(opts.model);
    let path = if req.stream {
        format!("/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/models/{model}:generateContent")
    };
    let body = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| TranslateError::invalid(format!("cannot serialize request: {e}"), None))?;
    Ok(EncodedRequest { path, body })
}

/// `contents[]`: system turns skipped (hoisted by the caller), user/tool → `user`, assistant →
/// `model`, consecutive contents of the same role merged (so consecutive tool results become one
/// `user` content with N `functionResponse` parts).
fn encode_contents(messages: &[Message]) -> Result<Vec<Value>, TranslateError> {
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for m in messages {
        let role = match m.role {
            Role::System => continue,
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        let mut parts = Vec::with_capacity(m.content.len());
        for p in &m.content {
            match p {
                Part::Text(t) => {
                    if !t.is_empty() {
                        parts.push(json!({ "text": t }));
                    }
                }
                Part::Image(Image::Base64 { media_type, data }) => {
                    parts.push(json!({ "inlineData": { "mimeType": media_type, "data": data } }));
                }
                Part::Image(Image::Url(_)) => {
                    return Err(TranslateError::invalid(
                        "image URLs cannot be sent to gemini; send the image inline (base64 data URL)",
                        Some("messages".to_string()),
                    ));
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    call_names.insert(id.as_str(), name.as_str());
                    let args = arguments_object(arguments)?;
                    // The canonical model carries no thought signature, and Gemini 3 rejects a
                    // history call without one: Google's documented placeholder for histories
                    // that did not come from Gemini skips that check (wire-formats §6.5 #8).
                    parts.push(json!({
                        "functionCall": { "name": name, "args": args },
                        "thoughtSignature": SKIP_THOUGHT_SIGNATURE,
                    }));
                }
                Part::ToolResult {
                    call_id,
                    name,
                    content,
                    is_error,
                } => {
                    let name = match name.as_deref() {
                        Some(n) if !n.is_empty() => n,
                        _ => call_names.get(call_id.as_str()).copied().ok_or_else(|| {
                            TranslateError::invalid(
                                format!(
                                    "tool result `{call_id}` answers no earlier tool call; gemini needs the function name"
                                ),
                                Some("messages".to_string()),
                            )
                        })?,
                    };
                    parts.push(json!({
                        "functionResponse": { "name": name, "response": tool_response(content, *is_error) }
                    }));
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((last_role, last_parts)) if *last_role == role => last_parts.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    Ok(contents
        .into_iter()
        .map(|(role, parts)| json!({ "role": role, "parts": parts }))
        .collect())
}

/// `functionResponse.response`: a JSON-object result as is, other text as `{"output": text}`,
/// an error result as `{"error": text}`.
fn tool_response(content: &str, is_error: bool) -> Value {
    if is_error {
        return json!({ "error": content });
    }
    match serde_json::from_str::<Value>(content) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "output": content }),
    }
}

fn generation_config(req: &ChatRequest) -> Map<String, Value> {
    let mut c = Map::new();
    if let Some(t) = req.temperature {
        c.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        c.insert("topP".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        c.insert("topK".into(), json!(k));
    }
    if let Some(m) = req.max_tokens {
        c.insert("maxOutputTokens".into(), json!(m));
    }
    if !req.stop.is_empty() {
        c.insert("stopSequences".into(), json!(req.stop));
    }
    if let Some(s) = req.seed {
        c.insert("seed".into(), json!(s));
    }
    if let Some(p) = req.presence_penalty {
        c.insert("presencePenalty".into(), json!(p));
    }
    if let Some(f) = req.frequency_penalty {
        c.insert("frequencyPenalty".into(), json!(f));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            c.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            c.insert("responseMimeType".into(), json!("application/json"));
            c.insert("responseJsonSchema".into(), schema.clone());
        }
        Some(ResponseFormat::Text) | None => {}
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Response model (only what is read; unknown fields ignored)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GResponse {
    candidates: Option<Vec<Candidate>>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    response_id: Option<String>,
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Content {
    parts: Option<Vec<GPart>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GPart {
    text: Option<String>,
    thought: Option<bool>,
    function_call: Option<FunctionCall>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FunctionCall {
    id: Option<String>,
    name: Option<String>,
    args: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct UsageMetadata {
    #[serde(deserialize_with = "count")]
    prompt_token_count: u64,
    #[serde(deserialize_with = "count")]
    candidates_token_count: u64,
    #[serde(deserialize_with = "count")]
    thoughts_token_count: u64,
    #[serde(deserialize_with = "count")]
    tool_use_prompt_token_count: u64,
    #[serde(deserialize_with = "count")]
    cached_content_token_count: u64,
}

impl UsageMetadata {
    fn to_usage(&self) -> Usage {
        Usage {
            input_tokens: self
                .prompt_token_count
                .saturating_add(self.tool_use_prompt_token_count),
            output_tokens: self
                .candidates_token_count
                .saturating_add(self.thoughts_token_count),
            cache_read_tokens: self.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: self.thoughts_token_count,
        }
    }
}

/// A token count: a non-negative integer, a decimal string (proto3 JSON int64), or null (0).
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom(format!("invalid token count {n}"))),
        Value::String(s) => s
            .parse::<u64>()
            .map_err(|_| D::Error::custom(format!("invalid token count {s:?}"))),
        other => Err(D::Error::custom(format!("invalid token count {other}"))),
    }
}

/// Canonical finish reason of a Gemini `finishReason`; `saw_call`: the candidate (or stream)
/// contained a `functionCall`, which Gemini reports as `STOP`.
fn map_finish(reason: &str, saw_call: bool) -> FinishReason {
    match reason {
        "STOP" if saw_call => FinishReason::ToolCalls,
        "STOP" | "FINISH_REASON_UNSPECIFIED" | "OTHER" | "LANGUAGE" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
            FinishReason::ContentFilter
        }
        r if r.starts_with("IMAGE_") => FinishReason::ContentFilter,
        r => FinishReason::Other(r.to_string()),
    }
}

/// A `functionCall.args` as the canonical JSON-text arguments (`{}` when absent).
fn args_text(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    }
}

fn malformed(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Server, format!("malformed gemini {what}: {e}"))
}

/// The HTTP status an in-body error claims (`error.code`), 500 when absent or out of range.
fn error_code(err: &Value) -> u16 {
    err.get("code")
        .and_then(Value::as_u64)
        .filter(|c| (100..=599).contains(c))
        .map_or(500, |c| c as u16)
}

/// Parses a whole body, accepting a JSON array of responses (the stream endpoint without
/// `alt=sse`, or an array-wrapped error) as well as a single object.
fn parse_responses(body: &[u8]) -> Result<Vec<GResponse>, serde_json::Error> {
    let trimmed = body.trim_ascii();
    if trimmed.first() == Some(&b'[') {
        serde_json::from_slice(trimmed)
    } else {
        serde_json::from_slice(trimmed).map(|r| vec![r])
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Decodes a `generateContent` body. An in-body `{"error":…}` (or `[{"error":…}]`) is an `Err`
/// classified by its `code`; malformed JSON is an `Err` of kind [`ErrorKind::Server`].
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let responses = parse_responses(body).map_err(|e| malformed("response", e))?;
    if responses.is_empty() {
        return Err(malformed("response", "empty array"));
    }
    let mut id = String::new();
    let mut model = String::new();
    let mut content = Vec::new();
    let mut finish: Option<String> = None;
    let mut usage = None;
    let mut calls = 0u32;
    let mut any_candidate = false;
    let mut blocked = false;
    for r in responses {
        if let Some(err) = &r.error {
            return Err(error_from_value(error_code(err), err, None));
        }
        if id.is_empty() {
            id = r.response_id.unwrap_or_default();
        }
        if model.is_empty() {
            model = r.model_version.unwrap_or_default();
        }
        if let Some(u) = &r.usage_metadata {
            usage = Some(u.to_usage());
        }
        blocked |= r
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        let Some(cand) = r.candidates.and_then(|c| c.into_iter().next()) else {
            continue;
        };
        any_candidate = true;
        for part in cand.content.and_then(|c| c.parts).unwrap_or_default() {
            if let Some(fc) = part.function_call {
                let id = fc
                    .id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| format!("call_{calls}"));
                calls = calls.saturating_add(1);
                content.push(OutputPart::ToolCall {
                    id,
                    name: fc.name.unwrap_or_default(),
                    arguments: args_text(fc.args.as_ref()),
                });
            } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                if part.thought == Some(true) {
                    content.push(OutputPart::Reasoning(text));
                } else {
                    content.push(OutputPart::Text(text));
                }
            }
        }
        if let Some(f) = cand.finish_reason.filter(|f| !f.is_empty()) {
            finish = Some(f);
        }
    }
    if !any_candidate {
        if blocked {
            return Ok(ChatResponse {
                id,
                model,
                content: Vec::new(),
                finish: FinishReason::ContentFilter,
                usage,
            });
        }
        return Err(ProviderError::new(
            ErrorKind::Server,
            "gemini response has no candidates",
        ));
    }
    let finish = map_finish(finish.as_deref().unwrap_or("STOP"), calls > 0);
    Ok(ChatResponse {
        id,
        model,
        content,
        finish,
        usage,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Classifies an error response: `status` is the HTTP status, `body` the response body,
/// `retry_after_secs` a `Retry-After` header the gateway saw (else `RetryInfo.retryDelay`).
pub fn decode_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body.trim_ascii()).ok();
    let err = parsed.as_ref().and_then(|v| match v {
        Value::Object(o) => o.get("error"),
        Value::Array(a) => a.iter().find_map(|e| e.get("error")),
        _ => None,
    });
    match err {
        Some(err) => error_from_value(status, err, retry_after_secs),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = truncate_chars(text.trim(), MAX_ERROR_TEXT);
            let message = if text.is_empty() {
                format!("gemini returned HTTP {status} with an empty body")
            } else {
                text
            };
            ProviderError {
                kind: ErrorKind::from_status(status),
                message,
                provider_code: None,
                retry_after_secs,
            }
        }
    }
}

/// Classifies the value of an `error` member.
fn error_from_value(status: u16, err: &Value, retry_after_secs: Option<u64>) -> ProviderError {
    let message = match err {
        Value::String(s) => s.clone(),
        _ => err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    let code = err.get("status").and_then(Value::as_str);
    let details: &[Value] = err
        .get("details")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let detail_type = |d: &Value, name: &str| {
        d.get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(name))
    };
    let key_invalid = details.iter().any(|d| {
        detail_type(d, "google.rpc.ErrorInfo")
            && d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")
    });
    let kind = if key_invalid {
        ErrorKind::Auth
    } else if is_context_length(&message) {
        ErrorKind::ContextLength
    } else {
        match code {
            Some("INVALID_ARGUMENT") => ErrorKind::InvalidRequest,
            Some("PERMISSION_DENIED") => ErrorKind::Permission,
            Some("UNAUTHENTICATED") => ErrorKind::Auth,
            Some("NOT_FOUND") => ErrorKind::NotFound,
            Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
            Some("UNAVAILABLE") => ErrorKind::Overloaded,
            Some("DEADLINE_EXCEEDED") => ErrorKind::Timeout,
            Some("INTERNAL") => ErrorKind::Server,
            _ => ErrorKind::from_status(status),
        }
    };
    let retry_after_secs = retry_after_secs.or_else(|| {
        details
            .iter()
            .filter(|d| detail_type(d, "google.rpc.RetryInfo"))
            .find_map(|d| d.get("retryDelay").and_then(retry_delay_secs))
    });
    let message = if message.is_empty() {
        format!("gemini error (HTTP {status})")
    } else {
        message
    };
    ProviderError {
        kind,
        message,
        provider_code: code.map(str::to_string),
        retry_after_secs,
    }
}

/// Whether an error message says the prompt is too long.
fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("exceeds the maximum number of tokens")
        || (m.contains("token count") && m.contains("exceeds the maximum"))
}

/// `RetryInfo.retryDelay` (a protobuf Duration: `"59s"`, `"1.5s"`, or `{seconds, nanos}`) in
/// whole seconds, rounded up.
fn retry_delay_secs(v: &Value) -> Option<u64> {
    let secs: f64 = match v {
        Value::String(s) => s.trim().strip_suffix('s')?.trim().parse().ok()?,
        Value::Object(o) => {
            let s = match o.get("seconds")? {
                Value::String(s) => s.parse().ok()?,
                n => n.as_f64()?,
            };
            s + o.get("nanos").and_then(Value::as_f64).unwrap_or(0.0) / 1e9
        }
        _ => return None,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    // `as` saturates for values beyond u64::MAX.
    Some(secs.ceil() as u64)
}

/// The first `max` characters of `s`.
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dec: &mut StreamDecoder, chunks: &[&[u8]]) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c, &mut out);
        }
        dec.finish(&mut out);
        out
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(map_finish("STOP", false), FinishReason::Stop);
        assert_eq!(map_finish("STOP", true), FinishReason::ToolCalls);
        assert_eq!(map_finish("MAX_TOKENS", true), FinishReason::Length);
        assert_eq!(map_finish("LANGUAGE", false), FinishReason::Stop);
        assert_eq!(map_finish("OTHER", false), FinishReason::Stop);
        assert_eq!(
            map_finish("FINISH_REASON_UNSPECIFIED", false),
            FinishReason::Stop
        );
        for r in [
            "SAFETY",
            "RECITATION",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_OTHER",
        ] {
            assert_eq!(map_finish(r, false), FinishReason::ContentFilter, "{r}");
        }
        assert_eq!(
            map_finish("MALFORMED_FUNCTION_CALL", true),
            FinishReason::Other("MALFORMED_FUNCTION_CALL".into())
        );
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay_secs(&json!("59s")), Some(59));
        assert_eq!(retry_delay_secs(&json!("1.2s")), Some(2));
        assert_eq!(
            retry_delay_secs(&json!({"seconds": "3", "nanos": 0})),
            Some(3)
        );
        assert_eq!(retry_delay_secs(&json!("-1s")), None);
        assert_eq!(retry_delay_secs(&json!("soon")), None);
        assert_eq!(retry_delay_secs(&json!(5)), None);
        assert_eq!(retry_delay_secs(&json!("1e400s")), None);
        assert_eq!(retry_delay_secs(&json!("1e30s")), Some(u64::MAX));
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
    }

    #[test]
    fn context_length_messages() {
        assert!(is_context_length(
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
        ));
        assert!(!is_context_length("API key not valid."));
    }

    #[test]
    fn usage_normalisation_saturates() {
        let u = UsageMetadata {
            prompt_token_count: u64::MAX,
            tool_use_prompt_token_count: 1,
            candidates_token_count: 2,
            thoughts_token_count: 3,
            cached_content_token_count: 4,
        }
        .to_usage();
        assert_eq!(u.input_tokens, u64::MAX);
        assert_eq!(u.output_tokens, 5);
        assert_eq!(u.reasoning_tokens, 3);
        assert_eq!(u.cache_read_tokens, 4);
    }

    #[test]
    fn counts_accept_strings_and_null() {
        let u: UsageMetadata =
            serde_json::from_str(r#"{"promptTokenCount":"7","candidatesTokenCount":null}"#)
                .unwrap();
        assert_eq!(u.prompt_token_count, 7);
        assert_eq!(u.candidates_token_count, 0);
        assert!(serde_json::from_str::<UsageMetadata>(r#"{"promptTokenCount":-1}"#).is_err());
    }

    #[test]
    fn tool_responses() {
        assert_eq!(tool_response(r#"{"a":1}"#, false), json!({"a": 1}));
        assert_eq!(tool_response("[1]", false), json!({"output": "[1]"}));
        assert_eq!(tool_response("boom", true), json!({"error": "boom"}));
    }

    #[test]
    fn raw_multiline_error_in_stream() {
        let body = b"{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"busy {\",\n    \"status\": \"UNAVAILABLE\"\n  }\n}\n";
        let out = run(&mut StreamDecoder::new(), &[body]);
        assert_eq!(out.len(), 1);
        match &out[0] {
            StreamEvent::Error(e) => {
                assert_eq!(e.kind, ErrorKind::Overloaded);
                assert_eq!(e.message, "busy {");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_event_is_an_error_whatever_the_chunking() {
        let mut body = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"".to_vec();
        body.extend(std::iter::repeat_n(b'x', 200));
        body.extend_from_slice(b"\"}]}}]}\n\n");
        let whole = run(&mut StreamDecoder::with_max_event(100), &[&body]);
        let mut dec = StreamDecoder::with_max_event(100);
        let pieces: Vec<&[u8]> = body.chunks(7).collect();
        let split = run(&mut dec, &pieces);
        assert_eq!(whole, split);
        assert_eq!(whole.len(), 1);
        assert!(matches!(&whole[0], StreamEvent::Error(e) if e.kind == ErrorKind::Server));
        assert!(dec.line.capacity() == 0 && dec.data.capacity() == 0);
    }

    #[test]
    fn cr_only_and_crlf_split_terminators() {
        let ev = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}]}";
        let mut cr = ev.to_vec();
        cr.extend_from_slice(b"\r\r");
        let mut crlf = ev.to_vec();
        crlf.extend_from_slice(b"\r\n\r\n");
        let a = run(&mut StreamDecoder::new(), &[&cr]);
        let b = run(
            &mut StreamDecoder::new(),
            &[&crlf[..ev.len() + 1], &crlf[ev.len() + 1..]],
        );
        assert_eq!(a, b);
        assert_eq!(a.last(), Some(&StreamEvent::End));
    }

    #[test]
    fn nothing_after_terminal() {
        let mut dec = StreamDecoder::new();
        let mut out = Vec::new();
        dec.push(b"data: nope\n\n", &mut out);
        dec.push(b"data: {}\n\n", &mut out);
        dec.finish(&mut out);
        dec.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], StreamEvent::Error(_)));
    }
}
