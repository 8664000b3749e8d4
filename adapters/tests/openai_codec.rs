//! Golden tests for the OpenAI Chat Completions canonical codecs (`openai::codec`), as a provider
//! format and as a caller format, plus the OpenAI-caller side of cross translation to Anthropic.
//!
//! Fixtures under `tests/fixtures/openai/` are the documented examples of `wire-formats.md` §1,
//! copied verbatim, except `stream_parallel_tool_calls.sse`: the documented recording elides its
//! common chunk prefix and 13 argument-fragment chunks; the fixture restores the prefix and fills
//! the elided fragments plausibly (`{"city": "Edinburgh", "country": "UK", "units": "c"}` and
//! `{"ticker": "AAPL", "exchange": "NASDAQ"}`), keeping every chunk that the document shows.

use bytes::BytesMut;
use serde_json::{json, Value};
use switchyard_adapters::anthropic;
use switchyard_adapters::canonical::*;
use switchyard_adapters::openai::codec::{
    decode_error, decode_request, decode_response, encode_error, encode_request, StreamDecoder,
    StreamEncoder,
};

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn oa(name: &str) -> Vec<u8> {
    fixture("openai", name)
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

/// The `data:` payloads of an OpenAI-style SSE output, in order.
fn sse_data(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            assert!(
                !e.starts_with("event:"),
                "OpenAI streams carry no event names: {e}"
            );
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {e}"))
                .to_string()
        })
        .collect()
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
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

// ---------------------------------------------------------------------------------------------
// Provider side: response, stream and error decoding.

#[test]
fn text_response_decodes_to_canonical() {
    let resp = decode_response(&oa("response_text.json")).unwrap();
    assert_eq!(
        resp,
        ChatResponse {
            id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT".into(),
            model: "gpt-5.4".into(),
            content: vec![OutputPart::Text(
                "Hello! How can I assist you today?".into()
            )],
            finish: FinishReason::Stop,
            usage: Some(usage(19, 10)),
        }
    );
}

#[test]
fn tool_call_response_decodes_to_canonical() {
    let resp = decode_response(&oa("response_tool_calls.json")).unwrap();
    assert_eq!(
        resp,
        ChatResponse {
            id: "chatcmpl-abc123".into(),
            model: "gpt-4o-mini".into(),
            content: vec![OutputPart::ToolCall {
                id: "call_abc123".into(),
                name: "get_current_weather".into(),
                arguments: "{\n\"location\": \"Boston, MA\"\n}".into(),
            }],
            finish: FinishReason::ToolCalls,
            usage: Some(usage(82, 17)),
        }
    );
}

#[test]
fn response_with_an_error_body_is_an_error() {
    let e = decode_response(&oa("error_context_length.json")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ContextLength);
}

fn parallel_stream_events() -> Vec<StreamEvent> {
    let delta = |index: u32, a: &str| StreamEvent::ToolCallDelta {
        index,
        arguments: a.into(),
    };
    let mut ev = vec![
        StreamEvent::Start {
            id: Some("chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63".into()),
            model: Some("gpt-4o-2024-08-06".into()),
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_JMW1whyEaYG438VE1OIflxA2".into(),
            name: "GetWeatherArgs".into(),
        },
    ];
    for a in [
        "{\"ci", "ty\": \"", "Ed", "inburgh", "\", \"", "country", "\": \"", "UK", "\", \"",
        "units", "\": \"", "c\"}",
    ] {
        ev.push(delta(0, a));
    }
    ev.push(StreamEvent::ToolCallStart {
        index: 1,
        id: "call_DNYTawLBoN8fj3KN6qU9N1Ou".into(),
        name: "get_stock_price".into(),
    });
    for a in [
        "{\"ti",
        "cker\": \"",
        "AAPL\", \"exchange\": \"",
        "NASDAQ\"}",
    ] {
        ev.push(delta(1, a));
    }
    ev.push(StreamEvent::Finish(FinishReason::ToolCalls));
    ev.push(StreamEvent::Usage(usage(149, 60)));
    ev.push(StreamEvent::End);
    ev
}

