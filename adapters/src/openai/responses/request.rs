//! Responses requests: `input` (a string or items), `instructions`, flat function `tools`,
//! `tool_choice`, `text.format`, `max_output_tokens`, `reasoning.effort`... rewritten as the
//! Chat Completions request that means the same and read by the chat decoder, so its checks and
//! the capability table apply unchanged. What a translated deployment cannot do (`background`,
//! built-in tools, `conversation`) is refused naming the field.
//!
//! Also the request-side helpers the gateway's conversation store needs: the request's input as
//! items ([`input_items`]) and the fields a `response` object echoes ([`echo_fields`]). No I/O.

use crate::canonical::{ChatRequest, TranslateError};
use serde_json::{json, Map, Value};

fn invalid(message: impl Into<String>, param: &str) -> TranslateError {
    TranslateError::invalid(message, Some(param.to_string()))
}

/// Fields copied to the chat request under the same name.
const SAME_NAME: &[&str] = &[
    "model",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "seed",
];

/// Parses a request body as a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(TranslateError::invalid(
            "request body must be a JSON object",
            None,
        )),
        Err(e) => Err(TranslateError::invalid(
            format!("request body is not valid JSON: {e}"),
            None,
        )),
    }
}

/// Refuses what only OpenAI itself serves: background runs, conversation objects, built-in tools.
pub fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), TranslateError> {
    if obj.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "`background` responses are only supported by deployments with `responses: native`",
            "background",
        ));
    }
    if obj.get("conversation").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "`conversation` objects are not supported; continue a conversation with `previous_response_id`",
            "conversation",
        ));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        for t in tools {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "function" {
                return Err(invalid(
                    format!("built-in tool `{kind}` is only supported by deployments with `responses: native`; only `function` tools are translated"),
                    "tools",
                ));
            }
        }
    }
    Ok(())
}

/// The request's `input` as a list of items (a string is one user message).
pub fn input_items(obj: &Map<String, Value>) -> Result<Vec<Value>, TranslateError> {
    match obj.get("input") {
        Some(Value::String(s)) => Ok(vec![json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": s}],
        })]),
        Some(Value::Array(items)) => Ok(items.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(invalid(
            "`input` must be a string or an array of items",
            "input",
        )),
    }
}

/// The request fields a `response` object echoes, with OpenAI's defaults where absent.
pub fn echo_fields(obj: &Map<String, Value>) -> Map<String, Value> {
    let get = |k: &str, default: Value| obj.get(k).cloned().unwrap_or(default);
    let mut echo = Map::new();
    echo.insert("instructions".into(), get("instructions", Value::Null));
    echo.insert(
        "max_output_tokens".into(),
        get("max_output_tokens", Value::Null),
    );
    echo.insert("metadata".into(), get("metadata", json!({})));
    echo.insert(
        "parallel_tool_calls".into(),
        get("parallel_tool_calls", json!(true)),
    );
    echo.insert(
        "previous_response_id".into(),
        get("previous_response_id", Value::Null),
    );
    echo.insert(
        "reasoning".into(),
        get("reasoning", json!({"effort": null, "summary": null})),
    );
    echo.insert("store".into(), get("store", json!(true)));
    echo.insert("temperature".into(), get("temperature", json!(1.0)));
    echo.insert(
        "text".into(),
        get("text", json!({"format": {"type": "text"}})),
    );
    echo.insert("tool_choice".into(), get("tool_choice", json!("auto")));
    echo.insert("tools".into(), get("tools", json!([])));
    echo.insert("top_p".into(), get("top_p", json!(1.0)));
    echo.insert("truncation".into(), get("truncation", json!("disabled")));
    echo.insert("user".into(), get("user", Value::Null));
    echo
}

/// A content part of an input message as a chat content part.
fn chat_part(part: &Value) -> Result<Value, TranslateError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" | "output_text" | "text" | "refusal" => {
            let text = part
                .get("text")
                .or_else(|| part.get("refusal"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("`{kind}` part needs `text`"), "input"))?;
            Ok(json!({"type": "text", "text": text}))
        }
        "input_image" => {
            let url = part
                .get("image_url")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "`input_image` needs an `image_url` (uploaded `file_id`s are not supported)",
                        "input",
                    )
                })?;
            let mut image = json!({"url": url});
            if let Some(d) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = d.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        other => Err(invalid(
            format!("input content part `{other}` is not supported for this model's provider"),
            "input",
        )),
    }
}

/// A message item's content as chat content (a string stays a string).
fn chat_content(content: Option<&Value>) -> Result<Value, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(json!(s)),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(chat_part)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(invalid("a message item needs `content`", "input")),
    }
}

