//! Golden tests for the Anthropic Messages codecs (`anthropic`), as a provider format and as a
//! caller format, plus the Anthropic-caller side of cross translation to OpenAI.
//!
//! Fixtures under `tests/fixtures/anthropic/` are the documented examples of `wire-formats.md` §2,
//! copied verbatim, with these completions (the document elides or shows only a fragment):
//! - `request_tool_round_trip.json`: the documented first request and the documented next turns
//!   (assistant `tool_use` + user `tool_result`) joined into one request; the shortened tool
//!   schema `{…}` is filled in plausibly.
//! - `stream_live_trailing_spaces.sse`: the 7 elided `input_json_delta` events are filled in so
//!   the arguments read `{"location": "San Francisco, CA", "units": "f"}`, each keeping the
//!   recording's whitespace padding before the closing brace.
//! - `refusal_end.sse`: the documented refusal `message_delta` framed by a `message_start` and a
//!   `message_stop` of the documented shapes.
//! - `stream_error_overloaded.sse`, `stream_error_with_details.sse`: the documented mid-stream
//!   `event: error` (and its real variant with `details` and `request_id`) after a start of the
//!   documented shapes; the connection then closes, as documented.

use bytes::BytesMut;
use serde_json::{json, Value};
use switchyard_adapters::anthropic::{
    decode_error, decode_request, decode_response, encode_error, encode_response, StreamDecoder,
    StreamEncoder,
};
use switchyard_adapters::canonical::*;
use switchyard_adapters::openai;

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn an(name: &str) -> Vec<u8> {
    fixture("anthropic", name)
}

fn decode_chunks<D: StreamDecode>(mut d: D, chunks: &[&[u8]]) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, &mut out);
    }
    d.finish(&mut out);
    out
}

fn decode_whole(bytes: &[u8]) -> Vec<StreamEvent> {
    decode_chunks(StreamDecoder::new(), &[bytes])
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Every two-chunk split and byte-at-a-time feeding give the events of the whole input.
fn assert_chunking_invariant<D: StreamDecode>(new: impl Fn() -> D, bytes: &[u8]) {
    let whole = decode_chunks(new(), &[bytes]);
    assert!(
        matches!(whole.last(), Some(StreamEvent::End | StreamEvent::Error(_))),
        "{whole:?}"
    );
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(decode_chunks(new(), &[a, b]), whole, "split at byte {at}");
    }
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_chunks(new(), &bytewise), whole, "byte at a time");
}

/// The named events of an Anthropic-style SSE output: (event name, parsed data).
fn sse_events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e
                .strip_prefix("event: ")
                .and_then(|r| r.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {e}"));
            let data: Value =
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"));
            assert_eq!(data["type"], json!(name), "data.type equals the event name");
            (name.to_string(), data)
        })
        .collect()
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn text(t: &str) -> Part {
    Part::Text(t.into())
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message { role, content }
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

fn start(id: &str, model: &str) -> StreamEvent {
    StreamEvent::Start {
        id: Some(id.into()),
        model: Some(model.into()),
    }
}

fn delta(index: u32, arguments: &str) -> StreamEvent {
    StreamEvent::ToolCallDelta {
        index,
        arguments: arguments.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Provider side: response, stream and error decoding.

#[test]
fn tool_use_response_decodes_to_canonical() {
    assert_eq!(
        decode_response(&an("response_tool_use.json")).unwrap(),
        ChatResponse {
            id: "msg_01RMQBcKf2dxTq6qfi31BBTz".into(),
            model: "claude-haiku-4-5-20251001".into(),
            content: vec![OutputPart::ToolCall {
                id: "toolu_01A9HHF5Ezy3oBrKmSgfASm9".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"San Francisco, CA","units":"f"}"#.into(),
            }],
            finish: FinishReason::ToolCalls,
            usage: Some(usage(656, 74)),
        }
    );
}

#[test]
fn response_usage_adds_cache_tokens_to_the_prompt() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": "Hi"}],
        "stop_reason": "stop_sequence", "stop_sequence": "###",
        "usage": {"input_tokens": 5, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 9}
    });
    let resp = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        resp.content,
        vec![
            OutputPart::Reasoning("hmm".into()),
            OutputPart::Text("Hi".into())
        ]
    );
    assert_eq!(resp.finish, FinishReason::StopSequence(Some("###".into())));
    assert_eq!(
        resp.usage,
        Some(Usage {
            input_tokens: 125,
            output_tokens: 9,
            cache_read_tokens: 100,
            cache_write_tokens: 20,
            reasoning_tokens: 0,
        })
    );
}