#[test]
fn parallel_tool_call_stream_decodes_to_canonical() {
    let events = decode_whole(&oa("stream_parallel_tool_calls.sse"));
    assert_eq!(events, parallel_stream_events());
    // The fragments of each call concatenate to its JSON arguments.
    for (index, want) in [
        (
            0,
            json!({"city": "Edinburgh", "country": "UK", "units": "c"}),
        ),
        (1, json!({"ticker": "AAPL", "exchange": "NASDAQ"})),
    ] {
        let args: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallDelta {
                    index: i,
                    arguments,
                } if *i == index => Some(arguments.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(parse(&args), want);
    }
}

#[test]
fn max_tokens_stream_decodes_to_canonical() {
    assert_eq!(
        decode_whole(&oa("stream_max_tokens.sse")),
        vec![
            StreamEvent::Start {
                id: Some("chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh".into()),
                model: Some("gpt-4o-2024-08-06".into()),
            },
            StreamEvent::TextDelta("{\"".into()),
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::Usage(usage(79, 1)),
            StreamEvent::End,
        ]
    );
}

const STREAM_FIXTURES: [&str; 2] = ["stream_parallel_tool_calls.sse", "stream_max_tokens.sse"];

#[test]
fn stream_decoding_does_not_depend_on_chunking() {
    for name in STREAM_FIXTURES {
        assert_chunking_invariant(StreamDecoder::new, &oa(name));
    }
}

#[test]
fn crlf_streams_decode_like_lf_streams() {
    for name in STREAM_FIXTURES {
        let lf = oa(name);
        let crlf = crlf(&lf);
        assert_eq!(decode_whole(&crlf), decode_whole(&lf), "{name}");
        assert_chunking_invariant(StreamDecoder::new, &crlf);
    }
}

#[test]
fn a_stream_cut_before_done_ends_with_an_error() {
    for name in STREAM_FIXTURES {
        let bytes = oa(name);
        let text = std::str::from_utf8(&bytes).unwrap();
        let cut = text.find("data: [DONE]").unwrap();
        // Cut right before the marker, and in the middle of every earlier event.
        let mut cuts = vec![cut];
        cuts.extend(text.match_indices("data: {").map(|(i, _)| i + 20));
        for at in cuts {
            let events = decode_whole(&bytes[..at]);
            assert!(
                matches!(events.last(), Some(StreamEvent::Error(e)) if e.kind == ErrorKind::Server),
                "{name} cut at {at}: {events:?}"
            );
            assert!(!events.contains(&StreamEvent::End), "{name} cut at {at}");
        }
    }
}

#[test]
fn mid_stream_error_event_is_decoded() {
    let stream = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n",
    );
    let events = decode_whole(stream.as_bytes());
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[1], StreamEvent::TextDelta("Hi".into()));
    match &events[2] {
        StreamEvent::Error(e) => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert_eq!(e.message, "Rate limit reached");
            assert_eq!(e.provider_code.as_deref(), Some("rate_limit_exceeded"));
        }
        other => panic!("{other:?}"),
    }
    assert_chunking_invariant(StreamDecoder::new, stream.as_bytes());
}

#[test]
fn documented_error_body_decodes_to_context_length() {
    let e = decode_error(400, &oa("error_context_length.json"), None);
    assert_eq!(e.kind, ErrorKind::ContextLength);
    assert!(!e.retryable());
    assert!(e
        .message
        .starts_with("This model's maximum context length is 4097 tokens."));
    assert_eq!(e.provider_code.as_deref(), Some("context_length_exceeded"));
}

