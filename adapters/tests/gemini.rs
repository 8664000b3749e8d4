//! Golden and robustness tests of the Gemini provider codec (`switchyard_adapters::gemini`).

use serde_json::{json, Value};
use switchyard_adapters::canonical::*;
use switchyard_adapters::gemini::{self, StreamDecoder};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

const STREAM_FIXTURES: [&str; 5] = [
    "stream_basic.sse",
    "stream_thinking_function_call_last_event.sse",
    "stream_prompt_blocked.sse",
    "stream_function_call_then_stop.sse",
    "stream_error_after_200.sse",
];

fn decode_chunks(chunks: &[&[u8]]) -> Vec<StreamEvent> {
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        dec.push(c, &mut out);
    }
    dec.finish(&mut out);
    check_contract(&out);
    out
}

fn decode_whole(body: &[u8]) -> Vec<StreamEvent> {
    decode_chunks(&[body])
}

/// The ordering contract of `StreamEvent` (canonical.rs).
fn check_contract(events: &[StreamEvent]) {
    let n = events.len();
    assert!(n > 0, "no terminal event");
    assert!(
        matches!(events[n - 1], StreamEvent::End | StreamEvent::Error(_)),
        "last event is not terminal: {events:?}"
    );
    let mut started_calls = std::collections::HashSet::new();
    let mut finishes = 0;
    for (i, ev) in events.iter().enumerate() {
        match ev {
            StreamEvent::Start { .. } => assert_eq!(i, 0, "Start not first: {events:?}"),
            StreamEvent::End | StreamEvent::Error(_) => {
                assert_eq!(i, n - 1, "event after terminal: {events:?}")
            }
            StreamEvent::Finish(_) => finishes += 1,
            StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => assert!(!t.is_empty()),
            StreamEvent::ToolCallStart { index, .. } => {
                assert_eq!(*index as usize, started_calls.len(), "index not dense");
                started_calls.insert(*index);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                assert!(started_calls.contains(index));
                assert!(!arguments.is_empty());
            }
            StreamEvent::Usage(_) => {}
        }
    }
    assert!(finishes <= 1, "more than one Finish: {events:?}");
    if events[n - 1] == StreamEvent::End {
        assert_eq!(finishes, 1, "End without Finish");
    }
}

fn usage(input: u64, output: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        reasoning_tokens: reasoning,
        ..Usage::default()
    }
}

fn server_error(message: &str) -> StreamEvent {
    StreamEvent::Error(ProviderError::new(ErrorKind::Server, message))
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

#[test]
fn decodes_documented_text_response() {
    let r = gemini::decode_response(&fixture("response_text.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: String::new(),
            model: "gemini-2.0-flash".into(),
            content: vec![OutputPart::Text(
                "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"
                    .into()
            )],
            finish: FinishReason::Stop,
            usage: Some(usage(7, 22, 0)),
        }
    );
}

#[test]
fn decodes_documented_thinking_function_call() {
    let r = gemini::decode_response(&fixture("response_thinking_function_call.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: "38CHaLjMG6TujrEPtvTiuQk".into(),
            model: "gemini-2.5-pro".into(),
            content: vec![
                OutputPart::Reasoning(
                    "**Thinking Through the New Year's Eve Calculation**\n\n…".into()
                ),
                OutputPart::ToolCall {
                    id: "call_0".into(),
                    name: "now".into(),
                    arguments: "{}".into(),
                },
            ],
            // STOP with a functionCall part.
            finish: FinishReason::ToolCalls,
            // 547 = 38 + 8 + 501: thoughts count as output.
            usage: Some(usage(38, 509, 501)),
        }
    );
}

#[test]
fn response_usage_adds_tool_prompt_and_cache() {
    let body = br#"{"candidates":[{"content":{"parts":[{"text":"hi"},{"text":""},{"functionCall":{"id":"x1","name":"f","args":{"b":1,"a":2}}},{"functionCall":{"name":"g"}}]},"finishReason":"MAX_TOKENS"}],
        "usageMetadata":{"promptTokenCount":100,"toolUsePromptTokenCount":5,"cachedContentTokenCount":60,"candidatesTokenCount":10,"totalTokenCount":115},"responseId":"r","modelVersion":"m"}"#;
    let r = gemini::decode_response(body).unwrap();
    assert_eq!(
        r.content,
        vec![
            OutputPart::Text("hi".into()),
            OutputPart::ToolCall {
                id: "x1".into(),
                name: "f".into(),
                arguments: r#"{"b":1,"a":2}"#.into()
            },
            OutputPart::ToolCall {
                id: "call_1".into(),
                name: "g".into(),
                arguments: "{}".into()
            },
        ]
    );
    assert_eq!(r.finish, FinishReason::Length);
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 105,
            output_tokens: 10,
            cache_read_tokens: 60,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        })
    );
}

