//! The Cloudflare Workers AI native format (`POST …/ai/run/{model}`), as a provider.
//!
//! Owns the translation canonical request → Workers AI body ([`encode_request`]), the enveloped
//! answer → canonical response ([`decode_response`], which also accepts the OpenAI-shaped `result`
//! newer models return), the SSE stream → canonical events ([`StreamDecoder`]) and error envelopes
//! → [`ProviderError`] ([`decode_error`], with Workers AI error codes mapped to kinds).
//!
//! Pure translation: no I/O, no clocks. The capability table has already removed every field
//! Workers AI cannot honour, so everything still present in the request is encoded.

use crate::canonical::*;
use crate::openai::codec::{function_tool, role_str};
use crate::sse::{self, SseFramer};
use bytes::Bytes;
use serde_json::{json, Map, Value};

// Largest unfinished SSE event buffered before the stream is declared broken.
use crate::sse::MAX_EVENT_BYTES;

/// Builds the `/run/{model}` request. `max_tokens` is always sent (Workers AI otherwise defaults
/// to 256 and silently truncates): the request's, else `opts.default_max_tokens`.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    let mut body = Map::new();
    body.insert(
        "messages".into(),
        Value::Array(encode_messages(&req.messages)),
    );
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(opts.default_max_tokens)),
    );
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if let Some(s) = req.seed {
        body.insert("seed".into(), json!(s));
    }
    if let Some(p) = req.presence_penalty {
        body.insert("presence_penalty".into(), json!(p));
    }
    if let Some(p) = req.frequency_penalty {
        body.insert("frequency_penalty".into(), json!(p));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            js.insert("schema".into(), schema.clone());
            if let Some(s) = strict {
                js.insert("strict".into(), json!(s));
            }
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": js}),
            );
        }
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req.tools.iter().map(function_tool).collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let body = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| TranslateError::invalid(format!("cannot encode request: {e}"), None))?;
    Ok(EncodedRequest {
        path: format!("/run/{}", opts.model),
        body,
    })
}

/// Messages with string content; tool results become one `tool` message each, in place.
fn encode_messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let mut had_results = false;
        for p in &m.content {
            if let Part::ToolResult {
                call_id,
                name,
                content,
                ..
            } = p
            {
                had_results = true;
                let mut t = Map::new();
                t.insert("role".into(), json!("tool"));
                t.insert("content".into(), json!(content));
                t.insert("tool_call_id".into(), json!(call_id));
                if let Some(n) = name.clone().or_else(|| call_name(&messages[..i], call_id)) {
                    t.insert("name".into(), json!(n));
                }
                out.push(Value::Object(t));
            }
        }
        let text = joined_text(&m.content);
        let calls: Vec<Value> = m
            .content
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => Some(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                })),
                _ => None,
            })
            .collect();
        if had_results && text.is_empty() && calls.is_empty() {
            continue;
        }
        let mut msg = Map::new();
        msg.insert("role".into(), json!(role_str(m.role)));
        msg.insert("content".into(), json!(text));
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(msg));
    }
    out
}

/// The name of the tool an earlier assistant call with this id invoked.
fn call_name(earlier: &[Message], call_id: &str) -> Option<String> {
    earlier.iter().rev().find_map(|m| {
        m.content.iter().find_map(|p| match p {
            Part::ToolCall { id, name, .. } if id == call_id => Some(name.clone()),
            _ => None,
        })
    })
}

