//! Dispatch by [`Dialect`]: one entry point per codec operation, so the gateway picks a provider's
//! encoder and decoders from its configured `kind` without knowing the modules. Pure, like the rest
//! of the crate.

use crate::canonical::*;
use crate::{anthropic, bedrock, cloudflare, gemini, ollama, openai};

/// Encodes a canonical request (already pruned with [`crate::capabilities::prune`]).
pub fn encode_request(
    dialect: Dialect,
    req: &ChatRequest,
    opts: &EncodeOptions,
) -> Result<EncodedRequest, TranslateError> {
    match dialect {
        Dialect::OpenAi => openai::codec::encode_request(req, opts),
        Dialect::Anthropic => anthropic::encode_request(req, opts),
        Dialect::Gemini => gemini::encode_request(req, opts),
        Dialect::Cloudflare => cloudflare::encode_request(req, opts),
        Dialect::Ollama => ollama::encode_request(req, opts),
        Dialect::Bedrock => bedrock::encode_request(req, opts),
    }
}

/// Decodes a whole (non-stream) successful response.
pub fn decode_response(dialect: Dialect, body: &[u8]) -> Result<ChatResponse, ProviderError> {
    match dialect {
        Dialect::OpenAi => openai::codec::decode_response(body),
        Dialect::Anthropic => anthropic::decode_response(body),
        Dialect::Gemini => gemini::decode_response(body),
        Dialect::Cloudflare => cloudflare::decode_response(body),
        Dialect::Ollama => ollama::decode_response(body),
        Dialect::Bedrock => bedrock::decode_response(body),
    }
}

/// A fresh incremental decoder for the provider's stream format.
pub fn stream_decoder(dialect: Dialect) -> Box<dyn StreamDecode> {
    match dialect {
        Dialect::OpenAi => Box::new(openai::codec::StreamDecoder::new()),
        Dialect::Anthropic => Box::new(anthropic::StreamDecoder::new()),
        Dialect::Gemini => Box::new(gemini::StreamDecoder::new()),
        Dialect::Cloudflare => Box::new(cloudflare::StreamDecoder::new()),
        Dialect::Ollama => Box::new(ollama::StreamDecoder::new()),
        Dialect::Bedrock => Box::new(bedrock::StreamDecoder::new()),
    }
}

/// Decodes an error answer (status, body, the `Retry-After` seconds the gateway saw).
pub fn decode_error(
    dialect: Dialect,
    status: u16,
    body: &[u8],
    retry_after_secs: Option<u64>,
) -> ProviderError {
    match dialect {
        Dialect::OpenAi => openai::codec::decode_error(status, body, retry_after_secs),
        Dialect::Anthropic => anthropic::decode_error(status, body, retry_after_secs),
        Dialect::Gemini => gemini::decode_error(status, body, retry_after_secs),
        Dialect::Cloudflare => cloudflare::decode_error(status, body, retry_after_secs),
        Dialect::Ollama => ollama::decode_error(status, body, retry_after_secs),
        Dialect::Bedrock => bedrock::decode_error(status, body, retry_after_secs),
    }
}

/// The formats callers speak to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/completions` (legacy OpenAI text completions; OpenAI's error format).
    OpenAiCompletions,
    /// `POST /v1/responses` (the OpenAI Responses API; OpenAI's error format). Translated for
    /// every deployment but those configured `responses: native`.
    OpenAiResponses,
}

impl Caller {
    /// The provider dialect that is the same wire format (bytes can pass through untouched;
    /// for completions, to the provider's `/completions`).
    pub fn dialect(self) -> Dialect {
        match self {
            Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => Dialect::OpenAi,
            Caller::Anthropic => Dialect::Anthropic,
        }
    }

    /// Decodes a request body in this format.
    pub fn decode_request(self, body: &[u8]) -> Result<ChatRequest, TranslateError> {
        match self {
            Caller::OpenAi => openai::codec::decode_request(body),
            Caller::Anthropic => anthropic::decode_request(body),
            Caller::OpenAiCompletions => openai::completions::decode_request(body),
            Caller::OpenAiResponses => openai::responses::decode_request(body),
        }
    }

    /// Encodes a whole response in this format.
    pub fn encode_response(
        self,
        resp: &ChatResponse,
        id: &str,
        model: &str,
        created: u64,
    ) -> Vec<u8> {
        match self {
            Caller::OpenAi => openai::codec::encode_response(resp, id, model, created),
            Caller::Anthropic => anthropic::encode_response(resp, id, model),
            Caller::OpenAiCompletions => {
                openai::completions::encode_response(resp, id, model, created)
            }
            Caller::OpenAiResponses => {
                openai::responses::encode_response(resp, id, model, created, None)
            }
        }
    }