fn tool_use_stream_events() -> Vec<StreamEvent> {
    vec![
        start("msg_019Q1hrJbZG26Fb9BQhrkHEr", "claude-sonnet-4-20250514"),
        StreamEvent::Usage(usage(377, 1)),
        StreamEvent::TextDelta("I".into()),
        StreamEvent::TextDelta("'ll check the current weather in Paris for you.".into()),
        // Content block 1, but the first tool call: index 0.
        StreamEvent::ToolCallStart {
            index: 0,
            id: "toolu_01NRLabsLyVHZPKxbKvkfSMn".into(),
            name: "get_weather".into(),
        },
        delta(0, "{\"locati"),
        delta(0, "on\": \"P"),
        delta(0, "ar"),
        delta(0, "is\"}"),
        StreamEvent::Usage(usage(377, 65)),
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::End,
    ]
}

#[test]
fn text_then_tool_stream_decodes_to_canonical() {
    assert_eq!(
        decode_whole(&an("tool_use_response.txt")),
        tool_use_stream_events()
    );
}

#[test]
fn live_stream_with_padding_decodes_to_canonical() {
    let events = decode_whole(&an("stream_live_trailing_spaces.sse"));
    let mut want = vec![
        start("msg_01AusY9WEbCaj3N7Tv5J4YjH", "claude-haiku-4-5-20251001"),
        StreamEvent::Usage(usage(656, 26)),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "toolu_018acGYLtfR52q9yDbWaEdQZ".into(),
            name: "get_weather".into(),
        },
    ];
    for a in [
        "{\"loca",
        "tion\": \"",
        "San Fra",
        "ncisco",
        ", CA\"",
        ", ",
        "\"",
        "units\": \"f\"}",
    ] {
        want.push(delta(0, a));
    }
    want.extend([
        StreamEvent::Usage(usage(656, 74)),
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::End,
    ]);
    assert_eq!(events, want);
}

#[test]
fn refusal_end_decodes_to_content_filter() {
    assert_eq!(
        decode_whole(&an("refusal_end.sse")),
        vec![
            start(
                "msg_01RefusalExample0000000000",
                "claude-sonnet-4-5-20250929"
            ),
            StreamEvent::Usage(usage(12, 1)),
            StreamEvent::Usage(usage(12, 0)),
            StreamEvent::Finish(FinishReason::ContentFilter),
            StreamEvent::End,
        ]
    );
}

#[test]
fn mid_stream_errors_decode_to_overloaded() {
    for name in [
        "stream_error_overloaded.sse",
        "stream_error_with_details.sse",
    ] {
        let events = decode_whole(&an(name));
        match events.last() {
            Some(StreamEvent::Error(e)) => {
                assert_eq!(e.kind, ErrorKind::Overloaded, "{name}");
                assert!(e.retryable());
                assert_eq!(e.message, "Overloaded");
                assert_eq!(e.provider_code.as_deref(), Some("overloaded_error"));
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!events.contains(&StreamEvent::End));
    }
    let events = decode_whole(&an("stream_error_overloaded.sse"));
    assert_eq!(events[2], StreamEvent::TextDelta("Hello".into()));
    assert_eq!(events.len(), 4);
}

#[test]
fn streamed_usage_adds_cache_tokens_and_keeps_the_last_output_count() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_c\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":20,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
        "event: some_future_event\n",
        "data: {\"type\":\"some_future_event\"}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    let events = decode_whole(stream.as_bytes());
    let cached = |output| {
        StreamEvent::Usage(Usage {
            input_tokens: 125,
            output_tokens: output,
            cache_read_tokens: 100,
            cache_write_tokens: 20,
            reasoning_tokens: 0,
        })
    };
    assert_eq!(
        events,
        vec![
            start("msg_c", "claude"),
            cached(1),
            cached(30),
            StreamEvent::Finish(FinishReason::Stop),
            cached(42),
            StreamEvent::End,
        ]
    );
}

