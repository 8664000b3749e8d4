//! The gateway's own failures and how each is answered in the caller's format (OpenAI or
//! Anthropic).
//!
//! Every failure a caller can see is one [`GatewayError`] variant with a fixed status, OpenAI
//! `type` and `code` (Anthropic callers get the matching Anthropic `error.type`). Messages name
//! what failed (a model, a deployment, a limit) but never carry a credential.

use bytes::Bytes;
use switchyard_adapters::canonical::TranslateError;
use switchyard_adapters::openai::{self, InspectError};
use switchyard_adapters::providers::Caller;

/// One failed try, kept for the final error message and the access log.
#[derive(Debug, Clone)]
pub struct TryFailure {
    pub provider: String,
    pub model: String,
    pub reason: String,
}

fn describe(tries: &[TryFailure]) -> String {
    tries
        .iter()
        .map(|t| format!("{}/{}: {}", t.provider, t.model, t.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every `code` a [`GatewayError`] can have, plus the codes of failures the proxy records
/// itself; `switchyard_errors_total` starts with a zero series for each.
pub const CODES: &[&str] = &[
    "invalid_json",
    "missing_model",
    "invalid_model",
    "invalid_type",
    "invalid_request",
    "body_read_error",
    "request_too_large",
    "model_not_found",
    "unknown_url",
    "method_not_allowed",
    "no_deployment_available",
    "upstream_timeout",
    "upstream_unavailable",
    "upstream_body_too_large",
    "bad_upstream_response",
    "content_policy_violation",
    "invalid_structured_output",
    "request_timeout",
    "request_header_fields_too_large",
    "missing_api_key",
    "invalid_api_key",
    "revoked_api_key",
    "rotated_api_key",
    "expired_api_key",
    "invalid_token",
    "expired_token",
    "model_not_allowed",
    "ip_not_allowed",
    "too_many_auth_failures",
    "loop_detected",
    "unsupported_field",
    "invalid_value",
    "rate_limit_exceeded",
    "budget_exceeded",
    "store_unavailable",
    "content_blocked",
    "input_tokens_exceeded",
    "previous_response_not_found",
    "response_not_found",
    "response_store_error",
    // Recorded by the proxy, not answered as a GatewayError:
    "upstream_status",
    "upstream_stream_error",
    "content_filter",
    "client_disconnected",
    "aborted",
    "internal_error",
];

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    InvalidRequest(#[from] InspectError),
    /// The caller's key or team is over one of its rate limits.
    #[error("rate limit reached: {subject} is over its {limit}; retry after {retry_after_secs}s")]
    RateLimited {
        limit: &'static str,
        subject: String,
        retry_after_secs: u64,
    },
    /// A budget that applies to the request has no room left for it.
    #[error("budget exceeded: the {scope} budget of ${limit_usd:.2} is spent{}", resets_at.map(|t| format!("; it resets at {}", humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64)))).unwrap_or_default())]
    BudgetExceeded {
        scope: String,
        limit_usd: f64,
        resets_at: Option<i64>,
    },
    /// The shared store that enforces limits and budgets is unreachable (`fail_closed`).
    #[error("limits and budgets cannot be checked right now (the shared store is unreachable); retry shortly")]
    StoreUnavailable,
    /// Every deployment that could answer is rate limited by its provider right now.
    #[error(
        "every deployment of `{model}` is rate limited by its provider; retry shortly ({})",
        describe(tries)
    )]
    UpstreamRateLimited {
        model: String,
        tries: Vec<TryFailure>,
        /// The shortest wait any provider asked for, in whole seconds.
        retry_after_secs: u64,
    },
    /// The request cannot be expressed for any deployment of its model (a field a provider
    /// cannot honour under `strict`, or content only the caller's own format can carry).
    #[error("{0}")]
    Untranslatable(TranslateError),
    #[error("{0}")]
    BodyTooLarge(#[from] switchyard_filters::guard::GuardError),
    /// A guardrail with `action: block` matched the request (never the matched text).
    #[error("the {phase} was blocked by guardrail `{guardrail}`")]
    ContentBlocked {
        guardrail: String,
        /// `request` or `answer`.
        phase: &'static str,
        param: Option<&'static str>,
    },
    /// The request's estimated input is over a guardrail's `max_input_tokens`.
    #[error("the request's estimated {estimate} input tokens exceed the {limit} allowed by guardrail `{guardrail}`")]
    GuardrailInputTokens {
        guardrail: String,
        estimate: u64,
        limit: u64,
    },
    #[error("the model `{0}` does not exist or you do not have access to it")]
    ModelNotFound(String),
    /// `previous_response_id` names no stored response of the caller (unknown, expired,
    /// deleted, or another tenant's).
    #[error("Previous response with id '{0}' not found.")]
    PreviousResponseNotFound(String),
    /// `GET`/`DELETE /v1/responses/{id}` for no stored response of the caller.
    #[error("Response with id '{0}' not found.")]
    ResponseNotFound(String),
    /// The stored-responses table could not be read or written.
    #[error("stored responses are unavailable: {0}")]
    ResponseStore(String),
    #[error("Invalid URL ({method} {path})")]
    UnknownRoute { method: String, path: String },
    #[error("method {method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    /// The built-in mock provider cannot answer the request as written (`param`: the field).
    #[error("invalid request body for the mock provider: {message}")]
    InvalidMockRequest {
        message: String,
        param: Option<&'static str>,
    },
    /// A routing hint (body field or header) is invalid or cannot be met (`param`: its name).
    #[error("{message}")]
    RoutingHint {
        message: String,
        param: &'static str,
        code: &'static str,
    },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("no deployment of `{model}` could answer after {} tries: {}", tries.len(), describe(tries))]
    NoDeploymentAvailable {
        model: String,
        tries: Vec<TryFailure>,
    },
    #[error("{0}")]
    Auth(switchyard_filters::auth::AuthError),
    #[error("too many failed authentication attempts from this address; try again later")]
    TooManyAuthFailures,
    #[error("routing loop: the request already crossed {hops} Switchyard nodes (limit {limit}); check the mesh's provider base_urls")]
    LoopDetected { hops: u32, limit: u32 },
    #[error("upstream timed out for `{model}` after {} tries: {}", tries.len(), describe(tries))]
    UpstreamTimeout {
        model: String,
        tries: Vec<TryFailure>,
    },
    /// A local model failed after it started answering (or ran past the request's deadline).
    #[error("local inference failed: {0}")]
    LocalInference(String),
    /// The upstream's answer is longer than the gateway holds (`forward::MAX_UPSTREAM_BODY`).
    #[error("the answer of {provider}/{upstream_model} for `{model}` exceeds {limit} bytes")]
    UpstreamBodyTooLarge {
        model: String,
        provider: String,
        upstream_model: String,
        limit: usize,
    },
    /// The request head is larger than `server.max_header_bytes`.
    #[error(
        "the request head is {size} bytes; the most accepted is {limit} (server.max_header_bytes)"
    )]
    HeadersTooLarge { size: u64, limit: u64 },
    /// The caller did not send its request body within `server.client_timeouts.body`.
    #[error("the request body did not arrive within {} (server.client_timeouts.body)", humantime::format_duration(*.0))]
    RequestTimeout(std::time::Duration),
    /// A `passthrough[]` request's provider could not be reached or did not answer in time.
    #[error("the provider {provider} of this pass-through path did not answer ({reason})")]
    PassthroughUpstream {
        provider: String,
        timeout: bool,
        reason: String,
    },
    /// A provider refused the request for content policy and no fallback model answered it.
    #[error("the provider refused the request of `{model}` for content policy: {message}")]
    ContentPolicy { model: String, message: String },
    /// The last deployment tried answered 2xx with a body that is not an answer of its format.
    #[error("bad_upstream_response: no deployment of `{model}` gave a valid answer after {} tries: {}", tries.len(), describe(tries))]
    BadUpstreamResponse {
        model: String,
        tries: Vec<TryFailure>,
    },
    /// The last deployment tried answered text that is not JSON valid against the caller's
    /// `response_format.json_schema` (with `strict: true`).
    #[error("invalid_structured_output: no deployment of `{model}` answered JSON valid against the requested schema after {} tries: {}", tries.len(), describe(tries))]
    InvalidStructuredOutput {
        model: String,
        tries: Vec<TryFailure>,
    },
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidRequest(_)
            | GatewayError::Untranslatable(_)
            | GatewayError::InvalidMockRequest { .. }
            | GatewayError::ContentBlocked { .. }
            | GatewayError::GuardrailInputTokens { .. }
            | GatewayError::RoutingHint { .. }
            | GatewayError::ContentPolicy { .. }
            | GatewayError::BodyRead(_) => 400,
            GatewayError::BodyTooLarge(_) => 413,
            GatewayError::HeadersTooLarge { .. } => 431,
            GatewayError::ModelNotFound(_)
            | GatewayError::UnknownRoute { .. }
            | GatewayError::PreviousResponseNotFound(_)
            | GatewayError::ResponseNotFound(_) => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::NoDeploymentAvailable { .. }
            | GatewayError::UpstreamBodyTooLarge { .. }
            | GatewayError::BadUpstreamResponse { .. }
            | GatewayError::InvalidStructuredOutput { .. } => 502,
            GatewayError::RequestTimeout(_) => 408,
            GatewayError::UpstreamTimeout { .. } => 504,
            GatewayError::PassthroughUpstream { timeout, .. } => {
                if *timeout {
                    504
                } else {
                    502
                }
            }
            GatewayError::LocalInference(_) | GatewayError::ResponseStore(_) => 500,
            GatewayError::Auth(e) => e.status(),
            GatewayError::TooManyAuthFailures
            | GatewayError::UpstreamRateLimited { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::BudgetExceeded { .. } => 429,
            GatewayError::LoopDetected { .. } => 508,
            GatewayError::StoreUnavailable => 503,
        }
    }

    /// OpenAI `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::NoDeploymentAvailable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamBodyTooLarge { .. }
            | GatewayError::PassthroughUpstream { .. }
            | GatewayError::BadUpstreamResponse { .. }
            | GatewayError::InvalidStructuredOutput { .. } => "upstream_error",
            GatewayError::RequestTimeout(_) => "timeout",
            GatewayError::LocalInference(_) | GatewayError::ResponseStore(_) => "server_error",
            GatewayError::Auth(e) if e.status() == 401 => "authentication_error",
            GatewayError::Auth(_) => "permission_error",
            GatewayError::TooManyAuthFailures
            | GatewayError::UpstreamRateLimited { .. }
            | GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::StoreUnavailable => "service_unavailable",
            GatewayError::LoopDetected { .. } => "upstream_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI `error.code`; also the `kind` label of `switchyard_errors_total`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest(InspectError::Json(_) | InspectError::NotAnObject) => {
                "invalid_json"
            }
            GatewayError::InvalidRequest(InspectError::MissingModel) => "missing_model",
            GatewayError::InvalidRequest(InspectError::ModelNotString) => "invalid_model",
            GatewayError::InvalidRequest(InspectError::WrongType(..)) => "invalid_type",
            GatewayError::InvalidRequest(InspectError::OutOfRange(..)) => "invalid_value",
            GatewayError::InvalidMockRequest { .. } => "invalid_request",
            GatewayError::RoutingHint { code, .. } => code,
            GatewayError::Untranslatable(TranslateError::Unsupported { .. }) => "unsupported_field",
            GatewayError::Untranslatable(TranslateError::Invalid { .. }) => "invalid_request",
            GatewayError::BodyRead(_) => "body_read_error",
            GatewayError::BodyTooLarge(_) => "request_too_large",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::ContentBlocked { .. } => "content_blocked",
            GatewayError::GuardrailInputTokens { .. } => "input_tokens_exceeded",
            GatewayError::PreviousResponseNotFound(_) => "previous_response_not_found",
            GatewayError::ResponseNotFound(_) => "response_not_found",
            GatewayError::ResponseStore(_) => "response_store_error",
            GatewayError::UnknownRoute { .. } => "unknown_url",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::NoDeploymentAvailable { .. } => "no_deployment_available",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::PassthroughUpstream { timeout: true, .. } => "upstream_timeout",
            GatewayError::PassthroughUpstream { .. } => "upstream_unavailable",
            GatewayError::UpstreamBodyTooLarge { .. } => "upstream_body_too_large",
            GatewayError::BadUpstreamResponse { .. } => "bad_upstream_response",
            GatewayError::ContentPolicy { .. } => "content_policy_violation",
            GatewayError::InvalidStructuredOutput { .. } => "invalid_structured_output",
            GatewayError::RequestTimeout(_) => "request_timeout",
            GatewayError::HeadersTooLarge { .. } => "request_header_fields_too_large",
            GatewayError::LocalInference(_) => "local_inference_failed",
            GatewayError::Auth(e) => e.code(),
            GatewayError::TooManyAuthFailures => "too_many_auth_failures",
            GatewayError::LoopDetected { .. } => "loop_detected",
            GatewayError::UpstreamRateLimited { .. } => "rate_limit_exceeded",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::StoreUnavailable => "store_unavailable",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest(e) => e.param(),
            GatewayError::Untranslatable(e) => e.param(),
            GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::ContentBlocked { param, .. } => *param,
            GatewayError::GuardrailInputTokens { .. } => Some("messages"),
            GatewayError::PreviousResponseNotFound(_) => Some("previous_response_id"),
            GatewayError::InvalidMockRequest { param, .. } => *param,
            GatewayError::RoutingHint { param, .. } => Some(param),
            _ => None,
        }
    }

    /// Anthropic `error.type` for this error's status.
    pub fn anthropic_type(&self) -> &'static str {
        match self.status() {
            400 | 405 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            408 => "timeout_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// `Retry-After` seconds to send with this error, if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::UpstreamRateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            GatewayError::StoreUnavailable => Some(1),
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            // A spent budget is not worth retrying unless it resets within the minute: SDKs
            // that honour Retry-After would otherwise retry for hours.
            GatewayError::BudgetExceeded { resets_at, .. } => resets_at
                .map(|t| (t - crate::clock::unix_secs_i64()).max(1) as u64)
                .filter(|&secs| secs <= 60),
            _ => None,
        }
    }

    /// Whether clients should retry this error at all (`x-should-retry`, which the official
    /// OpenAI and Anthropic SDKs honour): `Some(false)` for a spent budget, `None` to let them
    /// decide from the status.
    pub fn should_retry(&self) -> Option<bool> {
        match self {
            GatewayError::BudgetExceeded { resets_at, .. } => {
                let soon = resets_at.is_some_and(|t| t - crate::clock::unix_secs_i64() <= 60);
                (!soon).then_some(false)
            }
            _ => None,
        }
    }

    /// The body in the caller's format.
    pub fn body_for(&self, caller: Caller, request_id: &str) -> Bytes {
        match caller {
            Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
                self.openai_body()
            }
            Caller::Anthropic => Bytes::from(switchyard_adapters::anthropic::error_body(
                self.anthropic_type(),
                &self.to_string(),
                Some(request_id),
            )),
        }
    }

    /// The OpenAI-format body.
    pub fn openai_body(&self) -> Bytes {
        openai::error_body(
            &self.to_string(),
            self.error_type(),
            self.param(),
            Some(self.code()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed() {
        let samples = [
            GatewayError::InvalidRequest(InspectError::Json("x".into())),
            GatewayError::InvalidRequest(InspectError::NotAnObject),
            GatewayError::InvalidRequest(InspectError::MissingModel),
            GatewayError::InvalidRequest(InspectError::ModelNotString),
            GatewayError::InvalidRequest(InspectError::WrongType("stream", "x".into())),
            GatewayError::InvalidRequest(InspectError::OutOfRange("n", "must be at least 1")),
            GatewayError::HeadersTooLarge {
                size: 70_000,
                limit: 65_536,
            },
            GatewayError::BodyTooLarge(switchyard_filters::guard::GuardError::BodyTooLarge {
                actual: 2,
                limit: 1,
            }),
            GatewayError::ModelNotFound("m".into()),
            GatewayError::ContentPolicy {
                model: "m".into(),
                message: "flagged".into(),
            },
            GatewayError::PreviousResponseNotFound("resp_1".into()),
            GatewayError::ResponseNotFound("resp_1".into()),
            GatewayError::ResponseStore("x".into()),
            GatewayError::UnknownRoute {
                method: "GET".into(),
                path: "/".into(),
            },
            GatewayError::MethodNotAllowed {
                method: "GET".into(),
                path: "/".into(),
                allow: "POST",
            },
            GatewayError::InvalidMockRequest {
                message: "x".into(),
                param: Some("messages"),
            },
            GatewayError::BodyRead("x".into()),
            GatewayError::NoDeploymentAvailable {
                model: "m".into(),
                tries: vec![],
            },
            GatewayError::UpstreamTimeout {
                model: "m".into(),
                tries: vec![],
            },
            GatewayError::TooManyAuthFailures,
            GatewayError::LoopDetected { hops: 9, limit: 8 },
            GatewayError::Untranslatable(TranslateError::invalid("x", None)),
            GatewayError::UpstreamRateLimited {
                model: "m".into(),
                tries: vec![],
                retry_after_secs: 3,
            },
            GatewayError::RateLimited {
                limit: "requests_per_minute",
                subject: "key:k".into(),
                retry_after_secs: 1,
            },
            GatewayError::BudgetExceeded {
                scope: "team:a".into(),
                limit_usd: 1.0,
                resets_at: Some(86_400),
            },
            GatewayError::StoreUnavailable,
            GatewayError::UpstreamBodyTooLarge {
                model: "m".into(),
                provider: "p".into(),
                upstream_model: "u".into(),
                limit: 1,
            },
            GatewayError::RequestTimeout(std::time::Duration::from_secs(1)),
            GatewayError::BadUpstreamResponse {
                model: "m".into(),
                tries: vec![],
            },
            GatewayError::InvalidStructuredOutput {
                model: "m".into(),
                tries: vec![],
            },
            GatewayError::Untranslatable(TranslateError::Unsupported {
                field: "n>1".into(),
                provider: "anthropic",
            }),
        ];
        use switchyard_filters::auth::AuthError;
        for e in [
            AuthError::Missing,
            AuthError::InvalidKey,
            AuthError::Revoked("k".into()),
            AuthError::Rotated("k".into()),
            AuthError::Expired("k".into()),
            AuthError::InvalidToken("x".into()),
            AuthError::TokenExpired,
            AuthError::ModelNotAllowed {
                caller: "k".into(),
                model: "m".into(),
            },
            AuthError::IpNotAllowed { caller: "k".into() },
        ] {
            let code = GatewayError::Auth(e).code();
            assert!(CODES.contains(&code), "{code} missing from CODES");
        }
        for e in &samples {
            assert!(CODES.contains(&e.code()), "{} missing from CODES", e.code());
        }
    }

    #[test]
    fn statuses_and_codes() {
        let e = GatewayError::ModelNotFound("x".into());
        assert_eq!((e.status(), e.code()), (404, "model_not_found"));
        let e = GatewayError::NoDeploymentAvailable {
            model: "chat".into(),
            tries: vec![TryFailure {
                provider: "p".into(),
                model: "m".into(),
                reason: "connection refused".into(),
            }],
        };
        assert_eq!(e.status(), 502);
        assert!(e.to_string().contains("p/m: connection refused"));
        let v: serde_json::Value = serde_json::from_slice(&e.openai_body()).unwrap();
        assert_eq!(v["error"]["code"], "no_deployment_available");
    }
}
