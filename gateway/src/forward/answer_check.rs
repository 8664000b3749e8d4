//! The answer check: before a committed 2xx reaches the caller, is it an answer at all, and —
//! when the caller asked for `response_format.json_schema` with `strict: true` — is its text JSON
//! valid against that schema? A 2xx that is not an answer (HTML, truncated or garbage JSON, the
//! wrong shape; for streams, a first chunk that is not SSE/NDJSON of the provider's format) or
//! a strict answer that does not validate fails the try over like a 5xx.
//!
//! Cost: a stream's first chunk is scanned once; a non-stream body (already read whole for
//! every successful non-stream answer) gets a borrowed-view shape check on the fast paths, and on
//! translating paths the decode the relay needs anyway (kept in [`Whole`], never done twice).
//! The schema is compiled only when `strict` is set, once per request. It decides pass or fail
//! only: the plan ([`super::plan`]) fails the try over, the relay writes the answer.

use super::attempt::{Committed, TryError};
use super::relay::{read_success_whole, Answer};
use super::translate::{Decoded, Mode};
use super::{Failure, Forwarder};
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use bytes::Bytes;
use serde_json::Value;
use switchyard_adapters::answer_shape;
use switchyard_adapters::canonical::{
    ChatResponse, Dialect, FinishReason, OutputPart, ProviderError,
};
use switchyard_adapters::{embeddings, providers};

/// A successful non-stream answer read whole before committing: its bytes, and the provider
/// answer decoded from them when the check needed to (translating and observed paths).
pub(super) struct Whole {
    pub raw: Bytes,
    pub decoded: Option<Decoded>,
}

/// Why a 2xx answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// Not an answer of the provider's format.
    BadResponse,
    /// Not JSON valid against the caller's strict schema.
    InvalidStructured,
    /// An error answer refusing the request for content policy (checked only where a fallback
    /// model could take the request): on to the fallback, not another deployment.
    ContentPolicy,
}

/// How the check ended.
pub(super) enum Vetted {
    /// Relay it.
    Ready(Box<Committed>),
    /// Fail the try over (a 5xx for health and breaker).
    Rejected(Rejection, TryError),
    /// Reading the body failed: answered as the relay answers it.
    Failed(Failure),
}

/// Longest part of a validation message kept in a try's failure reason.
const MAX_REASON: usize = 200;

/// The validator for a raw `response_format` value, when it is a `json_schema` with
/// `strict: true` and a schema that compiles (one that does not is left to the provider: the
/// gateway does not refuse a request over it).
pub(super) fn compile_strict(raw: &str) -> Option<jsonschema::Validator> {
    let rf: Value = serde_json::from_str(raw).ok()?;
    let js = rf.get("json_schema")?;
    if rf.get("type")?.as_str()? != "json_schema" || js.get("strict")?.as_bool() != Some(true) {
        return None;
    }
    match jsonschema::validator_for(js.get("schema")?) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!(
                "response_format.json_schema.schema does not compile; answers are not checked: {e}"
            );
            None
        }
    }
}

/// Whether `text` is JSON valid against `schema`: `Err` names why not.
fn validate(schema: &jsonschema::Validator, text: &str) -> Result<(), String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("the answer is not JSON ({e})"))?;
    schema.validate(&v).map_err(|e| {
        let mut m = format!("the answer does not match the schema: {e}");
        if m.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        m
    })
}

/// The text of a decoded answer; `None` when it has none (only tool calls).
fn response_text(resp: &ChatResponse) -> Option<String> {
    let mut text = String::new();
    for p in &resp.content {
        if let OutputPart::Text(t) = p {
            text.push_str(t);
        }
    }
    (!text.is_empty()
        || !resp
            .content
            .iter()
            .any(|p| matches!(p, OutputPart::ToolCall { .. })))
    .then_some(text)
}

fn rejected(kind: Rejection, reason: String) -> Vetted {
    Vetted::Rejected(
        kind,
        TryError {
            outcome: AttemptOutcome::Status5xx,
            reason,
            retry_after: None,
        },
    )
}

