//! The OpenAI Chat Completions format as a provider speaks it: the request encoder, the response
//! and stream decoders and the error decoder, for every deployment that is not reached through
//! the byte-splicing fast path. The caller side (request decoder, response and stream encoders)
//! is the parent module. No I/O here.

use super::*;

// ---------------------------------------------------------------------------------------------
// Provider side: request encoding.

/// Encodes a canonical request for an OpenAI-compatible provider (`/chat/completions`). Streams
/// always ask for usage so the gateway can meter them.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.model));
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        match m.role {
            // Several text parts (Anthropic system blocks) join like hoisted system turns do.
            Role::System => messages.push(json!({
                "role": "system",
                "content": system_text(std::slice::from_ref(m)).unwrap_or_default(),
            })),
            Role::User => {
                // Several text parts stay separate parts: concatenating them would glue words.
                let only_text =
                    m.content.len() <= 1 && m.content.iter().all(|p| matches!(p, Part::Text(_)));
                let content = if only_text {
                    json!(joined_text(&m.content))
                } else {
                    Value::Array(
                        m.content
                            .iter()
                            .filter_map(|p| match p {
                                Part::Text(t) => Some(json!({"type": "text", "text": t})),
                                Part::Image(Image::Url(u)) => {
                                    Some(json!({"type": "image_url", "image_url": {"url": u}}))
                                }
                                Part::Image(Image::Base64 { media_type, data }) => Some(json!({
                                    "type": "image_url",
                                    "image_url": {"url": format!("data:{media_type};base64,{data}")},
                                })),
                                _ => None,
                            })
                            .collect(),
                    )
                };
                messages.push(json!({"role": "user", "content": content}));
                // Tool results carried in a user turn (Anthropic callers) become tool messages.
                push_tool_results(&m.content, &mut messages);
            }
            Role::Assistant => {
                let text = joined_text(&m.content);
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall { id, name, arguments } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": if arguments.is_empty() { "{}" } else { arguments }},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert(
                    "content".into(),
                    if text.is_empty() && !calls.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(msg));
            }
            Role::Tool => push_tool_results(&m.content, &mut messages),
        }
    }
    // A user turn that held only tool results leaves an empty user message: drop those.
    messages.retain(|m| {
        !(m.get("role").and_then(Value::as_str) == Some("user")
            && m.get("content").and_then(Value::as_str) == Some(""))
    });
    body.insert("messages".into(), Value::Array(messages));
    if req.stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    put("max_tokens", req.max_tokens.map(|n| json!(n)));
    put("temperature", req.temperature.map(|n| json!(n)));
    put("top_p", req.top_p.map(|n| json!(n)));
    put("top_k", req.top_k.map(|n| json!(n)));
    put("stop", (!req.stop.is_empty()).then(|| json!(req.stop)));
    put("seed", req.seed.map(|n| json!(n)));
    put("n", req.n.map(|n| json!(n)));
    put("presence_penalty", req.presence_penalty.map(|n| json!(n)));
    put("frequency_penalty", req.frequency_penalty.map(|n| json!(n)));
    put("logprobs", req.logprobs.map(|n| json!(n)));
    put("top_logprobs", req.top_logprobs.map(|n| json!(n)));
    put(
        "response_format",
        req.response_format.as_ref().map(|f| match f {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut js = json!({"name": name, "schema": schema});
                if let (Some(s), Some(o)) = (strict, js.as_object_mut()) {
                    o.insert("strict".into(), json!(s));
                }
                json!({"type": "json_schema", "json_schema": js})
            }
        }),
    );
    put(
        "tools",
        (!req.tools.is_empty()).then(|| {
            Value::Array(
                req.tools
                    .iter()
                    .map(|t| {
                        let mut f = Map::new();
                        f.insert("name".into(), json!(t.name));
                        if let Some(d) = &t.description {
                            f.insert("description".into(), json!(d));
                        }
                        if let Some(p) = &t.parameters {
                            f.insert("parameters".into(), p.clone());
                        }
                        json!({"type": "function", "function": Value::Object(f)})
                    })
                    .collect(),
            )
        }),
    );
    put(
        "tool_choice",
        req.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(n) => json!({"type": "function", "function": {"name": n}}),
        }),
    );
    put(
        "parallel_tool_calls",
        req.parallel_tool_calls.map(|b| json!(b)),
    );
    put("user", req.user.as_ref().map(|u| json!(u)));
    for (k, v) in &req.extra {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(EncodedRequest {
        path: "/chat/completions".into(),
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
    })
}

/// A tool in OpenAI's `{type: function, function: {name, description?, parameters}}` shape, with
/// an empty object schema for a function without arguments (what OpenAI-shaped provider APIs —
/// Cloudflare, Ollama — expect).
pub(crate) fn function_tool(t: &Tool) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), json!(t.name));
    if let Some(d) = &t.description {
        f.insert("description".into(), json!(d));
    }
    f.insert(
        "parameters".into(),
        t.parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    json!({"type": "function", "function": f})
}

