//! Cloud provider kinds end to end: the real gateway in front of local mocks of each service
//! that check credentials as the service would, both caller formats, stream and not.
//! Azure OpenAI: the deployment URL and `api-version`, the `api-key` header or an Entra ID bearer
//! (the token endpoint checks the client-credentials form; only unexpired issued tokens pass),
//! embeddings, content-filter refusals (never failed over), health probes, extra `headers`.
//! Bedrock: SigV4 recomputed from each request ([`aws`]), Converse and ConverseStream (binary
//! event stream), an error of each class. Vertex: the JWT assertion verified with the service
//! account's public key ([`google`]), Gemini and Claude models, embeddings by `:predict`.
//! Health probes of each kind; egress (requests, token fetches, probes) through a local CONNECT
//! proxy that counts its tunnels. The Azure, Entra and Bedrock mocks are in [`services`].

mod common;
#[path = "cloud/mock.rs"]
mod mock;

use common::*;
use mock::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test]
async fn azure_api_key_both_callers_stream_and_not() {
    let up = azure("gpt4o-prod", key_auth()).await;
    let conf = format!(
        "providers:\n{}    headers: {{ x-team: blue, api-key: not-the-key }}\n{}",
        azure_provider("az", &up.base, &format!("    api_key: {AZURE_KEY}\n")),
        chat_model(&[("az", "gpt4o-prod")])
    );
    let gw = Gateway::start(&conf, "").await;

    // OpenAI caller, non-stream: Azure's answer passes through as it came.
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Azure!");
    assert_eq!(
        v["prompt_filter_results"][0]["content_filter_results"]["hate"]["severity"],
        "safe"
    );
    let seen = up.requests();
    assert_eq!(
        seen[0].target,
        format!("/openai/deployments/gpt4o-prod/chat/completions?api-version={API_VERSION}")
    );
    // The configured header arrives; it never replaces the credential.
    assert_eq!(seen[0].header("x-team"), Some("blue"));
    assert_eq!(seen[0].header("api-key"), Some(AZURE_KEY));
    assert_eq!(seen[0].json()["messages"][0]["content"], "Hi");

    // OpenAI caller, stream.
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(true, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = openai_stream_text(&r.body);
    assert_eq!(text, "Hello from Azure!");
    assert!(r.text().trim_end().ends_with("data: [DONE]"));

    // Anthropic caller, non-stream: translated both ways.
    let r = gw
        .post_json("/v1/messages", &anthropic_messages(false, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Hello from Azure!");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert_eq!(v["usage"]["output_tokens"], 7);

    // Anthropic caller, stream: Azure's choice-less first chunk is skipped.
    let r = gw
        .post_json("/v1/messages", &anthropic_messages(true, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (text, events) = anthropic_stream_text(&r.body);
    assert_eq!(text, "Hello from Azure!");
    assert!(events.iter().any(|e| e["type"] == "message_stop"));
    assert_eq!(up.requests().len(), 4);
    assert!(
        up.requests()
            .iter()
            .all(|r| r.header("api-key") == Some(AZURE_KEY)),
        "every request carried the key"
    );
    assert!(
        !gw.log().contains(AZURE_KEY),
        "the key never reaches the log"
    );
}

#[tokio::test]
async fn azure_embeddings_use_the_deployment_url() {
    let up = azure("embed-small", key_auth()).await;
    let conf = format!(
        "providers:\n{}models:\n  - name: embed\n    deployments:\n      - provider: az\n        model: embed-small\n",
        azure_provider("az", &up.base, &format!("    api_key: {AZURE_KEY}\n")),
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"embed","input":"hello"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["embedding"], json!([0.25, -0.5, 0.125]));
    assert_eq!(
        up.requests()[0].target,
        format!("/openai/deployments/embed-small/embeddings?api-version={API_VERSION}")
    );
}

#[tokio::test]
async fn azure_content_filter_is_a_policy_error_never_failed_over() {
    let first = azure("gpt4o-a", key_auth()).await;
    let second = azure("gpt4o-b", key_auth()).await;
    let key = format!("    api_key: {AZURE_KEY}\n");
    let conf = format!(
        "providers:\n{}{}{}",
        azure_provider("az-a", &first.base, &key),
        azure_provider("az-b", &second.base, &key),
        chat_model(&[("az-a", "gpt4o-a"), ("az-b", "gpt4o-b")])
    );
    let gw = Gateway::start(&conf, "").await;

    let r = gw
        .post_json(
            "/v1/chat/completions",
            &openai_chat(false, "FORBIDDEN words"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "content_filter", "{v}");
    assert_eq!(v["error"]["param"], "prompt");

    let r = gw
        .post_json(
            "/v1/messages",
            &anthropic_messages(false, "FORBIDDEN words"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("content management policy"),
        "{v}"
    );

    let r = gw
        .post_json(
            "/v1/chat/completions",
            &openai_chat(true, "FORBIDDEN words"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // A completion Azure filtered (a 200 with `finish_reason: content_filter`): the same
    // content-policy error in the caller's format, never failed over.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            &openai_chat(false, "FILTERED_OUTPUT"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "content_filter", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("content management policy"));
    let r = gw
        .post_json(
            "/v1/messages",
            &anthropic_messages(false, "FILTERED_OUTPUT"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");

    // Streams: the text so far, then the caller's error as the last event (no [DONE], no
    // message_stop).
    let r = gw
        .post_json(
            "/v1/chat/completions",
            &openai_chat(true, "FILTERED_OUTPUT"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    assert_eq!(openai_stream_text(body.as_bytes()), "Once upon", "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
    let events = sse_data(body.as_bytes());
    let last = events.last().expect("events");
    assert_eq!(last["error"]["code"], "content_filter", "{body}");
    assert!(
        events
            .iter()
            .all(|e| e["choices"][0]["finish_reason"] != "content_filter"),
        "the filtered event is replaced by the error: {body}"
    );
    let r = gw
        .post_json("/v1/messages", &anthropic_messages(true, "FILTERED_OUTPUT"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (text, events) = anthropic_stream_text(r.text().as_bytes());
    assert_eq!(text, "Once upon");
    let last = events.last().expect("events");
    assert_eq!(last["type"], "error", "{events:?}");
    assert_eq!(last["error"]["type"], "invalid_request_error");
    assert!(
        events.iter().all(|e| e["type"] != "message_stop"),
        "{events:?}"
    );
    assert_eq!(first.requests().len(), 7);
    assert!(
        second.requests().is_empty(),
        "a content-filter refusal is not an outage: never retried on another deployment"
    );
}

#[tokio::test]
async fn azure_entra_tokens_are_cached_and_refreshed_ahead() {
    let tenant = Tenant::start(Duration::from_secs(2)).await;
    let up = azure("gpt4o-prod", tenant.authorise()).await;
    let gw = entra_gateway(&tenant, &up, "\"s3cret/+=\"").await;
    // Requests over three token lifetimes' halves: every one is accepted.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let r = gw
            .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
            .await;
        assert_eq!(r.status, 200, "request {sent}: {}", r.text());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tokens = tenant
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    assert!(tokens >= 2, "the token was refreshed ({tokens} issued)");
    assert!(
        tokens <= sent / 3,
        "tokens are cached, not fetched per request ({tokens} for {sent} requests)"
    );
    let log = gw.log();
    assert!(
        !log.contains("s3cret"),
        "the client secret never reaches the log"
    );
    assert!(!log.contains("eyJ0eXAi"), "tokens never reach the log");
}

#[tokio::test]
async fn azure_entra_failure_is_a_gateway_error_not_a_leak() {
    let tenant = Tenant::start(Duration::from_secs(60)).await;
    let up = azure("gpt4o-prod", tenant.authorise()).await;
    let gw = entra_gateway(&tenant, &up, "wrong-secret").await;
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert!(up.requests().is_empty(), "no request without a token");
    assert!(!r.text().contains("wrong-secret"));
    assert!(!gw.log().contains("wrong-secret"));
    assert!(gw.log().contains("invalid_client"), "the cause is logged");
}

#[path = "cloud/aws.rs"]
mod aws;
#[path = "cloud/connect_proxy.rs"]
mod connect_proxy;
#[path = "cloud/google.rs"]
mod google;
#[path = "cloud/services.rs"]
mod services;

use connect_proxy::connect_proxy;
use google::*;
use services::*;

#[tokio::test]
async fn bedrock_signed_converse_both_callers_stream_and_not() {
    let up = bedrock(false).await;
    let conf = format!(
        "providers:\n{}{}",
        bedrock_provider("br", &up.base, aws::SECRET_ACCESS_KEY),
        chat_model(&[("br", BEDROCK_MODEL)])
    );
    let gw = Gateway::start(&conf, "").await;
    let with_system = serde_json::to_vec(&json!({"model": "chat", "max_tokens": 64,
        "temperature": 0.2, "stop": ["END"],
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi"}]}))
    .expect("json");
    let r = gw.post_json("/v1/chat/completions", &with_system).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Bedrock!");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // inputTokens excludes the cache: the prompt is 30 + 8 read + 2 written.
    assert_eq!(v["usage"]["prompt_tokens"], 40);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    let sent = up.requests()[0].json();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"text": "Hi"}]}])
    );
    assert_eq!(
        sent["inferenceConfig"],
        json!({"maxTokens": 64, "temperature": 0.2, "stopSequences": ["END"]})
    );

    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(true, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = openai_stream_text(&r.body);
    assert_eq!(text, "Hello from Bedrock!");
    assert!(
        r.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        r.text()
    );

    let r = gw
        .post_json("/v1/messages", &anthropic_messages(false, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["content"][0]["text"], "Hello from Bedrock!");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 8);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 2);

    let r = gw
        .post_json("/v1/messages", &anthropic_messages(true, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (text, events) = anthropic_stream_text(&r.body);
    assert_eq!(text, "Hello from Bedrock!");
    assert!(events.iter().any(|e| e["type"] == "message_stop"));

    let model = "anthropic.claude-3-haiku-20240307-v1%3A0";
    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        [
            format!("/model/{model}/converse"),
            format!("/model/{model}/converse-stream"),
            format!("/model/{model}/converse"),
            format!("/model/{model}/converse-stream"),
        ]
    );
    assert!(up
        .requests()
        .iter()
        .all(|r| r.header("x-amz-security-token") == Some(aws::SESSION_TOKEN)));
    let log = gw.log();
    assert!(!log.contains(aws::SECRET_ACCESS_KEY) && !log.contains(aws::SESSION_TOKEN));
}

#[tokio::test]
async fn bedrock_errors_by_class() {
    let flaky = bedrock(true).await;
    let good = bedrock(false).await;
    let conf = format!(
        "providers:\n{}{}{}",
        bedrock_provider("br-flaky", &flaky.base, aws::SECRET_ACCESS_KEY),
        bedrock_provider("br-good", &good.base, aws::SECRET_ACCESS_KEY),
        chat_model(&[("br-flaky", BEDROCK_MODEL), ("br-good", BEDROCK_MODEL)])
    );
    let gw = Gateway::start(&conf, "").await;
    // Throttling, unavailability and a model not ready: failed over to the next deployment.
    for word in ["THROTTLE", "UNAVAILABLE", "NOTREADY"] {
        let before = good.requests().len();
        let r = gw
            .post_json("/v1/chat/completions", &openai_chat(false, word))
            .await;
        assert_eq!(r.status, 200, "{word}: {}", r.text());
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            "Hello from Bedrock!"
        );
        assert_eq!(good.requests().len(), before + 1, "{word} failed over");
    }
    // A validation error is the caller's: relayed as a 400 in its format, never failed over.
    let before = good.requests().len();
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "INVALID"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("roles must alternate"));
    let r = gw
        .post_json("/v1/messages", &anthropic_messages(false, "INVALID"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        good.requests().len(),
        before,
        "a validation error is not failed over"
    );
}

#[tokio::test]
async fn bedrock_throttling_alone_is_a_429() {
    let flaky = bedrock(true).await;
    let conf = format!(
        "providers:\n{}{}",
        bedrock_provider("br", &flaky.base, aws::SECRET_ACCESS_KEY),
        chat_model(&[("br", BEDROCK_MODEL)])
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "THROTTLE"))
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    let r = gw
        .post_json("/v1/messages", &anthropic_messages(false, "THROTTLE"))
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn bedrock_refused_credentials_are_the_gateways_problem() {
    let up = bedrock(false).await;
    let conf = format!(
        "providers:\n{}{}",
        bedrock_provider("br", &up.base, "not-the-secret-key"),
        chat_model(&[("br", BEDROCK_MODEL)])
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    let r = gw
        .post_json("/v1/messages", &anthropic_messages(true, "Hi"))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    let log = gw.log();
    assert!(
        log.contains("refused the gateway's credentials")
            && log.contains("InvalidSignatureException"),
        "{log}"
    );
    assert!(!log.contains("not-the-secret-key"));
}

#[tokio::test]
async fn vertex_gemini_and_claude_with_service_account_tokens() {
    let public: Arc<Mutex<Vec<u8>>> = Arc::default();
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let oauth = google_oauth(public.clone(), issued.clone()).await;
    let sa = service_account(&format!("{}/token", oauth.base));
    *public.lock().unwrap() = sa.public_der.clone();
    let up = vertex(issued.clone()).await;
    let conf = format!(
        "providers:\n  - name: vx\n    kind: vertex\n    project: {PROJECT}\n    location: {LOCATION}\n    base_url: {}\n    credentials_file: {}\nmodels:\n  - name: gem\n    deployments:\n      - provider: vx\n        model: gemini-2.0-flash\n  - name: claude\n    deployments:\n      - provider: vx\n        model: claude-sonnet-4-5@20250929\n",
        up.base,
        sa.file.display()
    );
    let gw = Gateway::start(&conf, "").await;
    let chat = |model: &str, stream: bool| {
        serde_json::to_vec(&json!({"model": model, "stream": stream, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]})).expect("json")
    };
    for (model, want) in [
        ("gem", "Hello from Vertex Gemini!"),
        ("claude", "Hello from Vertex Claude!"),
    ] {
        // OpenAI caller, non-stream and stream.
        let r = gw
            .post_json("/v1/chat/completions", &chat(model, false))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], want);
        let r = gw
            .post_json("/v1/chat/completions", &chat(model, true))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let text = openai_stream_text(&r.body);
        assert_eq!(text, want, "{model} stream");
        // Anthropic caller, non-stream and stream.
        let r = gw.post_json("/v1/messages", &chat(model, false)).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.json()["content"][0]["text"], want);
        let r = gw.post_json("/v1/messages", &chat(model, true)).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let (text, _) = anthropic_stream_text(&r.body);
        assert_eq!(text, want, "{model} anthropic stream");
    }
    let targets: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.target.rsplit(':').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        targets,
        [
            "generateContent",
            "streamGenerateContent?alt=sse",
            "generateContent",
            "streamGenerateContent?alt=sse",
            "rawPredict",
            "streamRawPredict",
            "rawPredict",
            "streamRawPredict"
        ]
    );
    assert_eq!(issued.lock().unwrap().len(), 1, "one token, cached");
    let log = gw.log();
    assert!(!log.contains("ya29.") && !log.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn vertex_wrong_key_is_refused_by_the_token_endpoint() {
    let public: Arc<Mutex<Vec<u8>>> = Arc::default();
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let oauth = google_oauth(public.clone(), issued.clone()).await;
    let sa = service_account(&format!("{}/token", oauth.base));
    // The endpoint knows another account's public key: the assertion does not verify.
    let other = service_account(&format!("{}/token", oauth.base));
    *public.lock().unwrap() = other.public_der.clone();
    let up = vertex(issued.clone()).await;
    let conf = format!(
        "providers:\n  - name: vx\n    kind: vertex\n    project: {PROJECT}\n    location: {LOCATION}\n    base_url: {}\n    credentials_file: {}\n{}",
        up.base,
        sa.file.display(),
        chat_model(&[("vx", "gemini-2.0-flash")])
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert!(up.requests().is_empty());
    assert!(gw.log().contains("invalid_grant"));
}

#[tokio::test]
async fn egress_through_a_connect_proxy() {
    let up = azure("gpt4o-prod", key_auth()).await;
    // `squid:s3cret` → Basic c3F1aWQ6czNjcmV0
    let (proxy_port, tunnels) = connect_proxy("Basic c3F1aWQ6czNjcmV0").await;
    let conf = format!(
        "providers:\n{}    proxy: http://squid:s3cret@127.0.0.1:{proxy_port}\n{}",
        azure_provider("az", &up.base, &format!("    api_key: {AZURE_KEY}\n")),
        chat_model(&[("az", "gpt4o-prod")])
    );
    let gw = Gateway::start(&conf, "").await;
    for stream in [false, true, false] {
        let r = gw
            .post_json("/v1/chat/completions", &openai_chat(stream, "Hi"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(up.requests().len(), 3);
    let tunnels = tunnels.lock().unwrap().clone();
    assert!(!tunnels.is_empty(), "requests went through the proxy");
    assert!(tunnels.len() <= 3, "{tunnels:?}");
    assert!(
        tunnels
            .iter()
            .all(|t| *t == format!("127.0.0.1:{}", up.port)),
        "{tunnels:?}"
    );
    assert!(!gw.log().contains("s3cret"));
}

#[tokio::test]
async fn a_refused_proxy_is_a_connect_failure() {
    let up = azure("gpt4o-prod", key_auth()).await;
    let (proxy_port, tunnels) = connect_proxy("Basic c3F1aWQ6czNjcmV0").await;
    let conf = format!(
        "providers:\n{}    proxy: http://squid:wrong@127.0.0.1:{proxy_port}\n{}",
        azure_provider("az", &up.base, &format!("    api_key: {AZURE_KEY}\n")),
        chat_model(&[("az", "gpt4o-prod")])
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert!(up.requests().is_empty() && tunnels.lock().unwrap().is_empty());
}

#[tokio::test]
async fn azure_health_checks_probe_the_models_list_with_the_key() {
    let up = azure("gpt4o-prod", key_auth()).await;
    let conf = format!(
        "providers:\n{}    health_check: {{ interval: 200ms, timeout: 1s }}\n{}",
        azure_provider("az", &up.base, &format!("    api_key: {AZURE_KEY}\n")),
        chat_model(&[("az", "gpt4o-prod")])
    );
    let _gw = Gateway::start(&conf, "").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.requests().iter().filter(|r| r.method == "GET").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no health probes: {:?}",
            up.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let probe = up
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("probe");
    assert_eq!(
        probe.target,
        format!("/openai/models?api-version={API_VERSION}")
    );
    assert_eq!(probe.header("api-key"), Some(AZURE_KEY));
}

/// Waits until `ok` holds (10 s at most).
async fn eventually(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gets(m: &Mock) -> Vec<mock::Recv> {
    m.requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect()
}

/// Health checks per kind: Bedrock probes `ListAsyncInvokes` (`GET /async-invoke`) signed with
/// SigV4 (the mock recomputes the signature), Vertex probes its location with a service-account
/// token; a provider whose secret is wrong is marked down by its probes alone.
#[tokio::test]
async fn bedrock_and_vertex_health_checks_probe_with_their_credentials() {
    let br = bedrock(false).await;
    let bad = bedrock(false).await;
    let vx = vertex_setup().await;
    let hc = "    health_check: { interval: 200ms, timeout: 1s }\n";
    let conf = format!(
        "providers:\n{}{hc}{}{hc}  - name: vx\n    kind: vertex\n    project: {PROJECT}\n    location: {LOCATION}\n    base_url: {}\n    credentials_file: {}\n{hc}models:\n  - name: chat\n    deployments:\n      - {{ provider: br, model: \"{BEDROCK_MODEL}\" }}\n      - {{ provider: bad, model: \"{BEDROCK_MODEL}\" }}\n      - {{ provider: vx, model: gemini-2.0-flash }}\n",
        bedrock_provider("br", &br.base, aws::SECRET_ACCESS_KEY),
        bedrock_provider("bad", &bad.base, "not-the-secret-key"),
        vx.up.base,
        vx.sa.file.display()
    );
    let gw = Gateway::start(&conf, "").await;
    let up = |name: &'static str| {
        let gw = &gw;
        async move {
            gw.metric(&format!("switchyard_provider_up{{provider=\"{name}\"}}"))
                .await
        }
    };
    eventually("three probes each", async || {
        gets(&br).len() >= 3 && gets(&bad).len() >= 3 && gets(&vx.up).len() >= 3
    })
    .await;
    eventually("the wrong secret marks bad down", async || {
        up("bad").await == Some(0.0)
    })
    .await;
    assert_eq!(up("br").await, Some(1.0));
    assert_eq!(up("vx").await, Some(1.0));
    let probe = &gets(&br)[0];
    assert_eq!(probe.target, "/async-invoke?maxResults=1");
    assert!(aws::verify(probe).is_ok(), "a valid SigV4 signature");
    assert!(probe
        .header("authorization")
        .is_some_and(|a| a.contains("/bedrock/aws4_request")));
    assert!(aws::verify(&gets(&bad)[0]).is_err());
    let probe = &gets(&vx.up)[0];
    assert_eq!(
        probe.target,
        format!("/v1/projects/{PROJECT}/locations/{LOCATION}")
    );
    let issued = vx.issued.lock().unwrap().clone();
    assert_eq!(issued.len(), 1, "one token, cached across probes");
    assert_eq!(
        probe.header("authorization"),
        Some(format!("Bearer {}", issued[0]).as_str())
    );
    // Traffic avoids the provider its probes found down.
    for _ in 0..3 {
        let r = gw
            .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(bad.requests().iter().all(|r| r.method == "GET"));
}

/// `proxy` carries everything a provider sends: its Entra token fetches and its health probes
/// go through the CONNECT proxy too (and Vertex's token fetches and probes likewise).
#[tokio::test]
async fn token_fetches_and_health_probes_go_through_the_proxy() {
    let tenant = Tenant::start(Duration::from_secs(60)).await;
    let up = azure("gpt4o-prod", tenant.authorise()).await;
    let vx = vertex_setup().await;
    let (proxy_port, tunnels) = connect_proxy("Basic c3F1aWQ6czNjcmV0").await;
    let proxy = format!("    proxy: http://squid:s3cret@127.0.0.1:{proxy_port}\n");
    let hc = "    health_check: { interval: 200ms, timeout: 1s }\n";
    let entra = entra_section(&tenant, "\"s3cret/+=\"");
    let conf = format!(
        "providers:\n{}{proxy}{hc}  - name: vx\n    kind: vertex\n    project: {PROJECT}\n    location: {LOCATION}\n    base_url: {}\n    credentials_file: {}\n{proxy}{hc}models:\n  - name: chat\n    deployments:\n      - {{ provider: az, model: gpt4o-prod }}\n  - name: gem\n    deployments:\n      - {{ provider: vx, model: gemini-2.0-flash }}\n",
        azure_provider("az", &up.base, &entra),
        vx.up.base,
        vx.sa.file.display()
    );
    let gw = Gateway::start(&conf, "").await;
    eventually("probes through the proxy", async || {
        gets(&up).len() >= 2 && gets(&vx.up).len() >= 2
    })
    .await;
    let r = gw
        .post_json("/v1/chat/completions", &openai_chat(false, "Hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tunnels = tunnels.lock().unwrap().clone();
    for (what, port) in [
        ("the Entra token endpoint", tenant.mock.port),
        ("Azure", up.port),
        ("the Google token endpoint", vx.oauth.port),
        ("Vertex", vx.up.port),
    ] {
        assert!(
            tunnels.contains(&format!("127.0.0.1:{port}")),
            "{what} reached through the proxy: {tunnels:?}"
        );
    }
    assert_eq!(
        gw.metric("switchyard_provider_up{provider=\"az\"}").await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("switchyard_provider_up{provider=\"vx\"}").await,
        Some(1.0)
    );
}

/// Vertex text embeddings: OpenAI's `/v1/embeddings` becomes the model's `:predict` with
/// `instances[{content}]` and `parameters.outputDimensionality`; the predictions' vectors and
/// token counts come back in OpenAI's shape.
#[tokio::test]
async fn vertex_embeddings_use_predict() {
    let vx = vertex_setup().await;
    let conf = format!(
        "providers:\n  - name: vx\n    kind: vertex\n    project: {PROJECT}\n    location: {LOCATION}\n    base_url: {}\n    credentials_file: {}\nmodels:\n  - name: emb\n    deployments:\n      - {{ provider: vx, model: text-embedding-005 }}\n",
        vx.up.base,
        vx.sa.file.display()
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"emb","input":["one two","three"],"dimensions":3}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"][0]["embedding"], json!([0.2, 0.21, 0.22]), "{v}");
    assert_eq!(v["data"][1]["embedding"], json!([0.1, 0.11, 0.12]), "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let sent = vx.up.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].target,
        format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/text-embedding-005:predict")
    );
    assert_eq!(
        sent[0].json(),
        json!({"instances": [{"content": "one two"}, {"content": "three"}],
               "parameters": {"outputDimensionality": 3}})
    );
    // One input: the same call with one instance.
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"emb","input":"solo"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["data"][0]["embedding"].as_array().map(Vec::len),
        Some(4)
    );
}
