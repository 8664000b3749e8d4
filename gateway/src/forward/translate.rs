//! Per request and deployment: what body to send upstream, and how the provider's answer becomes
//! the caller's. Owns the choice between the byte-exact fast paths (caller and provider speak the
//! same format) and full translation through the canonical model of `switchyard_adapters`.
//!
//! It holds no I/O: [`crate::forward`] sends what [`Inbound::prepare`] built and pipes the answer
//! through a [`StreamRelay`] or [`translate_body`].

use super::cutoff;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::sync::OnceLock;
use switchyard_adapters::canonical::{
    ChatRequest, ChatResponse, Dialect, EncodeOptions, ErrorKind, ProviderError, StreamDecode,
    StreamEvent, TranslateError, Usage,
};
use switchyard_adapters::embeddings::{self, EmbeddingsRequest};
use switchyard_adapters::openai::responses::{self, Turn};
use switchyard_adapters::openai::{self, ChatRequestFacts, PassthroughStream};
use switchyard_adapters::providers::{self, Caller, StreamEncoder};
use switchyard_adapters::sse::SseFramer;
use switchyard_adapters::{anthropic, capabilities};

/// `max_tokens` sent to providers that require one when neither the caller nor the deployment
/// gave any.
pub const FALLBACK_MAX_TOKENS: u32 = 4096;

/// How a deployment's answer reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// OpenAI caller, OpenAI-compatible provider: the caller's bytes with the model spliced in
    /// (and usage turned on for metering, hidden again on the way back).
    OpenAiPassthrough { usage_injected: bool },
    /// Caller and provider speak the same other format: bytes pass through untouched while a
    /// decoder watches them for usage and completion (streams: event by event, so that an
    /// oversized event can be refused before any of it reached the caller).
    Observed(Dialect),
    /// Decoded from the provider's format and re-encoded in the caller's.
    Translated(Dialect),
    /// A Responses request sent as is to a `responses: native` provider's `/responses`: bytes
    /// pass through; usage is read from the answer (streams: its `response.completed` event).
    ResponsesNative,
    /// An embeddings answer in the provider's format, re-encoded as OpenAI's (floats, or base64
    /// when the caller asked), with `estimated_tokens` as usage when the provider counts none.
    Embeddings {
        dialect: Dialect,
        inputs: usize,
        base64: bool,
        estimated_tokens: u64,
    },
}

impl Mode {
    /// The provider's body is decoded and re-encoded (not relayed as it came).
    pub fn translated(self) -> bool {
        matches!(self, Mode::Translated(_) | Mode::Embeddings { .. })
    }
}

/// An upstream request ready to send to one deployment.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    /// Path below the provider's base URL.
    pub path: String,
    pub mode: Mode,
    /// Request fields dropped because the provider cannot honour them (`strict: false`).
    pub dropped: Vec<String>,
}

/// The caller's request, read once; each deployment's body is prepared from it.
pub struct Inbound<'a> {
    pub caller: Caller,
    /// An OpenAI `/v1/embeddings` request.
    pub embeddings: bool,
    pub body: &'a Bytes,
    pub facts: &'a ChatRequestFacts<'a>,
    canonical: OnceLock<Result<ChatRequest, TranslateError>>,
    embeddings_request: OnceLock<Result<EmbeddingsRequest, TranslateError>>,
    /// The caller's strict `json_schema`, compiled on the first answer that needs it.
    strict_schema: OnceLock<Option<jsonschema::Validator>>,
    /// A Responses request's echo fields and finished-response slot.
    pub turn: Option<Arc<Turn>>,
}

impl<'a> Inbound<'a> {
    pub fn new(
        caller: Caller,
        body: &'a Bytes,
        facts: &'a ChatRequestFacts<'a>,
        embeddings: bool,
    ) -> Self {
        Inbound {
            caller,
            embeddings,
            body,
            facts,
            canonical: OnceLock::new(),
            embeddings_request: OnceLock::new(),
            strict_schema: OnceLock::new(),
            turn: None,
        }
    }