    /// Whether errors and stream error events are in OpenAI's format.
    pub fn speaks_openai(self) -> bool {
        matches!(
            self,
            Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses
        )
    }

    /// Encodes a provider error in this format: (status, body).
    pub fn encode_error(self, err: &ProviderError, request_id: &str) -> (u16, Vec<u8>) {
        match self {
            Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
                openai::codec::encode_error(err)
            }
            Caller::Anthropic => anthropic::encode_error(err, Some(request_id)),
        }
    }

    /// The id prefix of responses in this format.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Caller::OpenAi => "chatcmpl-",
            Caller::Anthropic => "msg_",
            Caller::OpenAiCompletions => "cmpl-",
            Caller::OpenAiResponses => "resp_",
        }
    }
}

/// A caller-format stream encoder.
#[derive(Debug)]
pub enum StreamEncoder {
    OpenAi(openai::codec::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
    OpenAiCompletions(openai::completions::StreamEncoder),
    OpenAiResponses(openai::responses::StreamEncoder),
}

impl StreamEncoder {
    pub fn new(caller: Caller, id: &str, model: &str, created: u64, include_usage: bool) -> Self {
        match caller {
            Caller::OpenAi => StreamEncoder::OpenAi(openai::codec::StreamEncoder::new(
                id,
                model,
                created,
                include_usage,
            )),
            Caller::Anthropic => StreamEncoder::Anthropic(anthropic::StreamEncoder::new(id, model)),
            Caller::OpenAiCompletions => StreamEncoder::OpenAiCompletions(
                openai::completions::StreamEncoder::new(id, model, created, include_usage),
            ),
            Caller::OpenAiResponses => StreamEncoder::OpenAiResponses(
                openai::responses::StreamEncoder::new(id, model, created, None),
            ),
        }
    }

    /// Attaches a Responses request's [`openai::responses::Turn`] (no effect on other formats).
    pub fn set_turn(&mut self, turn: std::sync::Arc<openai::responses::Turn>) {
        if let StreamEncoder::OpenAiResponses(e) = self {
            e.set_turn(turn);
        }
    }

    /// Ends a Responses stream with `response.failed` carrying the gateway's own `code` (e.g. a
    /// budget's cutoff); `false`, writing nothing, for the other formats.
    pub fn fail_with(&mut self, out: &mut bytes::BytesMut, code: &str, message: &str) -> bool {
        match self {
            StreamEncoder::OpenAiResponses(e) => {
                e.fail_with(out, code, message);
                true
            }
            _ => false,
        }
    }

    pub fn push(&mut self, event: &StreamEvent, out: &mut bytes::BytesMut) {
        match self {
            StreamEncoder::OpenAi(e) => e.push(event, out),
            StreamEncoder::Anthropic(e) => e.push(event, out),
            StreamEncoder::OpenAiCompletions(e) => e.push(event, out),
            StreamEncoder::OpenAiResponses(e) => e.push(event, out),
        }
    }
}

/// The request headers that carry a provider's credential (and, for Anthropic, the API version).
pub fn auth_headers(dialect: Dialect, api_key: Option<&str>) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(2);
    match (dialect, api_key) {
        (Dialect::Anthropic, key) => {
            if let Some(k) = key {
                out.push(("x-api-key", k.to_string()));
            }
            out.push((
                "anthropic-version",
                crate::anthropic::API_VERSION.to_string(),
            ));
        }
        (Dialect::Gemini, Some(k)) => out.push(("x-goog-api-key", k.to_string())),
        (_, Some(k)) => {
            let mut v = String::with_capacity(7 + k.len());
            v.push_str("Bearer ");
            v.push_str(k);
            out.push(("authorization", v));
        }
        (_, None) => {}
    }
    out
}

/// The cheap authenticated `GET` (below the base URL) that shows a provider is up.
pub fn probe_path(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi | Dialect::Gemini => "/models",
        Dialect::Anthropic => "/v1/models",
        Dialect::Cloudflare => "/models/search",
        Dialect::Ollama => "/api/tags",
        // Bedrock's runtime has no model listing; a signed probe is the gateway's (`cloud`).
        Dialect::Bedrock => "/",
    }
}

/// The path (below the base URL) chat requests go to, for display in the routing table.
pub fn chat_path(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "/chat/completions",
        Dialect::Anthropic => "/v1/messages",
        Dialect::Gemini => "/models/{model}:generateContent",
        Dialect::Cloudflare => "/run/{model}",
        Dialect::Ollama => "/api/chat",
        Dialect::Bedrock => "/model/{model}/converse",
    }
}
