//! The Anthropic Messages format (`POST /v1/messages`), both as a caller format (here: request
//! decoder, response and stream encoders, error bodies) and as a provider ([`provider`]: request
//! encoder, response and stream decoders, error decoder).
//!
//! Traps handled here (see `shared/reference/wire-formats.md` §6): every system turn is hoisted
//! and joined, never last-wins; empty text blocks are never sent; consecutive tool results go into
//! one user turn right after the tool calls; streamed tool-call indexes count tool blocks only;
//! usage adds cache reads and writes to the prompt and takes the last cumulative output count.
//! No I/O here.

use crate::canonical::*;
use crate::openai::codec::{body_excerpt, tool_name_for, trim_ascii};
use crate::sse::{self, SseFramer};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

pub mod prompt_cache;
mod provider;
pub use provider::*;

/// The API version sent upstream.
pub const API_VERSION: &str = "2023-06-01";

fn invalid(message: impl Into<String>, param: &str) -> TranslateError {
    TranslateError::invalid(message, Some(param.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Caller side: request decoding.

const KNOWN_KEYS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
];

/// Decodes a Messages API request body into the canonical model.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError::invalid(format!("request body is not valid JSON: {e}"), None)
    })?;
    let Value::Object(obj) = root else {
        return Err(TranslateError::invalid(
            "request body must be a JSON object",
            None,
        ));
    };
    let model = match obj.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid("model: field required", "model")),
    };
    let max_tokens = match obj.get("max_tokens") {
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    invalid("max_tokens: must be a non-negative integer", "max_tokens")
                })?,
        ),
        None => return Err(invalid("max_tokens: field required", "max_tokens")),
    };
    let Some(Value::Array(raw)) = obj.get("messages") else {
        return Err(invalid("messages: field required", "messages"));
    };
    let mut messages = Vec::with_capacity(raw.len() + 1);
    match obj.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => messages.push(Message {
            role: Role::System,
            content: vec![Part::Text(s.clone())],
        }),
        Some(Value::Array(blocks)) => {
            let text: Vec<Part> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .filter(|t| !t.is_empty())
                .map(|t| Part::Text(t.to_string()))
                .collect();
            if !text.is_empty() {
                messages.push(Message {
                    role: Role::System,
                    content: text,
                });
            }
        }
        Some(_) => {
            return Err(invalid(
                "system: must be a string or an array of text blocks",
                "system",
            ))
        }
    }
    for (i, m) in raw.iter().enumerate() {
        decode_message(m, i, &mut messages)?;
    }
    let num = |k: &str| -> Result<Option<f64>, TranslateError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid(format!("{k}: must be a number"), k)),
        }
    };
    let stop = match obj.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid("stop_sequences: must be strings", "stop_sequences"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "stop_sequences: must be an array",
                "stop_sequences",
            ))
        }
    };
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                if t.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|ty| ty != "custom")
                {
                    return Err(invalid(
                        "tools: server tools can only be used with an anthropic deployment",
                        "tools",
                    ));
                }
                let name = t
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| invalid("tools: each tool needs a name", "tools"))?;
                Ok(Tool {
                    name: name.to_string(),
                    description: t
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    parameters: t.get("input_schema").cloned(),
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("tools: must be an array", "tools")),
    };
    let (tool_choice, parallel_tool_calls) = match obj.get("tool_choice") {
        None | Some(Value::Null) => (None, None),
        Some(tc) => {
            let choice = match tc.get("type").and_then(Value::as_str) {
                Some("auto") => ToolChoice::Auto,
                Some("any") => ToolChoice::Required,
                Some("none") => ToolChoice::None,
                Some("tool") => ToolChoice::Function(
                    tc.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("tool_choice.name: field required", "tool_choice"))?
                        .to_string(),
                ),
                _ => {
                    return Err(invalid(
                        "tool_choice.type: must be auto, any, tool or none",
                        "tool_choice",
                    ))
                }
            };
            let parallel = tc
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                .filter(|d| *d)
                .map(|_| false);
            (Some(choice), parallel)
        }
    };
    let user = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut extra = obj
        .iter()
        .filter(|(k, v)| !KNOWN_KEYS.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let response_format = crate::structured::take_anthropic_output_config(&mut extra)?;
    Ok(ChatRequest {
        model,
        messages,
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: true,
        max_tokens,
        temperature: num("temperature")?,
        top_p: num("top_p")?,
        top_k: match obj.get("top_k") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("top_k: must be a non-negative integer", "top_k"))?,
            ),
        },
        stop,
        tools,
        tool_choice,
        parallel_tool_calls,
        user,
        response_format,
        extra,
        ..Default::default()
    })
}

