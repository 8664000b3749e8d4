//! What the semantic cache compares: a request split into the prompt to embed — the last turn
//! of a conversation (chat `messages`, Messages `messages`, a Responses `input` list), the whole
//! `prompt` of a completion, a Responses `input` string — and the rest of the body, which must
//! match exactly (it is hashed into the index's partition: same model, parameters, system prompt
//! and earlier turns). Only the last turn is embedded so an embedding model's input limit never
//! cuts off the part that differs. It reads the body only.

use crate::proxy::context::Route;
use serde_json::{Map, Value};

/// A request split for the semantic index.
pub struct Prompt {
    /// The text embedded.
    pub text: String,
    /// The body without it.
    pub rest: Map<String, Value>,
}

/// Splits `body` for `route`; `None` when the route is not compared this way or there is no
/// text to compare.
pub fn split(route: Route, body: &[u8]) -> Option<Prompt> {
    let Ok(Value::Object(mut rest)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let field = match route {
        Route::ChatCompletions | Route::Messages => "messages",
        Route::Completions => "prompt",
        Route::Responses => "input",
        _ => return None,
    };
    let prompt = match (route, rest.get_mut(field)?) {
        (Route::Completions, _) | (_, Value::String(_)) => rest.remove(field)?,
        (_, Value::Array(turns)) => turns.pop()?,
        _ => return None,
    };
    let mut parts = Vec::new();
    strings(&prompt, true, &mut parts);
    let text = parts.join("\n");
    (!text.trim().is_empty()).then_some(Prompt { text, rest })
}

/// The text in `v`: strings at the top or under `content` / `text` keys (roles, types, ids and
/// the like are left out).
fn strings<'a>(v: &'a Value, wanted: bool, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if wanted => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, wanted, out)),
        Value::Object(map) => {
            for (k, v) in map {
                strings(v, k == "content" || k == "text", out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_turn_is_embedded_and_the_rest_partitions() {
        let p = split(
            Route::ChatCompletions,
            br#"{"model":"m","temperature":0.1,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"What is the capital"},{"type":"text","text":"of France?"}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.text, "What is the capital\nof France?");
        assert_eq!(p.rest["messages"].as_array().unwrap().len(), 1);
        assert_eq!(p.rest["temperature"], 0.1);
        let p = split(Route::Completions, br#"{"prompt":["a","b"]}"#).unwrap();
        assert_eq!((p.text.as_str(), p.rest.len()), ("a\nb", 0));
        let p = split(Route::Responses, br#"{"input":"Hi there"}"#).unwrap();
        assert_eq!(p.text, "Hi there");
        let p = split(
            Route::Responses,
            br#"{"input":[{"role":"user","content":[{"type":"input_text","text":"Yo"}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.text, "Yo");
        assert!(split(Route::Embeddings, br#"{"input":"x"}"#).is_none());
        assert!(split(Route::ChatCompletions, br#"{"messages":[]}"#).is_none());
        assert!(split(
            Route::Messages,
            br#"{"messages":[{"role":"user","content":"  "}]}"#
        )
        .is_none());
    }
}
