//! Structured output across formats: the Anthropic Messages `output_config.format` read into the
//! canonical [`ResponseFormat`] (Anthropic callers) and written from it (Anthropic providers).
//!
//! The other providers' encoders write their own fields from [`ResponseFormat`] (Gemini
//! `responseMimeType` + `responseJsonSchema`, Ollama `format`, Cloudflare and OpenAI
//! `response_format`); this module only owns the Anthropic shape, which both sides of
//! `anthropic/` share, and the goldens that prove every provider's translation. It must not
//! validate answers (that is the gateway's `forward::answer_check`). No I/O.

use crate::canonical::{ResponseFormat, TranslateError};
use serde_json::{json, Map, Value};

/// The name OpenAI requires on `json_schema` when the caller's format has none (Anthropic).
pub const DEFAULT_SCHEMA_NAME: &str = "response";

/// Anthropic's `output_config.format` for a canonical response format. `json_object` has no
/// Anthropic equivalent but "any JSON object", which is the schema `{"type":"object"}`; plain
/// text needs no format.
pub fn anthropic_format(format: &ResponseFormat) -> Option<Value> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            Some(json!({"type": "json_schema", "schema": {"type": "object"}}))
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            Some(json!({"type": "json_schema", "schema": schema}))
        }
    }
}

/// Writes `format` into an Anthropic request body as `output_config.format`, keeping any other
/// `output_config` member already there (e.g. `effort`).
pub fn put_anthropic_output_config(body: &mut Map<String, Value>, format: Option<&ResponseFormat>) {
    let Some(f) = format.and_then(anthropic_format) else {
        return;
    };
    match body.get_mut("output_config") {
        Some(Value::Object(cfg)) => {
            cfg.insert("format".into(), f);
        }
        _ => {
            body.insert("output_config".into(), json!({ "format": f }));
        }
    }
}

/// Takes `output_config.format` out of an Anthropic caller's unknown fields (`extra`) and returns
/// it as a canonical response format. The rest of `output_config` (e.g. `effort`) stays in
/// `extra`, subject to the capability table; an `output_config` left empty is removed.
pub fn take_anthropic_output_config(
    extra: &mut Vec<(String, Value)>,
) -> Result<Option<ResponseFormat>, TranslateError> {
    let Some(i) = extra.iter().position(|(k, _)| k == "output_config") else {
        return Ok(None);
    };
    let Value::Object(cfg) = &mut extra[i].1 else {
        return Err(invalid("output_config: must be an object"));
    };
    let format = match cfg.remove("format") {
        None | Some(Value::Null) => None,
        Some(f) => Some(decode_anthropic_format(&f)?),
    };
    if cfg.is_empty() {
        extra.remove(i);
    }
    Ok(format)
}

fn decode_anthropic_format(f: &Value) -> Result<ResponseFormat, TranslateError> {
    match f.get("type").and_then(Value::as_str) {
        Some("json_schema") => match f.get("schema") {
            Some(schema @ Value::Object(_)) => Ok(ResponseFormat::JsonSchema {
                name: DEFAULT_SCHEMA_NAME.into(),
                schema: schema.clone(),
                strict: None,
            }),
            _ => Err(invalid(
                "output_config.format.schema: field required (a JSON Schema object)",
            )),
        },
        _ => Err(invalid("output_config.format.type: must be json_schema")),
    }
}

fn invalid(message: &str) -> TranslateError {
    TranslateError::invalid(message, Some("output_config".to_string()))
}