#[test]
fn blocked_prompt_is_content_filter_with_empty_content() {
    let body = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5},"modelVersion":"gemini-2.0-flash"}"#;
    let r = gemini::decode_response(body).unwrap();
    assert_eq!(r.finish, FinishReason::ContentFilter);
    assert!(r.content.is_empty());
    assert_eq!(r.usage, Some(usage(5, 0, 0)));
    let safety = br#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#;
    let r = gemini::decode_response(safety).unwrap();
    assert_eq!(r.finish, FinishReason::ContentFilter);
    assert!(r.content.is_empty());
    assert_eq!(r.usage, None);
}

#[test]
fn in_body_errors_and_malformed_bodies() {
    let e = gemini::decode_response(&fixture("error_api_key.json")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    let e = gemini::decode_response(&fixture("error_array_wrapped.json")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(e.provider_code.as_deref(), Some("INVALID_ARGUMENT"));
    let e = gemini::decode_response(br#"{"error":{"code":503,"message":"busy"}}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded);

    for bad in [
        &b"{\"candidates\":[{\"content\""[..],
        b"",
        b"null",
        b"[]",
        b"\xff\xfe",
        br#"{"candidates":"x"}"#,
        br#"{"candidates":[{"content":{"parts":[{"text":5}]}}]}"#,
        br#"{"candidates":[],"usageMetadata":{"promptTokenCount":1e999}}"#,
        br#"{"usageMetadata":{"promptTokenCount":99999999999999999999999}}"#,
    ] {
        let e = gemini::decode_response(bad).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::Server,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let e = gemini::decode_response(b"{oops").unwrap_err();
    assert!(
        e.message.starts_with("malformed gemini response"),
        "{}",
        e.message
    );
    let e = gemini::decode_response(br#"{"candidates":[]}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Server);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn documented_error_bodies() {
    let e = gemini::decode_error(400, &fixture("error_api_key.json"), None);
    assert_eq!(
        e,
        ProviderError {
            kind: ErrorKind::Auth,
            message: "API key not valid. Please pass a valid API key.".into(),
            provider_code: Some("INVALID_ARGUMENT".into()),
            retry_after_secs: None,
        }
    );

    let e = gemini::decode_error(429, &fixture("error_rate_limited.json"), None);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.provider_code.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(e.retry_after_secs, Some(59));
    assert!(e.retryable());
    // A Retry-After header wins over the body.
    let e = gemini::decode_error(429, &fixture("error_rate_limited.json"), Some(5));
    assert_eq!(e.retry_after_secs, Some(5));

    let e = gemini::decode_error(400, &fixture("error_array_wrapped.json"), None);
    assert_eq!(
        e,
        ProviderError {
            kind: ErrorKind::InvalidRequest,
            message: "Function call is missing a thought_signature in functionCall parts. …".into(),
            provider_code: Some("INVALID_ARGUMENT".into()),
            retry_after_secs: None,
        }
    );

    let e = gemini::decode_error(400, &fixture("error_context_length.json"), None);
    assert_eq!(e.kind, ErrorKind::ContextLength);
}

#[test]
fn error_statuses_map_to_kinds() {
    let cases = [
        ("PERMISSION_DENIED", 403, ErrorKind::Permission),
        ("UNAUTHENTICATED", 401, ErrorKind::Auth),
        ("NOT_FOUND", 404, ErrorKind::NotFound),
        ("RESOURCE_EXHAUSTED", 429, ErrorKind::RateLimited),
        ("UNAVAILABLE", 503, ErrorKind::Overloaded),
        ("DEADLINE_EXCEEDED", 504, ErrorKind::Timeout),
        ("INTERNAL", 500, ErrorKind::Server),
        ("INVALID_ARGUMENT", 400, ErrorKind::InvalidRequest),
        ("FAILED_PRECONDITION", 400, ErrorKind::InvalidRequest),
        ("SOMETHING_NEW", 503, ErrorKind::Overloaded),
    ];
    for (status, code, kind) in cases {
        let body = json!({"error": {"code": code, "message": "m", "status": status}}).to_string();
        let e = gemini::decode_error(code, body.as_bytes(), None);
        assert_eq!(e.kind, kind, "{status}");
        assert_eq!(e.provider_code.as_deref(), Some(status));
        assert_eq!(e.message, "m");
    }
}

#[test]
fn unparseable_error_bodies() {
    let e = gemini::decode_error(504, b"<html>upstream timed out</html>", Some(3));
    assert_eq!(
        e,
        ProviderError {
            kind: ErrorKind::Timeout,
            message: "<html>upstream timed out</html>".into(),
            provider_code: None,
            retry_after_secs: Some(3),
        }
    );
    let long = "é".repeat(2000);
    let e = gemini::decode_error(502, long.as_bytes(), None);
    assert_eq!(e.kind, ErrorKind::Server);
    assert_eq!(e.message.chars().count(), 500);
    let e = gemini::decode_error(429, b"", None);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(!e.message.is_empty());
    let e = gemini::decode_error(400, b"\xff\x00{", None);
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = gemini::decode_error(500, br#"{"error":"plain string"}"#, None);
    assert_eq!(e.message, "plain string");
    assert_eq!(e.kind, ErrorKind::Server);
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

fn opts() -> EncodeOptions<'static> {
    EncodeOptions {
        model: "gemini-2.5-flash",
        default_max_tokens: 4096,
    }
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message { role, content }
}

fn text(t: &str) -> Part {
    Part::Text(t.into())
}

fn encode_value(req: &ChatRequest) -> (String, Value) {
    let enc = gemini::encode_request(req, &opts()).unwrap();
    (enc.path, serde_json::from_slice(&enc.body).unwrap())
}

#[test]
fn encode_golden_request() {
    let req = ChatRequest {
        model: "public-name".into(),
        stream: true,
        include_usage: true,
        messages: vec![
            msg(Role::System, vec![text("You are terse.")]),
            msg(
                Role::User,
                vec![
                    text("What is in this image, and what time is it in Paris?"),
                    Part::Image(Image::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    }),
                ],
            ),
            msg(Role::System, vec![text("Answer in English.")]),
            msg(
                Role::Assistant,
                vec![
                    text("Let me check."),
                    Part::ToolCall {
                        id: "call_a".into(),
                        name: "now".into(),
                        arguments: "".into(),
                    },
                    Part::ToolCall {
                        id: "call_b".into(),
                        name: "weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                ],
            ),
            msg(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "call_a".into(),
                    name: None,
                    content: "2025-01-01T00:00:00Z".into(),
                    is_error: false,
                }],
            ),
            msg(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "call_b".into(),
                    name: Some("weather".into()),
                    content: r#"{"temp_c":3}"#.into(),
                    is_error: false,
                }],
            ),
        ],
        max_tokens: Some(256),
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        seed: Some(7),
        n: Some(1),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.2),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}),
            strict: Some(true),
        }),
        tools: vec![
            Tool {
                name: "now".into(),
                description: Some("Current UTC time".into()),
                parameters: None,
            },
            Tool {
                name: "weather".into(),
                description: None,
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                ),
            },
        ],
        tool_choice: Some(ToolChoice::Function("weather".into())),
        parallel_tool_calls: Some(true),
        ..ChatRequest::default()
    };
    let (path, body) = encode_value(&req);
    assert_eq!(
        path,
        "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(body, json_fixture("request_golden.json"));
}

