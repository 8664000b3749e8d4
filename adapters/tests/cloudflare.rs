//! Golden tests for the Cloudflare Workers AI provider format: documented examples from
//! `wire-formats.md` §4 (fixtures copied verbatim) plus fixtures of our own for the shapes the
//! docs mention without an example (tool calls, OpenAI-shaped results, stream errors).

use serde_json::{json, Value};
use switchyard_adapters::canonical::*;
use switchyard_adapters::cloudflare::{
    decode_error, decode_response, encode_request, StreamDecoder,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/cloudflare/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn text(t: &str) -> Part {
    Part::Text(t.into())
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message { role, content }
}

/// A request using every field the capability table lets through to Workers AI.
fn full_request() -> ChatRequest {
    let schema = json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]});
    ChatRequest {
        model: "public-name".into(),
        messages: vec![
            msg(Role::System, vec![text("You are terse.")]),
            msg(
                Role::User,
                vec![text("What is the weather "), text("in Tokyo and Paris?")],
            ),
            msg(
                Role::Assistant,
                vec![
                    text("Checking."),
                    Part::ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Tokyo"}"#.into(),
                    },
                    Part::ToolCall {
                        id: "call_2".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    Part::ToolResult {
                        call_id: "call_1".into(),
                        name: Some("get_weather".into()),
                        content: "11 degrees celsius".into(),
                        is_error: false,
                    },
                    Part::ToolResult {
                        call_id: "call_2".into(),
                        name: None,
                        content: "14 degrees celsius".into(),
                        is_error: false,
                    },
                ],
            ),
            msg(Role::System, vec![text("Answer in one line.")]),
        ],
        stream: true,
        include_usage: true,
        max_tokens: None,
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        seed: Some(7),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.2),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "weather".into(),
            schema,
            strict: Some(true),
        }),
        tools: vec![
            Tool {
                name: "get_weather".into(),
                description: Some("Current weather for a city".into()),
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                ),
            },
            Tool {
                name: "now".into(),
                description: None,
                parameters: None,
            },
        ],
        tool_choice: Some(ToolChoice::Auto),
        ..Default::default()
    }
}

const OPTS: EncodeOptions<'static> = EncodeOptions {
    model: "@cf/meta/llama-3.1-8b-instruct",
    default_max_tokens: 1024,
};

#[test]
fn encodes_full_request() {
    let enc = encode_request(&full_request(), &OPTS).unwrap();
    assert_eq!(enc.path, "/run/@cf/meta/llama-3.1-8b-instruct");
    let body: Value = serde_json::from_slice(&enc.body).unwrap();
    assert_eq!(body, json_fixture("request_expected.json"));
}

#[test]
fn the_full_request_survives_pruning_unchanged() {
    let mut req = full_request();
    let dropped =
        switchyard_adapters::capabilities::prune(&mut req, Dialect::Cloudflare, true).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(req, full_request());
}

#[test]
fn encodes_minimal_request_and_explicit_max_tokens() {
    let req = ChatRequest {
        messages: vec![msg(Role::User, vec![text("hi")])],
        max_tokens: Some(50),
        response_format: Some(ResponseFormat::JsonObject),
        ..Default::default()
    };
    let enc = encode_request(&req, &OPTS).unwrap();
    let body: Value = serde_json::from_slice(&enc.body).unwrap();
    assert_eq!(
        body,
        json!({
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 50,
            "response_format": {"type": "json_object"},
        })
    );
}

#[test]
fn decodes_documented_response() {
    let r = decode_response(&fixture("response_rest_api.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: String::new(),
            model: String::new(),
            content: vec![OutputPart::Text(
                "Hello, World first appeared in 1974 at Bell Labs when Brian Kernighan included it in the C programming language example. …".into()
            )],
            finish: FinishReason::Stop,
            usage: None,
        }
    );
}

