//! The Ollama native chat format (`POST /api/chat`), as a provider.
//!
//! Owns the translation canonical request → `/api/chat` body ([`encode_request`]: string-only
//! content, raw base64 `images`, tool-call `arguments` as objects, sampling parameters under
//! `options`, `stream` always explicit), the answer → canonical response ([`decode_response`]), the
//! NDJSON stream → canonical events ([`StreamDecoder`]) and `{"error": "…"}` bodies →
//! [`ProviderError`] ([`decode_error`]).
//!
//! Pure translation: no I/O, no clocks. The capability table has already removed every field
//! Ollama cannot honour, so everything still present in the request is encoded.

use crate::canonical::*;
use crate::openai::codec::{function_tool, role_str};
use serde_json::{json, Map, Value};

/// Longest NDJSON line accepted before the stream is declared broken.
const MAX_LINE_BYTES: usize = crate::sse::MAX_EVENT_BYTES;

/// Builds the `/api/chat` request.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.model));
    body.insert(
        "messages".into(),
        Value::Array(encode_messages(&req.messages)?),
    );
    // Ollama streams unless told otherwise.
    body.insert("stream".into(), Value::Bool(req.stream));
    // Ollama has no `tool_choice`: `none` is honoured by not sending the tools (capability table).
    if !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None) {
        let tools: Vec<Value> = req.tools.iter().map(function_tool).collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("format".into(), json!("json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("format".into(), schema.clone());
        }
    }
    let mut options = Map::new();
    if let Some(t) = req.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        options.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        options.insert("top_k".into(), json!(k));
    }
    if let Some(n) = req.max_tokens {
        options.insert("num_predict".into(), json!(n));
    }
    if !req.stop.is_empty() {
        options.insert("stop".into(), json!(req.stop));
    }
    if let Some(s) = req.seed {
        options.insert("seed".into(), json!(s));
    }
    if let Some(p) = req.presence_penalty {
        options.insert("presence_penalty".into(), json!(p));
    }
    if let Some(p) = req.frequency_penalty {
        options.insert("frequency_penalty".into(), json!(p));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    let body = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| TranslateError::invalid(format!("cannot encode request: {e}"), None))?;
    Ok(EncodedRequest {
        path: "/api/chat".to_string(),
        body,
    })
}

/// Messages with string content; tool results become one `tool` message each, in place.
fn encode_messages(messages: &[Message]) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let mut had_results = false;
        let mut images = Vec::new();
        let mut calls = Vec::new();
        for p in &m.content {
            match p {
                Part::Text(_) => {}
                Part::Image(Image::Base64 { data, .. }) => images.push(json!(data)),
                Part::Image(Image::Url(url)) => match parse_data_url(url) {
                    Some((_, data)) => images.push(json!(data)),
                    None => {
                        return Err(TranslateError::Unsupported {
                            field: "image:url".to_string(),
                            provider: "ollama",
                        })
                    }
                },
                Part::ToolCall {
                    name, arguments, ..
                } => calls.push(json!({
                    "function": {"name": name, "arguments": arguments_object(arguments)?},
                })),
                Part::ToolResult {
                    call_id,
                    name,
                    content,
                    ..
                } => {
                    had_results = true;
                    let mut t = Map::new();
                    t.insert("role".into(), json!("tool"));
                    t.insert("content".into(), json!(content));
                    if let Some(n) = name.clone().or_else(|| call_name(&messages[..i], call_id)) {
                        t.insert("tool_name".into(), json!(n));
                    }
                    out.push(Value::Object(t));
                }
            }
        }
        let text = joined_text(&m.content);
        if had_results && text.is_empty() && calls.is_empty() && images.is_empty() {
            continue;
        }
        let mut msg = Map::new();
        msg.insert("role".into(), json!(role_str(m.role)));
        msg.insert("content".into(), json!(text));
        if !images.is_empty() {
            msg.insert("images".into(), Value::Array(images));
        }
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(msg));
    }
    Ok(out)
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

/// Decodes a non-stream answer (`{model, message, done, done_reason, prompt_eval_count, …}`).
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(ErrorKind::Server, format!("invalid Ollama response: {e}"))
    })?;
    if !v.is_object() {
        return Err(ProviderError::new(
            ErrorKind::Server,
            "invalid Ollama response: not a JSON object",
        ));
    }
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(decode_error(500, body, None));
    }
    let Some(msg) = v.get("message").filter(|m| m.is_object()) else {
        return Err(ProviderError::new(
            ErrorKind::Server,
            "invalid Ollama response: missing `message`",
        ));
    };
    let mut content = Vec::new();
    if let Some(t) = msg
        .get("thinking")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(OutputPart::Reasoning(t.to_string()));
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
            let (id, name, arguments) = tool_call(tc, calls);
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
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content,
        finish: finish_of(v.get("done_reason"), calls > 0),
        usage: usage_of(&v),
    })
}