const STREAM_FIXTURES: [&str; 5] = [
    "tool_use_response.txt",
    "stream_live_trailing_spaces.sse",
    "refusal_end.sse",
    "stream_error_overloaded.sse",
    "stream_error_with_details.sse",
];

#[test]
fn stream_decoding_does_not_depend_on_chunking() {
    for name in STREAM_FIXTURES {
        assert_chunking_invariant(StreamDecoder::new, &an(name));
    }
}

#[test]
fn crlf_streams_decode_like_lf_streams() {
    for name in STREAM_FIXTURES {
        let lf = an(name);
        let crlf = crlf(&lf);
        assert_eq!(decode_whole(&crlf), decode_whole(&lf), "{name}");
        assert_chunking_invariant(StreamDecoder::new, &crlf);
    }
}

#[test]
fn a_stream_cut_before_message_stop_ends_with_an_error() {
    for name in [
        "tool_use_response.txt",
        "stream_live_trailing_spaces.sse",
        "refusal_end.sse",
    ] {
        let bytes = an(name);
        let text = std::str::from_utf8(&bytes).unwrap();
        let mut cuts = vec![text.find("event: message_stop").unwrap()];
        // Also in the middle of every event's data.
        cuts.extend(text.match_indices("data: {").map(|(i, _)| i + 15));
        for at in cuts {
            let events = decode_whole(&bytes[..at]);
            assert!(
                matches!(events.last(), Some(StreamEvent::Error(e)) if e.kind == ErrorKind::Server),
                "{name} cut at {at}: {events:?}"
            );
            assert!(!events.contains(&StreamEvent::End), "{name} cut at {at}");
        }
    }
    // An error event already ended the stream: closing the connection adds nothing.
    let events = decode_whole(&an("stream_error_overloaded.sse"));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Error(_)))
            .count(),
        1
    );
}

#[test]
fn documented_error_bodies_decode() {
    let e = decode_error(529, &an("error_overloaded_529.json"), Some(3));
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert!(e.retryable());
    assert_eq!(e.message, "Overloaded");
    assert_eq!(e.provider_code.as_deref(), Some("overloaded_error"));
    assert_eq!(e.retry_after_secs, Some(3));

    let e = decode_error(400, &an("error_empty_text_block.json"), None);
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(!e.retryable());
    assert_eq!(e.message, "messages: text content blocks must be non-empty");
}

#[test]
fn error_kinds_from_types_and_statuses() {
    let body = |etype: &str, message: &str| {
        json!({"type": "error", "error": {"type": etype, "message": message}, "request_id": null})
            .to_string()
    };
    let cases = [
        (
            400,
            body(
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
            ErrorKind::ContextLength,
        ),
        (
            401,
            body("authentication_error", "invalid x-api-key"),
            ErrorKind::Auth,
        ),
        (
            402,
            body("billing_error", "credit balance too low"),
            ErrorKind::Permission,
        ),
        (403, body("permission_error", "no"), ErrorKind::Permission),
        (
            404,
            body("not_found_error", "model: claude-x"),
            ErrorKind::NotFound,
        ),
        (
            413,
            body(
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes",
            ),
            ErrorKind::InvalidRequest,
        ),
        (
            429,
            body("rate_limit_error", "slow down"),
            ErrorKind::RateLimited,
        ),
        (
            500,
            body("api_error", "Internal server error"),
            ErrorKind::Server,
        ),
        (504, body("timeout_error", "timeout"), ErrorKind::Timeout),
        (500, "upstream connect error".to_string(), ErrorKind::Server),
        (529, String::new(), ErrorKind::Overloaded),
    ];
    for (status, body, kind) in cases {
        assert_eq!(
            decode_error(status, body.as_bytes(), None).kind,
            kind,
            "{status} {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Caller side: request decoding.

fn round_trip_canonical() -> ChatRequest {
    ChatRequest {
        model: "claude-haiku-4-5".into(),
        messages: vec![
            msg(Role::User, vec![text("What is the weather in SF?")]),
            msg(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: "toolu_01A9HHF5Ezy3oBrKmSgfASm9".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"location":"San Francisco, CA","units":"f"}"#.into(),
                }],
            ),
            msg(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "toolu_01A9HHF5Ezy3oBrKmSgfASm9".into(),
                    name: Some("get_weather".into()),
                    content: "RuntimeError('Unexpected error, try again')".into(),
                    is_error: true,
                }],
            ),
        ],
        include_usage: true,
        max_tokens: Some(1024),
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some(
                "Lookup the weather for a given city in either celsius or fahrenheit".into(),
            ),
            parameters: Some(weather_schema()),
        }],
        ..ChatRequest::default()
    }
}