#[test]
fn decodes_documented_response_with_usage() {
    let r = decode_response(&fixture("response_with_usage.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: String::new(),
            model: String::new(),
            content: vec![OutputPart::Text(
                "Generated text response from the model".into()
            )],
            finish: FinishReason::Stop,
            usage: Some(Usage {
                input_tokens: 86,
                output_tokens: 171,
                ..Default::default()
            }),
        }
    );
}

#[test]
fn decodes_native_tool_calls() {
    let r = decode_response(&fixture("response_tool_calls.json")).unwrap();
    assert_eq!(
        r.content,
        vec![
            OutputPart::ToolCall {
                id: "call_0".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Tokyo"}"#.into(),
            },
            OutputPart::ToolCall {
                id: "call_1".into(),
                name: "get_time".into(),
                arguments: r#"{"tz":"Asia/Tokyo"}"#.into(),
            },
        ]
    );
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(r.usage.unwrap().total(), 150);
}

#[test]
fn decodes_openai_shaped_result() {
    let r = decode_response(&fixture("response_openai_shape.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: String::new(),
            model: String::new(),
            content: vec![
                OutputPart::Reasoning("The user asks about weather.".into()),
                OutputPart::Text("It is sunny.".into()),
            ],
            finish: FinishReason::Length,
            usage: Some(Usage {
                input_tokens: 12,
                output_tokens: 7,
                ..Default::default()
            }),
        }
    );
    let r = decode_response(&fixture("response_openai_tool_calls.json")).unwrap();
    assert_eq!(
        r.content,
        vec![OutputPart::ToolCall {
            id: "chatcmpl-tool-abc".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }]
    );
    assert_eq!(r.finish, FinishReason::ToolCalls);
}

#[test]
fn failed_envelope_is_an_error() {
    let e = decode_response(&fixture("error_7003.json")).unwrap_err();
    assert_eq!(e.provider_code.as_deref(), Some("7003"));
    assert!(e.message.starts_with("Could not route to"));
}

#[test]
fn decodes_documented_error() {
    let e = decode_error(400, &fixture("error_7003.json"), None);
    assert_eq!(
        e,
        ProviderError {
            kind: ErrorKind::InvalidRequest,
            message: "Could not route to /client/v4/accounts/…/ai/v1/chat/completions, perhaps your object identifier is invalid?".into(),
            provider_code: Some("7003".into()),
            retry_after_secs: None,
        }
    );
}

#[test]
fn maps_workers_ai_error_codes() {
    let cases = [
        (5007, 400, ErrorKind::NotFound),
        (3042, 404, ErrorKind::NotFound),
        (5004, 400, ErrorKind::InvalidRequest),
        (3003, 400, ErrorKind::InvalidRequest),
        (5018, 403, ErrorKind::Permission),
        (5016, 403, ErrorKind::Permission),
        (3023, 403, ErrorKind::Permission),
        (3041, 403, ErrorKind::Permission),
        (3006, 413, ErrorKind::InvalidRequest),
        (3007, 408, ErrorKind::Timeout),
        (3008, 408, ErrorKind::Timeout),
        (3036, 429, ErrorKind::RateLimited),
        (3040, 429, ErrorKind::Overloaded),
        (10000, 401, ErrorKind::Auth),
        (9999, 502, ErrorKind::Server),
        (9999, 404, ErrorKind::NotFound),
    ];
    for (code, status, kind) in cases {
        let body = json!({"result": null, "success": false, "errors": [{"code": code, "message": "m"}], "messages": []});
        let e = decode_error(status, body.to_string().as_bytes(), Some(30));
        assert_eq!(e.kind, kind, "code {code}");
        assert_eq!(e.provider_code, Some(code.to_string()));
        assert_eq!(e.message, "m");
        assert_eq!(e.retry_after_secs, Some(30));
    }
    let body = br#"{"success":false,"errors":[{"code":10001,"message":"Authentication error"}]}"#;
    assert_eq!(decode_error(400, body, None).kind, ErrorKind::Auth);
}