fn decode_message(m: &Value, i: usize, out: &mut Vec<Message>) -> Result<(), TranslateError> {
    let at = format!("messages.{i}");
    let role = match m.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => {
            return Err(invalid(
                format!("{at}.role: must be user or assistant"),
                &format!("messages[{i}].role"),
            ))
        }
    };
    let at_block = |j: usize| format!("messages[{i}].content[{j}]");
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(Message {
                    role,
                    content: vec![Part::Text(s.clone())],
                });
            }
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(invalid(
                format!("{at}.content: must be a string or an array"),
                &format!("messages[{i}].content"),
            ))
        }
    };
    let mut parts = Vec::with_capacity(blocks.len());
    let mut results = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = b.get("text").and_then(Value::as_str).unwrap_or("");
                if !t.is_empty() {
                    parts.push(Part::Text(t.to_string()));
                }
            }
            Some("image") => {
                let src = b.get("source").unwrap_or(&Value::Null);
                let image = match src.get("type").and_then(Value::as_str) {
                    Some("base64") => Image::Base64 {
                        media_type: src
                            .get("media_type")
                            .and_then(Value::as_str)
                            .unwrap_or("image/png")
                            .to_string(),
                        data: src
                            .get("data")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    },
                    Some("url") => Image::Url(
                        src.get("url")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    _ => {
                        return Err(invalid(
                            format!("{at}: image source must be base64 or url"),
                            &format!("{}.source.type", at_block(j)),
                        ))
                    }
                };
                parts.push(Part::Image(image));
            }
            Some("tool_use") if role == Role::Assistant => {
                let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
                if id.is_empty() || name.is_empty() {
                    return Err(invalid(
                        format!("{at}: tool_use blocks need an id and a name"),
                        &at_block(j),
                    ));
                }
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                parts.push(Part::ToolCall {
                    id: id.to_string(),
                    name: name.to_string(),
                    arguments: input.to_string(),
                });
            }
            Some("tool_result") if role == Role::User => {
                let call_id = b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            format!("{at}: tool_result needs tool_use_id"),
                            &format!("{}.tool_use_id", at_block(j)),
                        )
                    })?;
                let content = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => {
                        let mut text = String::new();
                        for item in items {
                            match item.get("type").and_then(Value::as_str) {
                                Some("text") => text.push_str(item.get("text").and_then(Value::as_str).unwrap_or("")),
                                other => {
                                    return Err(invalid(
                                        format!("{at}: tool_result content of type {} can only be sent to an anthropic deployment", crate::openai::codec::shown(other)),
                                        &format!("{}.content", at_block(j)),
                                    ))
                                }
                            }
                        }
                        text
                    }
                    Some(_) => {
                        return Err(invalid(
                            format!("{at}: tool_result content must be a string or an array"),
                            &format!("{}.content", at_block(j)),
                        ))
                    }
                };
                results.push(Part::ToolResult {
                    call_id: call_id.to_string(),
                    name: tool_name_for(out, call_id),
                    content,
                    is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                });
            }
            // Thinking blocks are signed by Anthropic and mean nothing to another provider.
            Some("thinking") | Some("redacted_thinking") if role == Role::Assistant => {}
            other => {
                return Err(invalid(
                    format!(
                        "{at}: content block type {} can only be sent to an anthropic deployment",
                        crate::openai::codec::shown(other)
                    ),
                    &format!("{}.type", at_block(j)),
                ))
            }
        }
    }
    // Tool results answer the previous assistant turn: they come first, as a tool turn.
    if !results.is_empty() {
        out.push(Message {
            role: Role::Tool,
            content: results,
        });
    }
    if !parts.is_empty() {
        out.push(Message {
            role,
            content: parts,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Caller side: response, stream and error encoding.

pub fn stop_reason_str(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::Other(_) => "end_turn",
        FinishReason::StopSequence(_) => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens.saturating_sub(u.cache_read_tokens + u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    })
}

fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        // A provider that produced arguments that are not an object: keep them visible.
        Ok(other) => json!({ "value": other }),
        Err(_) if arguments.trim().is_empty() => json!({}),
        Err(_) => json!({ "raw_arguments": arguments }),
    }
}

/// A Messages API response body for `resp`.
pub fn encode_response(resp: &ChatResponse, id: &str, model: &str) -> Vec<u8> {
    let mut content = Vec::new();
    for p in &resp.content {
        match p {
            OutputPart::Text(t) if !t.is_empty() => content.push(json!({"type": "text", "text": t})),
            OutputPart::ToolCall { id, name, arguments } => content.push(json!({
                "type": "tool_use", "id": sanitize_id(id), "name": name, "input": tool_input(arguments),
            })),
            _ => {}
        }
    }
    let stop_sequence = match &resp.finish {
        FinishReason::StopSequence(s) => json!(s),
        _ => Value::Null,
    };
    let body = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason_str(&resp.finish),
        "stop_sequence": stop_sequence,
        "usage": usage_json(&resp.usage.unwrap_or_default()),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The caller-facing status and Anthropic error type for a provider error.
pub fn error_status_and_type(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::Auth | ErrorKind::Permission => (502, "api_error"),
        ErrorKind::NotFound => (404, "not_found_error"),
        ErrorKind::RateLimited => (429, "rate_limit_error"),
        ErrorKind::Overloaded => (529, "overloaded_error"),
        ErrorKind::InvalidRequest | ErrorKind::ContextLength | ErrorKind::ContentPolicy => {
            (400, "invalid_request_error")
        }
        ErrorKind::Server => (502, "api_error"),
        ErrorKind::Timeout => (504, "timeout_error"),
    }
}