    /// The request as is for a `responses: native` deployment: the model spliced in, to
    /// `{base_url}/responses`.
    pub fn prepare_native_responses(&self, upstream_model: &str) -> Prepared {
        Prepared {
            body: openai::rewrite_model(self.body, self.facts, upstream_model),
            path: "/responses".into(),
            mode: Mode::ResponsesNative,
            dropped: Vec::new(),
        }
    }

    /// The embeddings request, read on first use (never for OpenAI-to-OpenAI traffic, whose
    /// bytes pass through).
    pub fn embeddings_request(&self) -> Result<&EmbeddingsRequest, TranslateError> {
        self.embeddings_request
            .get_or_init(|| embeddings::parse_request(self.body))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The validator of the caller's `response_format.json_schema` when it set `strict: true`
    /// (compiled once per request, and only then); `None` otherwise.
    pub fn strict_schema(&self) -> Option<&jsonschema::Validator> {
        self.strict_schema
            .get_or_init(|| {
                let raw = self.facts.response_format?;
                super::answer_check::compile_strict(raw)
            })
            .as_ref()
    }

    /// The canonical request, decoded on first use (never for OpenAI-to-OpenAI traffic).
    pub fn canonical(&self) -> Result<&ChatRequest, TranslateError> {
        self.canonical
            .get_or_init(|| self.caller.decode_request(self.body))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the caller asked for usage in a stream (always, for Anthropic callers).
    pub fn include_usage(&self) -> bool {
        match self.caller {
            Caller::OpenAi | Caller::OpenAiCompletions => self.facts.include_usage == Some(true),
            Caller::Anthropic | Caller::OpenAiResponses => true,
        }
    }

    /// Builds the upstream request for a deployment of `dialect` serving `upstream_model`.
    pub fn prepare(
        &self,
        dialect: Dialect,
        upstream_model: &str,
        default_max_tokens: Option<u64>,
        strict: bool,
    ) -> Result<Prepared, TranslateError> {
        if self.embeddings {
            return self.prepare_embeddings(dialect, upstream_model, strict);
        }
        // Responses are translated unless the deployment is native (see `attempt::prepare_for`).
        if dialect == self.caller.dialect() && self.caller != Caller::OpenAiResponses {
            return Ok(match self.caller {
                Caller::OpenAi | Caller::OpenAiCompletions => {
                    // Completions pass through like chat: same splicing, their own path.
                    let rw = openai::rewrite_chat_request(self.body, self.facts, upstream_model);
                    Prepared {
                        body: rw.body,
                        path: if self.caller == Caller::OpenAiCompletions {
                            "/completions".into()
                        } else {
                            "/chat/completions".into()
                        },
                        mode: Mode::OpenAiPassthrough {
                            usage_injected: rw.usage_injected,
                        },
                        dropped: Vec::new(),
                    }
                }
                Caller::Anthropic | Caller::OpenAiResponses => Prepared {
                    body: openai::rewrite_model(self.body, self.facts, upstream_model),
                    path: "/v1/messages".into(),
                    mode: Mode::Observed(dialect),
                    dropped: Vec::new(),
                },
            });
        }
        let mut req = self.canonical()?.clone();
        let dropped = capabilities::prune(&mut req, dialect, strict)?;
        let default_max_tokens = default_max_tokens
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(FALLBACK_MAX_TOKENS);
        if req.max_tokens.is_none() && dialect == Dialect::Anthropic {
            req.max_tokens = Some(default_max_tokens);
        }
        let encoded = providers::encode_request(
            dialect,
            &req,
            &EncodeOptions {
                model: upstream_model,
                default_max_tokens,
            },
        )?;
        Ok(Prepared {
            body: Bytes::from(encoded.body),
            path: encoded.path,
            mode: Mode::Translated(dialect),
            dropped,
        })
    }
}

impl Inbound<'_> {
    /// An embeddings request for a deployment of `dialect`: the caller's bytes with the model
    /// spliced in for OpenAI-compatible ones, a translated request for the others.
    fn prepare_embeddings(
        &self,
        dialect: Dialect,
        upstream_model: &str,
        strict: bool,
    ) -> Result<Prepared, TranslateError> {
        if dialect == Dialect::OpenAi {
            return Ok(Prepared {
                body: openai::rewrite_model(self.body, self.facts, upstream_model),
                path: "/embeddings".into(),
                mode: Mode::OpenAiPassthrough {
                    usage_injected: false,
                },
                dropped: Vec::new(),
            });
        }
        if dialect == Dialect::Anthropic {
            // Refused before the body is read: no request can change that.
            return Err(embeddings::no_embeddings(dialect));
        }
        let req = self.embeddings_request()?;
        let (encoded, dropped) = embeddings::encode_request(dialect, req, upstream_model, strict)?;
        Ok(Prepared {
            body: Bytes::from(encoded.body),
            path: encoded.path,
            mode: Mode::Embeddings {
                dialect,
                inputs: req.inputs.len(),
                base64: req.base64,
                estimated_tokens: req.estimated_tokens(),
            },
            dropped,
        })
    }
}

/// Usage of an embeddings answer: prompt tokens only.
pub fn embedding_usage(tokens: u64) -> openai::Usage {
    openai::Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Default::default()
    }
}