#[test]
fn unparseable_error_body_keeps_status_kind_and_truncated_text() {
    let e = decode_error(503, b"<html>upstream down</html>", Some(5));
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(e.message, "<html>upstream down</html>");
    assert_eq!(e.provider_code, None);
    assert_eq!(e.retry_after_secs, Some(5));
    let long = "é".repeat(2000);
    let e = decode_error(500, long.as_bytes(), None);
    assert_eq!(e.message.chars().count(), 500);
    assert_eq!(e.kind, ErrorKind::Server);
}

// ---- streams ----

fn run(chunks: &[&[u8]]) -> Vec<StreamEvent> {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, &mut out);
    }
    d.finish(&mut out);
    d.finish(&mut out);
    out
}

/// The order `StreamEvent` documents.
fn assert_well_formed(events: &[StreamEvent]) {
    let last = events.last().expect("no events");
    assert!(
        matches!(last, StreamEvent::End | StreamEvent::Error(_)),
        "{events:?}"
    );
    let terminals = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::End | StreamEvent::Error(_)))
        .count();
    assert_eq!(terminals, 1, "{events:?}");
    let starts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, StreamEvent::Start { .. }))
        .map(|(i, _)| i)
        .collect();
    assert!(starts.is_empty() || starts == [0], "{events:?}");
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Finish(_)))
            .count()
            <= 1
    );
    let mut started = 0u32;
    for e in events {
        match e {
            StreamEvent::ToolCallStart { index, .. } => {
                assert_eq!(*index, started);
                started += 1;
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                assert!(*index < started && !arguments.is_empty())
            }
            StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => assert!(!t.is_empty()),
            _ => {}
        }
    }
}

/// Whole, every two-way split and one-byte chunks all decode to the same events.
fn decode_every_way(bytes: &[u8]) -> Vec<StreamEvent> {
    let whole = run(&[bytes]);
    assert_well_formed(&whole);
    for i in 0..=bytes.len() {
        assert_eq!(run(&[&bytes[..i], &bytes[i..]]), whole, "split at {i}");
    }
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&bytewise), whole, "one-byte chunks");
    whole
}

const START: StreamEvent = StreamEvent::Start {
    id: None,
    model: None,
};

