//! Goldens from AWS's documented Converse examples.

use super::eventstream::encode_event;
use super::*;

fn request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "chat".into(),
        stream,
        max_tokens: Some(512),
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        messages: vec![
            Message {
                role: Role::System,
                content: vec![Part::Text(
                    "You are an app that creates playlists for a radio station.".into(),
                )],
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::Text("What is the most popular song on WZPZ?".into()),
                    Part::Image(Image::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    }),
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![Part::ToolCall {
                    id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
                    name: "top_song".into(),
                    arguments: r#"{"sign":"WZPZ"}"#.into(),
                }],
            },
            Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
                    name: Some("top_song".into()),
                    content: r#"{"song":"Elemental Hotel","artist":"8 Storey Hike"}"#.into(),
                    is_error: false,
                }],
            },
        ],
        tools: vec![Tool {
            name: "top_song".into(),
            description: Some("Get the most popular song played on a radio station.".into()),
            parameters: Some(
                json!({"type": "object", "properties": {"sign": {"type": "string"}},
                                    "required": ["sign"]}),
            ),
        }],
        tool_choice: Some(ToolChoice::Auto),
        ..Default::default()
    }
}

#[test]
fn encodes_the_documented_tool_use_conversation() {
    let opts = EncodeOptions {
        model: "anthropic.claude-3-haiku-20240307-v1:0",
        default_max_tokens: 4096,
    };
    let e = encode_request(&request(false), &opts).unwrap();
    assert_eq!(
        e.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    let v: Value = serde_json::from_slice(&e.body).unwrap();
    assert_eq!(
        v,
        json!({
            "system": [{"text": "You are an app that creates playlists for a radio station."}],
            "messages": [
                {"role": "user", "content": [
                    {"text": "What is the most popular song on WZPZ?"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
                                 "input": {"sign": "WZPZ"}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                    "content": [{"text": "{\"song\":\"Elemental Hotel\",\"artist\":\"8 Storey Hike\"}"}]}}]}
            ],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9,
                                "stopSequences": ["END"]},
            "additionalModelRequestFields": {"top_k": 40},
            "toolConfig": {"tools": [{"toolSpec": {
                "name": "top_song",
                "description": "Get the most popular song played on a radio station.",
                "inputSchema": {"json": {"type": "object",
                                         "properties": {"sign": {"type": "string"}},
                                         "required": ["sign"]}}}}],
                "toolChoice": {"auto": {}}}
        })
    );
    let s = encode_request(&request(true), &opts).unwrap();
    assert!(s.path.ends_with("/converse-stream"));
}

#[test]
fn decodes_the_documented_answers() {
    let text = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Here is a playlist."}]}},"stopReason":"end_turn","usage":{"inputTokens":30,"outputTokens":628,"totalTokens":658,"cacheReadInputTokens":100,"cacheWriteInputTokens":20},"metrics":{"latencyMs":1275}}"#;
    let r = decode_response(text).unwrap();
    assert_eq!(
        r.content,
        vec![OutputPart::Text("Here is a playlist.".into())]
    );
    assert_eq!(r.finish, FinishReason::Stop);
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 150,
            output_tokens: 628,
            cache_read_tokens: 100,
            cache_write_tokens: 20,
            reasoning_tokens: 0
        })
    );
    let tool = br#"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","name":"top_song","input":{"sign":"WZPZ"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":375,"outputTokens":56,"totalTokens":431},"metrics":{"latencyMs":1622}}"#;
    let r = decode_response(tool).unwrap();
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(
        r.content,
        vec![OutputPart::ToolCall {
            id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
            name: "top_song".into(),
            arguments: r#"{"sign":"WZPZ"}"#.into()
        }]
    );
}

#[test]
fn errors_map_by_exception() {
    let e = decode_error(
        400,
        br#"{"message":"Malformed input request, please reformat your input and try again."}"#,
        None,
    );
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(e.message.starts_with("Malformed input"));
    assert_eq!(
        decode_error(429, br#"{"message":"Too many requests"}"#, Some(2)).kind,
        ErrorKind::RateLimited
    );
    assert_eq!(
        decode_error(403, br#"{"message":"denied"}"#, None).kind,
        ErrorKind::Permission
    );
    assert_eq!(
        decode_error(
            400,
            br#"{"__type":"com.amazon#ThrottlingException","message":"x"}"#,
            None
        )
        .kind,
        ErrorKind::RateLimited
    );
    assert_eq!(
        kind_of_exception("ServiceUnavailableException", 503),
        ErrorKind::Overloaded
    );
    assert_eq!(
        kind_of_exception("modelNotReadyException", 429),
        ErrorKind::Overloaded
    );
    assert_eq!(
        kind_of_exception(
            "UnrecognizedClientException:http://internal.amazon.com/coral/",
            403
        ),
        ErrorKind::Auth
    );
}

#[test]
fn stream_events_decode_frame_by_frame() {
    let frames = [
        encode_event("messageStart", br#"{"p":"abcd","role":"assistant"}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"ab"}"#),
        encode_event("contentBlockStop", br#"{"contentBlockIndex":0}"#),
        encode_event("contentBlockStart", br#"{"contentBlockIndex":1,"start":{"toolUse":{"name":"top_song","toolUseId":"tooluse_1"}}}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"sign\":"}}}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"WZPZ\"}"}}}"#),
        encode_event("messageStop", br#"{"stopReason":"tool_use"}"#),
        encode_event("metadata", br#"{"metrics":{"latencyMs":700},"usage":{"inputTokens":10,"outputTokens":5,"totalTokens":15,"cacheReadInputTokens":4}}"#),
    ]
    .concat();
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    for b in frames.chunks(7) {
        d.push(b, &mut out);
    }
    d.finish(&mut out);
    assert_eq!(
        out,
        vec![
            StreamEvent::Start {
                id: None,
                model: None
            },
            StreamEvent::TextDelta("Hello".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "tooluse_1".into(),
                name: "top_song".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"sign\":".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"WZPZ\"}".into()
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                input_tokens: 14,
                output_tokens: 5,
                cache_read_tokens: 4,
                ..Default::default()
            }),
            StreamEvent::End,
        ]
    );
}

#[test]
fn stream_exceptions_and_truncation_are_errors() {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.push(
        &encode_event("messageStart", br#"{"role":"assistant"}"#),
        &mut out,
    );
    d.push(
        &eventstream::encode(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        ),
        &mut out,
    );
    d.finish(&mut out);
    match &out[..] {
        [StreamEvent::Start { .. }, StreamEvent::Error(e)] => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert!(e.message.starts_with("Too many tokens"));
        }
        other => panic!("{other:?}"),
    }
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.push(
        &encode_event("messageStart", br#"{"role":"assistant"}"#),
        &mut out,
    );
    d.finish(&mut out);
    assert!(matches!(out.last(), Some(StreamEvent::Error(_))));
}
