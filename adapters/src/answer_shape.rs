//! Whether an upstream 2xx body is an answer of its provider's format at all: cheap shape checks
//! for the byte-exact fast paths (an OpenAI chat completion has a `choices` array, an embeddings
//! answer a `data` array) and for the first chunk of a stream (SSE lines, or NDJSON for Ollama,
//! whose first complete event is a JSON object of that format). Also reads the answer texts an
//! OpenAI completion carries, for the gateway's strict structured-output check.
//!
//! Nothing here decides what happens to a body that fails (the gateway's `forward::answer_check`
//! does); the translating paths check their answers by decoding them
//! ([`crate::providers::decode_response`]). Borrowed views only: no tree is built. No I/O.

use crate::canonical::Dialect;
use memchr::memmem::Finder;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Why an upstream body is not an answer (for logs and the try's failure reason; never echoes
/// the body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the upstream's 2xx body is not a valid answer: {0}")]
pub struct NotAnAnswer(pub String);

fn not(what: impl Into<String>) -> NotAnAnswer {
    NotAnAnswer(what.into())
}

/// The body must be a JSON object (serde would also read a struct from an array).
fn object_start(body: &[u8]) -> Result<(), NotAnAnswer> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        Some(_) => Err(not("not a JSON object")),
        None => Err(not("empty body")),
    }
}

#[derive(Deserialize)]
struct ChatTexts<'a> {
    #[serde(borrow)]
    choices: Vec<ChoiceText<'a>>,
}

#[derive(Deserialize)]
struct ChoiceText<'a> {
    #[serde(borrow, default)]
    message: Option<MessageText<'a>>,
}

#[derive(Deserialize)]
struct MessageText<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// An OpenAI chat completion (or text completion): an object with a non-empty `choices` array.
///
/// A structural scan, not a parse: this runs on every non-stream answer of the byte-exact fast
/// path, where a full parse (even into `IgnoredAny`) cost ~5,500 instructions per request for a
/// short answer and grows with it. The body must open and close an object and have a top-level
/// `"choices"` key whose array is not empty. A raw `"choices"` match is a real key: inside a
/// JSON string its quotes would be escaped. Completeness of the JSON itself is the HTTP
/// framing's job (a body cut short fails on its `content-length` or chunked end before this).
pub fn openai_chat(body: &[u8]) -> Result<(), NotAnAnswer> {
    match array_member(body, &CHOICES, "not a chat completion")? {
        b']' => Err(not("`choices` is empty")),
        _ => Ok(()),
    }
}

/// An OpenAI embeddings answer: an object with a `data` array (the same structural scan as
/// [`openai_chat`]; embeddings answers are large, which a parse would pay for in full).
pub fn openai_embeddings(body: &[u8]) -> Result<(), NotAnAnswer> {
    array_member(body, &DATA, "not an embeddings answer").map(|_| ())
}

/// The quoted keys [`array_member`] and [`event_payload`] look for, each searcher built once:
/// `memmem::find` builds one per call (~450 instructions, more than the search of a short
/// answer).
static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));
static DATA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"data\""));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\""));

/// Checks that `body` is one JSON object holding `key` (quoted) as an array member, and returns
/// the array's first significant byte (`]` when it is empty).
fn array_member(body: &[u8], key: &Finder<'static>, what: &str) -> Result<u8, NotAnAnswer> {
    object_start(body)?;
    let key_text = key.needle();
    if body.iter().rev().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        return Err(not(format!("{what}: the object does not end")));
    }
    let at = key
        .find(body)
        .ok_or_else(|| not(format!("{what}: no {}", String::from_utf8_lossy(key_text))))?;
    let mut rest = body[at + key_text.len()..]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace());
    match (rest.next(), rest.next(), rest.next()) {
        (Some(b':'), Some(b'['), Some(first)) => Ok(first),
        _ => Err(not(format!(
            "{what}: {} is not an array",
            String::from_utf8_lossy(key_text)
        ))),
    }
}

/// The text answer of each choice of an OpenAI chat completion (`message.content`); `None` for a
/// choice without text (a refusal or tool calls). Checks the shape as [`openai_chat`] does.
pub fn openai_chat_texts(body: &[u8]) -> Result<Vec<Option<String>>, NotAnAnswer> {
    object_start(body)?;
    let view: ChatTexts<'_> =
        serde_json::from_slice(body).map_err(|e| not(format!("not a chat completion: {e}")))?;
    if view.choices.is_empty() {
        return Err(not("`choices` is empty"));
    }
    Ok(view
        .choices
        .into_iter()
        .map(|c| c.message.and_then(|m| m.content).map(Cow::into_owned))
        .collect())
}

/// SSE field names (a line is `field: value`, `field` alone, or a `:` comment).
const SSE_FIELDS: [&[u8]; 4] = [b"data", b"event", b"id", b"retry"];

fn is_sse_line(line: &[u8], complete: bool) -> bool {
    if line.is_empty() || line[0] == b':' {
        return true;
    }
    SSE_FIELDS.iter().any(|f| {
        if line.len() < f.len() {
            // A line cut by the chunk's end: a field name's beginning is all it can show.
            !complete && f.starts_with(line)
        } else {
            line.starts_with(f) && (line.len() == f.len() || line[f.len()] == b':')
        }
    })
}

