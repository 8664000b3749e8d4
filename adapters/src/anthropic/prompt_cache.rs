//! Anthropic prompt caching for `models[].prompt_cache: auto`: adds `cache_control` breakpoints
//! to a Messages request bound for Anthropic — the last tool, the system prompt, and the last
//! block of the conversation's last message and of the user turn before it (so the next turn
//! reads what this one wrote) — at most four, as Anthropic allows. A request that already has a
//! `cache_control` anywhere is the caller's choice and is left alone. It rewrites the request
//! body only; pricing the cache's usage is the gateway's.

use serde_json::{json, Map, Value};

/// Anthropic's limit on breakpoints per request.
const MAX_BREAKPOINTS: usize = 4;

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The body with breakpoints added; `None` when it is left as it is (not a JSON object, the
/// caller's own `cache_control`, nothing to mark).
pub fn add_breakpoints(body: &[u8]) -> Option<Vec<u8>> {
    if memchr::memmem::find(body, b"\"cache_control\"").is_some() {
        return None;
    }
    let Ok(Value::Object(mut req)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let mut left = MAX_BREAKPOINTS;
    if let Some(Value::Array(tools)) = req.get_mut("tools") {
        if let Some(Value::Object(last)) = tools.last_mut() {
            last.insert("cache_control".into(), ephemeral());
            left -= 1;
        }
    }
    if let Some(system) = req.get_mut("system") {
        if mark_content(system) {
            left -= 1;
        }
    }
    if let Some(Value::Array(messages)) = req.get_mut("messages") {
        let last = messages.len().checked_sub(1);
        let earlier_user = last.and_then(|l| {
            messages[..l]
                .iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        });
        for i in [last, earlier_user].into_iter().flatten() {
            if left == 0 {
                break;
            }
            if let Some(content) = messages[i].get_mut("content") {
                if mark_content(content) {
                    left -= 1;
                }
            }
        }
    }
    if left == MAX_BREAKPOINTS {
        return None;
    }
    serde_json::to_vec(&Value::Object(req)).ok()
}

/// Marks a `system` or message `content`: a string becomes one text block with the breakpoint,
/// a list gets it on its last block that may carry one (not thinking, not empty text).
fn mark_content(content: &mut Value) -> bool {
    match content {
        Value::String(s) if !s.is_empty() => {
            let mut block = Map::new();
            block.insert("type".into(), "text".into());
            block.insert("text".into(), Value::String(std::mem::take(s)));
            block.insert("cache_control".into(), ephemeral());
            *content = Value::Array(vec![Value::Object(block)]);
            true
        }
        Value::Array(blocks) => {
            let cacheable = blocks.iter_mut().rev().find_map(|b| {
                let obj = b.as_object_mut()?;
                let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
                let empty_text = kind == "text"
                    && obj
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty();
                (!matches!(kind, "thinking" | "redacted_thinking") && !empty_text).then_some(obj)
            });
            match cacheable {
                Some(obj) => {
                    obj.insert("cache_control".into(), ephemeral());
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(v: &Value, path: String, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if m.contains_key("cache_control") {
                        out.push(path.clone());
                    }
                    for (k, v) in m {
                        walk(v, format!("{path}.{k}"), out);
                    }
                }
                Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        walk(v, format!("{path}[{i}]"), out);
                    }
                }
                _ => {}
            }
        }
        walk(v, String::new(), &mut out);
        out
    }

    #[test]
    fn system_tools_and_the_last_turns_get_four_breakpoints() {
        let body = json!({
            "model": "claude", "max_tokens": 10,
            "system": "You are a long system prompt.",
            "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}],
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "more"}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "answer"}]},
                {"role": "user", "content": "third"}
            ]
        });
        let out = add_breakpoints(body.to_string().as_bytes()).expect("marked");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            marked(&v),
            [
                ".system[0]",
                ".tools[1]",
                ".messages[2].content[1]",
                ".messages[4].content[0]"
            ]
        );
        assert_eq!(v["system"][0]["text"], "You are a long system prompt.");
        assert_eq!(v["messages"][4]["content"][0]["text"], "third");
        assert_eq!(v["tools"][1]["cache_control"]["type"], "ephemeral");
        // The rest is untouched, in order.
        assert_eq!(v["messages"][3], body["messages"][3]);
        assert_eq!(v["model"], "claude");
    }

    #[test]
    fn the_callers_own_breakpoints_are_left_alone_and_nothing_to_mark_is_none() {
        let own = br#"{"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(add_breakpoints(own), None);
        assert_eq!(add_breakpoints(br#"{"messages":[]}"#), None);
        assert_eq!(add_breakpoints(b"[]"), None);
        let one = add_breakpoints(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let v: Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(marked(&v), [".messages[0].content[0]"]);
    }
}