#[test]
fn encode_documented_function_round_trip() {
    let result = json!({"name": "find_theaters", "content": {"movie": "Barbie",
        "theaters": [{"name": "AMC Mountain View 16", "address": "2000 W El Camino Real, Mountain View, CA 94040"},
                     {"name": "Regal Edwards 14", "address": "245 Castro St, Mountain View, CA 94040"}]}});
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![
            msg(
                Role::User,
                vec![text("Which theaters in Mountain View show Barbie movie?")],
            ),
            msg(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: "call_0".into(),
                    name: "find_theaters".into(),
                    arguments: r#"{"location":"Mountain View, CA","movie":"Barbie"}"#.into(),
                }],
            ),
            msg(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "call_0".into(),
                    name: None,
                    content: result.to_string(),
                    is_error: false,
                }],
            ),
        ],
        tools: vec![Tool {
            name: "find_theaters".into(),
            description: Some("find theaters based on location and optionally movie title which are is currently playing in theaters".into()),
            parameters: Some(json!({"type": "OBJECT", "properties": {
                "location": {"type": "STRING", "description": "The city and state, e.g. San Francisco, CA or a zip code e.g. 95616"},
                "movie": {"type": "STRING", "description": "Any movie title"}}, "required": ["location"]})),
        }],
        ..ChatRequest::default()
    };
    let (path, body) = encode_value(&req);
    assert_eq!(path, "/models/gemini-2.5-flash:generateContent");
    assert_eq!(body, json_fixture("request_function_round_trip.json"));
}

