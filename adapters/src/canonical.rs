//! The canonical chat model every translation goes through: a request, a response, stream events,
//! usage and errors, independent of any wire format.
//!
//! Caller formats (OpenAI, Anthropic) decode into these types and encode out of them; provider
//! formats do the same on the other side. Nothing here knows a wire format, and nothing here does
//! I/O. Invariants every decoder keeps and every encoder may rely on are documented per type.

use serde_json::Value;

/// Which wire format a provider (or a caller) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
    Cloudflare,
    Ollama,
    /// Amazon Bedrock's Converse API.
    Bedrock,
}

impl Dialect {
    pub const ALL: [Dialect; 6] = [
        Dialect::OpenAi,
        Dialect::Anthropic,
        Dialect::Gemini,
        Dialect::Cloudflare,
        Dialect::Ollama,
        Dialect::Bedrock,
    ];

    /// The `kind` that names this dialect in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::Cloudflare => "cloudflare",
            Dialect::Ollama => "ollama",
            Dialect::Bedrock => "bedrock",
        }
    }
}

/// A chat request. `messages` keeps system turns in place (role [`Role::System`]); providers with
/// a single top-level system prompt hoist and concatenate all of them, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The model the caller asked for (the public name; encoders take the provider's own name).
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: the caller wants a final usage chunk.
    pub include_usage: bool,
    /// Largest number of tokens to generate (OpenAI `max_completion_tokens` ?? `max_tokens`).
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    /// Stop sequences (empty: none).
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    /// Number of choices; `None` or `Some(1)` is the ordinary single answer.
    pub n: Option<u32>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    /// An end-user id (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// Fields of the caller's format with no canonical slot, kept verbatim (name, JSON value):
    /// forwarded to a provider of the same format, otherwise subject to the capability table.
    pub extra: Vec<(String, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool result turn; its content holds [`Part::ToolResult`] parts.
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

/// One piece of a message. Text is never empty (decoders drop empty text parts).
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// A call the assistant made. `arguments` is JSON text (an object), as OpenAI carries it.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// The result of a call, answering `call_id`. `name` is the called tool's name when known
    /// (decoders of request histories fill it from the matching call).
    ToolResult {
        call_id: String,
        name: Option<String>,
        content: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// A remote image the provider is asked to fetch.
    Url(String),
    /// Inline bytes, base64-encoded, with their media type (e.g. `image/png`).
    Base64 { media_type: String, data: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object schema); `None`: a function without arguments.
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

/// Token counts, normalised: `input_tokens` counts the whole prompt (cache reads and cache writes
/// included, as OpenAI's `prompt_tokens` does); `output_tokens` counts everything generated
/// (reasoning included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end of the turn.
    Stop,
    /// A stop sequence matched (the sequence, when the provider says which).
    StopSequence(Option<String>),
    /// The token limit was reached.
    Length,
    /// The model called tools and waits for their results.
    ToolCalls,
    /// A safety system stopped or refused the answer.
    ContentFilter,
    /// A provider reason with no equivalent elsewhere (kept for logs; encoders map it to `stop`).
    Other(String),
}

/// A whole (non-stream) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    pub content: Vec<OutputPart>,
    pub finish: FinishReason,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputPart {
    Text(String),
    /// Reasoning the provider exposed (Anthropic thinking, Gemini thought parts).
    Reasoning(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

/// One step of a streamed answer, as every stream decoder emits them.
///
/// Order a decoder guarantees: at most one `Start`, before anything else; then any number of
/// deltas; `ToolCallStart { index }` before any `ToolCallDelta` of that index, with indexes
/// counting tool calls from 0 (never content blocks); `Usage` any number of times, each one the
/// cumulative total so far (the last one wins); at most one `Finish`; then exactly one terminal
/// event: `End` (the provider ended the stream normally) or `Error`. A decoder whose input stops
/// without the provider's end marker emits an `Error` from `finish`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Start {
        id: Option<String>,
        model: Option<String>,
    },
    /// Non-empty text.
    TextDelta(String),
    /// Non-empty reasoning text.
    ReasoningDelta(String),
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// A non-empty fragment of the call's JSON arguments; fragments concatenate.
    ToolCallDelta {
        index: u32,
        arguments: String,
    },
    Usage(Usage),
    Finish(FinishReason),
    End,
    Error(ProviderError),
}

/// Incremental decoding of a provider's stream, fed arbitrary byte chunks (an event may be split
/// anywhere, even inside a UTF-8 character). Never panics, whatever the input.
pub trait StreamDecode: Send {
    /// Decodes what `chunk` completes, appending the events to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>);
    /// The input ended: flushes what is left and, when the provider's end marker never came,
    /// appends an `Error`. Emits nothing after a terminal event was already emitted.
    fn finish(&mut self, out: &mut Vec<StreamEvent>);
}

/// What kind of failure a provider reported, independent of its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Auth,
    Permission,
    NotFound,
    RateLimited,
    Overloaded,
    InvalidRequest,
    ContextLength,
    ContentPolicy,
    Server,
    Timeout,
}