#[test]
fn documented_stream_template() {
    let events = decode_every_way(&fixture("stream_template.sse"));
    assert_eq!(
        events,
        vec![
            START,
            StreamEvent::TextDelta("Hello".into()),
            StreamEvent::TextDelta(" there".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 10,
                output_tokens: 50,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::End,
        ]
    );
}

#[test]
fn documented_stream_docs_example() {
    let events = decode_every_way(&fixture("stream_docs.sse"));
    assert_eq!(
        events,
        vec![
            START,
            StreamEvent::TextDelta("New".into()),
            StreamEvent::TextDelta(" York".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::End,
        ]
    );
}

#[test]
fn stream_with_whole_tool_calls_and_crlf() {
    let events = decode_every_way(&fixture("stream_tool_calls.sse"));
    assert_eq!(
        events,
        vec![
            START,
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_0".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"city":"Tokyo"}"#.into(),
            },
            StreamEvent::Usage(Usage {
                input_tokens: 80,
                output_tokens: 12,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::End,
        ]
    );
}

#[test]
fn openai_shaped_stream() {
    let events = decode_every_way(&fixture("stream_openai_shape.sse"));
    assert_eq!(
        events,
        vec![
            START,
            StreamEvent::ReasoningDelta("Think".into()),
            StreamEvent::TextDelta("Hé".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_x".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"a""#.into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: ":1}".into(),
            },
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 4,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::End,
        ]
    );
}

#[test]
fn error_in_stream_ends_it() {
    let events = decode_every_way(&fixture("stream_error.sse"));
    assert_eq!(
        events,
        vec![
            START,
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::Error(ProviderError {
                kind: ErrorKind::Overloaded,
                message: "Capacity temporarily exceeded, please try again.".into(),
                provider_code: Some("3040".into()),
                retry_after_secs: None,
            }),
        ]
    );
    let events = run(&[b"data: {\"error\":\"boom\"}\n\n"]);
    assert_eq!(
        events,
        vec![StreamEvent::Error(ProviderError::new(
            ErrorKind::Server,
            "boom"
        ))]
    );
}

#[test]
fn stream_without_done_is_an_error() {
    let events = run(&[b"data: {\"response\":\"Hel\"}\n\ndata: {\"response\":\"lo\"}\n\n"]);
    assert_eq!(
        events,
        vec![
            START,
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::Error(ProviderError::new(
                ErrorKind::Server,
                "stream ended before completion"
            )),
        ]
    );
    assert_eq!(
        run(&[]),
        vec![StreamEvent::Error(ProviderError::new(
            ErrorKind::Server,
            "stream ended before completion"
        ))]
    );
}

#[test]
fn nothing_after_a_terminal_event() {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.push(b"data: [DONE]\n\n", &mut out);
    let n = out.len();
    d.push(b"data: {\"response\":\"late\"}\n\n", &mut out);
    d.finish(&mut out);
    assert_eq!(out.len(), n);
    assert_eq!(out.last(), Some(&StreamEvent::End));
}

// ---- malformed input ----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn malformed_streams_end_in_errors() {
    let cases: Vec<Vec<u8>> = vec![
        b"data: {\"response\":\n\n".to_vec(),
        b"data: [1,2]\n\n".to_vec(),
        b"data: \"text\"\n\n".to_vec(),
        b"data: {\"response\":42,\"usage\":\"x\",\"tool_calls\":{}}\n\n".to_vec(),
        b"data: {\"choices\":\"x\"}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":\"a\",\"function\":7}]}}]}\n\n".to_vec(),
        b"data: {\"errors\":[{\"code\":\"x\"}]}\n\n".to_vec(),
        b"data: \xff\xfe\n\n".to_vec(),
        b"event: ping\n\n: comment\n\n".to_vec(),
        b"data: {\"response\":\"ok\"".to_vec(),
    ];
    for case in &cases {
        let events = decode_every_way(case);
        assert!(
            matches!(events.last(), Some(StreamEvent::Error(_))),
            "{:?}: {events:?}",
            String::from_utf8_lossy(case)
        );
    }
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for n in 0..200 {
        let mut bytes = rng.bytes(n * 3);
        if n % 2 == 0 {
            bytes.splice(0..0, b"data: ".iter().copied());
            bytes.extend_from_slice(b"\n\n");
        }
        let events = run(&[&bytes]);
        assert_well_formed(&events);
        assert!(matches!(events.last(), Some(StreamEvent::Error(_))));
        let split = bytes.len() / 2;
        assert_eq!(run(&[&bytes[..split], &bytes[split..]]), events);
    }
}

#[test]
fn malformed_bodies_never_panic() {
    let bodies: Vec<&[u8]> = vec![
        b"",
        b"{",
        b"[]",
        b"null",
        b"{\"result\":\"x\",\"success\":true}",
        b"{\"result\":{\"response\":1,\"tool_calls\":[1,{\"name\":2}]},\"success\":true}",
        b"{\"result\":{\"choices\":[]},\"success\":true}",
        b"{\"result\":{\"choices\":[{\"message\":5}]},\"success\":true}",
        b"{\"success\":false,\"errors\":[7]}",
        b"{\"success\":false}",
        b"\xff\xfe\xfd",
    ];
    for b in &bodies {
        let _ = decode_response(b);
        let e = decode_error(500, b, None);
        assert_eq!(e.kind, ErrorKind::Server);
    }
    assert!(decode_response(b"{").is_err());
    assert!(decode_response(b"{\"success\":false}").is_err());
    assert!(decode_response(b"{\"result\":{\"choices\":[]},\"success\":true}").is_err());
    let mut rng = Rng(42);
    for n in 0..200 {
        let b = rng.bytes(n);
        let _ = decode_response(&b);
        let _ = decode_error(400, &b, None);
    }
}