#[test]
fn error_kinds_from_codes_and_statuses() {
    let body = |code: &str| {
        format!(r#"{{"error":{{"message":"m","type":"t","param":null,"code":{code}}}}}"#)
    };
    let cases = [
        (429, body("\"insufficient_quota\""), ErrorKind::RateLimited),
        (401, body("\"invalid_api_key\""), ErrorKind::Auth),
        (
            400,
            body("\"content_policy_violation\""),
            ErrorKind::ContentPolicy,
        ),
        (503, body("null"), ErrorKind::Overloaded),
        (500, body("null"), ErrorKind::Server),
        (404, body("null"), ErrorKind::NotFound),
        (
            502,
            "<html>Bad Gateway</html>".to_string(),
            ErrorKind::Server,
        ),
    ];
    for (status, body, kind) in cases {
        let e = decode_error(status, body.as_bytes(), Some(7));
        assert_eq!(e.kind, kind, "{status} {body}");
        assert_eq!(e.retry_after_secs, Some(7));
    }
    let e = decode_error(502, b"<html>Bad Gateway</html>", None);
    assert_eq!(e.message, "<html>Bad Gateway</html>");
}

// ---------------------------------------------------------------------------------------------
// Caller side: request decoding.

#[test]
fn documented_function_request_decodes() {
    let req = decode_request(&oa("request_functions.json")).unwrap();
    assert_eq!(req.model, "gpt-5.4");
    assert_eq!(
        req.messages,
        vec![msg(
            Role::User,
            vec![text("What is the weather like in Boston today?")]
        )]
    );
    assert_eq!(
        req.tools,
        vec![Tool {
            name: "get_current_weather".into(),
            description: Some("Get the current weather in a given location".into()),
            parameters: Some(
                json!({"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
                "unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]})
            ),
        }]
    );
    assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
    assert!(!req.stream);
    assert!(req.extra.is_empty());
}

fn rich_request() -> Value {
    json!({
        "model": "chat-large",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these images, and the weather in Paris and Tokyo?"},
                {"type": "text", "text": ""},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg", "detail": "high"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
            {"role": "user", "content": "Which is warmer?"}
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "stop": "END",
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "temperature": 0.5,
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "parallel_tool_calls": false,
        "user": "user-42",
        "reasoning_effort": "low"
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
        req,
        ChatRequest {
            model: "chat-large".into(),
            messages: vec![
                msg(Role::System, vec![text("You are terse.")]),
                msg(Role::System, vec![text("Answer in English.")]),
                msg(
                    Role::User,
                    vec![
                        text("What is in these images, and the weather in Paris and Tokyo?"),
                        Part::Image(Image::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        }),
                        Part::Image(Image::Url(
                            "https://upload.wikimedia.org/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"
                                .into()
                        )),
                    ]
                ),
                msg(Role::Assistant, vec![call("call_1", "Paris"), call("call_2", "Tokyo")]),
                msg(Role::Tool, vec![result("call_1", "18C")]),
                msg(Role::Tool, vec![result("call_2", "25C")]),
                msg(Role::User, vec![text("Which is warmer?")]),
            ],
            stream: true,
            include_usage: true,
            max_tokens: Some(200),
            temperature: Some(0.5),
            stop: vec!["END".into()],
            tools: vec![
                Tool {
                    name: "get_weather".into(),
                    description: Some("Weather for a city".into()),
                    parameters: Some(
                        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
                    ),
                },
                Tool {
                    name: "get_time".into(),
                    description: None,
                    parameters: None,
                },
            ],
            parallel_tool_calls: Some(false),
            user: Some("user-42".into()),
            extra: vec![("reasoning_effort".into(), json!("low"))],
            ..ChatRequest::default()
        }
    );
}

#[test]
fn max_tokens_alone_and_stop_arrays() {
    let req = decode_request(
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":7,"stop":["a","b"]}"#,
    )
    .unwrap();
    assert_eq!(req.max_tokens, Some(7));
    assert_eq!(req.stop, vec!["a".to_string(), "b".to_string()]);
    assert!(!req.include_usage);
}

#[test]
fn invalid_requests_name_the_param() {
    let cases: [(&str, Option<&str>); 11] = [
        (r#"{"messages":[]}"#, Some("model")),
        (r#"{"model":"m"}"#, Some("messages")),
        (
            r#"{"model":"m","messages":[{"content":"x"}]}"#,
            Some("messages[0].role"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
            Some("messages[0].role"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
            Some("messages[0].tool_call_id"),
        ),
        (r#"{"model":"m","messages":[],"stop":5}"#, Some("stop")),
        (
            r#"{"model":"m","messages":[],"temperature":"hot"}"#,
            Some("temperature"),
        ),
        (
            r#"{"model":"m","messages":[],"max_completion_tokens":-1}"#,
            Some("max_completion_tokens"),
        ),
        (
            r#"{"model":"m","messages":[],"tool_choice":"sometimes"}"#,
            Some("tool_choice"),
        ),
        (
            r#"{"model":"m","messages":[],"tools":[{"type":"custom"}]}"#,
            Some("tools[0].type"),
        ),
        (r#"[1,2]"#, None),
    ];
    for (body, param) in cases {
        match decode_request(body.as_bytes()) {
            Err(e @ TranslateError::Invalid { .. }) => assert_eq!(e.param(), param, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
    assert!(matches!(
        decode_request(b"{not json"),
        Err(TranslateError::Invalid { param: None, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Cross translation: OpenAI caller → Anthropic provider.

fn to_anthropic(req: &Value) -> Value {
    let mut canonical = decode_request(req.to_string().as_bytes()).unwrap();
    // Fields without a canonical slot are the capability table's business, not the encoder's.
    canonical.extra.clear();
    let enc = anthropic::encode_request(
        &canonical,
        &EncodeOptions {
            model: "claude-sonnet-4-5",
            default_max_tokens: 8192,
        },
    )
    .unwrap();
    assert_eq!(enc.path, "/v1/messages");
    body_json(&enc.body)
}

#[test]
fn rich_request_translates_to_anthropic() {
    let body = to_anthropic(&rich_request());
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 200,
            "system": "You are terse.\n\nAnswer in English.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these images, and the weather in Paris and Tokyo?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Tokyo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "25C"},
                    {"type": "text", "text": "Which is warmer?"}
                ]}
            ],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "stream": true,
            "tools": [
                {"name": "get_weather", "description": "Weather for a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "user-42"}
        })
    );
}

#[test]
fn no_empty_text_blocks_reach_anthropic() {
    let body = to_anthropic(&json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "Call it."},
            {"role": "assistant", "content": [{"type": "text", "text": ""}], "tool_calls": [
                {"id": "call.1", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call.1", "content": "done"},
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "ok?"}]}
        ]
    }));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Call it."}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "done"},
                {"type": "text", "text": "ok?"}
            ]}
        ])
    );
    // No max_tokens from the caller: the deployment default, never omitted.
    assert_eq!(body["max_tokens"], json!(8192));
    assert!(body.get("system").is_none());
}

#[test]
fn tool_choice_mapping_to_anthropic() {
    let with = |extra: Value| {
        let mut req = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]
        });
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        to_anthropic(&req).get("tool_choice").cloned()
    };
    assert_eq!(
        with(json!({"tool_choice": "none", "parallel_tool_calls": false})),
        Some(json!({"type": "none"}))
    );
    assert_eq!(
        with(json!({"parallel_tool_calls": false})),
        Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        with(json!({"tool_choice": "required", "parallel_tool_calls": false})),
        Some(json!({"type": "any", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        with(json!({"tool_choice": {"type": "function", "function": {"name": "f"}}})),
        Some(json!({"type": "tool", "name": "f"}))
    );
    assert_eq!(with(json!({"parallel_tool_calls": true})), None);
    assert_eq!(with(json!({})), None);
}

#[test]
fn invalid_tool_arguments_are_the_callers_error() {
    // Refused while the caller's request is read, naming the field's place.
    let err = decode_request(
        json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(
        err.param(),
        Some("messages[1].tool_calls[0].function.arguments")
    );
    // A canonical request built elsewhere with such arguments is still refused by the encoder.
    let mut canonical = decode_request(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    canonical.messages.push(Message {
        role: Role::Assistant,
        content: vec![Part::ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "[1]".into(),
        }],
    });
    let opts = EncodeOptions {
        model: "claude",
        default_max_tokens: 1024,
    };
    let err = anthropic::encode_request(&canonical, &opts).unwrap_err();
    assert_eq!(err.param(), Some("messages"));
}

// ---------------------------------------------------------------------------------------------
// Provider-side request encoding (another caller's canonical request → OpenAI).

#[test]
fn canonical_request_encodes_for_openai() {
    let req = ChatRequest {
        model: "public".into(),
        messages: vec![
            msg(Role::System, vec![text("Be brief.")]),
            msg(Role::User, vec![text("Weather in Paris?")]),
            msg(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }],
            ),
            msg(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "toolu_1".into(),
                    name: Some("get_weather".into()),
                    content: "18C".into(),
                    is_error: false,
                }],
            ),
        ],
        stream: true,
        max_tokens: Some(64),
        ..ChatRequest::default()
    };
    let enc = encode_request(
        &req,
        &EncodeOptions {
            model: "gpt-4o",
            default_max_tokens: 4096,
        },
    )
    .unwrap();
    assert_eq!(enc.path, "/chat/completions");
    assert_eq!(
        body_json(&enc.body),
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 64
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Caller side: response, stream and error encoding.

#[test]
fn anthropic_response_encodes_as_chat_completion() {
    let resp = anthropic::decode_response(&fixture("anthropic", "response_tool_use.json")).unwrap();
    let body = body_json(&switchyard_adapters::openai::codec::encode_response(
        &resp,
        "chatcmpl-msg_01RMQBcKf2dxTq6qfi31BBTz",
        "public-model",
        1700000000,
    ));
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-msg_01RMQBcKf2dxTq6qfi31BBTz",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "public-model",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": "toolu_01A9HHF5Ezy3oBrKmSgfASm9", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"units\":\"f\"}"}}
                ]},
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 656, "completion_tokens": 74, "total_tokens": 730,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
        })
    );
}

