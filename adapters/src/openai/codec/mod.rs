//! Canonical codecs for the OpenAI Chat Completions format, both as the format callers speak
//! (here: request decoder, response and stream encoders, error bodies) and as a provider format
//! ([`provider`]: request encoder, response and stream decoders, error decoder).
//!
//! The byte-splicing fast path in the parent module serves OpenAI callers talking to OpenAI
//! deployments; these codecs serve every other pairing. No I/O here.

use crate::canonical::*;
use crate::sse::{self, SseFramer};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

mod provider;
pub use provider::*;

// ---------------------------------------------------------------------------------------------
// Caller side: request decoding.

/// Request keys with a canonical slot; everything else goes to `extra`.
const KNOWN_KEYS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
];

fn invalid(message: impl Into<String>, param: &str) -> TranslateError {
    TranslateError::invalid(message, Some(param.to_string()))
}

/// A part or block `type` for an error message: `` `name` ``, or "missing".
pub(crate) fn shown(kind: Option<&str>) -> String {
    kind.map_or_else(|| "missing".to_string(), |k| format!("`{k}`"))
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{key}` must be a number"), key)),
    }
}

fn opt_u32(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("`{key}` must be a non-negative integer"), key)),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("`{key}` must be a boolean"), key)),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("`{key}` must be a string"), key)),
    }
}

/// Decodes an OpenAI Chat Completions request body into the canonical model.
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
        _ => return Err(invalid("`model` is required and must be a string", "model")),
    };
    let Some(Value::Array(raw_messages)) = obj.get("messages") else {
        return Err(invalid(
            "`messages` is required and must be an array",
            "messages",
        ));
    };
    let messages = decode_messages(raw_messages)?;
    let stream = opt_bool(&obj, "stream")?.unwrap_or(false);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_tokens = match opt_u32(&obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u32(&obj, "max_tokens")?,
    };
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    invalid("`stop` must be a string or an array of strings", "stop")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "`stop` must be a string or an array of strings",
                "stop",
            ))
        }
    };
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid("`seed` must be an integer", "seed"))?,
        ),
    };
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, t)| decode_tool(t, i))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("`tools` must be an array", "tools")),
    };
    let tool_choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(format!("unknown `tool_choice` value `{other}`"), "tool_choice"))
            }
        }),
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                Some(ToolChoice::Function(name.to_string()))
            }
            _ => {
                return Err(invalid(
                    "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
                    "tool_choice",
                ))
            }
        },
    };
    let response_format = match obj.get("response_format") {
        None | Some(Value::Null) => None,
        Some(v) => Some(decode_response_format(v)?),
    };
    let extra = obj
        .iter()
        .filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str()))
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(ChatRequest {
        model,
        messages,
        stream,
        include_usage,
        max_tokens,
        temperature: opt_f64(&obj, "temperature")?,
        top_p: opt_f64(&obj, "top_p")?,
        top_k: opt_u32(&obj, "top_k")?,
        stop,
        seed,
        n: opt_u32(&obj, "n")?,
        presence_penalty: opt_f64(&obj, "presence_penalty")?,
        frequency_penalty: opt_f64(&obj, "frequency_penalty")?,
        logprobs: opt_bool(&obj, "logprobs")?,
        top_logprobs: opt_u32(&obj, "top_logprobs")?,
        response_format,
        tools,
        tool_choice,
        parallel_tool_calls: opt_bool(&obj, "parallel_tool_calls")?,
        user: opt_str(&obj, "user")?,
        extra,
    })
}

fn decode_response_format(v: &Value) -> Result<ResponseFormat, TranslateError> {
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let js = v.get("json_schema").ok_or_else(|| {
                invalid(
                    "`response_format.json_schema` is required",
                    "response_format",
                )
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: js
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_string(),
                schema: js.get("schema").cloned().unwrap_or_else(|| json!({})),
                strict: js.get("strict").and_then(Value::as_bool),
            })
        }
        _ => Err(invalid(
            "`response_format.type` must be text, json_object or json_schema",
            "response_format",
        )),
    }
}

fn decode_tool(v: &Value, i: usize) -> Result<Tool, TranslateError> {
    if v.get("type").and_then(Value::as_str) != Some("function") {
        return Err(invalid(
            "only tools of type `function` can be translated",
            &format!("tools[{i}].type"),
        ));
    }
    let f = v.get("function").ok_or_else(|| {
        invalid(
            format!("`tools[{i}].function` is required"),
            &format!("tools[{i}].function"),
        )
    })?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            invalid(
                format!("`tools[{i}].function.name` is required"),
                &format!("tools[{i}].function.name"),
            )
        })?;
    Ok(Tool {
        name: name.to_string(),
        description: f
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        parameters: f.get("parameters").filter(|p| !p.is_null()).cloned(),
    })
}

/// Text of a `content` that may be a string or an array of text parts.
fn text_content(v: &Value, at: &str) -> Result<String, TranslateError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | Some("refusal") => {
                        let key = if p.get("text").is_some() {
                            "text"
                        } else {
                            "refusal"
                        };
                        out.push_str(p.get(key).and_then(Value::as_str).unwrap_or(""));
                    }
                    other => {
                        return Err(invalid(
                            format!(
                                "{at}.content[{j}]: content part type {} is not allowed here",
                                shown(other)
                            ),
                            &format!("{at}.content[{j}].type"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(invalid(
            format!("{at}: `content` must be a string or an array"),
            &format!("{at}.content"),
        )),
    }
}

fn decode_messages(raw: &[Value]) -> Result<Vec<Message>, TranslateError> {
    let mut out: Vec<Message> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}: `role` is required"), &format!("{at}.role")))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        let msg = match role {
            "system" | "developer" => {
                let t = text_content(content, &at)?;
                Message {
                    role: Role::System,
                    content: if t.is_empty() {
                        vec![]
                    } else {
                        vec![Part::Text(t)]
                    },
                }
            }
            "user" => Message {
                role: Role::User,
                content: user_parts(content, &at)?,
            },
            "assistant" => {
                let mut parts = Vec::new();
                let t = text_content(content, &at)?;
                if !t.is_empty() {
                    parts.push(Part::Text(t));
                }
                if let Some(Value::Array(calls)) = m.get("tool_calls") {
                    for (k, c) in calls.iter().enumerate() {
                        let f = c.get("function").unwrap_or(&Value::Null);
                        let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
                        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                        if id.is_empty() || name.is_empty() {
                            return Err(invalid(
                                format!("{at}: tool calls need an `id` and a `function.name`"),
                                &format!("{at}.tool_calls[{k}]"),
                            ));
                        }
                        let arguments = match f.get("arguments") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        };
                        // Checked here, where the field's place is known, rather than where a
                        // provider's encoder needs the object.
                        if let Err(TranslateError::Invalid { message, .. }) =
                            crate::canonical::arguments_object(&arguments)
                        {
                            return Err(invalid(
                                message,
                                &format!("{at}.tool_calls[{k}].function.arguments"),
                            ));
                        }
                        parts.push(Part::ToolCall {
                            id: id.to_string(),
                            name: name.to_string(),
                            arguments,
                        });
                    }
                }
                Message {
                    role: Role::Assistant,
                    content: parts,
                }
            }
            "tool" => {
                let call_id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            format!("{at}: `tool_call_id` is required"),
                            &format!("{at}.tool_call_id"),
                        )
                    })?;
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: call_id.to_string(),
                        name: tool_name_for(&out, call_id),
                        content: text_content(content, &at)?,
                        is_error: false,
                    }],
                }
            }
            other => {
                return Err(invalid(
                    format!("{at}: role `{other}` cannot be translated for this deployment"),
                    &format!("{at}.role"),
                ))
            }
        };
        out.push(msg);
    }
    Ok(out)
}

/// The name of the tool an earlier assistant turn called with `call_id`.
pub(crate) fn tool_name_for(history: &[Message], call_id: &str) -> Option<String> {
    history.iter().rev().find_map(|m| {
        m.content.iter().find_map(|p| match p {
            Part::ToolCall { id, name, .. } if id == call_id => Some(name.clone()),
            _ => None,
        })
    })
}

fn user_parts(content: &Value, at: &str) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::String(s) if s.is_empty() => Ok(vec![]),
        Value::String(s) => Ok(vec![Part::Text(s.clone())]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if !t.is_empty() {
                            out.push(Part::Text(t.to_string()));
                        }
                    }
                    Some("image_url") => {
                        let url = p
                            .get("image_url")
                            .and_then(|i| i.get("url"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                invalid(
                                    format!("{at}.content[{j}]: `image_url.url` is required"),
                                    &format!("{at}.content[{j}].image_url.url"),
                                )
                            })?;
                        out.push(Part::Image(match parse_data_url(url) {
                            Some((media_type, data)) => Image::Base64 {
                                media_type: media_type.to_string(),
                                data: data.to_string(),
                            },
                            None => Image::Url(url.to_string()),
                        }));
                    }
                    other => {
                        return Err(invalid(
                            format!(
                                "{at}.content[{j}]: content part type {} can only be sent to an openai deployment",
                                shown(other)
                            ),
                            &format!("{at}.content[{j}].type"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(invalid(
            format!("{at}: `content` must be a string or an array"),
            &format!("{at}.content"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Caller side: response, stream and error encoding.

pub fn finish_reason_str(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence(_) | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

pub(crate) fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total(),
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// An answer's text, its reasoning, and its tool calls each made into a `T` by `call(id, name,
/// arguments)`.
pub(crate) fn split_output<T>(
    resp: &ChatResponse,
    mut call: impl FnMut(&str, &str, &str) -> T,
) -> (String, String, Vec<T>) {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in &resp.content {
        match p {
            OutputPart::Text(t) => text.push_str(t),
            OutputPart::Reasoning(t) => reasoning.push_str(t),
            OutputPart::ToolCall {
                id,
                name,
                arguments,
            } => calls.push(call(id, name, arguments)),
        }
    }
    (text, reasoning, calls)
}

/// A `chat.completion` body for `resp`. `id` and `created` come from the gateway when the provider
/// gave none.
pub fn encode_response(resp: &ChatResponse, id: &str, model: &str, created: u64) -> Vec<u8> {
    let (text, reasoning, calls) = split_output(resp, |id, name, arguments| {
        json!({
            "id": id, "type": "function",
            "function": {"name": name, "arguments": arguments},
        })
    });
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        },
    );
    // OpenAI always sends `refusal` (null unless the model refused); typed SDKs read it.
    message.insert("refusal".into(), Value::Null);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": finish_reason_str(&resp.finish),
        }],
    });
    if let (Some(u), Some(obj)) = (resp.usage, body.as_object_mut()) {
        obj.insert("usage".into(), usage_json(&u));
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The caller-facing status and OpenAI `error.type` / `error.code` for a provider error.
pub fn error_status_and_type(kind: ErrorKind) -> (u16, &'static str, &'static str) {
    match kind {
        ErrorKind::Auth => (502, "upstream_error", "upstream_auth_failed"),
        ErrorKind::Permission => (502, "upstream_error", "upstream_permission_denied"),
        ErrorKind::NotFound => (404, "invalid_request_error", "model_not_found"),
        ErrorKind::RateLimited => (429, "rate_limit_error", "rate_limit_exceeded"),
        ErrorKind::Overloaded => (503, "overloaded_error", "overloaded"),
        ErrorKind::InvalidRequest => (400, "invalid_request_error", "invalid_request"),
        ErrorKind::ContextLength => (400, "invalid_request_error", "context_length_exceeded"),
        ErrorKind::ContentPolicy => (400, "invalid_request_error", "content_policy_violation"),
        ErrorKind::Server => (502, "upstream_error", "upstream_error"),
        ErrorKind::Timeout => (504, "timeout_error", "upstream_timeout"),
    }
}

/// An OpenAI error response (status, body) for a provider error.
pub fn encode_error(err: &ProviderError) -> (u16, Vec<u8>) {
    let (status, etype, code) = error_status_and_type(err.kind);
    (
        status,
        super::error_body(&err.message, etype, None, Some(code)).to_vec(),
    )
}

/// Re-encodes canonical stream events as OpenAI `chat.completion.chunk` events, one caller event
/// per upstream event as it arrives.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    finished: bool,
    done: bool,
    failed: bool,
    usage: Option<Usage>,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str, created: u64, include_usage: bool) -> Self {
        StreamEncoder {
            id: id.to_string(),
            model: model.to_string(),
            created,
            include_usage,
            started: false,
            finished: false,
            done: false,
            failed: false,
            usage: None,
        }
    }

    /// The usage seen so far (the last cumulative total).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream ended normally (`[DONE]` written).
    pub fn completed(&self) -> bool {
        self.done && !self.failed
    }

    fn chunk(&self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        let mut body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        // With `include_usage`, every chunk before the usage chunk carries `usage: null`.
        if let (true, Some(o)) = (self.include_usage, body.as_object_mut()) {
            o.insert("usage".into(), Value::Null);
        }
        write_data(out, &body);
    }

    fn ensure_started(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Appends the caller bytes for one event to `out`.
    pub fn push(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { .. } => self.ensure_started(out),
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                self.chunk(out, json!({"content": t}), None);
            }
            StreamEvent::ReasoningDelta(t) => {
                self.ensure_started(out);
                self.chunk(out, json!({"reasoning_content": t}), None);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.chunk(
                    out,
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                );
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.ensure_started(out);
                self.chunk(
                    out,
                    json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                    None,
                );
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => {
                if !self.finished {
                    self.ensure_started(out);
                    self.finished = true;
                    self.chunk(out, json!({}), Some(finish_reason_str(f)));
                }
            }
            StreamEvent::End => {
                self.ensure_started(out);
                if !self.finished {
                    self.finished = true;
                    self.chunk(out, json!({}), Some("stop"));
                }
                let usage = self.include_usage.then(|| self.usage.unwrap_or_default());
                let head = ChunkHead {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                };
                write_stream_end(out, &head, usage.as_ref());
                self.done = true;
            }
            StreamEvent::Error(e) => {
                write_stream_error(out, e);
                self.done = true;
                self.failed = true;
            }
        }
    }
}

/// What every chunk of an OpenAI-format stream repeats.
pub(crate) struct ChunkHead<'a> {
    pub id: &'a str,
    /// `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
}

/// The end of an OpenAI-format stream: the usage chunk (`"choices":[]`) when the caller asked
/// for usage, then `data: [DONE]`.
pub(crate) fn write_stream_end(out: &mut BytesMut, head: &ChunkHead<'_>, usage: Option<&Usage>) {
    if let Some(u) = usage {
        let body = json!({
            "id": head.id,
            "object": head.object,
            "created": head.created,
            "model": head.model,
            "choices": [],
            "usage": usage_json(u),
        });
        write_data(out, &body);
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
}

/// A provider error ending an OpenAI-format stream (the event the official SDKs raise).
pub(crate) fn write_stream_error(out: &mut BytesMut, e: &ProviderError) {
    let (_, etype, code) = error_status_and_type(e.kind);
    out.extend_from_slice(&super::stream_error_event(&e.message, etype, code));
}

pub(crate) fn write_data(out: &mut BytesMut, body: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(body).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}
