//! Golden tests for the Ollama native `/api/chat` provider format: documented examples from
//! `wire-formats.md` §5 (fixtures copied verbatim) plus fixtures of our own (non-stream answers,
//! thinking, CRLF streams) in the documented shapes.

use serde_json::{json, Value};
use switchyard_adapters::canonical::*;
use switchyard_adapters::ollama::{decode_error, decode_response, encode_request, StreamDecoder};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/ollama/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(t: &str) -> Part {
    Part::Text(t.into())
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message { role, content }
}

/// A request using every field the capability table lets through to Ollama.
fn full_request() -> ChatRequest {
    let schema = json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]});
    ChatRequest {
        model: "public-name".into(),
        messages: vec![
            msg(Role::System, vec![text("You are terse.")]),
            msg(
                Role::User,
                vec![
                    text("What is the weather "),
                    Part::Image(Image::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    }),
                    text("in Tokyo and Paris?"),
                ],
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
        stream: false,
        max_tokens: Some(300),
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["\n\n".into()],
        seed: Some(7),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.2),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "weather".into(),
            schema,
            strict: None,
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
    model: "llama3.2",
    default_max_tokens: 1024,
};

#[test]
fn encodes_full_request() {
    let enc = encode_request(&full_request(), &OPTS).unwrap();
    assert_eq!(enc.path, "/api/chat");
    let body: Value = serde_json::from_slice(&enc.body).unwrap();
    let want: Value = serde_json::from_slice(&fixture("request_expected.json")).unwrap();
    assert_eq!(body, want);
}

#[test]
fn the_full_request_survives_pruning_unchanged() {
    let mut req = full_request();
    let dropped =
        switchyard_adapters::capabilities::prune(&mut req, Dialect::Ollama, true).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(req, full_request());
}

#[test]
fn encodes_minimal_request_with_explicit_stream_and_json_mode() {
    let req = ChatRequest {
        messages: vec![msg(Role::User, vec![text("hi")])],
        stream: true,
        response_format: Some(ResponseFormat::JsonObject),
        ..Default::default()
    };
    let body: Value = serde_json::from_slice(&encode_request(&req, &OPTS).unwrap().body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "format": "json",
        })
    );
    let req = ChatRequest {
        messages: vec![msg(Role::User, vec![text("hi")])],
        ..Default::default()
    };
    let body: Value = serde_json::from_slice(&encode_request(&req, &OPTS).unwrap().body).unwrap();
    assert_eq!(body["stream"], json!(false), "Ollama defaults to streaming");
}

#[test]
fn data_url_images_are_raw_base64_and_remote_urls_are_refused() {
    let req = ChatRequest {
        messages: vec![msg(
            Role::User,
            vec![Part::Image(Image::Url("data:image/png;base64,AAAA".into()))],
        )],
        ..Default::default()
    };
    let body: Value = serde_json::from_slice(&encode_request(&req, &OPTS).unwrap().body).unwrap();
    assert_eq!(body["messages"][0]["images"], json!(["AAAA"]));
    let req = ChatRequest {
        messages: vec![msg(
            Role::User,
            vec![Part::Image(Image::Url("https://x/y.png".into()))],
        )],
        ..Default::default()
    };
    assert!(matches!(
        encode_request(&req, &OPTS),
        Err(TranslateError::Unsupported { .. })
    ));
}

#[test]
fn invalid_tool_call_arguments_are_the_callers_error() {
    let req = ChatRequest {
        messages: vec![msg(
            Role::Assistant,
            vec![Part::ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: "{not json".into(),
            }],
        )],
        ..Default::default()
    };
    assert!(matches!(
        encode_request(&req, &OPTS),
        Err(TranslateError::Invalid { .. })
    ));
}

#[test]
fn decodes_response() {
    let r = decode_response(&fixture("response.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: String::new(),
            model: "llama3.2".into(),
            content: vec![OutputPart::Text("Hello! How are you today?".into())],
            finish: FinishReason::Stop,
            usage: Some(Usage {
                input_tokens: 26,
                output_tokens: 298,
                ..Default::default()
            }),
        }
    );
}

#[test]
fn decodes_thinking_and_tool_calls() {
    let r = decode_response(&fixture("response_tool_calls.json")).unwrap();
    assert_eq!(
        r,
        ChatResponse {
            id: String::new(),
            model: "qwen3".into(),
            content: vec![
                OutputPart::Reasoning("I should look up the weather.".into()),
                OutputPart::ToolCall {
                    id: "call_0".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Tokyo"}"#.into(),
                },
                OutputPart::ToolCall {
                    id: "call_abc".into(),
                    name: "get_time".into(),
                    arguments: r#"{"tz":"Asia/Tokyo"}"#.into(),
                },
            ],
            finish: FinishReason::ToolCalls,
            usage: Some(Usage {
                input_tokens: 169,
                output_tokens: 15,
                ..Default::default()
            }),
        }
    );
}

