//! Criterion benches of cross-format translation: a caller's request to every provider format, a
//! provider's stream to the caller's format event by event, and a provider's whole answer to the
//! caller's format. Inputs are built here in each provider's own wire shape (the shapes of
//! `tests/fixtures/<dialect>/`), and every input is checked to translate cleanly before timing.
//!
//! cargo bench -p switchyard-adapters --bench translate

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use switchyard_adapters::canonical::{Dialect, EncodeOptions, StreamEvent};
use switchyard_adapters::capabilities::prune;
use switchyard_adapters::providers::{
    decode_response, encode_request, stream_decoder, Caller, StreamEncoder,
};

/// Wire events in every bench stream (start, deltas, finish, usage and end markers together).
const STREAM_EVENTS: usize = 200;
/// Size of the chunks a stream is fed in (what one socket read typically returns).
const CHUNK_BYTES: usize = 1024;

const OPTS: EncodeOptions<'static> = EncodeOptions {
    model: "provider-model-2025-01-01",
    default_max_tokens: 4096,
};

const WORDS: [&str; 16] = [
    " The",
    " forecast",
    " for",
    " Boston",
    " shows",
    " light",
    " rain",
    " in",
    " the",
    " morning,",
    " clearing",
    " by",
    " noon",
    " with",
    " highs",
    " near 14°C.\n",
];

fn token(i: usize) -> &'static str {
    WORDS[i % WORDS.len()]
}

fn tools_openai() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location, with an optional unit for the temperatures it reports.",
            "parameters": {"type": "object", "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location"]}}},
        {"type": "function", "function": {
            "name": "search_calendar",
            "description": "Find the user's calendar events between two dates that match a free-text query.",
            "parameters": {"type": "object", "properties": {
                "query": {"type": "string", "description": "Words to match in the event title or notes"},
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50}},
                "required": ["query", "from", "to"]}}}
    ])
}

/// A typical OpenAI chat request: system prompt, six turns (one tool call and its result), two
/// tools, sampling options, streamed with usage. About 2 KB.
fn openai_request() -> Vec<u8> {
    let body = json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are a concise assistant for a busy professional. Answer in plain prose, at most three sentences, and use the tools when the question needs live data. Never invent calendar entries."},
            {"role": "user", "content": "What's the weather like in Boston today? I have to decide whether to cycle to the office."},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_8f3kQ2", "type": "function", "function": {"name": "get_current_weather", "arguments": "{\"location\":\"Boston, MA\",\"unit\":\"celsius\"}"}}]},
            {"role": "tool", "tool_call_id": "call_8f3kQ2", "content": "{\"temperature\":14,\"unit\":\"celsius\",\"conditions\":\"light rain until 11:00, then clearing\",\"wind_kph\":18}"},
            {"role": "assistant", "content": "It's 14°C in Boston with light rain until about 11:00, clearing afterwards, and a moderate 18 km/h wind. If you can leave after eleven, cycling should be pleasant; before that, take a rain jacket."},
            {"role": "user", "content": "Good. Do I have anything in the morning that would stop me leaving late? Check tomorrow as well, and tell me which day is better for cycling in."}
        ],
        "tools": tools_openai(),
        "tool_choice": "auto",
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 512,
        "user": "user-1234",
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    serde_json::to_vec(&body).unwrap()
}