impl ErrorKind {
    /// Whether another try (elsewhere, or later) may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Server | ErrorKind::Timeout
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::ContentPolicy => "content_policy",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
        }
    }

    /// The kind an HTTP status implies when the body says nothing more precise.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Auth,
            402 | 403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            413 => ErrorKind::InvalidRequest,
            429 => ErrorKind::RateLimited,
            503 | 529 => ErrorKind::Overloaded,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Server,
        }
    }
}

/// A provider's error, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The provider's message (never contains credentials: providers do not echo them, and
    /// decoders take only the message field).
    pub message: String,
    /// The provider's own error type or code, for logs and the caller's `code`.
    pub provider_code: Option<String>,
    /// Seconds to wait before retrying, from a header or the body (Gemini `RetryInfo`).
    pub retry_after_secs: Option<u64>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            provider_code: None,
            retry_after_secs: None,
        }
    }

    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

/// Why a request could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The caller's body is not valid for its own format.
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<String>,
    },
    /// The request uses a field the provider cannot honour, and the model is strict.
    #[error("field `{field}` is not supported by provider kind `{provider}`; remove it, or set `strict: false` on the model to drop it")]
    Unsupported {
        field: String,
        provider: &'static str,
    },
}

impl TranslateError {
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        TranslateError::Invalid {
            message: message.into(),
            param: param.into(),
        }
    }

    /// The request field the error is about, if any: always a real field name (`n`, not the
    /// capability name `n>1` the message shows; `messages` for an image part).
    pub fn param(&self) -> Option<&str> {
        match self {
            TranslateError::Invalid { param, .. } => param.as_deref(),
            TranslateError::Unsupported { field, .. } => {
                let name = field.split(['>', ':']).next().unwrap_or(field);
                Some(if name == "image" { "messages" } else { name })
            }
        }
    }
}

/// What a provider encoder needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// The provider's own model name.
    pub model: &'a str,
    /// Used when the request carries no `max_tokens` and the provider requires one.
    pub default_max_tokens: u32,
}

/// A provider request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRequest {
    /// Path below the provider's `base_url`, query included (e.g. `/v1/messages`).
    pub path: String,
    pub body: Vec<u8>,
}

/// The text of every system turn, in order, joined by a blank line (for providers with a single
/// top-level system prompt). `None` when there is no system text.
pub fn system_text(messages: &[Message]) -> Option<String> {
    let mut out = String::new();
    for m in messages.iter().filter(|m| m.role == Role::System) {
        for p in &m.content {
            if let Part::Text(t) = p {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push_str(t);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Concatenated text of a list of parts (images and tool parts skipped).
pub fn joined_text(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        if let Part::Text(t) = p {
            out.push_str(t);
        }
    }
    out
}

/// Parses a tool call's JSON arguments into an object (`""` is `{}`); anything else is the
/// caller's error.
pub fn arguments_object(arguments: &str) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(TranslateError::invalid(
            "tool call arguments must be a JSON object",
            Some("messages".to_string()),
        )),
        Err(e) => Err(TranslateError::invalid(
            format!("tool call arguments are not valid JSON: {e}"),
            Some("messages".to_string()),
        )),
    }
}

/// Splits a `data:` URL into (media type, base64 data); `None` when it is not a base64 data URL.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_turns_join_in_order() {
        let m = |r, t: &str| Message {
            role: r,
            content: vec![Part::Text(t.into())],
        };
        let msgs = vec![
            m(Role::System, "a"),
            m(Role::User, "u"),
            m(Role::System, "b"),
        ];
        assert_eq!(system_text(&msgs).as_deref(), Some("a\n\nb"));
        assert_eq!(system_text(&msgs[1..2]), None);
    }

    #[test]
    fn arguments_must_be_an_object() {
        assert_eq!(arguments_object("").unwrap(), serde_json::json!({}));
        assert!(arguments_object("[1]").is_err());
        assert!(arguments_object("{").is_err());
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAA"),
            Some(("image/png", "AAA"))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }

    #[test]
    fn status_kinds() {
        assert_eq!(ErrorKind::from_status(529), ErrorKind::Overloaded);
        assert!(ErrorKind::from_status(429).retryable());
        assert!(!ErrorKind::from_status(400).retryable());
    }
}