/// An Anthropic error body: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn error_body(error_type: &str, message: &str, request_id: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }))
    .unwrap_or_default()
}

/// An Anthropic error response (status, body) for a provider error.
pub fn encode_error(err: &ProviderError, request_id: Option<&str>) -> (u16, Vec<u8>) {
    let (status, etype) = error_status_and_type(err.kind);
    (status, error_body(etype, &err.message, request_id))
}

/// An `event: error` for a stream that already started.
pub fn stream_error_event(error_type: &str, message: &str) -> Bytes {
    let mut out = BytesMut::new();
    write_event(
        &mut out,
        "error",
        &json!({"type": "error", "error": {"type": error_type, "message": message}}),
    );
    out.freeze()
}

fn write_event(out: &mut BytesMut, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&serde_json::to_vec(data).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Tool,
}

/// Re-encodes canonical stream events as the Messages API's named SSE events, one caller event
/// per upstream event as it arrives (`message_delta` and `message_stop` wait for the end, since
/// usage may come after the finish reason).
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    started: bool,
    open: Option<(u32, BlockKind)>,
    next_block: u32,
    /// Block index of each tool call (by canonical tool index).
    tool_blocks: Vec<(u32, u32)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    done: bool,
    failed: bool,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str) -> Self {
        StreamEncoder {
            id: id.to_string(),
            model: model.to_string(),
            started: false,
            open: None,
            next_block: 0,
            tool_blocks: Vec::new(),
            usage: None,
            finish: None,
            done: false,
            failed: false,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream ended normally (`message_stop` written).
    pub fn completed(&self) -> bool {
        self.done && !self.failed
    }

    fn ensure_started(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let u = self.usage.unwrap_or_default();
        write_event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": u.input_tokens.saturating_sub(u.cache_read_tokens + u.cache_write_tokens),
                          "output_tokens": 0,
                          "cache_creation_input_tokens": u.cache_write_tokens,
                          "cache_read_input_tokens": u.cache_read_tokens},
            }}),
        );
    }

    fn close_open(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            write_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, kind: BlockKind, block: Value) -> u32 {
        self.close_open(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, kind));
        write_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    /// Appends the caller bytes for one event to `out`.
    pub fn push(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { .. } => {}
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                let index = match self.open {
                    Some((i, BlockKind::Text)) => i,
                    _ => self.open_block(out, BlockKind::Text, json!({"type": "text", "text": ""})),
                };
                write_event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": t}}),
                );
            }
            // Thinking blocks must carry Anthropic's signature to be replayed; reasoning from
            // another provider is not passed to Anthropic callers.
            StreamEvent::ReasoningDelta(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                let block = self.open_block(
                    out,
                    BlockKind::Tool,
                    json!({"type": "tool_use", "id": sanitize_id(id), "name": name, "input": {}}),
                );
                self.tool_blocks.push((*index, block));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.ensure_started(out);
                if let Some(&(_, block)) = self.tool_blocks.iter().find(|(t, _)| t == index) {
                    write_event(
                        out,
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": block,
                                "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                    );
                }
            }
            StreamEvent::Usage(u) => {
                self.usage = Some(*u);
            }
            StreamEvent::Finish(f) => {
                if self.finish.is_none() {
                    self.finish = Some(f.clone());
                }
            }
            StreamEvent::End => {
                self.ensure_started(out);
                self.close_open(out);
                let finish = self.finish.clone().unwrap_or(FinishReason::Stop);
                let stop_sequence = match &finish {
                    FinishReason::StopSequence(s) => json!(s),
                    _ => Value::Null,
                };
                write_event(
                    out,
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop_reason_str(&finish), "stop_sequence": stop_sequence},
                            "usage": usage_json(&self.usage.unwrap_or_default())}),
                );
                write_event(out, "message_stop", &json!({"type": "message_stop"}));
                self.done = true;
            }
            StreamEvent::Error(e) => {
                let (_, etype) = error_status_and_type(e.kind);
                out.extend_from_slice(&stream_error_event(etype, &e.message));
                self.done = true;
                self.failed = true;
            }
        }
    }
}

/// Anthropic accepts tool ids matching `^[a-zA-Z0-9_-]+$`; other characters become `_` (the same
/// mapping on the call and its result keeps them paired).
pub fn sanitize_id(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "call".into()
    } else {
        s
    }
}