/// A tool output (a string, or input parts) as chat tool-message content.
fn tool_output(v: Option<&Value>) -> Result<Value, TranslateError> {
    match v {
        Some(Value::String(s)) => Ok(json!(s)),
        Some(Value::Array(_)) => chat_content(v),
        _ => Err(invalid(
            "`function_call_output` needs a string `output`",
            "input",
        )),
    }
}

/// Appends one input item to the chat messages.
fn push_item(messages: &mut Vec<Value>, item: &Value) -> Result<(), TranslateError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let str_field = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("`{kind}` item needs a string `{k}`"), "input"))
    };
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("developer") | Some("system") => "system",
                Some(r @ ("user" | "assistant")) => r,
                _ => {
                    return Err(invalid(
                        "a message item's `role` must be user, assistant, system or developer",
                        "input",
                    ))
                }
            };
            let content = chat_content(item.get("content"))?;
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": str_field("call_id")?,
                "type": "function",
                "function": {"name": str_field("name")?, "arguments": str_field("arguments")?},
            });
            // Consecutive calls are one assistant turn, as chat carries them.
            match messages.last_mut() {
                Some(m) if m["role"] == "assistant" => match m.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        m["tool_calls"] = json!([call]);
                    }
                },
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            messages.push(json!({
                "role": "tool",
                "tool_call_id": str_field("call_id")?,
                "content": tool_output(item.get("output"))?,
            }));
        }
        // Reasoning the provider gave on an earlier turn: not replayed to another provider.
        "reasoning" => {}
        other => {
            return Err(invalid(
                format!("input item `{other}` is not supported for this model's provider"),
                "input",
            ))
        }
    }
    Ok(())
}

/// A flat Responses function tool as a chat tool.
fn chat_tool(t: &Value) -> Value {
    let mut function = Map::new();
    for k in ["name", "description", "parameters", "strict"] {
        if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
            function.insert(k.into(), v.clone());
        }
    }
    json!({"type": "function", "function": Value::Object(function)})
}

/// `tool_choice` in chat's shape.
fn chat_tool_choice(v: &Value) -> Result<Value, TranslateError> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("a function `tool_choice` needs `name`", "tool_choice"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(invalid(
            "`tool_choice` must be auto, none, required or a function",
            "tool_choice",
        )),
    }
}

/// `text.format` as chat's `response_format`.
fn response_format(text: &Value) -> Result<Option<Value>, TranslateError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(json!({"type": "text"}))),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.into(), v.clone());
                }
            }
            Ok(Some(
                json!({"type": "json_schema", "json_schema": Value::Object(schema)}),
            ))
        }
        _ => Err(invalid(
            "`text.format.type` must be text, json_object or json_schema",
            "text.format",
        )),
    }
}

/// The Chat Completions request body that means the same as the Responses request `obj`.
pub fn to_chat(obj: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    refuse_unsupported(obj)?;
    let mut chat = Map::new();
    for k in SAME_NAME {
        if let Some(v) = obj.get(*k).filter(|v| !v.is_null()) {
            chat.insert((*k).into(), v.clone());
        }
    }
    let mut messages = Vec::new();
    match obj.get("instructions") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("`instructions` must be a string", "instructions")),
    }
    for item in input_items(obj)? {
        push_item(&mut messages, &item)?;
    }
    if messages.is_empty() {
        return Err(invalid("`input` is required", "input"));
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            chat.insert(
                "tools".into(),
                Value::Array(tools.iter().map(chat_tool).collect()),
            );
        }
    }
    if let Some(tc) = obj.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), chat_tool_choice(tc)?);
    }
    if let Some(rf) = obj.get("text").map(response_format).transpose()?.flatten() {
        chat.insert("response_format".into(), rf);
    }
    if let Some(n) = obj.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_tokens".into(), n.clone());
    }
    if let Some(effort) = obj
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(chat)
}

/// Fields a translated deployment may honour (OpenAI-compatible chat has them) or that are
/// bookkeeping elsewhere: carried as extras, so the capability table decides.
const CHAT_EXTRAS: &[&str] = &["service_tier", "prompt_cache_key", "safety_identifier"];

/// The request's fields with a non-default value that the chat rewrite cannot carry (see
/// [`crate::capabilities::RESPONSES_ONLY`]) plus [`CHAT_EXTRAS`], as canonical extras: the
/// capability table then drops them (named in `x-switchyard-dropped`) or, on strict models,
/// refuses them naming the field, as it does chat fields.
fn untranslated(obj: &Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, value) in obj {
        let set = match name.as_str() {
            "include" => value.as_array().is_some_and(|a| !a.is_empty()),
            "truncation" => !value.is_null() && value.as_str() != Some("disabled"),
            "top_logprobs" => !value.is_null() && value.as_u64() != Some(0),
            "max_tool_calls" | "prompt" => !value.is_null(),
            n => CHAT_EXTRAS.contains(&n) && !value.is_null(),
        };
        if set {
            out.push((name.clone(), value.clone()));
        }
    }
    out
}