/// Token counts in the shape the gateway meters (OpenAI's).
pub fn metered(u: &Usage) -> openai::Usage {
    openai::Usage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total(),
        prompt_tokens_details: Some(openai::PromptTokensDetails {
            cached_tokens: Some(u.cache_read_tokens),
        }),
        completion_tokens_details: Some(openai::CompletionTokensDetails {
            reasoning_tokens: Some(u.reasoning_tokens),
        }),
    }
}

/// A successful non-stream answer in the caller's format: (body, usage). `Err` when the provider
/// answered 2xx with an error or an unreadable body.
pub fn translate_body(
    mode: Mode,
    caller: Caller,
    body: Bytes,
    id: &str,
    model: &str,
    created: u64,
) -> Result<(Bytes, Option<openai::Usage>), ProviderError> {
    translate_decoded(mode, caller, body, None, id, model, created)
}

/// A provider's answer decoded by the answer check, kept so that the relay does not decode it
/// again.
pub enum Decoded {
    Chat(Result<ChatResponse, ProviderError>),
    Embeddings(Result<embeddings::Embeddings, ProviderError>),
}

impl Decoded {
    fn chat(self) -> Option<Result<ChatResponse, ProviderError>> {
        match self {
            Decoded::Chat(r) => Some(r),
            Decoded::Embeddings(_) => None,
        }
    }

    fn embeddings(self) -> Option<Result<embeddings::Embeddings, ProviderError>> {
        match self {
            Decoded::Embeddings(r) => Some(r),
            Decoded::Chat(_) => None,
        }
    }
}

/// [`translate_body`], given the answer already decoded from the provider's format when the
/// answer check did so (`decoded`), so that it is not decoded twice.
pub fn translate_decoded(
    mode: Mode,
    caller: Caller,
    body: Bytes,
    decoded: Option<Decoded>,
    id: &str,
    model: &str,
    created: u64,
) -> Result<(Bytes, Option<openai::Usage>), ProviderError> {
    match mode {
        Mode::OpenAiPassthrough { .. } => {
            let usage = openai::response_usage(&body);
            Ok((body, usage))
        }
        Mode::ResponsesNative => {
            let usage = responses::native::response_usage(&body).map(|u| metered(&u));
            Ok((body, usage))
        }
        Mode::Observed(d) => {
            let usage = decoded
                .and_then(Decoded::chat)
                .unwrap_or_else(|| providers::decode_response(d, &body))
                .ok()
                .and_then(|r| r.usage)
                .map(|u| metered(&u));
            Ok((body, usage))
        }
        Mode::Translated(d) => {
            let resp = decoded
                .and_then(Decoded::chat)
                .unwrap_or_else(|| providers::decode_response(d, &body))?;
            let out = caller.encode_response(&resp, id, model, created);
            Ok((Bytes::from(out), resp.usage.map(|u| metered(&u))))
        }
        Mode::Embeddings {
            dialect,
            inputs,
            base64,
            estimated_tokens,
        } => {
            let e = decoded
                .and_then(Decoded::embeddings)
                .unwrap_or_else(|| embeddings::decode_response(dialect, &body, inputs))?;
            // Gemini and Cloudflare do not count embeddings input: the estimate is metered.
            let tokens = e.prompt_tokens.unwrap_or(estimated_tokens);
            let out = embeddings::encode_response(&e.vectors, model, tokens, base64);
            Ok((Bytes::from(out), Some(embedding_usage(tokens))))
        }
    }
}

