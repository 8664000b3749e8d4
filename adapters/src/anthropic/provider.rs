//! The Anthropic Messages format as a provider speaks it: the request encoder, the response and
//! stream decoders and the error decoder. The caller side (request decoder, response and stream
//! encoders) is the parent module. No I/O here.

use super::*;

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
            } else if m.contains("content filtering policy") || m.contains("usage policy") {
                // "Output blocked by content filtering policy", and refusals citing the usage
                // policy: a content-policy refusal (a fallback model may serve it).
                ErrorKind::ContentPolicy
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