/// Decodes a Responses request (history already expanded into `input`) into the canonical model.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let obj = parse_object(body)?;
    let chat = to_chat(&obj)?;
    let bytes = serde_json::to_vec(&Value::Object(chat)).map_err(|e| {
        TranslateError::invalid(format!("request body cannot be re-read: {e}"), None)
    })?;
    let mut req = crate::openai::codec::decode_request(&bytes)?;
    req.extra.extend(untranslated(&obj));
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::*;

    #[test]
    fn a_string_input_with_instructions_is_a_system_and_a_user_turn() {
        // OpenAI's documented example (with instructions).
        let body = br#"{"model":"gpt-4.1","instructions":"Talk like a pirate.","input":"Are semicolons optional in JavaScript?","max_output_tokens":50,"temperature":0.2}"#;
        let req = decode_request(body).unwrap();
        assert_eq!(req.model, "gpt-4.1");
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[0].role, Role::System);
        assert_eq!(
            req.messages[1].content,
            vec![Part::Text("Are semicolons optional in JavaScript?".into())]
        );
        assert_eq!(req.max_tokens, Some(50));
        assert_eq!(req.temperature, Some(0.2));
        assert!(req.extra.is_empty(), "{:?}", req.extra);
    }

    #[test]
    fn items_tools_and_formats_map_to_their_chat_meaning() {
        let body = serde_json::to_vec(&json!({
            "model": "m",
            "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "what is in this image?"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
            ],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "stream": true,
            "store": false,
            "metadata": {"a": "b"},
        }))
        .unwrap();
        let req = decode_request(&body).unwrap();
        assert_eq!(req.messages.len(), 3, "{:?}", req.messages);
        assert!(
            matches!(req.messages[0].content[1], Part::Image(Image::Url(ref u)) if u == "https://example.com/a.png")
        );
        assert!(
            matches!(req.messages[1].content[0], Part::ToolCall { ref id, ref name, .. } if id == "call_1" && name == "get_weather")
        );
        assert!(
            matches!(req.messages[2].content[0], Part::ToolResult { ref call_id, ref content, .. } if call_id == "call_1" && content == "sunny")
        );
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tools[0].name, "get_weather");
        assert_eq!(
            req.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert!(matches!(
            req.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert!(req.stream && req.include_usage);
    }

    #[test]
    fn what_only_openai_serves_is_refused_naming_the_field() {
        for (body, param) in [
            (
                r#"{"model":"m","input":"x","background":true}"#,
                "background",
            ),
            (
                r#"{"model":"m","input":"x","conversation":"conv_1"}"#,
                "conversation",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#,
                "tools",
            ),
            (
                r#"{"model":"m","input":"x","text":{"format":{"type":"xml"}}}"#,
                "text.format",
            ),
            (
                r#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#,
                "input",
            ),
            (r#"{"model":"m"}"#, "input"),
        ] {
            let e = decode_request(body.as_bytes()).unwrap_err();
            assert_eq!(e.param(), Some(param), "{body}: {e}");
        }
    }

    #[test]
    fn fields_chat_cannot_carry_follow_the_capability_table() {
        use crate::capabilities::prune;
        let body = br#"{"model":"m","input":"x","include":["reasoning.encrypted_content"],"truncation":"auto","top_logprobs":3,"service_tier":"flex","safety_identifier":"u1","max_tool_calls":2}"#;
        let req = decode_request(body).unwrap();
        // Dropped and named on a lenient model; bookkeeping fields ignored off OpenAI.
        let dropped = prune(&mut req.clone(), Dialect::Anthropic, false).unwrap();
        assert_eq!(
            dropped,
            ["include", "truncation", "top_logprobs", "max_tool_calls"]
        );
        // OpenAI chat has no `include` either: refused on a strict model, naming it.
        let e = prune(&mut req.clone(), Dialect::OpenAi, true).unwrap_err();
        assert_eq!(e.param(), Some("include"));
        let mut kept = req.clone();
        let dropped = prune(&mut kept, Dialect::OpenAi, false).unwrap();
        assert_eq!(dropped.len(), 4);
        let names: Vec<&str> = kept.extra.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["service_tier", "safety_identifier"]);
        // Defaults are not reported.
        let body =
            br#"{"model":"m","input":"x","include":[],"truncation":"disabled","top_logprobs":0}"#;
        assert!(decode_request(body).unwrap().extra.is_empty());
    }

    #[test]
    fn echo_fields_default_like_openai() {
        let obj = parse_object(br#"{"model":"m","input":"x","store":false}"#).unwrap();
        let echo = echo_fields(&obj);
        assert_eq!(echo["store"], json!(false));
        assert_eq!(echo["tools"], json!([]));
        assert_eq!(echo["tool_choice"], json!("auto"));
        assert_eq!(echo["text"]["format"]["type"], "text");
    }
}