/// [`translate_decoded`] for `inbound`'s caller: a Responses answer also echoes the request and
/// hands the finished `response` object to the request's [`Turn`] (to be stored).
pub fn translate_answer(
    mode: Mode,
    inbound: &Inbound<'_>,
    body: Bytes,
    decoded: Option<Decoded>,
    id: &str,
    model: &str,
    created: u64,
) -> Result<(Bytes, Option<openai::Usage>), ProviderError> {
    let Some(turn) = inbound.turn.as_deref() else {
        return translate_decoded(mode, inbound.caller, body, decoded, id, model, created);
    };
    match mode {
        Mode::Translated(d) => {
            let resp = decoded
                .and_then(Decoded::chat)
                .unwrap_or_else(|| providers::decode_response(d, &body))?;
            let out = responses::encode_response(&resp, id, model, created, Some(turn));
            Ok((Bytes::from(out), resp.usage.map(|u| metered(&u))))
        }
        _ => {
            if mode == Mode::ResponsesNative {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if v.get("object").and_then(|o| o.as_str()) == Some("response") {
                        turn.finish(&v);
                    }
                }
            }
            translate_decoded(mode, inbound.caller, body, decoded, id, model, created)
        }
    }
}

/// An error answer in the caller's format: (status, body). Passthrough modes keep the provider's
/// status and bytes.
pub fn translate_error(
    mode: Mode,
    caller: Caller,
    status: u16,
    body: &[u8],
    retry_after_secs: Option<u64>,
    request_id: &str,
) -> Option<(u16, Bytes)> {
    match mode {
        Mode::OpenAiPassthrough { .. } | Mode::Observed(_) | Mode::ResponsesNative => None,
        Mode::Translated(d) | Mode::Embeddings { dialect: d, .. } => {
            let err = providers::decode_error(d, status, body, retry_after_secs);
            let (status, body) = caller.encode_error(&err, request_id);
            Some((status, Bytes::from(body)))
        }
    }
}

/// Turns an upstream stream into the caller's, chunk by chunk: nothing waits for the end.
///
/// Every kind bounds what it holds: the pass-through kinds frame events with an [`SseFramer`]
/// capped at [`switchyard_adapters::sse::MAX_EVENT_BYTES`] ([`StreamRelay::oversized`]); the
/// translating decoders apply the same cap and report it as a provider error event.
pub enum StreamRelay {
    OpenAi(PassthroughStream),
    Observed {
        caller: Caller,
        framer: SseFramer,
        decoder: Box<dyn StreamDecode>,
        events: Vec<StreamEvent>,
        usage: Option<Usage>,
        ended: bool,
        error: Option<ProviderError>,
        /// A native Responses stream's turn: numbers the gateway's own `error` event.
        turn: Option<Arc<Turn>>,
    },
    Translated {
        decoder: Box<dyn StreamDecode>,
        encoder: StreamEncoder,
        events: Vec<StreamEvent>,
        usage: Option<Usage>,
        ended: bool,
        error: Option<ProviderError>,
    },
}

