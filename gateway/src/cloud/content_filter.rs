//! Azure OpenAI's filtered completions: a 200 whose choice ends with `finish_reason:
//! "content_filter"` (the output was withheld by Azure's content management policy) reaches the
//! caller as a content-policy error in its own format — OpenAI callers a 400 with `code:
//! "content_filter"` (Azure's own code for a filtered prompt), Anthropic callers an
//! `invalid_request_error` — and a stream ends with that error as its last event. It is the
//! caller's content, not an outage: never failed over, never counted against the deployment.
//! Owns the detection and the error bodies; the relay decides where they are written.

use crate::config::ProviderKind;
use bytes::Bytes;
use switchyard_adapters::openai;
use switchyard_adapters::providers::Caller;

const MESSAGE: &str = "The response was filtered due to Azure OpenAI's content management \
    policy (finish_reason: content_filter). Please modify your prompt and retry.";
/// `error.code` for OpenAI-format callers (and the error code logged).
pub const CODE: &str = "content_filter";

/// Whether `kind` is an Azure OpenAI provider (only Azure filters its completions this way).
pub fn applies(kind: &ProviderKind) -> bool {
    matches!(kind, ProviderKind::Http { cloud: Some(c), .. } if c.kind() == "azure")
}

/// Whether an upstream body or stream chunk carries a choice Azure filtered.
pub fn filtered(upstream: &[u8]) -> bool {
    crate::ops::finish_reasons::has(upstream, CODE)
}

/// Where the stream event carrying a filtered choice starts in `chunk` (the end of the event
/// before it), if the chunk holds one.
pub fn event_start(chunk: &[u8]) -> Option<usize> {
    let at = crate::ops::finish_reasons::find(chunk, CODE)?;
    let before = &chunk[..at];
    Some(
        memchr::memmem::rfind(before, b"\n\n")
            .map(|i| i + 2)
            .unwrap_or(0),
    )
}

/// The whole answer for a filtered completion: status and body in the caller's format.
pub fn error(caller: Caller, request_id: &str) -> (u16, Bytes) {
    match caller {
        Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => (
            400,
            openai::error_body(MESSAGE, "invalid_request_error", None, Some(CODE)),
        ),
        Caller::Anthropic => (
            400,
            Bytes::from(switchyard_adapters::anthropic::error_body(
                "invalid_request_error",
                MESSAGE,
                Some(request_id),
            )),
        ),
    }
}

/// The last event of a stream Azure filtered, in the caller's format.
pub fn stream_event(caller: Caller) -> Bytes {
    match caller {
        Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
            openai::stream_error_event(MESSAGE, "invalid_request_error", CODE)
        }
        Caller::Anthropic => {
            switchyard_adapters::anthropic::stream_error_event("invalid_request_error", MESSAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_choice_is_found_and_answered_in_each_format() {
        assert!(filtered(
            br#"{"choices":[{"index":0,"finish_reason": "content_filter","message":{}}]}"#
        ));
        assert!(!filtered(br#"{"choices":[{"finish_reason":"stop"}]}"#));
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"Once\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n";
        let at = event_start(stream).unwrap();
        assert!(stream[..at].ends_with(b"\n\n"));
        assert!(stream[at..].starts_with(b"data: {\"choices\":[{\"delta\":{},"));
        assert_eq!(
            event_start(b"data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"),
            None
        );
        let (status, body) = error(Caller::OpenAi, "r1");
        assert_eq!(status, 400);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "content_filter");
        let (status, body) = error(Caller::Anthropic, "r1");
        assert_eq!(status, 400);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}