#[cfg(test)]
mod tests {
    //! Goldens: the OpenAI request of OpenAI's structured-outputs guide (the "math reasoning"
    //! schema, trimmed) and Anthropic's `output_config` example, through every provider encoder.
    use super::*;
    use crate::canonical::{Dialect, EncodeOptions};
    use crate::{anthropic, openai, providers};

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string"},
                "plan_interest": {"type": "string"},
                "demo_requested": {"type": "boolean"}
            },
            "required": ["name", "email", "plan_interest", "demo_requested"],
            "additionalProperties": false
        })
    }

    /// OpenAI's documented request shape (`response_format.json_schema` with `strict`).
    fn openai_request() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "model": "chat",
            "messages": [{"role": "user", "content": "Extract the key information from this email: John Smith (john@example.com) is interested in our Enterprise plan and wants to schedule a demo for next Tuesday at 2pm."}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "contact_info", "strict": true, "schema": schema()}}
        }))
        .unwrap()
    }

    fn encode(dialect: Dialect, body: &[u8]) -> Value {
        encode_req(dialect, &openai::codec::decode_request(body).unwrap())
    }

    fn encode_req(dialect: Dialect, req: &crate::canonical::ChatRequest) -> Value {
        let opts = EncodeOptions {
            model: "m",
            default_max_tokens: 1024,
        };
        let enc = providers::encode_request(dialect, req, &opts).unwrap();
        serde_json::from_slice(&enc.body).unwrap()
    }

    #[test]
    fn openai_json_schema_to_anthropic_output_config() {
        let v = encode(Dialect::Anthropic, &openai_request());
        assert_eq!(
            v["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema()}})
        );
        assert!(v.get("response_format").is_none());
    }

    #[test]
    fn openai_json_object_to_anthropic_is_any_object() {
        let body = br#"{"model":"chat","messages":[{"role":"user","content":"json please"}],"response_format":{"type":"json_object"}}"#;
        let v = encode(Dialect::Anthropic, body);
        assert_eq!(
            v["output_config"]["format"],
            json!({"type": "json_schema", "schema": {"type": "object"}})
        );
    }

    #[test]
    fn openai_json_schema_to_gemini() {
        let v = encode(Dialect::Gemini, &openai_request());
        assert_eq!(
            v["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(v["generationConfig"]["responseJsonSchema"], schema());
    }

    #[test]
    fn openai_json_schema_to_ollama_and_json_object_to_json() {
        let v = encode(Dialect::Ollama, &openai_request());
        assert_eq!(v["format"], schema());
        let body = br#"{"model":"chat","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#;
        assert_eq!(encode(Dialect::Ollama, body)["format"], "json");
    }

    #[test]
    fn openai_json_schema_to_cloudflare() {
        let v = encode(Dialect::Cloudflare, &openai_request());
        assert_eq!(
            v["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "contact_info", "schema": schema(), "strict": true}})
        );
    }

    /// Anthropic's documented request (`output_config.format` json_schema).
    fn anthropic_request() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "model": "chat",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Extract the key information from this email: John Smith (john@example.com) is interested in our Enterprise plan and wants to schedule a demo for next Tuesday at 2pm."}],
            "output_config": {"format": {"type": "json_schema", "schema": schema()}}
        }))
        .unwrap()
    }

    #[test]
    fn anthropic_output_config_decodes_to_response_format() {
        let req = anthropic::decode_request(&anthropic_request()).unwrap();
        assert_eq!(
            req.response_format,
            Some(ResponseFormat::JsonSchema {
                name: DEFAULT_SCHEMA_NAME.into(),
                schema: schema(),
                strict: None
            })
        );
        assert!(req.extra.is_empty(), "{:?}", req.extra);
    }

    fn encode_anthropic_caller(dialect: Dialect) -> Value {
        encode_req(
            dialect,
            &anthropic::decode_request(&anthropic_request()).unwrap(),
        )
    }

    #[test]
    fn anthropic_output_config_to_every_provider() {
        assert_eq!(
            encode_anthropic_caller(Dialect::OpenAi)["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema()}})
        );
        let g = encode_anthropic_caller(Dialect::Gemini);
        assert_eq!(g["generationConfig"]["responseJsonSchema"], schema());
        assert_eq!(encode_anthropic_caller(Dialect::Ollama)["format"], schema());
        assert_eq!(
            encode_anthropic_caller(Dialect::Cloudflare)["response_format"]["json_schema"]
                ["schema"],
            schema()
        );
        assert_eq!(
            encode_anthropic_caller(Dialect::Anthropic)["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema()}})
        );
    }

    #[test]
    fn other_output_config_members_stay_and_are_merged() {
        let mut extra = vec![(
            "output_config".to_string(),
            json!({"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}}),
        )];
        let f = take_anthropic_output_config(&mut extra).unwrap();
        assert_eq!(
            extra,
            vec![("output_config".into(), json!({"effort": "low"}))]
        );
        let mut body = Map::new();
        body.insert("output_config".into(), json!({"effort": "low"}));
        put_anthropic_output_config(&mut body, f.as_ref());
        assert_eq!(
            body["output_config"],
            json!({"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}})
        );
    }

    #[test]
    fn a_bad_output_config_names_the_field() {
        let mut extra = vec![(
            "output_config".to_string(),
            json!({"format": {"type": "xml"}}),
        )];
        let e = take_anthropic_output_config(&mut extra).unwrap_err();
        assert_eq!(e.param(), Some("output_config"));
        let mut extra = vec![(
            "output_config".to_string(),
            json!({"format": {"type": "json_schema"}}),
        )];
        assert!(take_anthropic_output_config(&mut extra).is_err());
    }
}