impl StreamRelay {
    pub fn new(
        mode: Mode,
        caller: Caller,
        id: &str,
        model: &str,
        created: u64,
        include_usage: bool,
    ) -> Self {
        match mode {
            Mode::OpenAiPassthrough { usage_injected } => {
                StreamRelay::OpenAi(PassthroughStream::new(usage_injected))
            }
            Mode::ResponsesNative => StreamRelay::Observed {
                caller,
                framer: SseFramer::new(),
                decoder: Box::new(responses::native::StreamDecoder::new()),
                events: Vec::new(),
                usage: None,
                ended: false,
                error: None,
                turn: None,
            },
            Mode::Observed(d) => StreamRelay::Observed {
                caller,
                framer: SseFramer::new(),
                decoder: providers::stream_decoder(d),
                events: Vec::new(),
                usage: None,
                ended: false,
                error: None,
                turn: None,
            },
            // Embeddings never stream; were one to, it is read as the provider's chat stream.
            Mode::Translated(d) | Mode::Embeddings { dialect: d, .. } => StreamRelay::Translated {
                decoder: providers::stream_decoder(d),
                encoder: StreamEncoder::new(caller, id, model, created, include_usage),
                events: Vec::new(),
                usage: None,
                ended: false,
                error: None,
            },
        }
    }

    /// [`StreamRelay::new`] for `inbound`'s caller (a Responses stream gets the request's
    /// [`Turn`]).
    pub fn for_inbound(
        mode: Mode,
        inbound: &Inbound<'_>,
        id: &str,
        model: &str,
        created: u64,
    ) -> Self {
        let mut relay = StreamRelay::new(
            mode,
            inbound.caller,
            id,
            model,
            created,
            inbound.include_usage(),
        );
        match (&mut relay, &inbound.turn) {
            (StreamRelay::Translated { encoder, .. }, Some(turn)) => encoder.set_turn(turn.clone()),
            (
                StreamRelay::Observed {
                    decoder,
                    turn: slot,
                    ..
                },
                Some(turn),
            ) if mode == Mode::ResponsesNative => {
                *decoder = Box::new(responses::native::StreamDecoder::with_turn(turn.clone()));
                *slot = Some(turn.clone());
            }
            _ => {}
        }
        relay
    }