/// The same conversation as an Anthropic Messages request.
fn anthropic_request() -> Vec<u8> {
    let body = json!({
        "model": "chat",
        "max_tokens": 512,
        "system": "You are a concise assistant for a busy professional. Answer in plain prose, at most three sentences, and use the tools when the question needs live data. Never invent calendar entries.",
        "messages": [
            {"role": "user", "content": "What's the weather like in Boston today? I have to decide whether to cycle to the office."},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check the current weather."},
                {"type": "tool_use", "id": "toolu_01A9HHF5Ezy3oBrKmSgfASm9", "name": "get_current_weather", "input": {"location": "Boston, MA", "unit": "celsius"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A9HHF5Ezy3oBrKmSgfASm9", "content": "{\"temperature\":14,\"unit\":\"celsius\",\"conditions\":\"light rain until 11:00, then clearing\",\"wind_kph\":18}"}]},
            {"role": "assistant", "content": "It's 14°C in Boston with light rain until about 11:00, clearing afterwards, and a moderate 18 km/h wind. If you can leave after eleven, cycling should be pleasant; before that, take a rain jacket."},
            {"role": "user", "content": "Good. Do I have anything in the morning that would stop me leaving late? Check tomorrow as well, and tell me which day is better for cycling in."}
        ],
        "tools": [
            {"name": "get_current_weather", "description": "Get the current weather in a given location, with an optional unit for the temperatures it reports.",
             "input_schema": {"type": "object", "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}},
            {"name": "search_calendar", "description": "Find the user's calendar events between two dates that match a free-text query.",
             "input_schema": {"type": "object", "properties": {
                "query": {"type": "string", "description": "Words to match in the event title or notes"},
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50}}, "required": ["query", "from", "to"]}}
        ],
        "tool_choice": {"type": "auto"},
        "temperature": 0.3,
        "metadata": {"user_id": "user-1234"},
        "stream": true
    });
    serde_json::to_vec(&body).unwrap()
}

/// Caller request → canonical → capability pruning → provider body.
fn translate_request(caller: Caller, dialect: Dialect, body: &[u8]) -> usize {
    let mut req = caller.decode_request(body).expect("bench request decodes");
    let dropped = prune(&mut req, dialect, false).expect("non-strict prune");
    let enc = encode_request(dialect, &req, &OPTS).expect("bench request encodes");
    enc.body.len() + dropped.len()
}

fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

fn sse_named(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// A 200-event answer (text deltas between the dialect's own start / finish / usage / end events)
/// in the provider's wire format.
fn stream_wire(dialect: Dialect) -> Vec<u8> {
    let mut s = String::new();
    match dialect {
        Dialect::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                sse(
                    &json!({"id": "chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh", "object": "chat.completion.chunk",
                    "created": 1727346171, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_7568d46099",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                    "usage": null}),
                )
            };
            s += &chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            );
            for i in 0..STREAM_EVENTS - 4 {
                s += &chunk(json!({"content": token(i)}), Value::Null);
            }
            s += &chunk(json!({}), json!("stop"));
            s += &sse(
                &json!({"id": "chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh", "object": "chat.completion.chunk",
                "created": 1727346171, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_7568d46099",
                "choices": [], "usage": {"prompt_tokens": 412, "completion_tokens": 196, "total_tokens": 608,
                "completion_tokens_details": {"reasoning_tokens": 0}}}),
            );
            s += "data: [DONE]\n\n";
        }
        Dialect::Anthropic => {
            s += &sse_named(
                "message_start",
                &json!({"type": "message_start", "message": {
                "id": "msg_01AusY9WEbCaj3N7Tv5J4YjH", "type": "message", "role": "assistant",
                "model": "claude-haiku-4-5-20251001", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 412, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}}),
            );
            s += &sse_named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            );
            s += &sse_named("ping", &json!({"type": "ping"}));
            for i in 0..STREAM_EVENTS - 6 {
                s += &sse_named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": token(i)}}),
                );
            }
            s += &sse_named(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            );
            s += &sse_named(
                "message_delta",
                &json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 194}}),
            );
            s += &sse_named("message_stop", &json!({"type": "message_stop"}));
        }
        Dialect::Gemini => {
            // Every Gemini chunk carries text and the usage so far; the last one the finish reason.
            for i in 0..STREAM_EVENTS {
                let last = i == STREAM_EVENTS - 1;
                let mut cand = json!({"content": {"parts": [{"text": token(i)}], "role": "model"}});
                let mut usage = json!({"promptTokenCount": 412, "totalTokenCount": 412,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 412}]});
                if last {
                    cand["finishReason"] = json!("STOP");
                    usage = json!({"promptTokenCount": 412, "candidatesTokenCount": 200, "totalTokenCount": 612,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 412}],
                        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 200}]});
                }
                s += &sse(
                    &json!({"candidates": [cand], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash"}),
                );
            }
        }
        Dialect::Cloudflare => {
            for i in 0..STREAM_EVENTS - 2 {
                s += &sse(&json!({"response": token(i), "p": "abcdefghijklmnop"}));
            }
            s += &sse(
                &json!({"response": "", "usage": {"prompt_tokens": 412, "completion_tokens": 198, "total_tokens": 610}}),
            );
            s += "data: [DONE]\n\n";
        }
        Dialect::Ollama => {
            for i in 0..STREAM_EVENTS - 1 {
                let line = json!({"model": "llama3.2", "created_at": "2025-07-07T20:22:19.123456Z",
                    "message": {"role": "assistant", "content": token(i)}, "done": false});
                s += &format!("{line}\n");
            }
            let line = json!({"model": "llama3.2", "created_at": "2025-07-07T20:22:21.654321Z",
                "message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": true,
                "total_duration": 5191566416u64, "load_duration": 2154458, "prompt_eval_count": 412,
                "prompt_eval_duration": 383809000, "eval_count": 199, "eval_duration": 4799921000u64});
            s += &format!("{line}\n");
        }
        Dialect::Bedrock => return bedrock_stream_wire(),
    }
    s.into_bytes()
}