fn weather_schema() -> Value {
    json!({"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
        "units":{"type":"string","enum":["c","f"],"description":"Unit for the output - one of (c, f)"}},"required":["location","units"]})
}

#[test]
fn documented_tool_round_trip_request_decodes() {
    assert_eq!(
        decode_request(&an("request_tool_round_trip.json")).unwrap(),
        round_trip_canonical()
    );
}

fn rich_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units.", "cache_control": {"type": "ephemeral"}}],
        "stream": true,
        "stop_sequences": ["###"],
        "temperature": 0.3,
        "metadata": {"user_id": "u-1"},
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "tools": [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Tokyo?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/map.png"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Two calls.", "signature": "c2ln"},
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Tokyo"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": [{"type": "text", "text": "18C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "25C"},
                {"type": "text", "text": "Which is warmer?"}
            ]}
        ]
    })
}

#[test]
fn rich_request_decodes_to_canonical() {
    let req = decode_request(rich_request().to_string().as_bytes()).unwrap();
    let call = |id: &str, city: &str| Part::ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: format!("{{\"city\":\"{city}\"}}"),
    };
    let result = |id: &str, content: &str| Part::ToolResult {
        call_id: id.into(),
        name: Some("get_weather".into()),
        content: content.into(),
        is_error: false,
    };
    assert_eq!(
        req.messages,
        vec![
            msg(
                Role::System,
                vec![text("Be brief."), text("Use metric units.")]
            ),
            msg(
                Role::User,
                vec![
                    text("Weather in Paris and Tokyo?"),
                    Part::Image(Image::Base64 {
                        media_type: "image/jpeg".into(),
                        data: "/9j/4AAQ".into(),
                    }),
                    Part::Image(Image::Url("https://example.com/map.png".into())),
                ]
            ),
            msg(
                Role::Assistant,
                vec![
                    text("Checking both."),
                    call("toolu_a", "Paris"),
                    call("toolu_b", "Tokyo")
                ]
            ),
            msg(
                Role::Tool,
                vec![result("toolu_a", "18C"), result("toolu_b", "25C")]
            ),
            msg(Role::User, vec![text("Which is warmer?")]),
        ]
    );
    assert!(req.stream);
    assert!(req.include_usage);
    assert_eq!(req.max_tokens, Some(512));
    assert_eq!(req.stop, vec!["###".to_string()]);
    assert_eq!(req.temperature, Some(0.3));
    assert_eq!(req.user.as_deref(), Some("u-1"));
    assert_eq!(req.tool_choice, Some(ToolChoice::Required));
    assert_eq!(req.parallel_tool_calls, Some(false));
    assert!(req.extra.is_empty());
}

