//! OpenAI `/v1/embeddings` translated both ways for providers with their own embeddings API:
//! Gemini ([`gemini`]: `embedContent` / `batchEmbedContents`), Ollama ([`ollama`]: `/api/embed`)
//! and Cloudflare Workers AI embedding models ([`cloudflare`]: `/ai/run/{model}`).
//!
//! The caller's request is read once ([`parse_request`]); each provider's body is encoded from it
//! ([`encode_request`]); the provider's answer is decoded to plain vectors ([`decode_response`])
//! and written back as OpenAI's `{"object":"list","data":[..],"model","usage"}`
//! ([`encode_response`]), as floats or — `encoding_format: "base64"` — as OpenAI's little-endian
//! `f32` base64. OpenAI-compatible deployments never come here: their bytes pass through.
//! Pure like the rest of the crate; it must not know of chat requests or the gateway.

pub mod cloudflare;
pub mod gemini;
pub mod ollama;

use crate::canonical::{Dialect, EncodedRequest, ErrorKind, ProviderError, TranslateError};
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

/// The largest `dimensions` the gateway passes on or produces (OpenAI's largest model has 3,072).
pub const MAX_DIMENSIONS: u32 = 65_536;

/// What a translated embeddings request carries.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    /// The texts, in order.
    pub inputs: Vec<String>,
    /// `input` was one string (not an array).
    pub single: bool,
    /// `encoding_format: "base64"`.
    pub base64: bool,
    /// `dimensions`, when given.
    pub dimensions: Option<u32>,
}

impl EmbeddingsRequest {
    /// Tokens of the inputs, estimated (about four characters a token, at least one per input)
    /// for providers whose answer does not count them.
    pub fn estimated_tokens(&self) -> u64 {
        self.inputs
            .iter()
            .map(|t| (t.chars().count() as u64).div_ceil(4).max(1))
            .sum()
    }
}

/// Reads an OpenAI embeddings body. Errors name the field (`input`, `input[2]`,
/// `encoding_format`, `dimensions`).
pub fn parse_request(body: &[u8]) -> Result<EmbeddingsRequest, TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError::invalid(format!("request body is not valid JSON: {e}"), None)
    })?;
    let (inputs, single) = match v.get("input") {
        Some(Value::String(s)) => (vec![s.clone()], true),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut texts = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => texts.push(s.clone()),
                    _ => {
                        return Err(TranslateError::invalid(
                            format!(
                                "'input[{i}]' must be a string: token-id inputs go only to \
                                 OpenAI-compatible deployments"
                            ),
                            Some(format!("input[{i}]")),
                        ))
                    }
                }
            }
            (texts, false)
        }
        _ => {
            return Err(TranslateError::invalid(
                "'input' must be a non-empty string or array of strings",
                Some("input".to_string()),
            ))
        }
    };
    let base64 = match v.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return Err(TranslateError::invalid(
                "'encoding_format' must be \"float\" or \"base64\"",
                Some("encoding_format".to_string()),
            ))
        }
    };
    let dimensions = match v.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            d.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_DIMENSIONS).contains(n))
                .ok_or_else(|| {
                    TranslateError::invalid(
                        format!("'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}"),
                        Some("dimensions".to_string()),
                    )
                })?,
        ),
    };
    Ok(EmbeddingsRequest {
        inputs,
        single,
        base64,
        dimensions,
    })
}

/// A provider request, and the request fields dropped because the provider cannot honour them
/// (only when not `strict`; strict refuses them with the field's name).
pub fn encode_request(
    dialect: Dialect,
    req: &EmbeddingsRequest,
    model: &str,
    strict: bool,
) -> Result<(EncodedRequest, Vec<String>), TranslateError> {
    match dialect {
        Dialect::Gemini => Ok((gemini::encode(req, model), Vec::new())),
        Dialect::Ollama => Ok((ollama::encode(req, model), Vec::new())),
        Dialect::Cloudflare => cloudflare::encode(req, model, strict),
        Dialect::OpenAi => Ok((encode_openai(req, model), Vec::new())),
        Dialect::Anthropic | Dialect::Bedrock => Err(no_embeddings(dialect)),
    }
}