/// The first chunk of a 2xx stream, before anything reached the caller: SSE (NDJSON for
/// Ollama, AWS event-stream frames for Bedrock) whose first complete event with data is a JSON object of `dialect`'s format (or
/// `[DONE]`). A chunk that ends before its first event does is judged on the lines it has.
pub fn stream_start(dialect: Dialect, chunk: &[u8]) -> Result<(), NotAnAnswer> {
    if dialect == Dialect::Bedrock {
        // AWS's binary event-stream framing: its first prelude must check out.
        return crate::bedrock::eventstream::check_start(chunk).map_err(|e| not(e.to_string()));
    }
    let start = chunk
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| not("empty stream"))?;
    let chunk = &chunk[start..];
    if dialect == Dialect::Ollama {
        return ndjson_start(chunk);
    }

    let mut data: Vec<u8> = Vec::new();
    let mut lines = chunk.split(|&b| b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        let complete = lines.peek().is_some();
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if !is_sse_line(line, complete) {
            return Err(not("not a server-sent event stream"));
        }
        if line.is_empty() && complete {
            if !data.is_empty() {
                return event_payload(dialect, &data);
            }
            continue;
        }
        if let Some(v) = line.strip_prefix(b"data:").filter(|_| complete) {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(v.strip_prefix(b" ").unwrap_or(v));
        }
    }
    Ok(())
}

fn ndjson_start(chunk: &[u8]) -> Result<(), NotAnAnswer> {
    if chunk[0] != b'{' {
        return Err(not("not a JSON-lines stream"));
    }
    match chunk.iter().position(|&b| b == b'\n') {
        Some(end) => event_payload(Dialect::Ollama, &chunk[..end]),
        None => Ok(()),
    }
}

/// One event's data: `[DONE]`, or a JSON object with the member every event of `dialect` has.
/// The same structural scan as [`openai_chat`] (parsing the first event into a map cost ~3,000
/// instructions on every stream): it opens and closes an object and names one of the members
/// as a key (a quoted key cannot occur unescaped inside a string value).
fn event_payload(dialect: Dialect, data: &[u8]) -> Result<(), NotAnAnswer> {
    if data == b"[DONE]" {
        return Ok(());
    }
    let trimmed = data.trim_ascii();
    if !(trimmed.starts_with(b"{") && trimmed.ends_with(b"}")) {
        return Err(not("the first event is not a JSON object"));
    }
    // Searchers built once (a one-shot `memmem::find` builds one per call).
    let expected: &[&LazyLock<Finder<'static>>] = match dialect {
        Dialect::OpenAi => &[&CHOICES, &ERROR],
        Dialect::Anthropic => &[&TYPE],
        _ => &[],
    };
    if !expected.is_empty() && !expected.iter().any(|k| k.find(trimmed).is_some()) {
        return Err(not(format!(
            "the first event has none of the members every {} event has",
            dialect.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenAI's documented chat completion example.
    const OPENAI_OK: &[u8] = br#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#;

    #[test]
    fn an_openai_completion_passes_and_yields_its_text() {
        assert_eq!(openai_chat(OPENAI_OK), Ok(()));
        assert_eq!(
            openai_chat_texts(OPENAI_OK).unwrap(),
            vec![Some("Hello! How can I assist you today?".to_string())]
        );
    }

    #[test]
    fn html_truncated_and_wrong_shapes_are_not_answers() {
        for body in [
            &b"<html><body>502 Bad Gateway</body></html>"[..],
            &OPENAI_OK[..OPENAI_OK.len() / 2],
            br#"{"id":"x","object":"chat.completion"}"#,
            br#"{"choices":[]}"#,
            br#"{"choices":"none"}"#,
            br#"{"choices": [ ] }"#,
            br#"{"message":"say \"choices\": [1]"}"#,
            br#"[{"choices":[1]}]"#,
            b"",
        ] {
            assert!(
                openai_chat(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(openai_chat_texts(body).is_err());
        }
    }

    #[test]
    fn a_tool_call_or_refusal_has_no_text() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."}}]}"#;
        assert_eq!(openai_chat_texts(body).unwrap(), vec![None]);
    }

    #[test]
    fn embeddings_need_data() {
        assert!(openai_embeddings(br#"{"object":"list","data":[{"embedding":[0.1]}]}"#).is_ok());
        assert!(openai_embeddings(br#"{"object":"list"}"#).is_err());
        assert!(openai_embeddings(br#"{"object":"list","data":[{"embedding":[0.1"#).is_err());
        // Whitespace anywhere JSON allows it.
        assert!(openai_chat(b" {\n  \"choices\" :\n [ {\"index\": 0} ]\n}\n").is_ok());
    }

    #[test]
    fn stream_starts() {
        let openai = b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
        assert_eq!(stream_start(Dialect::OpenAi, openai), Ok(()));
        // Cut anywhere: judged on what it has.
        for cut in 1..openai.len() {
            assert_eq!(
                stream_start(Dialect::OpenAi, &openai[..cut]),
                Ok(()),
                "{cut}"
            );
        }
        let anthropic =
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n";
        assert_eq!(stream_start(Dialect::Anthropic, anthropic), Ok(()));
        assert_eq!(
            stream_start(Dialect::OpenAi, b": keep-alive\n\ndata: [DONE]\n\n"),
            Ok(())
        );
        assert_eq!(
            stream_start(
                Dialect::Ollama,
                b"{\"model\":\"m\",\"message\":{},\"done\":false}\n"
            ),
            Ok(())
        );
        for (d, bad) in [
            (Dialect::OpenAi, &b"<html><body>oops</body></html>"[..]),
            (Dialect::OpenAi, b"data: {\"id\":\"x\"}\n\n"),
            (Dialect::OpenAi, b"data: {\"choices\":[\n\n"),
            (Dialect::Anthropic, b"event: x\ndata: [1]\n\n"),
            (Dialect::Gemini, b"{\"candidates\":[]}"),
            (Dialect::Ollama, b"data: {}\n\n"),
            (Dialect::Ollama, b"{\"a\":\n}\n"),
            (Dialect::OpenAi, b"   "),
        ] {
            assert!(
                stream_start(d, bad).is_err(),
                "{d:?} {}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