#[test]
fn invalid_requests_name_the_param() {
    let ok_msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    let cases = [
        (format!(r#"{{"max_tokens":1,{ok_msgs}}}"#), Some("model")),
        (format!(r#"{{"model":"m",{ok_msgs}}}"#), Some("max_tokens")),
        (format!(r#"{{"model":"m","max_tokens":-1,{ok_msgs}}}"#), Some("max_tokens")),
        (r#"{"model":"m","max_tokens":1}"#.to_string(), Some("messages")),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#.to_string(),
            Some("messages[0].role"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}]}"#.to_string(),
            Some("messages[0].content[0].type"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#.to_string(),
            Some("messages[0].content[0].type"),
        ),
        (format!(r#"{{"model":"m","max_tokens":1,{ok_msgs},"system":5}}"#), Some("system")),
        (format!(r#"{{"model":"m","max_tokens":1,{ok_msgs},"tool_choice":{{"type":"maybe"}}}}"#), Some("tool_choice")),
        (
            format!(r#"{{"model":"m","max_tokens":1,{ok_msgs},"tools":[{{"type":"web_search_20250305","name":"web_search"}}]}}"#),
            Some("tools"),
        ),
        (format!(r#"{{"model":"m","max_tokens":1,{ok_msgs},"temperature":"warm"}}"#), Some("temperature")),
        ("[]".to_string(), None),
    ];
    for (body, param) in cases {
        match decode_request(body.as_bytes()) {
            Err(e @ TranslateError::Invalid { .. }) => assert_eq!(e.param(), param, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cross translation: Anthropic caller → OpenAI provider.

fn to_openai(body: &[u8]) -> Value {
    let canonical = decode_request(body).unwrap();
    let enc = openai::codec::encode_request(
        &canonical,
        &EncodeOptions {
            model: "gpt-4o",
            default_max_tokens: 4096,
        },
    )
    .unwrap();
    assert_eq!(enc.path, "/chat/completions");
    body_json(&enc.body)
}

#[test]
fn documented_round_trip_translates_to_openai() {
    assert_eq!(
        to_openai(&an("request_tool_round_trip.json")),
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "What is the weather in SF?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_01A9HHF5Ezy3oBrKmSgfASm9", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"units\":\"f\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01A9HHF5Ezy3oBrKmSgfASm9", "content": "RuntimeError('Unexpected error, try again')"}
            ],
            "max_tokens": 1024,
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Lookup the weather for a given city in either celsius or fahrenheit",
                "parameters": weather_schema()
            }}]
        })
    );
}

#[test]
fn rich_request_translates_to_openai() {
    assert_eq!(
        to_openai(rich_request().to_string().as_bytes()),
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief.\n\nUse metric units."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris and Tokyo?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/map.png"}}
                ]},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_b", "content": "25C"},
                {"role": "user", "content": "Which is warmer?"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 512,
            "temperature": 0.3,
            "stop": ["###"],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "u-1"
        })
    );
}

#[test]
fn user_text_blocks_are_not_glued_together() {
    let body = to_openai(
        br#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
            {"type":"text","text":"<document>Long text.</document>","cache_control":{"type":"ephemeral"}},
            {"type":"text","text":"Summarise it."}]}]}"#,
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "<document>Long text.</document>"},
            {"type": "text", "text": "Summarise it."}
        ]}])
    );
}

// ---------------------------------------------------------------------------------------------
// Caller side: response, stream and error encoding.

#[test]
fn openai_response_encodes_as_a_message() {
    let resp =
        openai::codec::decode_response(&fixture("openai", "response_tool_calls.json")).unwrap();
    assert_eq!(
        body_json(&encode_response(&resp, "msg_gw1", "public-model")),
        json!({
            "id": "msg_gw1",
            "type": "message",
            "role": "assistant",
            "model": "public-model",
            "content": [{"type": "tool_use", "id": "call_abc123", "name": "get_current_weather",
                         "input": {"location": "Boston, MA"}}],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 82, "output_tokens": 17, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        })
    );
}

fn encode_events(events: &[StreamEvent]) -> (Vec<u8>, StreamEncoder) {
    let mut enc = StreamEncoder::new("msg_gw1", "public-model");
    let mut out = BytesMut::new();
    for e in events {
        enc.push(e, &mut out);
    }
    (out.to_vec(), enc)
}