/// The provider format of an answer relayed in `mode`.
fn dialect_of(mode: Mode) -> Dialect {
    match mode {
        Mode::OpenAiPassthrough { .. } | Mode::ResponsesNative => Dialect::OpenAi,
        Mode::Observed(d) | Mode::Translated(d) | Mode::Embeddings { dialect: d, .. } => d,
    }
}

impl Forwarder {
    /// Checks a committed answer before any of it reaches the caller (see the module doc).
    pub(super) async fn vet(
        &self,
        ctx: &RequestCtx,
        mut committed: Box<Committed>,
        answer: &Answer<'_, '_>,
        fallbacks: bool,
    ) -> Vetted {
        let success = committed
            .upstream
            .response_header()
            .is_some_and(|h| h.status.is_success());
        let mode = answer.prepared.mode;
        if !success && fallbacks {
            let idle = answer.dep.provider.config.timeouts.idle;
            let refusal =
                super::fallback::content_refusal(&mut committed, dialect_of(mode), idle).await;
            if let Some(e) = refusal {
                return Vetted::Rejected(
                    Rejection::ContentPolicy,
                    TryError {
                        outcome: AttemptOutcome::Status4xx,
                        reason: format!("refused for content policy: {}", e.message),
                        retry_after: None,
                    },
                );
            }
        }
        // A native Responses answer is the provider's own format: relayed as it came.
        if !success || mode == Mode::ResponsesNative {
            return Vetted::Ready(committed);
        }
        if answer.inbound.facts.stream && !answer.inbound.embeddings {
            let started = match &committed.first_chunk {
                Some(c) => answer_shape::stream_start(dialect_of(mode), c),
                None => Err(answer_shape::NotAnAnswer("empty stream".into())),
            };
            return match started {
                Ok(()) => Vetted::Ready(committed),
                Err(e) => rejected(Rejection::BadResponse, e.to_string()),
            };
        }
        let raw = match read_success_whole(ctx, &mut committed, answer).await {
            None => return Vetted::Ready(committed),
            Some(Ok(raw)) => raw,
            Some(Err(e)) => return Vetted::Failed(Failure::Respond(e)),
        };
        let strict = answer.inbound.strict_schema();
        let checked = match mode {
            Mode::OpenAiPassthrough { .. } => check_openai(answer, &raw, strict).map(|()| None),
            Mode::ResponsesNative => Ok(None),
            Mode::Observed(d) | Mode::Translated(d) => {
                check_decoded(providers::decode_response(d, &raw), strict)
                    .map(|r| Some(Decoded::Chat(r)))
            }
            Mode::Embeddings {
                dialect, inputs, ..
            } => match embeddings::decode_response(dialect, &raw, inputs) {
                Err(e) if e.retryable() => Err((Rejection::BadResponse, e.message.clone())),
                r => Ok(Some(Decoded::Embeddings(r))),
            },
        };
        match checked {
            Ok(decoded) if fallbacks && withheld(mode, &raw, decoded.as_ref()) => {
                // A 200 whose answer the provider withheld for content policy (Azure's
                // `finish_reason: content_filter`, Gemini's SAFETY / blocked prompt): with a
                // fallback model waiting, the model's plan stops here as for a refusal.
                Vetted::Rejected(
                    Rejection::ContentPolicy,
                    TryError {
                        outcome: AttemptOutcome::Status4xx,
                        reason: "the answer was withheld for content policy".into(),
                        retry_after: None,
                    },
                )
            }
            Ok(decoded) => {
                committed.whole = Some(Whole { raw, decoded });
                Vetted::Ready(committed)
            }
            Err((kind, reason)) => rejected(kind, reason),
        }
    }
}

type Check<T> = Result<T, (Rejection, String)>;

/// Whether a 2xx answer carries nothing but a content-policy stop: an OpenAI-format body with a
/// `finish_reason: "content_filter"` choice, or a decoded answer that ended `ContentFilter` with
/// no text or tool call. Asked only where a fallback model could serve instead.
fn withheld(mode: Mode, raw: &[u8], decoded: Option<&Decoded>) -> bool {
    match (mode, decoded) {
        (Mode::OpenAiPassthrough { .. }, _) => {
            crate::ops::finish_reasons::has(raw, crate::cloud::content_filter::CODE)
        }
        (Mode::Observed(_) | Mode::Translated(_), Some(Decoded::Chat(Ok(resp)))) => {
            resp.finish == FinishReason::ContentFilter
                && resp.content.iter().all(|p| match p {
                    OutputPart::Text(t) | OutputPart::Reasoning(t) => t.trim().is_empty(),
                    OutputPart::ToolCall { .. } => false,
                })
        }
        _ => false,
    }
}

