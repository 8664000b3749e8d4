//! Amazon Bedrock's Converse API as a provider format: canonical request → `Converse` /
//! `ConverseStream` body (`POST /model/{modelId}/converse` or `/converse-stream`), the Converse
//! answer → canonical response, ConverseStream's binary event stream ([`eventstream`]) →
//! canonical [`StreamEvent`]s ([`stream`]), and Bedrock's errors (by exception type or status)
//! → [`ProviderError`]. Pure translation: no I/O, no clocks; signing is the gateway's job.
//!
//! Mapping: system turns → `system[].text`; user/assistant turns → `messages[].content[]`
//! (`text`, `image.source.bytes`, `toolUse`, `toolResult`), consecutive turns of one role merged
//! (Converse requires alternation; tool results are user turns); `max_tokens`, `temperature`,
//! `top_p`, `stop` → `inferenceConfig`; `top_k` → `additionalModelRequestFields.top_k`; tools →
//! `toolConfig`. Usage: `inputTokens` excludes cache reads and writes, the canonical
//! `input_tokens` includes them.

pub mod eventstream;
pub mod stream;

use crate::canonical::*;
use serde_json::{json, Map, Value};

pub use stream::StreamDecoder;

/// Longest provider message kept in an error.
const MAX_ERROR_TEXT: usize = 500;

/// Encodes a (pruned) canonical request.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    let mut body = Map::new();
    let system: Vec<Value> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"text": t})),
            _ => None,
        })
        .collect();
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages(&req.messages)?));
    let mut inference = Map::new();
    inference.insert(
        "maxTokens".into(),
        json!(req.max_tokens.unwrap_or(opts.default_max_tokens)),
    );
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(req.stop));
    }
    body.insert("inferenceConfig".into(), Value::Object(inference));
    if let Some(k) = req.top_k {
        body.insert("additionalModelRequestFields".into(), json!({"top_k": k}));
    }
    if let Some(tc) = tool_config(req) {
        body.insert("toolConfig".into(), tc);
    }
    let model = encode_model_id(opts.model);
    let path = if req.stream {
        format!("/model/{model}/converse-stream")
    } else {
        format!("/model/{model}/converse")
    };
    Ok(EncodedRequest {
        path,
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
    })
}

/// A model id or ARN as one URL path segment (`:` and `/` percent-encoded, as AWS's SDKs do).
pub fn encode_model_id(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn messages(list: &[Message]) -> Result<Vec<Value>, TranslateError> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in list {
        let role = match m.role {
            Role::System => continue,
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::new();
        for p in &m.content {
            blocks.push(content_block(p)?);
        }
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect())
}

fn content_block(p: &Part) -> Result<Value, TranslateError> {
    Ok(match p {
        Part::Text(t) => json!({"text": t}),
        Part::Image(Image::Base64 { media_type, data }) => {
            let format = media_type.strip_prefix("image/").unwrap_or(media_type);
            let format = if format == "jpg" { "jpeg" } else { format };
            if !matches!(format, "png" | "jpeg" | "gif" | "webp") {
                return Err(TranslateError::invalid(
                    format!("image type {media_type:?} is not supported by Bedrock (png, jpeg, gif, webp)"),
                    Some("messages".to_string()),
                ));
            }
            json!({"image": {"format": format, "source": {"bytes": data}}})
        }
        Part::Image(Image::Url(_)) => {
            return Err(TranslateError::Unsupported {
                field: "image:url".into(),
                provider: "bedrock",
            })
        }
        Part::ToolCall {
            id,
            name,
            arguments,
        } => json!({"toolUse": {"toolUseId": id, "name": name,
                                "input": arguments_object(arguments)?}}),
        Part::ToolResult {
            call_id,
            content,
            is_error,
            ..
        } => {
            let mut r = json!({"toolUseId": call_id, "content": [{"text": content}]});
            if *is_error {
                r["status"] = json!("error");
            }
            json!({"toolResult": r})
        }
    })
}

fn tool_config(req: &ChatRequest) -> Option<Value> {
    if req.tools.is_empty() || req.tool_choice == Some(ToolChoice::None) {
        return None;
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut spec = json!({"name": t.name, "inputSchema": {"json": t.parameters.clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}))}});
            if let Some(d) = &t.description {
                spec["description"] = json!(d);
            }
            json!({"toolSpec": spec})
        })
        .collect();
    let mut tc = json!({ "tools": tools });
    match &req.tool_choice {
        Some(ToolChoice::Required) => tc["toolChoice"] = json!({"any": {}}),
        Some(ToolChoice::Function(name)) => tc["toolChoice"] = json!({"tool": {"name": name}}),
        Some(ToolChoice::Auto) => tc["toolChoice"] = json!({"auto": {}}),
        _ => {}
    }
    Some(tc)
}

