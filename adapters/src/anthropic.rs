//! The Anthropic Messages format (`POST /v1/messages`), both as a caller format (request decoder,
//! response and stream encoders, error bodies) and as a provider (request encoder, response and
//! stream decoders, error decoder).
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

// ---------------------------------------------------------------------------------------------
// Provider side: request encoding.

/// Encodes a canonical request for the Messages API (`/v1/messages` below a `base_url` such as
/// `https://api.anthropic.com`).
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    let mut messages: Vec<(Role, Vec<Value>)> = Vec::new();
    let mut push = |role: Role, block: Value| match messages.last_mut() {
        Some((r, blocks)) if *r == role => blocks.push(block),
        _ => messages.push((role, vec![block])),
    };
    for m in &req.messages {
        match m.role {
            Role::System => {}
            Role::User | Role::Tool => {
                // Tool results first: they must directly follow the assistant's tool calls.
                for p in &m.content {
                    if let Part::ToolResult {
                        call_id,
                        content,
                        is_error,
                        ..
                    } = p
                    {
                        let mut b = json!({"type": "tool_result", "tool_use_id": sanitize_id(call_id), "content": content});
                        if *is_error {
                            b["is_error"] = json!(true);
                        }
                        push(Role::User, b);
                    }
                }
                for p in &m.content {
                    match p {
                        Part::Text(t) if !t.is_empty() => {
                            push(Role::User, json!({"type": "text", "text": t}))
                        }
                        Part::Image(Image::Url(u)) => push(
                            Role::User,
                            json!({"type": "image", "source": {"type": "url", "url": u}}),
                        ),
                        Part::Image(Image::Base64 { media_type, data }) => push(
                            Role::User,
                            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                        ),
                        _ => {}
                    }
                }
            }
            Role::Assistant => {
                for p in &m.content {
                    match p {
                        Part::Text(t) if !t.is_empty() => {
                            push(Role::Assistant, json!({"type": "text", "text": t}))
                        }
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                        } => push(
                            Role::Assistant,
                            json!({"type": "tool_use", "id": sanitize_id(id), "name": name,
                                   "input": arguments_object(arguments)?}),
                        ),
                        _ => {}
                    }
                }
            }
        }
    }
    if messages.is_empty() {
        return Err(TranslateError::invalid(
            "the request has no user or assistant content to send",
            Some("messages".to_string()),
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(opts.default_max_tokens)),
    );
    if let Some(system) = system_text(&req.messages) {
        body.insert("system".into(), json!(system));
    }
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| {
                    json!({"role": if role == Role::Assistant { "assistant" } else { "user" }, "content": content})
                })
                .collect(),
        ),
    );
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    for (k, v) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    if let Some(k) = req.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    if !req.tools.is_empty() {
        body.insert(
            "tools".into(),
            Value::Array(
                req.tools
                    .iter()
                    .map(|t| {
                        let mut o = Map::new();
                        o.insert("name".into(), json!(t.name));
                        if let Some(d) = &t.description {
                            o.insert("description".into(), json!(d));
                        }
                        o.insert(
                            "input_schema".into(),
                            t.parameters
                                .clone()
                                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                        );
                        Value::Object(o)
                    })
                    .collect(),
            ),
        );
    }
    let no_parallel = req.parallel_tool_calls == Some(false) && !req.tools.is_empty();
    let choice = match &req.tool_choice {
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Function(n)) => Some(json!({"type": "tool", "name": n})),
        None if no_parallel => Some(json!({"type": "auto"})),
        None => None,
    };
    if let Some(mut c) = choice {
        if no_parallel && c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
        body.insert("tool_choice".into(), c);
    }
    if let Some(u) = &req.user {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    for (k, v) in &req.extra {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    crate::structured::put_anthropic_output_config(&mut body, req.response_format.as_ref());
    Ok(EncodedRequest {
        path: "/v1/messages".into(),
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Provider side: response, stream and error decoding.

fn malformed(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Server,
        format!("malformed response from the provider: {what}"),
    )
}

fn decode_stop(v: &Value) -> FinishReason {
    match v.get("stop_reason").and_then(Value::as_str) {
        Some("end_turn") | None => FinishReason::Stop,
        Some("stop_sequence") => FinishReason::StopSequence(
            v.get("stop_sequence")
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_string()),
    }
}

/// Folds an Anthropic usage object into `u` (fields absent from `v` keep their value: stream
/// usage is cumulative and `message_delta` may carry only `output_tokens`).
fn merge_usage(u: &mut Usage, v: &Value, base_input: &mut u64) {
    let get = |k: &str| v.get(k).and_then(Value::as_u64);
    if let Some(n) = get("input_tokens") {
        *base_input = n;
    }
    if let Some(n) = get("cache_read_input_tokens") {
        u.cache_read_tokens = n;
    }
    if let Some(n) = get("cache_creation_input_tokens") {
        u.cache_write_tokens = n;
    }
    if let Some(n) = get("output_tokens") {
        u.output_tokens = n;
    }
    u.input_tokens = *base_input + u.cache_read_tokens + u.cache_write_tokens;
}

/// Decodes a non-stream Messages API response.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(decode_error(200, body, None));
    }
    let Some(Value::Array(blocks)) = v.get("content") else {
        return Err(malformed("no content"));
    };
    let mut content = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = b
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    content.push(OutputPart::Text(t.to_string()));
                }
            }
            Some("thinking") => {
                if let Some(t) = b
                    .get("thinking")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    content.push(OutputPart::Reasoning(t.to_string()));
                }
            }
            Some("tool_use") => content.push(OutputPart::ToolCall {
                id: b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: b
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: b
                    .get("input")
                    .cloned()
                    .unwrap_or_else(|| json!({}))
                    .to_string(),
            }),
            _ => {}
        }
    }
    let usage = v.get("usage").map(|u| {
        let mut out = Usage::default();
        let mut base = 0;
        merge_usage(&mut out, u, &mut base);
        out
    });
    Ok(ChatResponse {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content,
        finish: decode_stop(&v),
        usage,
    })
}

