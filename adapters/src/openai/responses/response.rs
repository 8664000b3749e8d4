//! Canonical answers as Responses `response` objects: `output` items (`reasoning`, `message`
//! with `output_text` parts, `function_call`), `status` (`incomplete` with its reason when the
//! answer was cut), Responses `usage`, and the request fields the object echoes. Shared with the
//! stream encoder, which ends with the same object. No I/O.

use super::{id_seed, Turn};
use crate::canonical::*;
use serde_json::{json, Map, Value};

/// Responses `usage`.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total(),
    })
}

/// `status` and `incomplete_details` for how the answer ended.
pub fn status_of(finish: &FinishReason) -> (&'static str, Value) {
    match finish {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A finished assistant `message` item.
pub fn message_item(id: &str, text: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

/// A finished `function_call` item.
pub fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    })
}

/// A `reasoning` item carrying the provider's reasoning text as its summary.
pub fn reasoning_item(id: &str, text: &str) -> Value {
    json!({
        "id": id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}],
    })
}

/// The `output` items of an answer, in order: reasoning, the text message, the calls.
pub fn output_items(resp: &ChatResponse, response_id: &str) -> Vec<Value> {
    let seed = id_seed(response_id);
    let (text, reasoning, calls) = crate::openai::codec::split_output(resp, |id, name, args| {
        (id.to_string(), name.to_string(), args.to_string())
    });
    let mut out = Vec::with_capacity(2 + calls.len());
    if !reasoning.is_empty() {
        out.push(reasoning_item(&format!("rs_{seed}"), &reasoning));
    }
    if !text.is_empty() || calls.is_empty() {
        out.push(message_item(&format!("msg_{seed}"), &text));
    }
    for (i, (call_id, name, arguments)) in calls.iter().enumerate() {
        out.push(function_call_item(
            &format!("fc_{seed}_{i}"),
            call_id,
            name,
            arguments,
        ));
    }
    out
}

/// What identifies a response: its id, the model that answered, when it was created.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
}

/// The `response` object around `output`.
pub fn response_object(
    head: Head<'_>,
    status: &str,
    incomplete_details: Value,
    output: Vec<Value>,
    usage: Option<&Usage>,
    echo: &Map<String, Value>,
) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(head.id));
    obj.insert("object".into(), json!("response"));
    obj.insert("created_at".into(), json!(head.created));
    obj.insert("status".into(), json!(status));
    obj.insert("background".into(), json!(false));
    obj.insert("error".into(), Value::Null);
    obj.insert("incomplete_details".into(), incomplete_details);
    obj.insert("model".into(), json!(head.model));
    obj.insert("output".into(), Value::Array(output));
    for (k, v) in echo {
        obj.insert(k.clone(), v.clone());
    }
    obj.insert("usage".into(), usage.map(usage_json).unwrap_or(Value::Null));
    Value::Object(obj)
}

/// A `response` body for `resp`; the finished object is handed to `turn` when given.
pub fn encode_response(
    resp: &ChatResponse,
    id: &str,
    model: &str,
    created: u64,
    turn: Option<&Turn>,
) -> Vec<u8> {
    let empty = Map::new();
    let (status, details) = status_of(&resp.finish);
    let obj = response_object(
        Head { id, model, created },
        status,
        details,
        output_items(resp, id),
        resp.usage.as_ref(),
        turn.map_or(&empty, |t| &t.echo),
    );
    if let Some(t) = turn {
        t.finish(&obj);
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_a_response_object_with_output_items() {
        let resp = ChatResponse {
            id: "x".into(),
            model: "m".into(),
            content: vec![
                OutputPart::Reasoning("think".into()),
                OutputPart::Text("Hi".into()),
                OutputPart::ToolCall {
                    id: "call_1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                },
            ],
            finish: FinishReason::ToolCalls,
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                cache_read_tokens: 1,
                reasoning_tokens: 2,
                ..Default::default()
            }),
        };
        let turn = Turn::new(Map::from_iter([("store".to_string(), json!(true))]));
        let v: Value =
            serde_json::from_slice(&encode_response(&resp, "resp_abc", "m", 7, Some(&turn)))
                .unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["created_at"], 7);
        assert_eq!(v["store"], true);
        let kinds: Vec<_> = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"]);
        assert_eq!(v["output"][1]["id"], "msg_abc");
        assert_eq!(v["output"][1]["content"][0]["text"], "Hi");
        assert_eq!(v["output"][2]["call_id"], "call_1");
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 1);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
        assert_eq!(turn.take_finished(), Some(v));
    }

    #[test]
    fn a_cut_answer_is_incomplete_with_its_reason() {
        let resp = ChatResponse {
            id: "x".into(),
            model: "m".into(),
            content: vec![OutputPart::Text("Hi".into())],
            finish: FinishReason::Length,
            usage: None,
        };
        let v: Value =
            serde_json::from_slice(&encode_response(&resp, "resp_1", "m", 7, None)).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    }
}