#[test]
fn encode_minimal_request_omits_empty_fields() {
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![
            msg(Role::User, vec![text("a")]),
            msg(Role::User, vec![text(""), text("b")]),
            msg(Role::Assistant, vec![]),
        ],
        ..ChatRequest::default()
    };
    let enc = gemini::encode_request(
        &req,
        &EncodeOptions {
            model: "models/gemini-2.0-flash",
            default_max_tokens: 1,
        },
    )
    .unwrap();
    assert_eq!(enc.path, "/models/gemini-2.0-flash:generateContent");
    let body: Value = serde_json::from_slice(&enc.body).unwrap();
    assert_eq!(
        body,
        json!({"contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]})
    );
}

#[test]
fn encode_tool_choices_and_json_mode() {
    for (choice, mode) in [
        (ToolChoice::Auto, "AUTO"),
        (ToolChoice::None, "NONE"),
        (ToolChoice::Required, "ANY"),
    ] {
        let req = ChatRequest {
            messages: vec![msg(Role::User, vec![text("x")])],
            tool_choice: Some(choice),
            response_format: Some(ResponseFormat::JsonObject),
            ..ChatRequest::default()
        };
        let (_, body) = encode_value(&req);
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": mode}})
        );
        assert_eq!(
            body["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
    }
}

#[test]
fn encode_error_results_and_bad_histories() {
    let call = Part::ToolCall {
        id: "c1".into(),
        name: "f".into(),
        arguments: "{}".into(),
    };
    let result = |call_id: &str, is_error| Part::ToolResult {
        call_id: call_id.into(),
        name: None,
        content: "it broke".into(),
        is_error,
    };
    let req = ChatRequest {
        messages: vec![
            msg(Role::Assistant, vec![call.clone()]),
            msg(Role::Tool, vec![result("c1", true)]),
            msg(Role::User, vec![text("and now?")]),
        ],
        ..ChatRequest::default()
    };
    let (_, body) = encode_value(&req);
    assert_eq!(
        body["contents"][1],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "f", "response": {"error": "it broke"}}},
            {"text": "and now?"}
        ]})
    );

    let unknown = ChatRequest {
        messages: vec![msg(Role::Tool, vec![result("nope", false)])],
        ..ChatRequest::default()
    };
    assert!(gemini::encode_request(&unknown, &opts()).is_err());

    for args in ["[1]", "{", "\"s\""] {
        let bad = ChatRequest {
            messages: vec![msg(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: "c".into(),
                    name: "f".into(),
                    arguments: args.into(),
                }],
            )],
            ..ChatRequest::default()
        };
        let err = gemini::encode_request(&bad, &opts()).unwrap_err();
        assert_eq!(err.param(), Some("messages"));
    }

    let url = ChatRequest {
        messages: vec![msg(
            Role::User,
            vec![Part::Image(Image::Url("https://x/y.png".into()))],
        )],
        ..ChatRequest::default()
    };
    assert!(gemini::encode_request(&url, &opts()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

#[test]
fn decodes_documented_basic_stream() {
    let prompt_only = usage(7, 0, 0);
    assert_eq!(
        decode_whole(&fixture("stream_basic.sse")),
        vec![
            StreamEvent::Start {
                id: None,
                model: Some("gemini-2.0-flash".into())
            },
            StreamEvent::TextDelta("The".into()),
            StreamEvent::Usage(prompt_only),
            StreamEvent::TextDelta(" capital of Wyoming".into()),
            StreamEvent::Usage(prompt_only),
            StreamEvent::TextDelta(" is **Cheyenne**.\n".into()),
            StreamEvent::Usage(usage(7, 10, 0)),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::End,
        ]
    );
}

#[test]
fn decodes_documented_function_call_event() {
    assert_eq!(
        decode_whole(&fixture("stream_thinking_function_call_last_event.sse")),
        vec![
            StreamEvent::Start {
                id: Some("48SHaPHpHKbG-8YPtZCawAk".into()),
                model: Some("gemini-2.5-flash".into())
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_0".into(),
                name: "now".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into()
            },
            // 212 = 38 + 6 + 168
            StreamEvent::Usage(usage(38, 174, 168)),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::End,
        ]
    );
}

#[test]
fn decodes_documented_blocked_prompt_stream() {
    assert_eq!(
        decode_whole(&fixture("stream_prompt_blocked.sse")),
        vec![
            StreamEvent::Start {
                id: None,
                model: None
            },
            StreamEvent::Finish(FinishReason::ContentFilter),
            StreamEvent::End,
        ]
    );
}

#[test]
fn function_call_then_separate_stop_chunk_is_tool_calls() {
    assert_eq!(
        decode_whole(&fixture("stream_function_call_then_stop.sse")),
        vec![
            StreamEvent::Start {
                id: Some("r-123".into()),
                model: Some("gemini-2.5-flash".into())
            },
            StreamEvent::TextDelta("Checking the time.".into()),
            StreamEvent::Usage(usage(12, 0, 0)),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_0".into(),
                name: "now".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "fc-7".into(),
                name: "weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: r#"{"city":"Paris","units":"c"}"#.into()
            },
            StreamEvent::Usage(usage(12, 20, 0)),
            StreamEvent::Usage(usage(12, 40, 20)),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::End,
        ]
    );
}

#[test]
fn error_event_after_200_is_terminal() {
    assert_eq!(
        decode_whole(&fixture("stream_error_after_200.sse")),
        vec![
            StreamEvent::Start {
                id: None,
                model: Some("gemini-2.0-flash".into())
            },
            StreamEvent::TextDelta("Partial".into()),
            StreamEvent::Error(ProviderError {
                kind: ErrorKind::Overloaded,
                message: "The model is overloaded. Please try again later.".into(),
                provider_code: Some("UNAVAILABLE".into()),
                retry_after_secs: None,
            }),
        ]
    );
}

#[test]
fn array_wrapped_and_raw_errors_in_streams() {
    let arr = fixture("error_array_wrapped.json");
    let mut sse = b"data: ".to_vec();
    sse.extend_from_slice(arr.trim_ascii());
    sse.extend_from_slice(b"\n\n");
    let raw = decode_whole(&arr);
    let framed = decode_whole(&sse);
    assert_eq!(raw, framed);
    assert_eq!(raw.len(), 1);
    match &raw[0] {
        StreamEvent::Error(e) => {
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            assert_eq!(e.provider_code.as_deref(), Some("INVALID_ARGUMENT"));
        }
        other => panic!("{other:?}"),
    }
    let rate = decode_whole(&fixture("error_rate_limited.json"));
    assert!(matches!(&rate[0], StreamEvent::Error(e)
        if e.kind == ErrorKind::RateLimited && e.retry_after_secs == Some(59)));
}

#[test]
fn stream_end_without_finish_is_an_error() {
    let body = fixture("stream_basic.sse");
    // Cut at an event boundary: the stream simply stops after the first event.
    let cut = body.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let mut events = decode_whole(&body[..cut]);
    assert_eq!(
        events.pop(),
        Some(server_error("stream ended before completion"))
    );
    assert_eq!(
        decode_whole(b""),
        vec![server_error("stream ended before completion")]
    );
}

#[test]
fn repeated_finish_is_ignored_and_unterminated_last_event_is_flushed() {
    let body = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}]}\n\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"late\"}]},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":2}}";
    assert_eq!(
        decode_whole(body),
        vec![
            StreamEvent::Start {
                id: None,
                model: None
            },
            StreamEvent::TextDelta("a".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(usage(1, 2, 0)),
            StreamEvent::End,
        ]
    );
}