fn kind_of(error_type: &str, message: &str, status: u16) -> ErrorKind {
    match error_type {
        "authentication_error" => ErrorKind::Auth,
        "permission_error" | "billing_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" => ErrorKind::RateLimited,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        "api_error" => ErrorKind::Server,
        "invalid_request_error" | "request_too_large" => {
            let m = message.to_ascii_lowercase();
            if m.contains("prompt is too long")
                || m.contains("context window")
                || m.contains("too many tokens")
            {
                ErrorKind::ContextLength
            } else {
                ErrorKind::InvalidRequest
            }
        }
        _ if status == 200 => ErrorKind::Server,
        _ => ErrorKind::from_status(status),
    }
}

/// Decodes an Anthropic error body (`{"type":"error","error":{type,message}}`).
pub fn decode_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = v.get("error").unwrap_or(&Value::Null);
    let etype = e.get("type").and_then(Value::as_str);
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body_excerpt(body));
    ProviderError {
        kind: match etype {
            Some(t) => kind_of(t, &message, status),
            None => ErrorKind::from_status(status),
        },
        message,
        provider_code: etype.map(str::to_string),
        retry_after_secs,
    }
}

/// Decodes a Messages API event stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    framer: SseFramer,
    terminal: bool,
    finished: bool,
    /// An event was emitted: a later `message_start` must not emit a second (or late) `Start`.
    started: bool,
    usage: Usage,
    base_input: u64,
    /// (content block index, tool index) of each tool_use block.
    tool_blocks: Vec<(u64, u32)>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, out: &mut Vec<StreamEvent>, e: ProviderError) {
        self.terminal = true;
        out.push(StreamEvent::Error(e));
    }

    fn on_data(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) {
        let data = trim_ascii(data);
        if data.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            self.fail(out, malformed("a stream event is not JSON"));
            return;
        };
        let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let emitted_before = out.len();
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if !self.started {
                    out.push(StreamEvent::Start {
                        id: m.get("id").and_then(Value::as_str).map(str::to_string),
                        model: m.get("model").and_then(Value::as_str).map(str::to_string),
                    });
                }
                if let Some(u) = m.get("usage") {
                    merge_usage(&mut self.usage, u, &mut self.base_input);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            Some("content_block_start") => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = self.tool_blocks.len() as u32;
                        self.tool_blocks.push((block_index, index));
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: b
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            name: b
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        });
                    }
                    Some("text") => {
                        if let Some(t) = b
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(StreamEvent::TextDelta(t.to_string()));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(t) = d
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(StreamEvent::TextDelta(t.to_string()));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = d
                            .get("thinking")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(StreamEvent::ReasoningDelta(t.to_string()));
                        }
                    }
                    Some("input_json_delta") => {
                        let frag = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        let tool = self
                            .tool_blocks
                            .iter()
                            .find(|(b, _)| *b == block_index)
                            .map(|(_, t)| *t);
                        if let (false, Some(index)) = (frag.is_empty(), tool) {
                            out.push(StreamEvent::ToolCallDelta {
                                index,
                                arguments: frag.to_string(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(u) = v.get("usage") {
                    merge_usage(&mut self.usage, u, &mut self.base_input);
                    out.push(StreamEvent::Usage(self.usage));
                }
                let d = v.get("delta").unwrap_or(&Value::Null);
                if d.get("stop_reason").is_some_and(|s| !s.is_null()) && !self.finished {
                    self.finished = true;
                    out.push(StreamEvent::Finish(decode_stop(d)));
                }
            }
            Some("message_stop") => {
                self.terminal = true;
                out.push(StreamEvent::End);
            }
            Some("error") => {
                let e = decode_error(200, data, None);
                self.fail(out, e);
            }
            // `ping`, `content_block_stop` and event types added later carry nothing to relay.
            _ => {}
        }
        self.started |= out.len() > emitted_before;
    }
}

impl StreamDecode for StreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        if self.terminal {
            return;
        }
        if let Some(block) = self.framer.push(Bytes::copy_from_slice(chunk)) {
            for ev in sse::events(&block) {
                if self.terminal {
                    return;
                }
                if let Some(data) = sse::event_data(&ev) {
                    self.on_data(&data, out);
                }
            }
        }
        if !self.terminal && self.framer.over_limit() {
            self.fail(out, malformed("a stream event exceeds 16 MiB"));
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.terminal {
            return;
        }
        if let Some(tail) = self.framer.finish() {
            if let Some(data) = sse::event_data(&tail) {
                self.on_data(&data, out);
            }
        }
        if !self.terminal {
            self.fail(
                out,
                ProviderError::new(
                    ErrorKind::Server,
                    "the provider's stream ended before message_stop",
                ),
            );
        }
    }
}
