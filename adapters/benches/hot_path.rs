//! Criterion benches of the per-request fast path: inspecting and rewriting a chat request, and
//! relaying a stream with the injected usage chunk hidden.
//!
//! cargo bench -p switchyard-adapters

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use switchyard_adapters::openai::{
    inspect_chat_request, response_usage, rewrite_chat_request, PassthroughStream,
};

fn chat_body(prompt_bytes: usize) -> Vec<u8> {
    let prompt: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(prompt_bytes)
        .collect();
    format!(
        r#"{{"model":"chat","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{prompt}"}}],"temperature":0.2,"stream":true,"max_tokens":256}}"#
    )
    .into_bytes()
}

fn stream_bytes() -> Vec<Bytes> {
    let mut events = vec![r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#.to_string()];
    for i in 0..40 {
        events.push(format!(r#"data: {{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":"tok{i} "}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#));
    }
    events.push(r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":40,"total_tokens":49}}"#.to_string());
    events.push("data: [DONE]".to_string());
    events
        .into_iter()
        .map(|e| Bytes::from(e + "\n\n"))
        .collect()
}

fn benches(c: &mut Criterion) {
    for size in [200usize, 64 * 1024, 2 * 1024 * 1024] {
        let body = chat_body(size);
        let mut g = c.benchmark_group(format!("request_{size}B"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("inspect", |b| {
            b.iter(|| inspect_chat_request(black_box(&body)).map(|f| f.stream))
        });
        g.bench_function("inspect+rewrite", |b| {
            b.iter(|| {
                let facts = inspect_chat_request(black_box(&body)).ok();
                facts.map(|f| rewrite_chat_request(&body, &f, "gpt-4o-mini").body.len())
            })
        });
        g.finish();
    }
    let chunks = stream_bytes();
    c.bench_function("stream_relay_42_events_usage_injected", |b| {
        b.iter(|| {
            let mut relay = PassthroughStream::new(true);
            let mut n = 0;
            for ch in &chunks {
                if let Some(out) = relay.push(ch.clone()) {
                    n += out.len();
                }
            }
            (n, relay.usage())
        })
    });
    let response = br#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-5.4","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}"#;
    c.bench_function("response_usage", |b| {
        b.iter(|| response_usage(black_box(response)))
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