/// The OpenAI-style role name.
pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn push_tool_results(parts: &[Part], messages: &mut Vec<Value>) {
    for p in parts {
        if let Part::ToolResult {
            call_id, content, ..
        } = p
        {
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Provider side: response, stream and error decoding.

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for k in path {
        match cur.get(k) {
            Some(n) => cur = n,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

pub(crate) fn decode_usage(u: &Value) -> Usage {
    Usage {
        input_tokens: u64_at(u, &["prompt_tokens"]),
        output_tokens: u64_at(u, &["completion_tokens"]),
        cache_read_tokens: u64_at(u, &["prompt_tokens_details", "cached_tokens"]),
        cache_write_tokens: u64_at(u, &["prompt_tokens_details", "cache_write_tokens"]),
        reasoning_tokens: u64_at(u, &["completion_tokens_details", "reasoning_tokens"]),
    }
}

pub(crate) fn decode_finish(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

fn malformed(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Server,
        format!("malformed response from the provider: {what}"),
    )
}

/// Decodes a non-stream `chat.completion` body.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(decode_error(200, body, None));
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| malformed("no choices"))?;
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(OutputPart::Reasoning(r.to_string()));
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(OutputPart::Text(t.to_string()));
    }
    if let Some(t) = msg
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(OutputPart::Text(t.to_string()));
    }
    // A legacy `text_completion` (POST /v1/completions) carries its text on the choice.
    if let Some(t) = choice
        .get("text")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(OutputPart::Text(t.to_string()));
    }
    if let Some(Value::Array(calls)) = msg.get("tool_calls") {
        for (i, c) in calls.iter().enumerate() {
            let f = c.get("function").unwrap_or(&Value::Null);
            content.push(OutputPart::ToolCall {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{i}")),
                name: f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: match f.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => "{}".into(),
                    Some(other) => other.to_string(),
                },
            });
        }
    }
    let refused = msg
        .get("refusal")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let finish = match choice.get("finish_reason").and_then(Value::as_str) {
        Some(s) => decode_finish(s),
        None if refused => FinishReason::ContentFilter,
        None => FinishReason::Stop,
    };
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
        finish,
        usage: v.get("usage").filter(|u| u.is_object()).map(decode_usage),
    })
}

/// Decodes an OpenAI error body (`{"error":{message,type,param,code}}`).
pub fn decode_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = v.get("error").unwrap_or(&Value::Null);
    let message = match e {
        Value::String(s) => s.clone(),
        _ => e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body_excerpt(body)),
    };
    let code = e
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| e.get("type").and_then(Value::as_str));
    let kind = match code {
        Some("context_length_exceeded") => ErrorKind::ContextLength,
        Some("content_policy_violation") | Some("content_filter") => ErrorKind::ContentPolicy,
        Some("insufficient_quota") | Some("rate_limit_exceeded") => ErrorKind::RateLimited,
        Some("invalid_api_key") => ErrorKind::Auth,
        _ if status == 200 => ErrorKind::Server,
        _ => ErrorKind::from_status(status),
    };
    ProviderError {
        kind,
        message,
        provider_code: code.map(str::to_string),
        retry_after_secs,
    }
}

/// The first 500 characters of a body that is not a known error shape.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    if t.is_empty() {
        return "the provider returned an error with an empty body".into();
    }
    t.chars().take(500).collect()
}

/// Decodes an OpenAI chunk stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    framer: SseFramer,
    started: bool,
    finished: bool,
    terminal: bool,
    /// The provider's indexes of the tool calls announced so far; the canonical index of a call is
    /// its position here (the provider's may skip numbers or start above 0).
    announced: Vec<u32>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn on_data(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) {
        let data = trim_ascii(data);
        if data.is_empty() {
            return;
        }
        if data.starts_with(b"[DONE]") {
            self.terminal = true;
            out.push(StreamEvent::End);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            self.fail(out, malformed("a stream event is not JSON"));
            return;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            let e = decode_error(200, data, None);
            self.fail(out, e);
            return;
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: v.get("id").and_then(Value::as_str).map(str::to_string),
                model: v.get("model").and_then(Value::as_str).map(str::to_string),
            });
        }
        if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(t) = delta
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push(StreamEvent::ReasoningDelta(t.to_string()));
            }
            // A legacy completions chunk (`text_completion`) carries its text on the choice.
            let legacy = choice.get("text").filter(|_| choice.get("delta").is_none());
            for t in [delta.get("content"), delta.get("refusal"), legacy] {
                if let Some(t) = t.and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::TextDelta(t.to_string()));
                }
            }
            if let Some(Value::Array(calls)) = delta.get("tool_calls") {
                for c in calls {
                    let raw_index = c.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
                    let f = c.get("function").unwrap_or(&Value::Null);
                    let known = self.announced.iter().position(|&i| i == raw_index);
                    let index = known.unwrap_or(self.announced.len()) as u32;
                    if known.is_none() {
                        self.announced.push(raw_index);
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: c
                                .get("id")
                                .and_then(Value::as_str)
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("call_{index}")),
                            name: f
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        });
                    }
                    if let Some(a) = f
                        .get("arguments")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    {
                        out.push(StreamEvent::ToolCallDelta {
                            index,
                            arguments: a.to_string(),
                        });
                    }
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                if !self.finished {
                    self.finished = true;
                    out.push(StreamEvent::Finish(decode_finish(f)));
                }
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            out.push(StreamEvent::Usage(decode_usage(u)));
        }
    }

    fn fail(&mut self, out: &mut Vec<StreamEvent>, e: ProviderError) {
        self.terminal = true;
        out.push(StreamEvent::Error(e));
    }
}

pub(crate) fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
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
        if self.framer.over_limit() {
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
                    "the provider's stream ended before completion",
                ),
            );
        }
    }
}
