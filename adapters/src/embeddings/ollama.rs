//! Ollama embeddings: `POST /api/embed` with `{"model","input": string | [strings]}` (and
//! `dimensions`, which the API takes for models that can shorten their vectors) →
//! `{"model","embeddings":[[..]],"prompt_eval_count"}`.

use super::{floats, input_value, to_vec, Embeddings, EmbeddingsRequest};
use crate::canonical::EncodedRequest;
use serde_json::{json, Value};

pub fn encode(req: &EmbeddingsRequest, model: &str) -> EncodedRequest {
    let mut body = json!({ "model": model, "input": input_value(req) });
    if let (Some(d), Some(o)) = (req.dimensions, body.as_object_mut()) {
        o.insert("dimensions".into(), d.into());
    }
    EncodedRequest {
        path: "/api/embed".into(),
        body: to_vec(&body),
    }
}

pub fn decode(v: &Value) -> Option<Embeddings> {
    Some(Embeddings {
        vectors: v
            .get("embeddings")?
            .as_array()?
            .iter()
            .map(floats)
            .collect::<Option<_>>()?,
        prompt_tokens: v.get("prompt_eval_count").and_then(Value::as_u64),
    })
}