/// ConverseStream's binary event-stream frames for the same answer shape.
fn bedrock_stream_wire() -> Vec<u8> {
    use switchyard_adapters::bedrock::eventstream::encode_event;
    let mut out = encode_event("messageStart", br#"{"p":"abcdefgh","role":"assistant"}"#);
    for i in 0..STREAM_EVENTS - 3 {
        let delta =
            json!({"contentBlockIndex": 0, "delta": {"text": token(i)}, "p": "abcdefghijklmnop"});
        out.extend(encode_event(
            "contentBlockDelta",
            delta.to_string().as_bytes(),
        ));
    }
    out.extend(encode_event("messageStop", br#"{"stopReason":"end_turn"}"#));
    out.extend(encode_event(
        "metadata",
        br#"{"usage":{"inputTokens":412,"outputTokens":197,"totalTokens":609},"metrics":{"latencyMs":2100}}"#,
    ));
    out
}

/// Decodes a provider stream fed in `chunks` and re-encodes every event for `caller`, handing the
/// caller's bytes on after each chunk as the relay does. Returns (bytes out, events decoded).
fn relay(dialect: Dialect, caller: Caller, chunks: &[Vec<u8>]) -> (usize, usize) {
    let mut dec = stream_decoder(dialect);
    let mut enc = StreamEncoder::new(
        caller,
        "chatcmpl-bench0123456789",
        "chat",
        1_764_000_000,
        true,
    );
    let mut events: Vec<StreamEvent> = Vec::with_capacity(16);
    let mut out = BytesMut::with_capacity(4096);
    let (mut sent, mut decoded) = (0, 0);
    for chunk in chunks {
        dec.push(chunk, &mut events);
        decoded += events.len();
        for ev in events.drain(..) {
            enc.push(&ev, &mut out);
        }
        sent += black_box(out.split().freeze()).len();
    }
    dec.finish(&mut events);
    decoded += events.len();
    for ev in events.drain(..) {
        enc.push(&ev, &mut out);
    }
    sent += black_box(out.split().freeze()).len();
    (sent, decoded)
}

/// Checks that the bench stream decodes to a clean, complete answer with all its text.
fn check_stream(dialect: Dialect, chunks: &[Vec<u8>]) {
    let mut dec = stream_decoder(dialect);
    let mut events = Vec::new();
    for chunk in chunks {
        dec.push(chunk, &mut events);
    }
    dec.finish(&mut events);
    let text = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
        .count();
    assert!(
        matches!(events.last(), Some(StreamEvent::End)),
        "{dialect:?}: stream does not end cleanly: {:?}",
        events.last()
    );
    assert!(
        text >= STREAM_EVENTS - 6,
        "{dialect:?}: only {text} text deltas"
    );
    assert!(
        events.iter().any(|e| matches!(e, StreamEvent::Usage(_))),
        "{dialect:?}: no usage"
    );
}

const ANSWER: &str = "It's 14°C in Boston with light rain until about 11:00, clearing afterwards, and a moderate 18 km/h wind. Tomorrow morning you have a 09:30 stand-up and a 10:00 design review, so leaving late is not an option; today you are free until 13:00. Today is the better day to cycle in: leave after eleven and the roads should be dry. Tomorrow, take the train or a rain jacket, since showers are forecast from 08:00 until early afternoon.";

/// A typical whole text answer in the provider's wire format.
fn response_wire(dialect: Dialect) -> Vec<u8> {
    let body = match dialect {
        Dialect::OpenAi => {
            json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
            "created": 1741569952, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER, "refusal": null, "annotations": []},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 412, "completion_tokens": 98, "total_tokens": 510,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_7568d46099"})
        }
        Dialect::Anthropic => {
            json!({"model": "claude-haiku-4-5-20251001", "id": "msg_01RMQBcKf2dxTq6qfi31BBTz",
            "type": "message", "role": "assistant", "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 412, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 98, "service_tier": "standard"}})
        }
        Dialect::Gemini => {
            json!({"candidates": [{"content": {"parts": [{"text": ANSWER}], "role": "model"},
                "finishReason": "STOP", "avgLogprobs": -0.048_741_644_079_035}],
            "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 98, "totalTokenCount": 510,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 412}],
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 98}]},
            "modelVersion": "gemini-2.0-flash", "responseId": "mK3zaPu0Gd2Wz7IPqN6B4Ac"})
        }
        Dialect::Cloudflare => json!({"result": {"response": ANSWER, "tool_calls": [],
                "usage": {"prompt_tokens": 412, "completion_tokens": 98, "total_tokens": 510}},
            "success": true, "errors": [], "messages": []}),
        Dialect::Ollama => json!({"model": "llama3.2", "created_at": "2023-12-12T14:13:43.416799Z",
            "message": {"role": "assistant", "content": ANSWER}, "done_reason": "stop", "done": true,
            "total_duration": 5191566416u64, "load_duration": 2154458, "prompt_eval_count": 412,
            "prompt_eval_duration": 383809000, "eval_count": 98, "eval_duration": 4799921000u64}),
        Dialect::Bedrock => {
            json!({"output": {"message": {"role": "assistant", "content": [{"text": ANSWER}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 412, "outputTokens": 98, "totalTokens": 510},
            "metrics": {"latencyMs": 1275}})
        }
    };
    serde_json::to_vec(&body).unwrap()
}

fn translate_response(dialect: Dialect, body: &[u8]) -> usize {
    let resp = decode_response(dialect, body).expect("bench response decodes");
    Caller::OpenAi
        .encode_response(&resp, "chatcmpl-bench0123456789", "chat", 1_764_000_000)
        .len()
}

fn request_benches(c: &mut Criterion) {
    let body = openai_request();
    let anthropic_body = anthropic_request();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes(body.len() as u64));
    for d in Dialect::ALL {
        translate_request(Caller::OpenAi, d, &body);
        g.bench_function(d.name(), |b| {
            b.iter(|| translate_request(Caller::OpenAi, d, black_box(&body)))
        });
    }
    g.throughput(Throughput::Bytes(anthropic_body.len() as u64));
    translate_request(Caller::Anthropic, Dialect::OpenAi, &anthropic_body);
    g.bench_function("anthropic_caller_to_openai", |b| {
        b.iter(|| {
            translate_request(
                Caller::Anthropic,
                Dialect::OpenAi,
                black_box(&anthropic_body),
            )
        })
    });
    g.finish();
}

fn stream_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(STREAM_EVENTS as u64));
    for d in Dialect::ALL {
        let wire = stream_wire(d);
        let chunks: Vec<Vec<u8>> = wire.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        check_stream(d, &chunks);
        g.bench_function(d.name(), |b| {
            b.iter(|| relay(d, Caller::OpenAi, black_box(&chunks)))
        });
        g.bench_function(format!("{}_to_anthropic", d.name()), |b| {
            b.iter(|| relay(d, Caller::Anthropic, black_box(&chunks)))
        });
    }
    g.finish();
}

fn response_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    for d in Dialect::ALL {
        let body = response_wire(d);
        translate_response(d, &body);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(d.name(), |b| {
            b.iter(|| translate_response(d, black_box(&body)))
        });
    }
    g.finish();
}

criterion_group!(translate, request_benches, stream_benches, response_benches);
criterion_main!(translate);