fn crlf(body: &[u8]) -> Vec<u8> {
    let s = String::from_utf8(body.to_vec()).unwrap();
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn all_stream_bodies() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in STREAM_FIXTURES {
        let body = fixture(name);
        out.push((format!("{name} (crlf)"), crlf(&body)));
        out.push((name.to_string(), body));
    }
    out
}

#[test]
fn every_stream_fixture_is_chunking_independent() {
    for (name, body) in all_stream_bodies() {
        let whole = decode_whole(&body);
        for i in 0..=body.len() {
            assert_eq!(
                decode_chunks(&[&body[..i], &body[i..]]),
                whole,
                "{name} split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes), whole, "{name} one byte at a time");
    }
}

#[test]
fn crlf_streams_decode_like_lf_streams() {
    for name in STREAM_FIXTURES {
        let body = fixture(name);
        let lf = String::from_utf8(body.clone())
            .unwrap()
            .replace("\r\n", "\n");
        assert_eq!(
            decode_whole(&crlf(&body)),
            decode_whole(lf.as_bytes()),
            "{name}"
        );
    }
}

#[test]
fn truncated_streams_end_in_error() {
    for (name, body) in all_stream_bodies() {
        let last_brace = body.iter().rposition(|b| *b == b'}').unwrap();
        for i in 0..=last_brace {
            let events = decode_whole(&body[..i]);
            assert!(
                matches!(events.last(), Some(StreamEvent::Error(_))),
                "{name} cut at {i}: {events:?}"
            );
        }
    }
}

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_bytes_never_panic_and_end_in_error() {
    for seed in 0..200u64 {
        let len = (seed as usize * 37) % 3000;
        let mut body = random_bytes(seed, len);
        if seed % 2 == 0 {
            // Make some of them look like SSE so the JSON path is exercised too.
            let mut framed = b"data: {\"candidates\":[".to_vec();
            framed.append(&mut body);
            framed.extend_from_slice(b"\n\n");
            body = framed;
        }
        let events = decode_whole(&body);
        assert!(
            matches!(events.last(), Some(StreamEvent::Error(_))),
            "seed {seed}: {events:?}"
        );
        let pieces: Vec<&[u8]> = body.chunks(1 + seed as usize % 13).collect();
        assert_eq!(decode_chunks(&pieces), events, "seed {seed}");
        let _ = gemini::decode_response(&body);
        let _ = gemini::decode_error(500, &body, None);
    }
}

#[test]
fn malformed_events_end_in_error() {
    let cases: [&[u8]; 10] = [
        b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"tr",
        b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"truncated\n\n",
        b"data: {\"usageMetadata\":{\"promptTokenCount\":1e999}}\n\n",
        b"data: {\"usageMetadata\":{\"promptTokenCount\":99999999999999999999999}}\n\n",
        b"data: {\"usageMetadata\":{\"promptTokenCount\":-3}}\n\n",
        b"data: {\"candidates\":\"nope\"}\n\n",
        b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":5}]}}]}\n\n",
        b"data: {\"candidates\":[{\"finishReason\":7}]}\n\n",
        b"data: 42\n\n",
        b"data: \xff\xfe\xfd\n\n",
    ];
    for body in cases {
        let events = decode_whole(body);
        assert!(
            matches!(events.last(), Some(StreamEvent::Error(e)) if e.kind == ErrorKind::Server),
            "{}: {events:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn utf8_split_inside_characters() {
    let body = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"héllo 🌍 wörld\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n";
    let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
    let events = decode_chunks(&bytes);
    assert_eq!(events[1], StreamEvent::TextDelta("héllo 🌍 wörld".into()));
    assert_eq!(events.last(), Some(&StreamEvent::End));
}

#[test]
fn oversized_event_stops_with_an_error() {
    let mut body = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"".to_vec();
    body.resize(body.len() + gemini::MAX_EVENT_BYTES + 1, b'x');
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for piece in body.chunks(1 << 20) {
        dec.push(piece, &mut out);
    }
    dec.push(b"\"}]}}]}\n\n", &mut out);
    dec.finish(&mut out);
    check_contract(&out);
    assert_eq!(out.len(), 1, "{:?}", out.first());
    assert!(matches!(&out[0], StreamEvent::Error(e) if e.kind == ErrorKind::Server));
}