fn message_start() -> (String, Value) {
    (
        "message_start".into(),
        json!({"type": "message_start", "message": {
            "id": "msg_gw1", "type": "message", "role": "assistant", "model": "public-model",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        }}),
    )
}

fn block_start(index: u32, block: Value) -> (String, Value) {
    (
        "content_block_start".into(),
        json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn block_delta(index: u32, delta: Value) -> (String, Value) {
    (
        "content_block_delta".into(),
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

fn json_delta(index: u32, partial: &str) -> (String, Value) {
    block_delta(
        index,
        json!({"type": "input_json_delta", "partial_json": partial}),
    )
}

fn block_stop(index: u32) -> (String, Value) {
    (
        "content_block_stop".into(),
        json!({"type": "content_block_stop", "index": index}),
    )
}

fn message_end(stop_reason: &str, input: u64, output: u64) -> [(String, Value); 2] {
    [
        (
            "message_delta".into(),
            json!({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                   "usage": {"input_tokens": input, "output_tokens": output,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
        ),
        ("message_stop".into(), json!({"type": "message_stop"})),
    ]
}

#[test]
fn openai_parallel_tool_stream_translates_to_anthropic_events() {
    let events = decode_chunks(
        openai::codec::StreamDecoder::new(),
        &[&fixture("openai", "stream_parallel_tool_calls.sse")],
    );
    let (out, enc) = encode_events(&events);
    assert!(enc.completed());
    let mut want = vec![
        message_start(),
        block_start(
            0,
            json!({"type": "tool_use", "id": "call_JMW1whyEaYG438VE1OIflxA2", "name": "GetWeatherArgs", "input": {}}),
        ),
    ];
    for a in [
        "{\"ci", "ty\": \"", "Ed", "inburgh", "\", \"", "country", "\": \"", "UK", "\", \"",
        "units", "\": \"", "c\"}",
    ] {
        want.push(json_delta(0, a));
    }
    want.push(block_stop(0));
    want.push(block_start(
        1,
        json!({"type": "tool_use", "id": "call_DNYTawLBoN8fj3KN6qU9N1Ou", "name": "get_stock_price", "input": {}}),
    ));
    for a in [
        "{\"ti",
        "cker\": \"",
        "AAPL\", \"exchange\": \"",
        "NASDAQ\"}",
    ] {
        want.push(json_delta(1, a));
    }
    want.push(block_stop(1));
    want.extend(message_end("tool_use", 149, 60));
    assert_eq!(sse_events(&out), want);
}

#[test]
fn openai_length_stream_translates_to_anthropic_events() {
    let events = decode_chunks(
        openai::codec::StreamDecoder::new(),
        &[&fixture("openai", "stream_max_tokens.sse")],
    );
    let (out, _) = encode_events(&events);
    let mut want = vec![
        message_start(),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "{\""})),
        block_stop(0),
    ];
    want.extend(message_end("max_tokens", 79, 1));
    assert_eq!(sse_events(&out), want);
}

#[test]
fn text_then_tools_get_dense_block_indexes() {
    let events = vec![
        start("chatcmpl-1", "gpt"),
        StreamEvent::ReasoningDelta("thinking".into()),
        StreamEvent::TextDelta("Let me ".into()),
        StreamEvent::TextDelta("check.".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "f".into(),
        },
        delta(0, "{}"),
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call.b".into(),
            name: "g".into(),
        },
        delta(1, "{\"x\":1}"),
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage {
            input_tokens: 50,
            output_tokens: 7,
            cache_read_tokens: 30,
            ..Usage::default()
        }),
        StreamEvent::End,
    ];
    let (out, _) = encode_events(&events);
    let want = vec![
        message_start(),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Let me "})),
        block_delta(0, json!({"type": "text_delta", "text": "check."})),
        block_stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "call_a", "name": "f", "input": {}}),
        ),
        json_delta(1, "{}"),
        block_stop(1),
        block_start(
            2,
            json!({"type": "tool_use", "id": "call_b", "name": "g", "input": {}}),
        ),
        json_delta(2, "{\"x\":1}"),
        block_stop(2),
        (
            "message_delta".into(),
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 20, "output_tokens": 7,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30}}),
        ),
        ("message_stop".into(), json!({"type": "message_stop"})),
    ];
    assert_eq!(sse_events(&out), want);
}