/// The refusal for a provider kind without an embeddings API: the caller can act on it by
/// choosing another `model`.
pub fn no_embeddings(dialect: Dialect) -> TranslateError {
    TranslateError::invalid(
        format!(
            "provider kind `{}` has no embeddings API; use a model with an openai, gemini, \
             ollama, cloudflare, local or mock deployment for /v1/embeddings",
            dialect.name()
        ),
        Some("model".to_string()),
    )
}

/// An OpenAI embeddings body for `req` (the fast path sends the caller's own bytes instead).
fn encode_openai(req: &EmbeddingsRequest, model: &str) -> EncodedRequest {
    let mut body = serde_json::json!({
        "model": model,
        "input": input_value(req),
        "encoding_format": if req.base64 { "base64" } else { "float" },
    });
    if let (Some(d), Some(obj)) = (req.dimensions, body.as_object_mut()) {
        obj.insert("dimensions".into(), d.into());
    }
    EncodedRequest {
        path: "/embeddings".into(),
        body: to_vec(&body),
    }
}

/// `input` as the caller shaped it: one string, or an array.
pub(crate) fn input_value(req: &EmbeddingsRequest) -> Value {
    match (req.single, req.inputs.first()) {
        (true, Some(s)) => Value::String(s.clone()),
        _ => Value::from(req.inputs.clone()),
    }
}

pub(crate) fn to_vec(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// A provider's embeddings: one vector per input, in input order, and the input tokens when the
/// provider counted them.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: Option<u64>,
}

/// Decodes a provider's successful answer to `inputs` texts. A 2xx that carries an error, is
/// unreadable, or has another number of vectors than inputs is a provider error.
pub fn decode_response(
    dialect: Dialect,
    body: &[u8],
    inputs: usize,
) -> Result<Embeddings, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorKind::Server,
            format!("the provider's embeddings answer is not JSON: {e}"),
        )
    })?;
    if v.get("error").is_some() || v.get("success") == Some(&Value::Bool(false)) {
        return Err(crate::providers::decode_error(dialect, 200, body, None));
    }
    let out = match dialect {
        Dialect::Gemini => gemini::decode(&v),
        Dialect::Ollama => ollama::decode(&v),
        Dialect::Cloudflare => cloudflare::decode(&v),
        Dialect::OpenAi => decode_openai(&v),
        Dialect::Anthropic | Dialect::Bedrock => None,
    }
    .ok_or_else(|| malformed(dialect))?;
    if out.vectors.len() != inputs {
        return Err(ProviderError::new(
            ErrorKind::Server,
            format!(
                "the {} provider answered {} embeddings for {inputs} inputs",
                dialect.name(),
                out.vectors.len()
            ),
        ));
    }
    Ok(out)
}

fn malformed(dialect: Dialect) -> ProviderError {
    ProviderError::new(
        ErrorKind::Server,
        format!(
            "the {} provider's embeddings answer has no vectors where its API puts them",
            dialect.name()
        ),
    )
}

/// A JSON array of numbers as `f32`s; `None` if anything else is in it.
pub(crate) fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

fn decode_openai(v: &Value) -> Option<Embeddings> {
    let mut data: Vec<(u64, Vec<f32>)> = v
        .get("data")?
        .as_array()?
        .iter()
        .map(|d| Some((d.get("index")?.as_u64()?, floats(d.get("embedding")?)?)))
        .collect::<Option<_>>()?;
    data.sort_by_key(|(i, _)| *i);
    Some(Embeddings {
        vectors: data.into_iter().map(|(_, e)| e).collect(),
        prompt_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
    })
}

/// OpenAI's base64 embedding: the vector's `f32`s, little-endian, in standard base64.
pub fn base64_f32(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The OpenAI answer: `data` in input order (floats, or base64 when asked), `model`, and usage
/// (`prompt_tokens` = `total_tokens`).
pub fn encode_response(vectors: &[Vec<f32>], model: &str, tokens: u64, base64: bool) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Vector<'a> {
        Floats(&'a [f32]),
        Base64(String),
    }
    #[derive(Serialize)]
    struct Item<'a> {
        object: &'static str,
        index: usize,
        embedding: Vector<'a>,
    }
    #[derive(Serialize)]
    struct Usage {
        prompt_tokens: u64,
        total_tokens: u64,
    }
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Item<'a>>,
        model: &'a str,
        usage: Usage,
    }
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: if base64 {
                Vector::Base64(base64_f32(v))
            } else {
                Vector::Floats(v)
            },
        })
        .collect();
    to_vec(&List {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

#[cfg(test)]
mod tests;