/// Decodes a non-stream answer (the `{result, success, errors, messages}` envelope).
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorKind::Server,
            format!("invalid Cloudflare response: {e}"),
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(ProviderError::new(
            ErrorKind::Server,
            "invalid Cloudflare response: not a JSON object",
        ));
    };
    let failed = obj.get("success") == Some(&Value::Bool(false))
        || obj
            .get("errors")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty())
        || obj.contains_key("error");
    if failed {
        return Err(error_from_value(200, &v, body, None));
    }
    let result = match obj.get("result") {
        Some(r @ Value::Object(_)) => r,
        _ => {
            return Err(ProviderError::new(
                ErrorKind::Server,
                "invalid Cloudflare response: missing `result`",
            ))
        }
    };
    if result.get("choices").is_some() {
        return decode_openai_result(result);
    }
    let mut content = Vec::new();
    match result.get("response") {
        Some(Value::String(s)) if !s.is_empty() => content.push(OutputPart::Text(s.clone())),
        Some(Value::String(_)) | Some(Value::Null) | None => {}
        // JSON-mode answers on some models arrive as a parsed object.
        Some(other) => content.push(OutputPart::Text(other.to_string())),
    }
    let mut calls = 0usize;
    if let Some(tcs) = result.get("tool_calls").and_then(Value::as_array) {
        for tc in tcs {
            let (id, name, arguments) = native_tool_call(tc, calls);
            content.push(OutputPart::ToolCall {
                id,
                name,
                arguments,
            });
            calls += 1;
        }
    }
    Ok(ChatResponse {
        id: String::new(),
        model: String::new(),
        content,
        finish: if calls > 0 {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        },
        usage: result.get("usage").and_then(usage_of),
    })
}

/// A native tool call `{name, arguments}` (also accepts `{id, function:{name, arguments}}`).
fn native_tool_call(tc: &Value, n: usize) -> (String, String, String) {
    let f = tc.get("function").filter(|f| f.is_object()).unwrap_or(tc);
    let id = tc
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("call_{n}"));
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (id, name, arguments_text(f.get("arguments")))
}

fn arguments_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn decode_openai_result(result: &Value) -> Result<ChatResponse, ProviderError> {
    let choice = result
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .filter(|c| c.is_object())
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Server,
                "invalid Cloudflare response: `result.choices` is empty",
            )
        })?;
    let msg = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    for key in ["reasoning_content", "reasoning"] {
        if let Some(r) = msg
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            content.push(OutputPart::Reasoning(r.to_string()));
            break;
        }
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(OutputPart::Text(t.to_string()));
    }
    let mut calls = 0usize;
    if let Some(tcs) = msg.get("tool_calls").and_then(Value::as_array) {
        for tc in tcs {
            let (id, name, arguments) = native_tool_call(tc, calls);
            content.push(OutputPart::ToolCall {
                id,
                name,
                arguments,
            });
            calls += 1;
        }
    }
    let finish = match choice.get("finish_reason").and_then(Value::as_str) {
        Some(r) => finish_of(r, calls > 0),
        None if calls > 0 => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: String::new(),
        model: String::new(),
        content,
        finish,
        usage: result.get("usage").and_then(usage_of),
    })
}

fn finish_of(reason: &str, had_calls: bool) -> FinishReason {
    match reason {
        "stop" | "" if had_calls => FinishReason::ToolCalls,
        "stop" | "" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// `{prompt_tokens, completion_tokens, …}` (OpenAI detail fields read when present).
fn usage_of(u: &Value) -> Option<Usage> {
    let o = u.as_object()?;
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input_tokens: n(o.get("prompt_tokens")),
        output_tokens: n(o.get("completion_tokens")),
        cache_read_tokens: n(u.pointer("/prompt_tokens_details/cached_tokens")),
        cache_write_tokens: 0,
        reasoning_tokens: n(u.pointer("/completion_tokens_details/reasoning_tokens")),
    })
}

/// Maps an error answer (`{"result":null,"success":false,"errors":[{code, message}]}`) to a
/// [`ProviderError`]; `provider_code` is the Workers AI code. A body that is not such an envelope
/// gets the kind the status implies and its text (at most 500 characters) as the message.
pub fn decode_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => error_from_value(status, &v, body, retry_after_secs),
        Err(_) => raw_error(status, body, retry_after_secs),
    }
}