#[test]
fn anthropic_stream_round_trips_through_the_canonical_model() {
    // Anthropic provider → Anthropic caller: same blocks, same usage, same stop reason.
    let events = decode_whole(&an("tool_use_response.txt"));
    let (out, _) = encode_events(&events);
    let got = sse_events(&out);
    assert_eq!(got[1], block_start(0, json!({"type": "text", "text": ""})));
    assert_eq!(
        got[5],
        block_start(
            1,
            json!({"type": "tool_use", "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather", "input": {}})
        )
    );
    assert_eq!(got[got.len() - 2].1["usage"]["input_tokens"], json!(377));
    assert_eq!(got[got.len() - 2].1["usage"]["output_tokens"], json!(65));
    assert_eq!(
        got[got.len() - 2].1["delta"]["stop_reason"],
        json!("tool_use")
    );
}

#[test]
fn openai_mid_stream_error_becomes_an_anthropic_error_event() {
    let stream = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n",
    );
    let events = decode_chunks(openai::codec::StreamDecoder::new(), &[stream.as_bytes()]);
    let (out, enc) = encode_events(&events);
    assert!(!enc.completed());
    let got = sse_events(&out);
    assert_eq!(
        got.last().unwrap(),
        &(
            "error".to_string(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
        )
    );
    assert!(got.iter().all(|(name, _)| name != "message_stop"));

    // A cut OpenAI stream: an `api_error`, never a clean `message_stop`.
    let bytes = fixture("openai", "stream_max_tokens.sse");
    let cut = std::str::from_utf8(&bytes)
        .unwrap()
        .find("data: [DONE]")
        .unwrap();
    let events = decode_chunks(openai::codec::StreamDecoder::new(), &[&bytes[..cut]]);
    let (out, _) = encode_events(&events);
    let got = sse_events(&out);
    assert_eq!(got.last().unwrap().0, "error");
    assert_eq!(got.last().unwrap().1["error"]["type"], json!("api_error"));
    assert!(got.iter().all(|(name, _)| name != "message_stop"));
}

#[test]
fn encode_error_statuses_and_types() {
    let cases = [
        (ErrorKind::Overloaded, 529, "overloaded_error"),
        (ErrorKind::RateLimited, 429, "rate_limit_error"),
        (ErrorKind::ContextLength, 400, "invalid_request_error"),
        (ErrorKind::InvalidRequest, 400, "invalid_request_error"),
        (ErrorKind::NotFound, 404, "not_found_error"),
        (ErrorKind::Timeout, 504, "timeout_error"),
        (ErrorKind::Server, 502, "api_error"),
        (ErrorKind::Auth, 502, "api_error"),
    ];
    for (kind, status, etype) in cases {
        let (s, body) = encode_error(&ProviderError::new(kind, "boom"), Some("req_1"));
        assert_eq!(s, status, "{kind:?}");
        assert_eq!(
            body_json(&body),
            json!({"type": "error", "error": {"type": etype, "message": "boom"}, "request_id": "req_1"})
        );
    }
    // OpenAI's documented context-length error reaches an Anthropic caller as a 400.
    let e = openai::codec::decode_error(400, &fixture("openai", "error_context_length.json"), None);
    let (status, body) = encode_error(&e, None);
    assert_eq!(status, 400);
    assert_eq!(
        body_json(&body)["error"]["type"],
        json!("invalid_request_error")
    );
    assert_eq!(body_json(&body)["request_id"], Value::Null);
    // And Anthropic's own 529 round-trips.
    let e = decode_error(529, &an("error_overloaded_529.json"), None);
    let (status, body) = encode_error(&e, None);
    assert_eq!(status, 529);
    assert_eq!(
        body_json(&body),
        body_json(&an("error_overloaded_529.json"))
    );
}