#[test]
fn decodes_length_finish() {
    let r = decode_response(&fixture("response_length.json")).unwrap();
    assert_eq!(r.finish, FinishReason::Length);
    assert_eq!(r.content, vec![OutputPart::Text("Once upon a".into())]);
    let r = decode_response(br#"{"model":"m","message":{"role":"assistant","content":"x"},"done":true,"done_reason":"unload"}"#).unwrap();
    assert_eq!(r.finish, FinishReason::Other("unload".into()));
    assert_eq!(r.usage, None);
}

#[test]
fn decodes_documented_error() {
    let body = fixture("error.json");
    assert_eq!(
        decode_error(500, &body, None),
        ProviderError {
            kind: ErrorKind::Server,
            message: "the model failed to generate a response".into(),
            provider_code: None,
            retry_after_secs: None,
        }
    );
    assert_eq!(
        decode_error(429, &body, Some(3)).kind,
        ErrorKind::RateLimited
    );
    assert_eq!(decode_error(429, &body, Some(3)).retry_after_secs, Some(3));
    assert_eq!(
        decode_error(400, &body, None).kind,
        ErrorKind::InvalidRequest
    );
    assert_eq!(decode_error(502, &body, None).kind, ErrorKind::Server);
    assert!(decode_response(&body).is_err());
}

#[test]
fn error_message_heuristics() {
    let e = decode_error(
        404,
        br#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
        None,
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(
        e.message,
        "model \"llama9\" not found, try pulling it first"
    );
    let e = decode_error(
        400,
        br#"{"error":"input exceeds the context length of the model"}"#,
        None,
    );
    assert_eq!(e.kind, ErrorKind::ContextLength);
    let e = decode_error(
        500,
        br#"{"error":{"message":"prompt too long for context","type":"api_error"}}"#,
        None,
    );
    assert_eq!(e.kind, ErrorKind::ContextLength);
    let e = decode_error(502, b"Bad Gateway", None);
    assert_eq!(e.kind, ErrorKind::Server);
    assert_eq!(e.message, "Bad Gateway");
    let e = decode_error(500, "x".repeat(1000).as_bytes(), None);
    assert_eq!(e.message.len(), 500);
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

fn start(model: &str) -> StreamEvent {
    StreamEvent::Start {
        id: None,
        model: Some(model.into()),
    }
}

#[test]
fn documented_stream_with_tools() {
    let events = decode_every_way(&fixture("stream_tools.ndjson"));
    assert_eq!(
        events,
        vec![
            start("llama3.2"),
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
                input_tokens: 169,
                output_tokens: 15,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::End,
        ]
    );
}

#[test]
fn documented_mid_stream_error() {
    let events = decode_every_way(&fixture("stream_error.ndjson"));
    assert_eq!(
        events,
        vec![
            start("llama3.2"),
            StreamEvent::TextDelta("The".into()),
            StreamEvent::Error(ProviderError::new(
                ErrorKind::Server,
                "an error was encountered while running the model"
            )),
        ]
    );
}

#[test]
fn crlf_stream_with_thinking_and_blank_lines() {
    let events = decode_every_way(&fixture("stream_text_crlf.ndjson"));
    assert_eq!(
        events,
        vec![
            start("qwen3"),
            StreamEvent::ReasoningDelta("Hmm".into()),
            StreamEvent::TextDelta("Hé".into()),
            StreamEvent::TextDelta(" là".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 7,
                output_tokens: 3,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::End,
        ]
    );
}

#[test]
fn final_line_without_newline_still_completes() {
    let events = decode_every_way(
        br#"{"model":"m","message":{"role":"assistant","content":"ok"},"done":true,"done_reason":"stop"}"#,
    );
    assert_eq!(
        events,
        vec![
            start("m"),
            StreamEvent::TextDelta("ok".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::End,
        ]
    );
}

#[test]
fn stream_without_done_is_an_error() {
    let events = run(&[b"{\"model\":\"m\",\"message\":{\"content\":\"a\"},\"done\":false}\n"]);
    assert_eq!(
        events,
        vec![
            start("m"),
            StreamEvent::TextDelta("a".into()),
            StreamEvent::Error(ProviderError::new(
                ErrorKind::Server,
                "stream ended before completion"
            )),
        ]
    );
}

#[test]
fn nothing_after_a_terminal_event() {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.push(
        b"{\"done\":true}\n{\"message\":{\"content\":\"late\"}}\n",
        &mut out,
    );
    d.finish(&mut out);
    assert_eq!(
        out,
        vec![
            StreamEvent::Start {
                id: None,
                model: None
            },
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::End,
        ]
    );
}

#[test]
fn overlong_line_is_an_error() {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    let piece = vec![b'a'; 1024 * 1024];
    for _ in 0..17 {
        d.push(&piece, &mut out);
    }
    d.finish(&mut out);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], StreamEvent::Error(e) if e.message.contains("16 MiB")));
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
    let cases: Vec<&[u8]> = vec![
        b"{\"model\":\n",
        b"[1,2]\n",
        b"\"text\"\n",
        b"{\"model\":5,\"message\":\"x\",\"done\":\"yes\"}\n",
        b"{\"message\":{\"content\":5,\"thinking\":[],\"tool_calls\":{}}}\n",
        b"{\"message\":{\"tool_calls\":[1,{\"function\":3}]}}\n",
        b"{\"error\":{\"code\":1}}\n",
        b"\xff\xfe\n",
        b"{\"done\":false}",
        b"\n\r\n  \n",
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
        let bytes = rng.bytes(n * 3);
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
        b"{\"model\":1}",
        b"{\"message\":5}",
        b"{\"message\":{\"content\":1,\"tool_calls\":[1,{\"function\":{\"name\":2}}]},\"done_reason\":3,\"eval_count\":\"x\"}",
        b"{\"error\":[1]}",
        b"\xff\xfe\xfd",
    ];
    for b in &bodies {
        let _ = decode_response(b);
        let _ = decode_error(500, b, None);
    }
    assert!(decode_response(b"{").is_err());
    assert!(decode_response(b"{\"message\":5}").is_err());
    let mut rng = Rng(42);
    for n in 0..200 {
        let b = rng.bytes(n);
        let _ = decode_response(&b);
        let _ = decode_error(400, &b, None);
    }
}
