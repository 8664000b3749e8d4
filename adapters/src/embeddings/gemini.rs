//! Gemini embeddings: one input → `POST /models/{m}:embedContent`
//! (`{"content":{"parts":[{"text"}]},"outputDimensionality"}` → `{"embedding":{"values"}}`),
//! several → `POST /models/{m}:batchEmbedContents` (`{"requests":[{"model":"models/{m}",..}]}` →
//! `{"embeddings":[{"values"}]}`). `dimensions` becomes `outputDimensionality`. Gemini does not
//! count the tokens of embeddings inputs, so usage is estimated by the caller of [`decode`].
//! Vertex AI's text-embedding `:predict` answer (`{"predictions":[{"embeddings":{"values",
//! "statistics":{"token_count"}}}]}`, the gateway rewrites the request) is read here too, with
//! its token counts.

use super::{floats, to_vec, Embeddings, EmbeddingsRequest};
use crate::canonical::EncodedRequest;
use serde_json::{json, Map, Value};

/// The request for `req` on model `model` (with or without its `models/` prefix).
pub fn encode(req: &EmbeddingsRequest, model: &str) -> EncodedRequest {
    let model = model.strip_prefix("models/").unwrap_or(model);
    // Each request names its model, as the documented examples do (required in a batch).
    let one = |text: &str| {
        let mut o = Map::new();
        o.insert("model".into(), Value::String(format!("models/{model}")));
        o.insert("content".into(), json!({ "parts": [{ "text": text }] }));
        if let Some(d) = req.dimensions {
            o.insert("outputDimensionality".into(), d.into());
        }
        Value::Object(o)
    };
    match req.inputs.as_slice() {
        [text] => EncodedRequest {
            path: format!("/models/{model}:embedContent"),
            body: to_vec(&one(text)),
        },
        texts => EncodedRequest {
            path: format!("/models/{model}:batchEmbedContents"),
            body: to_vec(&json!({
                "requests": texts.iter().map(|t| one(t)).collect::<Vec<_>>()
            })),
        },
    }
}

/// The vectors of an `embedContent` or `batchEmbedContents` answer.
pub fn decode(v: &Value) -> Option<Embeddings> {
    if let Some(p) = v.get("predictions") {
        return decode_predictions(p);
    }
    let vectors = if let Some(e) = v.get("embedding") {
        vec![floats(e.get("values")?)?]
    } else {
        v.get("embeddings")?
            .as_array()?
            .iter()
            .map(|e| floats(e.get("values")?))
            .collect::<Option<_>>()?
    };
    Some(Embeddings {
        vectors,
        // Newer answers may count the input (`usageMetadata.promptTokenCount`).
        prompt_tokens: v
            .pointer("/usageMetadata/promptTokenCount")
            .and_then(Value::as_u64),
    })
}

/// Vertex AI's `:predict` answer: a vector and its input's token count per instance.
fn decode_predictions(p: &Value) -> Option<Embeddings> {
    let mut vectors = Vec::new();
    let mut tokens = 0;
    for e in p.as_array()? {
        let e = e.get("embeddings")?;
        vectors.push(floats(e.get("values")?)?);
        tokens += e
            .pointer("/statistics/token_count")
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as u64;
    }
    Some(Embeddings {
        vectors,
        prompt_tokens: Some(tokens),
    })
}