/// `{id?, function:{name, arguments: object}}` → (id, name, arguments as JSON text).
fn tool_call(tc: &Value, n: usize) -> (String, String, String) {
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
    let arguments = match f.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    (id, name, arguments)
}

/// `done_reason`: `stop` (tool calls when there were any), `length`, anything else kept as
/// [`FinishReason::Other`]; absent (older servers) reads as `stop`.
fn finish_of(reason: Option<&Value>, had_calls: bool) -> FinishReason {
    match reason.and_then(Value::as_str) {
        Some("stop") | None if had_calls => FinishReason::ToolCalls,
        Some("stop") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_string()),
    }
}

fn usage_of(v: &Value) -> Option<Usage> {
    let input = v.get("prompt_eval_count").and_then(Value::as_u64);
    let output = v.get("eval_count").and_then(Value::as_u64);
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
        ..Default::default()
    })
}

/// Maps an error answer (`{"error": "message"}`) to a [`ProviderError`]: the kind the status
/// implies, refined by the message ("not found", context length). A body that is not such an
/// object gives its text (at most 500 characters) as the message.
pub fn decode_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| match v.get("error") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(e @ Value::Object(_)) => {
                e.get("message").and_then(Value::as_str).map(str::to_string)
            }
            _ => None,
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    ProviderError {
        kind: kind_of(status, &message),
        message,
        provider_code: None,
        retry_after_secs,
    }
}

fn kind_of(status: u16, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    if lower.contains("not found") {
        ErrorKind::NotFound
    } else if lower.contains("context") && (lower.contains("length") || lower.contains("too long"))
    {
        ErrorKind::ContextLength
    } else {
        ErrorKind::from_status(status)
    }
}

/// Decodes an Ollama NDJSON stream up to its `done: true` line.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// Bytes of a line whose newline has not arrived yet.
    line: Vec<u8>,
    started: bool,
    /// A terminal event was emitted; everything after is ignored.
    done: bool,
    /// Tool calls started so far (the next canonical index).
    tool_calls: u32,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, out: &mut Vec<StreamEvent>, err: ProviderError) {
        self.done = true;
        self.line = Vec::new();
        out.push(StreamEvent::Error(err));
    }

    fn too_long(&mut self, out: &mut Vec<StreamEvent>) {
        self.fail(
            out,
            ProviderError::new(ErrorKind::Server, "stream line longer than 16 MiB"),
        );
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<StreamEvent>) {
        if line.len() > MAX_LINE_BYTES {
            return self.too_long(out);
        }
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return self.fail(
                    out,
                    ProviderError::new(ErrorKind::Server, "invalid stream line: not a JSON object"),
                )
            }
            Err(e) => {
                return self.fail(
                    out,
                    ProviderError::new(ErrorKind::Server, format!("invalid stream line: {e}")),
                )
            }
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            let err = decode_error(200, line, None);
            return self.fail(out, err);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: None,
                model: v.get("model").and_then(Value::as_str).map(str::to_string),
            });
        }
        if let Some(msg) = v.get("message") {
            if let Some(t) = msg
                .get("thinking")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push(StreamEvent::ReasoningDelta(t.to_string()));
            }
            if let Some(t) = msg
                .get("content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push(StreamEvent::TextDelta(t.to_string()));
            }
            if let Some(tcs) = msg.get("tool_calls").and_then(Value::as_array) {
                for tc in tcs {
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    let (id, name, arguments) = tool_call(tc, index as usize);
                    out.push(StreamEvent::ToolCallStart { index, id, name });
                    if !arguments.is_empty() {
                        out.push(StreamEvent::ToolCallDelta { index, arguments });
                    }
                }
            }
        }
        if v.get("done") == Some(&Value::Bool(true)) {
            if let Some(u) = usage_of(&v) {
                out.push(StreamEvent::Usage(u));
            }
            out.push(StreamEvent::Finish(finish_of(
                v.get("done_reason"),
                self.tool_calls > 0,
            )));
            out.push(StreamEvent::End);
            self.done = true;
            self.line = Vec::new();
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        let mut rest = chunk;
        while !self.done {
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                break;
            };
            if self.line.is_empty() {
                self.line(&rest[..nl], out);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..nl]);
                self.line(&line, out);
            }
            rest = &rest[nl + 1..];
        }
        if self.done {
            return;
        }
        if self.line.len() + rest.len() > MAX_LINE_BYTES {
            return self.too_long(out);
        }
        self.line.extend_from_slice(rest);
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line(&line, out);
        }
        if !self.done {
            self.fail(
                out,
                ProviderError::new(ErrorKind::Server, "stream ended before completion"),
            );
        }
    }
}