fn raw_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    let text = String::from_utf8_lossy(body);
    let mut e = ProviderError::new(
        ErrorKind::from_status(status),
        text.chars().take(500).collect::<String>(),
    );
    e.retry_after_secs = retry_after_secs;
    e
}

fn error_from_value(
    status: u16,
    v: &Value,
    body: &[u8],
    retry_after_secs: Option<u64>,
) -> ProviderError {
    let first = v
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .or_else(|| v.get("error"));
    let (code, message) = match first {
        Some(Value::String(s)) => (None, s.clone()),
        Some(e @ Value::Object(_)) => {
            let code = match e.get("code") {
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (code, message)
        }
        _ => return raw_error(status, body, retry_after_secs),
    };
    let message = if message.is_empty() {
        String::from_utf8_lossy(body).chars().take(500).collect()
    } else {
        message
    };
    ProviderError {
        kind: kind_of(status, code.as_deref(), &message),
        message,
        provider_code: code,
        retry_after_secs,
    }
}

/// Workers AI error codes (CF-DOC `platform/errors.mdx`), then message hints, then the status.
fn kind_of(status: u16, code: Option<&str>, message: &str) -> ErrorKind {
    let by_code = match code.and_then(|c| c.parse::<u32>().ok()) {
        Some(5007 | 3042) => Some(ErrorKind::NotFound),
        Some(5004 | 3003 | 3006 | 5019 | 5005) => Some(ErrorKind::InvalidRequest),
        Some(5018 | 5016 | 3023 | 3041) => Some(ErrorKind::Permission),
        Some(3007 | 3008) => Some(ErrorKind::Timeout),
        Some(3036) => Some(ErrorKind::RateLimited),
        Some(3040) => Some(ErrorKind::Overloaded),
        Some(10000) => Some(ErrorKind::Auth),
        _ => None,
    };
    let lower = message.to_ascii_lowercase();
    if let Some(k) = by_code {
        if k == ErrorKind::InvalidRequest && is_context_length(&lower) {
            return ErrorKind::ContextLength;
        }
        return k;
    }
    if lower.contains("authentication error") || lower.contains("unauthorized") {
        return ErrorKind::Auth;
    }
    if is_context_length(&lower) {
        return ErrorKind::ContextLength;
    }
    ErrorKind::from_status(status)
}

fn is_context_length(lower: &str) -> bool {
    lower.contains("context") && (lower.contains("length") || lower.contains("too long"))
}

/// Decodes a Workers AI SSE stream: native `{"response": …}` chunks, or OpenAI-shaped chunks
/// from newer models, up to `data: [DONE]`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    framer: SseFramer,
    started: bool,
    /// A terminal event was emitted; everything after is ignored.
    done: bool,
    /// Tool calls started so far (the next canonical index).
    tool_calls: u32,
    /// OpenAI-shaped chunks: (the provider's tool-call index, our index) of started calls.
    openai_calls: Vec<(u64, u32)>,
    /// `finish_reason` of an OpenAI-shaped chunk, emitted at `[DONE]`.
    finish: Option<FinishReason>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, out: &mut Vec<StreamEvent>, err: ProviderError) {
        self.done = true;
        out.push(StreamEvent::Error(err));
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: None,
                model: None,
            });
        }
    }

    fn block(&mut self, block: &Bytes, out: &mut Vec<StreamEvent>) {
        for ev in sse::events(block) {
            if self.done {
                return;
            }
            if ev.len() > MAX_EVENT_BYTES {
                let err = ProviderError::new(ErrorKind::Server, "stream event longer than 16 MiB");
                return self.fail(out, err);
            }
            if let Some(data) = sse::event_data(&ev) {
                self.data(&data, out);
            }
        }
    }

    fn data(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) {
        let trimmed = data.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        if trimmed == b"[DONE]" {
            self.start(out);
            let finish = self.finish.take().unwrap_or(if self.tool_calls > 0 {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            });
            out.push(StreamEvent::Finish(finish));
            out.push(StreamEvent::End);
            self.done = true;
            return;
        }
        let v: Value = match serde_json::from_slice(trimmed) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return self.fail(
                    out,
                    ProviderError::new(
                        ErrorKind::Server,
                        "invalid stream chunk: not a JSON object",
                    ),
                )
            }
            Err(e) => {
                return self.fail(
                    out,
                    ProviderError::new(ErrorKind::Server, format!("invalid stream chunk: {e}")),
                )
            }
        };
        let has_errors = v
            .get("errors")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        if has_errors || v.get("error").is_some_and(|e| !e.is_null()) {
            let err = error_from_value(200, &v, trimmed, None);
            return self.fail(out, err);
        }
        self.start(out);
        if v.get("choices").is_some() {
            self.openai_chunk(&v, out);
        } else {
            self.native_chunk(&v, out);
        }
    }

    fn native_chunk(&mut self, v: &Value, out: &mut Vec<StreamEvent>) {
        match v.get("response") {
            Some(Value::String(s)) if !s.is_empty() => out.push(StreamEvent::TextDelta(s.clone())),
            Some(Value::String(_)) | Some(Value::Null) | None => {}
            Some(other) => out.push(StreamEvent::TextDelta(other.to_string())),
        }
        if let Some(tcs) = v.get("tool_calls").and_then(Value::as_array) {
            for tc in tcs {
                let index = self.tool_calls;
                let (id, name, arguments) = native_tool_call(tc, index as usize);
                self.tool_calls += 1;
                out.push(StreamEvent::ToolCallStart { index, id, name });
                if !arguments.is_empty() {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
            }
        }
        if let Some(u) = v.get("usage").and_then(usage_of) {
            out.push(StreamEvent::Usage(u));
        }
    }

    fn openai_chunk(&mut self, v: &Value, out: &mut Vec<StreamEvent>) {
        let choice = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        if let Some(choice) = choice {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            for key in ["reasoning_content", "reasoning"] {
                if let Some(r) = delta
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    out.push(StreamEvent::ReasoningDelta(r.to_string()));
                    break;
                }
            }
            if let Some(t) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push(StreamEvent::TextDelta(t.to_string()));
            }
            if let Some(tcs) = delta.get("tool_calls").and_then(Value::as_array) {
                for (pos, tc) in tcs.iter().enumerate() {
                    self.openai_tool_call(tc, pos as u64, out);
                }
            }
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(finish_of(r, self.tool_calls > 0));
            }
        }
        if let Some(u) = v.get("usage").and_then(usage_of) {
            out.push(StreamEvent::Usage(u));
        }
    }

    fn openai_tool_call(&mut self, tc: &Value, pos: u64, out: &mut Vec<StreamEvent>) {
        let their = tc.get("index").and_then(Value::as_u64).unwrap_or(pos);
        let f = tc.get("function").unwrap_or(&Value::Null);
        let index = match self.openai_calls.iter().find(|(t, _)| *t == their) {
            Some((_, ours)) => *ours,
            None => {
                let index = self.tool_calls;
                self.tool_calls += 1;
                self.openai_calls.push((their, index));
                let id = tc
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{index}"));
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                out.push(StreamEvent::ToolCallStart { index, id, name });
                index
            }
        };
        let arguments = match f.get("arguments") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
        if !arguments.is_empty() {
            out.push(StreamEvent::ToolCallDelta { index, arguments });
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        if self.done || chunk.is_empty() {
            return;
        }
        if let Some(block) = self.framer.push(Bytes::copy_from_slice(chunk)) {
            self.block(&block, out);
        }
        if !self.done && self.framer.over_limit() {
            self.fail(
                out,
                ProviderError::new(ErrorKind::Server, "stream event longer than 16 MiB"),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        if let Some(tail) = self.framer.finish() {
            self.block(&tail, out);
        }
        if !self.done {
            self.fail(
                out,
                ProviderError::new(ErrorKind::Server, "stream ended before completion"),
            );
        }
    }
}