/// Converse's `stopReason`.
pub fn map_stop(reason: &str) -> FinishReason {
    match reason {
        "end_turn" => FinishReason::Stop,
        "stop_sequence" => FinishReason::StopSequence(None),
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// Converse's `usage` (`inputTokens` excludes cache reads and writes).
pub fn map_usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    Usage {
        input_tokens: n("inputTokens") + read + write,
        output_tokens: n("outputTokens"),
        cache_read_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

/// Decodes a whole Converse answer.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(ErrorKind::Server, format!("bedrock: malformed answer: {e}"))
    })?;
    let blocks = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ProviderError::new(ErrorKind::Server, "bedrock: answer has no output.message")
        })?;
    let mut content = Vec::new();
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            if !t.is_empty() {
                content.push(OutputPart::Text(t.to_string()));
            }
        } else if let Some(u) = b.get("toolUse") {
            content.push(OutputPart::ToolCall {
                id: u["toolUseId"].as_str().unwrap_or_default().to_string(),
                name: u["name"].as_str().unwrap_or_default().to_string(),
                arguments: u
                    .get("input")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            });
        } else if let Some(t) = b
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            content.push(OutputPart::Reasoning(t.to_string()));
        }
    }
    Ok(ChatResponse {
        id: String::new(),
        model: String::new(),
        content,
        finish: map_stop(v["stopReason"].as_str().unwrap_or("end_turn")),
        usage: v.get("usage").map(map_usage),
    })
}

/// The error kind of a Bedrock exception type (`x-amzn-errortype` / `:exception-type`, with or
/// without its namespace suffix, either case of the first letter).
pub fn kind_of_exception(exception: &str, status: u16) -> ErrorKind {
    let name = exception.split(':').next().unwrap_or(exception);
    match name.to_ascii_lowercase().as_str() {
        "throttlingexception" => ErrorKind::RateLimited,
        "validationexception" => ErrorKind::InvalidRequest,
        "accessdeniedexception" => ErrorKind::Permission,
        "unrecognizedclientexception" | "expiredtokenexception" => ErrorKind::Auth,
        "serviceunavailableexception" | "modelnotreadyexception" => ErrorKind::Overloaded,
        "resourcenotfoundexception" => ErrorKind::NotFound,
        "modeltimeoutexception" => ErrorKind::Timeout,
        "internalserverexception" | "modelerrorexception" | "modelstreamerrorexception" => {
            ErrorKind::Server
        }
        _ => ErrorKind::from_status(status),
    }
}

/// Decodes an error answer (`{"message": ...}`; the type from `__type` when present, else from
/// the status, which Bedrock sets per exception type).
pub fn decode_error(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProviderError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(MAX_ERROR_TEXT).collect::<String>())
        .unwrap_or_else(|| format!("bedrock returned HTTP {status}"));
    let code = v
        .get("__type")
        .and_then(Value::as_str)
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
    let kind = match &code {
        Some(c) => kind_of_exception(c, status),
        None => ErrorKind::from_status(status),
    };
    ProviderError {
        kind,
        message,
        provider_code: code,
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests;