/// An OpenAI-format body on the byte-exact path: its shape, and its texts against `strict`.
fn check_openai(
    answer: &Answer<'_, '_>,
    raw: &[u8],
    strict: Option<&jsonschema::Validator>,
) -> Check<()> {
    let bad = |e: answer_shape::NotAnAnswer| (Rejection::BadResponse, e.to_string());
    if answer.inbound.embeddings {
        return answer_shape::openai_embeddings(raw).map_err(bad);
    }
    let Some(schema) = strict else {
        return answer_shape::openai_chat(raw).map_err(bad);
    };
    for text in answer_shape::openai_chat_texts(raw)
        .map_err(bad)?
        .iter()
        .flatten()
    {
        validate(schema, text).map_err(|r| (Rejection::InvalidStructured, r))?;
    }
    Ok(())
}

/// A decoded provider answer: a decode failure that another deployment may not have (a
/// malformed body) is a bad response; its text is checked against `strict`. Other decode
/// errors (a provider error inside a 2xx) are kept for the relay to answer as today.
fn check_decoded(
    decoded: Result<ChatResponse, ProviderError>,
    strict: Option<&jsonschema::Validator>,
) -> Check<Result<ChatResponse, ProviderError>> {
    match &decoded {
        Err(e) if e.retryable() => return Err((Rejection::BadResponse, e.message.clone())),
        Err(_) => {}
        Ok(resp) => {
            if let Some(schema) = strict {
                if let Some(text) = response_text(resp) {
                    validate(schema, &text).map_err(|r| (Rejection::InvalidStructured, r))?;
                }
            }
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> jsonschema::Validator {
        compile_strict(
            r#"{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}}}"#,
        )
        .expect("strict schema")
    }

    #[test]
    fn only_strict_json_schema_compiles() {
        assert!(compile_strict(
            r#"{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object"}}}"#
        )
        .is_none());
        assert!(compile_strict(
            r#"{"type":"json_schema","json_schema":{"name":"p","strict":false,"schema":{}}}"#
        )
        .is_none());
        assert!(compile_strict(r#"{"type":"json_object"}"#).is_none());
        assert!(compile_strict(
            r#"{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":7}}}"#
        )
        .is_none());
    }

    #[test]
    fn answers_validate_against_the_schema() {
        let s = schema();
        assert_eq!(validate(&s, r#"{"name":"Ada","age":36}"#), Ok(()));
        assert!(validate(&s, "Sure! Here is the JSON")
            .unwrap_err()
            .contains("not JSON"));
        assert!(validate(&s, r#"{"name":"Ada"}"#)
            .unwrap_err()
            .contains("does not match"));
    }

    #[test]
    fn decoded_answers_are_checked() {
        use switchyard_adapters::canonical::{ErrorKind, FinishReason};
        let resp = |t: &str| ChatResponse {
            id: "x".into(),
            model: "m".into(),
            content: vec![OutputPart::Text(t.into())],
            finish: FinishReason::Stop,
            usage: None,
        };
        let s = schema();
        assert!(check_decoded(Ok(resp(r#"{"name":"Ada","age":36}"#)), Some(&s)).is_ok());
        assert_eq!(
            check_decoded(Ok(resp("{}")), Some(&s)).unwrap_err().0,
            Rejection::InvalidStructured
        );
        assert!(check_decoded(Ok(resp("not json")), None).is_ok());
        let malformed = ProviderError::new(ErrorKind::Server, "malformed response");
        assert_eq!(
            check_decoded(Err(malformed), None).unwrap_err().0,
            Rejection::BadResponse
        );
        let refused = ProviderError::new(ErrorKind::InvalidRequest, "bad");
        assert!(check_decoded(Err(refused), None).is_ok());
    }
}