    /// Feeds an upstream chunk; returns the caller bytes it completes.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            StreamRelay::OpenAi(p) => p.push(chunk),
            StreamRelay::Observed {
                framer,
                decoder,
                events,
                usage,
                ended,
                error,
                ..
            } => {
                let block = framer.push(chunk)?;
                decoder.push(&block, events);
                note(events.drain(..), usage, ended, error, |_| {});
                Some(block)
            }
            StreamRelay::Translated {
                decoder,
                encoder,
                events,
                usage,
                ended,
                error,
            } => {
                decoder.push(&chunk, events);
                encode(events, encoder, usage, ended, error)
            }
        }
    }

    /// The upstream body ended; returns the caller bytes still owed (e.g. an error event when
    /// the provider stopped before its end marker).
    pub fn finish(&mut self) -> Option<Bytes> {
        match self {
            StreamRelay::OpenAi(p) => p.finish(),
            StreamRelay::Observed {
                caller,
                framer,
                decoder,
                events,
                usage,
                ended,
                error,
                turn,
            } => {
                // An unterminated last event goes out as it is, as the provider sent it.
                let tail = framer.finish();
                if let Some(t) = &tail {
                    decoder.push(t, events);
                }
                decoder.finish(events);
                let mut failed = None;
                let caller = *caller;
                note(events.drain(..), usage, ended, error, |e| {
                    failed = Some(caller_error_event(caller, turn.as_deref(), e));
                });
                match (tail, failed) {
                    (Some(t), Some(f)) => {
                        let mut out = BytesMut::with_capacity(t.len() + f.len());
                        out.extend_from_slice(&t);
                        out.extend_from_slice(&f);
                        Some(out.freeze())
                    }
                    (t, f) => t.or(f),
                }
            }
            StreamRelay::Translated {
                decoder,
                encoder,
                events,
                usage,
                ended,
                error,
            } => {
                decoder.finish(events);
                encode(events, encoder, usage, ended, error)
            }
        }
    }

    /// The gateway's own failure mid-stream (upstream reset, idle timeout): the caller's error
    /// event, after which the stream ends.
    pub fn fail(&mut self, kind: ErrorKind, message: &str) -> Bytes {
        let err = ProviderError::new(kind, message);
        match self {
            StreamRelay::OpenAi(_) => {
                let (_, etype, code) = openai::codec::error_status_and_type(kind);
                openai::stream_error_event(message, etype, code)
            }
            StreamRelay::Observed {
                caller,
                error,
                turn,
                ..
            } => {
                *error = Some(err.clone());
                caller_error_event(*caller, turn.as_deref(), &err)
            }
            StreamRelay::Translated { encoder, error, .. } => {
                let mut out = BytesMut::new();
                encoder.push(&StreamEvent::Error(err.clone()), &mut out);
                *error = Some(err);
                out.freeze()
            }
        }
    }

    /// The final event when a budget's cutoff ends the stream, in the caller's format (a
    /// Responses stream ends with `response.failed`, or `error` when native).
    pub fn budget_stop(&mut self, caller: Caller) -> Bytes {
        match self {
            StreamRelay::Translated { encoder, .. } => cutoff::budget_stop_encoded(caller, encoder),
            StreamRelay::Observed { turn, .. } if caller == Caller::OpenAiResponses => {
                cutoff::budget_stop_native(turn.as_deref())
            }
            _ => cutoff::budget_stop_event(caller),
        }
    }

    /// Wraps a decoding relay's decoder (response guardrails filter its events); `false` for
    /// relays that pass bytes through.
    pub fn wrap_decoder(
        &mut self,
        wrap: impl FnOnce(Box<dyn StreamDecode>) -> Box<dyn StreamDecode>,
    ) -> bool {
        let StreamRelay::Translated { decoder, .. } = self else {
            return false;
        };
        let inner = std::mem::replace(decoder, Box::new(NoEvents));
        *decoder = wrap(inner);
        true
    }

    /// Encodes events held back from a decoding relay's stream (by a guardrail waiting for its
    /// webhooks) in the caller's format; `None` for relays that pass bytes through.
    pub fn emit(&mut self, mut held: Vec<StreamEvent>) -> Option<Bytes> {
        let StreamRelay::Translated {
            encoder,
            usage,
            ended,
            error,
            ..
        } = self
        else {
            return None;
        };
        encode(&mut held, encoder, usage, ended, error)
    }

    /// An upstream event grew past [`switchyard_adapters::sse::MAX_EVENT_BYTES`] without its
    /// terminator on a pass-through stream: nothing of it went out, and the stream cannot go on.
    /// (A translated stream's decoder reports the same as a provider error.)
    pub fn oversized(&self) -> bool {
        match self {
            StreamRelay::OpenAi(p) => p.oversized(),
            StreamRelay::Observed { framer, .. } => framer.over_limit(),
            StreamRelay::Translated { .. } => false,
        }
    }

    /// The last cumulative usage the provider reported.
    pub fn usage(&self) -> Option<openai::Usage> {
        match self {
            StreamRelay::OpenAi(p) => p.usage(),
            StreamRelay::Observed { usage, .. } | StreamRelay::Translated { usage, .. } => {
                usage.as_ref().map(metered)
            }
        }
    }

    /// Whether the provider ended the stream normally.
    pub fn completed(&self) -> bool {
        match self {
            StreamRelay::OpenAi(p) => p.completed(),
            StreamRelay::Observed { ended, error, .. }
            | StreamRelay::Translated { ended, error, .. } => *ended && error.is_none(),
        }
    }

    /// The error the provider reported inside the stream, if any.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            StreamRelay::OpenAi(_) => None,
            StreamRelay::Observed { error, .. } | StreamRelay::Translated { error, .. } => {
                error.as_ref()
            }
        }
    }
}