fn encode_events(events: &[StreamEvent], include_usage: bool) -> (Vec<u8>, StreamEncoder) {
    let mut enc = StreamEncoder::new("chatcmpl-gw1", "public-model", 1700000000, include_usage);
    let mut out = BytesMut::new();
    for e in events {
        enc.push(e, &mut out);
    }
    (out.to_vec(), enc)
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({
        "id": "chatcmpl-gw1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "public-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    })
}

#[test]
fn anthropic_stream_translates_to_openai_chunks() {
    let events = decode_chunks(
        anthropic::StreamDecoder::new(),
        &[&fixture("anthropic", "tool_use_response.txt")],
    );
    let (out, enc) = encode_events(&events, true);
    assert!(enc.completed());
    let data = sse_data(&out);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| parse(d)).collect();
    let args = |a: &str| {
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
            Value::Null,
        )
    };
    let mut expected = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "I"}), Value::Null),
        chunk(
            json!({"content": "'ll check the current weather in Paris for you."}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        args("{\"locati"),
        args("on\": \"P"),
        args("ar"),
        args("is\"}"),
        chunk(json!({}), json!("tool_calls")),
        json!({
            "id": "chatcmpl-gw1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "public-model",
            "choices": [],
            "usage": {"prompt_tokens": 377, "completion_tokens": 65, "total_tokens": 442,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
        }),
    ];
    // OpenAI's documented `include_usage` behaviour: every chunk before the last carries
    // `usage: null`.
    let last = expected.len() - 1;
    for c in &mut expected[..last] {
        c["usage"] = Value::Null;
    }
    assert_eq!(chunks, expected);
    assert_eq!(enc.usage(), Some(usage(377, 65)));
}

#[test]
fn no_usage_chunk_unless_asked() {
    let events = decode_chunks(
        anthropic::StreamDecoder::new(),
        &[&fixture("anthropic", "tool_use_response.txt")],
    );
    let (out, _) = encode_events(&events, false);
    let data = sse_data(&out);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let finish = parse(&data[data.len() - 2]);
    assert_eq!(finish["choices"][0]["finish_reason"], json!("tool_calls"));
    assert!(data.iter().all(|d| !d.contains("\"usage\"")));
}

#[test]
fn anthropic_mid_stream_error_becomes_an_openai_error_event() {
    for name in [
        "stream_error_overloaded.sse",
        "stream_error_with_details.sse",
    ] {
        let events = decode_chunks(
            anthropic::StreamDecoder::new(),
            &[&fixture("anthropic", name)],
        );
        let (out, enc) = encode_events(&events, true);
        assert!(!enc.completed());
        let data = sse_data(&out);
        assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
        assert_eq!(
            parse(data.last().unwrap()),
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": "overloaded"}})
        );
    }
}

#[test]
fn cut_anthropic_stream_becomes_an_openai_error_event() {
    let bytes = fixture("anthropic", "tool_use_response.txt");
    let text = std::str::from_utf8(&bytes).unwrap();
    let cut = text.find("event: message_stop").unwrap();
    let events = decode_chunks(anthropic::StreamDecoder::new(), &[&bytes[..cut]]);
    let (out, enc) = encode_events(&events, true);
    assert!(!enc.completed());
    let data = sse_data(&out);
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let last = parse(data.last().unwrap());
    assert_eq!(last["error"]["type"], json!("upstream_error"));
    // The finish chunk that did arrive was relayed before the error.
    assert_eq!(
        parse(&data[data.len() - 2])["choices"][0]["finish_reason"],
        json!("tool_calls")
    );
}

#[test]
fn encode_error_statuses_and_types() {
    let cases = [
        (ErrorKind::Overloaded, 503, "overloaded_error", "overloaded"),
        (
            ErrorKind::RateLimited,
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        (
            ErrorKind::ContextLength,
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        (
            ErrorKind::InvalidRequest,
            400,
            "invalid_request_error",
            "invalid_request",
        ),
        (ErrorKind::Timeout, 504, "timeout_error", "upstream_timeout"),
        (ErrorKind::Server, 502, "upstream_error", "upstream_error"),
        (
            ErrorKind::Auth,
            502,
            "upstream_error",
            "upstream_auth_failed",
        ),
        (
            ErrorKind::NotFound,
            404,
            "invalid_request_error",
            "model_not_found",
        ),
    ];
    for (kind, status, etype, code) in cases {
        let (s, body) = encode_error(&ProviderError::new(kind, "boom"));
        assert_eq!(s, status, "{kind:?}");
        assert_eq!(
            body_json(&body),
            json!({"error": {"message": "boom", "type": etype, "param": null, "code": code}})
        );
    }
    // Anthropic's documented 529 reaches an OpenAI caller as a retryable 503.
    let e = anthropic::decode_error(
        529,
        &fixture("anthropic", "error_overloaded_529.json"),
        None,
    );
    assert!(e.retryable());
    let (status, body) = encode_error(&e);
    assert_eq!(status, 503);
    assert_eq!(body_json(&body)["error"]["message"], json!("Overloaded"));
}
