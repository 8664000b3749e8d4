//! The cache key: a SHA-256 of the request's canonical form — the route, the public model, the
//! scope (team, key or global) and the body with every field that cannot change the answer
//! removed (`user`, `stream`, `stream_options`, `metadata`, the gateway's routing hints) and its
//! object keys sorted, so field order and whitespace do not matter. It reads the body only; it
//! must not touch the request or decide whether a request is cached.

use ring::digest::{Context, SHA256};
use serde_json::Value;

/// Body fields that do not change the answer (or are read from elsewhere, like `model`).
const IGNORED: &[&str] = &[
    "model",
    "user",
    "stream",
    "stream_options",
    "metadata",
    "routingStrategy",
    "task",
    "fallbackProviders",
    "retryAttempts",
    "maxCostPerRequest",
];

/// A cache key.
pub type Key = [u8; 32];

/// The key of a request to `model` on `route`, shared within `scope`; `None` when the body is not
/// a JSON object.
pub fn key(route: &str, model: &str, scope: &str, body: &[u8]) -> Option<Key> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    Some(key_of_map(route, model, scope, &map))
}

/// The key of a request body already parsed (the semantic index's partitions use it with the
/// prompt taken out).
pub fn key_of_map(
    route: &str,
    model: &str,
    scope: &str,
    map: &serde_json::Map<String, Value>,
) -> Key {
    let mut ctx = Context::new(&SHA256);
    for part in [route, model, scope] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut fields: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !IGNORED.contains(&k.as_str()))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    // The canonical text is written into one buffer and hashed once (a digest update per token
    // and a `to_string` per leaf cost ~11,000 instructions for a short chat request).
    let mut text = Vec::with_capacity(256);
    text.push(b'{');
    for (k, v) in fields {
        member(&mut text, k, v);
    }
    text.push(b'}');
    ctx.update(&text);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `"key":value,` with the value canonical.
fn member(out: &mut Vec<u8>, k: &str, v: &Value) {
    leaf(out, k);
    out.push(b':');
    canonical(out, v);
    out.push(b',');
}

/// A JSON leaf (string, number, bool, null) as serde_json writes it.
fn leaf<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail, and these values always serialise.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Writes `v` with object keys sorted.
fn canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut fields: Vec<_> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (k, v) in fields {
                member(out, k, v);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for v in items {
                canonical(out, v);
                out.push(b',');
            }
            out.push(b']');
        }
        other => leaf(out, other),
    }
}

/// Hex text of a key (Redis keys).
pub fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_whitespace_and_ignored_fields_do_not_change_the_key() {
        let a = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let b = br#"{ "temperature": 0.5, "stream": true, "user": "u1", "metadata": {"a":"b"},
            "messages": [ {"content": "hi", "role": "user"} ], "model": "alias" }"#;
        assert_eq!(key("chat", "m", "team:a", a), key("chat", "m", "team:a", b));
    }

    #[test]
    fn answer_changing_fields_scope_route_and_model_change_the_key() {
        let a = br#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let k = key("chat", "m", "team:a", a);
        assert!(k.is_some());
        let other_temp = br#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.6}"#;
        assert_ne!(k, key("chat", "m", "team:a", other_temp));
        let other_msg = br#"{"messages":[{"role":"user","content":"ho"}],"temperature":0.5}"#;
        assert_ne!(k, key("chat", "m", "team:a", other_msg));
        assert_ne!(k, key("chat", "m", "team:b", a));
        assert_ne!(k, key("messages", "m", "team:a", a));
        assert_ne!(k, key("chat", "m2", "team:a", a));
        assert_eq!(key("chat", "m", "", b"[1]"), None);
    }
}