fn note(
    events: impl Iterator<Item = StreamEvent>,
    usage: &mut Option<Usage>,
    ended: &mut bool,
    error: &mut Option<ProviderError>,
    mut on_decoder_error: impl FnMut(&ProviderError),
) {
    for ev in events {
        match ev {
            StreamEvent::Usage(u) => *usage = Some(u),
            StreamEvent::End => *ended = true,
            StreamEvent::Error(e) => {
                on_decoder_error(&e);
                *error = Some(e);
            }
            _ => {}
        }
    }
}

fn encode(
    events: &mut Vec<StreamEvent>,
    encoder: &mut StreamEncoder,
    usage: &mut Option<Usage>,
    ended: &mut bool,
    error: &mut Option<ProviderError>,
) -> Option<Bytes> {
    if events.is_empty() {
        return None;
    }
    let mut out = BytesMut::new();
    for ev in events.drain(..) {
        encoder.push(&ev, &mut out);
        match ev {
            StreamEvent::Usage(u) => *usage = Some(u),
            StreamEvent::End => *ended = true,
            StreamEvent::Error(e) => *error = Some(e),
            _ => {}
        }
    }
    (!out.is_empty()).then(|| out.freeze())
}

/// A decoder that decodes nothing (a placeholder while another is wrapped).
struct NoEvents;

impl StreamDecode for NoEvents {
    fn push(&mut self, _: &[u8], _: &mut Vec<StreamEvent>) {}
    fn finish(&mut self, _: &mut Vec<StreamEvent>) {}
}

/// An error event in the caller's stream format.
fn caller_error_event(caller: Caller, turn: Option<&Turn>, e: &ProviderError) -> Bytes {
    match caller {
        Caller::OpenAiResponses => {
            // A (native) Responses stream ends as OpenAI ends one: an `error` event.
            let (_, _, code) = openai::codec::error_status_and_type(e.kind);
            let seq = turn.map_or(0, Turn::next_sequence_number);
            responses::native::error_event(code, &e.message, seq)
        }
        Caller::OpenAi | Caller::OpenAiCompletions => {
            let (_, etype, code) = openai::codec::error_status_and_type(e.kind);
            openai::stream_error_event(&e.message, etype, code)
        }
        Caller::Anthropic => {
            let (_, etype) = anthropic::error_status_and_type(e.kind);
            anthropic::stream_error_event(etype, &e.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::sse::MAX_EVENT_BYTES;

    fn observed() -> StreamRelay {
        StreamRelay::new(
            Mode::Observed(Dialect::Anthropic),
            Caller::Anthropic,
            "msg_1",
            "m",
            0,
            true,
        )
    }

    #[test]
    fn an_observed_stream_goes_out_event_by_event_and_byte_exact() {
        let stream: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n";
        let mut relay = observed();
        let mut out = Vec::new();
        for piece in stream.chunks(7) {
            if let Some(b) = relay.push(Bytes::copy_from_slice(piece)) {
                // Only whole events come out.
                assert!(b.ends_with(b"\n\n"), "{b:?}");
                out.extend_from_slice(&b);
            }
        }
        assert_eq!(out, stream);
        assert!(!relay.oversized());
    }

    #[test]
    fn an_oversized_observed_event_stops_the_stream_before_any_of_it_goes_out() {
        let mut relay = observed();
        let head = relay.push(Bytes::from_static(
            b"event: ping\ndata: {\"type\":\"ping\"}\n\nevent: content_block_delta\ndata: {\"x\":\"",
        ));
        assert_eq!(
            head.as_deref(),
            Some(&b"event: ping\ndata: {\"type\":\"ping\"}\n\n"[..])
        );
        let big = Bytes::from(vec![b'x'; MAX_EVENT_BYTES]);
        assert!(relay.push(big).is_none());
        assert!(relay.oversized());
        let ev = relay.fail(ErrorKind::Server, "an upstream stream event exceeds 16 MiB");
        let text = String::from_utf8_lossy(&ev);
        assert!(text.starts_with("event: error\n"), "{text}");
        assert!(text.contains("exceeds 16 MiB"), "{text}");
    }
}
