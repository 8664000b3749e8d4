//! Cloudflare Workers AI embedding models (`@cf/baai/bge-*` and the like): `POST /run/{model}`
//! with `{"text": [..]}` → `{"result":{"shape":[n,d],"data":[[..]]},"success":true}`. The models
//! have a fixed size, so `dimensions` is refused (or dropped when the model is not `strict`).
//! The answer does not count input tokens; the caller of [`decode`] estimates them.

use super::{floats, to_vec, Embeddings, EmbeddingsRequest};
use crate::canonical::{EncodedRequest, TranslateError};
use serde_json::{json, Value};

pub fn encode(
    req: &EmbeddingsRequest,
    model: &str,
    strict: bool,
) -> Result<(EncodedRequest, Vec<String>), TranslateError> {
    let mut dropped = Vec::new();
    if req.dimensions.is_some() {
        if strict {
            return Err(TranslateError::Unsupported {
                field: "dimensions".into(),
                provider: "cloudflare",
            });
        }
        dropped.push("dimensions".to_string());
    }
    Ok((
        EncodedRequest {
            path: format!("/run/{model}"),
            body: to_vec(&json!({ "text": req.inputs })),
        },
        dropped,
    ))
}

pub fn decode(v: &Value) -> Option<Embeddings> {
    let result = v.get("result")?;
    let vectors: Vec<Vec<f32>> = result
        .get("data")?
        .as_array()?
        .iter()
        .map(floats)
        .collect::<Option<_>>()?;
    // `shape` is [rows, dimensions]; a disagreeing answer is malformed.
    if let Some(shape) = result.get("shape").and_then(Value::as_array) {
        let rows = shape.first().and_then(Value::as_u64);
        let dims = shape.get(1).and_then(Value::as_u64);
        if rows != Some(vectors.len() as u64)
            || vectors.iter().any(|r| Some(r.len() as u64) != dims)
        {
            return None;
        }
    }
    Some(Embeddings {
        vectors,
        prompt_tokens: None,
    })
}
