//! The cloud services the cloud tests run against: an Azure OpenAI resource (api-key or Entra
//! bearer), an Entra ID tenant, a Bedrock runtime (SigV4 verified by [`super::aws`]), and the
//! request bodies and stream readers the tests share.

use super::aws;
use super::common::Gateway;
use super::mock::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const API_VERSION: &str = "2024-10-21";
pub const AZURE_KEY: &str = "az-key-0123456789abcdef";

/// Azure's documented chat completion (with its content-filter annotations).
pub fn azure_completion(text: &str) -> Value {
    let safe = json!({"hate": {"filtered": false, "severity": "safe"},
                      "self_harm": {"filtered": false, "severity": "safe"},
                      "sexual": {"filtered": false, "severity": "safe"},
                      "violence": {"filtered": false, "severity": "safe"}});
    json!({"id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn", "object": "chat.completion",
           "created": 1686676106, "model": "gpt-4o-2024-05-13",
           "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe}],
           "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                        "content_filter_results": safe}],
           "usage": {"completion_tokens": 7, "prompt_tokens": 12, "total_tokens": 19}})
}

/// Azure's stream: a first chunk with no choices (the prompt's filter results), then deltas.
pub fn azure_stream(text: &str) -> Answer {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn", "object": "chat.completion.chunk",
               "created": 1686676106, "model": "gpt-4o-2024-05-13",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    Answer::sse(
        &[
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                       "hate": {"filtered": false, "severity": "safe"}}}]}),
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": text}), Value::Null),
            chunk(json!({}), json!("stop")),
            json!({"id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn",
                   "object": "chat.completion.chunk", "created": 1686676106,
                   "model": "gpt-4o-2024-05-13", "choices": [],
                   "usage": {"completion_tokens": 7, "prompt_tokens": 12, "total_tokens": 19}}),
        ],
        true,
    )
}

/// Azure's documented content-filter refusal of a prompt.
pub fn content_filter_error() -> Answer {
    Answer::json(
        400,
        json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
                         "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                         "innererror": {"code": "ResponsibleAIPolicyViolation",
                                        "content_filter_result": {
                                            "hate": {"filtered": true, "severity": "high"}}}}}),
    )
}

/// How the Azure mock authorises a request: `Ok` or the 401 it answers.
pub type Authorise = Arc<dyn Fn(&Recv) -> Result<(), Answer> + Send + Sync>;

pub fn key_auth() -> Authorise {
    Arc::new(|r: &Recv| {
        if r.header("api-key") == Some(AZURE_KEY) && r.header("authorization").is_none() {
            Ok(())
        } else {
            Err(Answer::json(
                401,
                json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}),
            ))
        }
    })
}

/// An Azure OpenAI resource: checks the URL layout and the credential, answers chat
/// (stream or not), embeddings, and refuses prompts containing `FORBIDDEN` as its content
/// filter does.
pub async fn azure(deployment: &'static str, auth: Authorise) -> Mock {
    Mock::start(Arc::new(move |r: &Recv| {
        if let Err(denied) = auth(r) {
            return denied;
        }
        let base = format!("/openai/deployments/{deployment}/");
        let query = format!("?api-version={API_VERSION}");
        if r.method == "GET" && r.target == format!("/openai/models{query}") {
            return Answer::json(200, json!({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}));
        }
        let Some(rest) = r.target.strip_prefix(&base) else {
            return Answer::json(404, json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}}));
        };
        let body = r.json();
        match rest.strip_suffix(&query) {
            Some("chat/completions") => {
                if body.to_string().contains("FORBIDDEN") {
                    return content_filter_error();
                }
                if body.to_string().contains("FILTERED_OUTPUT") && body["stream"] == json!(true) {
                    // A stream Azure stops: text so far, then a choice finished by the filter.
                    let chunk = |delta: Value, finish: Value| {
                        json!({"id": "chatcmpl-f", "object": "chat.completion.chunk",
                               "created": 1686676106, "model": "gpt-4o-2024-05-13",
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                            "content_filter_results": {}}]})
                    };
                    return Answer::sse(
                        &[
                            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                            chunk(json!({"content": "Once upon"}), Value::Null),
                            chunk(json!({}), json!("content_filter")),
                        ],
                        true,
                    );
                }
                if body.to_string().contains("FILTERED_OUTPUT") {
                    // The completion itself was filtered: 200, no content.
                    let mut v = azure_completion("");
                    v["choices"][0]["message"]["content"] = Value::Null;
                    v["choices"][0]["finish_reason"] = json!("content_filter");
                    v["choices"][0]["content_filter_results"]["violence"] =
                        json!({"filtered": true, "severity": "high"});
                    return Answer::json(200, v);
                }
                if body["stream"] == json!(true) {
                    azure_stream("Hello from Azure!")
                } else {
                    Answer::json(200, azure_completion("Hello from Azure!"))
                }
            }
            Some("embeddings") => Answer::json(
                200,
                json!({"object": "list", "model": "text-embedding-3-small",
                       "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
                       "usage": {"prompt_tokens": 4, "total_tokens": 4}}),
            ),
            _ => Answer::json(
                404,
                json!({"error": {"code": "404", "message": "Resource not found"}}),
            ),
        }
    }))
    .await
}

pub fn azure_provider(name: &str, base: &str, auth: &str) -> String {
    format!(
        "  - name: {name}\n    kind: azure\n    base_url: {base}\n    api_version: \"{API_VERSION}\"\n{auth}"
    )
}

pub fn chat_model(deps: &[(&str, &str)]) -> String {
    let mut s = String::from("models:\n  - name: chat\n    deployments:\n");
    for (provider, model) in deps {
        s.push_str(&format!(
            "      - provider: {provider}\n        model: {model}\n"
        ));
    }
    s
}

/// The text of an OpenAI chat stream.
pub fn openai_stream_text(body: &[u8]) -> String {
    sse_data(body)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// The text of an Anthropic messages stream, and its events.
pub fn anthropic_stream_text(body: &[u8]) -> (String, Vec<Value>) {
    let events = sse_data(body);
    let text = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str().map(String::from))
        .collect();
    (text, events)
}

pub fn openai_chat(stream: bool, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"model": "chat", "stream": stream,
                               "messages": [{"role": "user", "content": text}]}))
    .expect("json")
}

pub fn anthropic_messages(stream: bool, text: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"model": "chat", "stream": stream, "max_tokens": 100,
                               "messages": [{"role": "user", "content": text}]}),
    )
    .expect("json")
}

/// An Entra ID tenant: checks the client-credentials form and issues short-lived tokens.
pub struct Tenant {
    pub mock: Mock,
    pub issued: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Tenant {
    pub async fn start(lifetime: Duration) -> Tenant {
        let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let keep = issued.clone();
        let mock = Mock::start(Arc::new(move |r: &Recv| {
            let f = form(&r.body);
            let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let ok = r.method == "POST"
                && r.target == "/tenant-1/oauth2/v2.0/token"
                && r.header("content-type") == Some("application/x-www-form-urlencoded")
                && get("grant_type") == Some("client_credentials")
                && get("client_id") == Some("app-123")
                && get("client_secret") == Some("s3cret/+=")
                && get("scope") == Some("https://cognitiveservices.azure.com/.default");
            if !ok {
                return Answer::json(
                    401,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215"}),
                );
            }
            let mut issued = keep.lock().unwrap_or_else(|e| e.into_inner());
            let token = format!("eyJ0eXAi.entra-{}", issued.len() + 1);
            issued.push((token.clone(), Instant::now() + lifetime));
            Answer::json(
                200,
                json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(),
                       "ext_expires_in": lifetime.as_secs(), "access_token": token}),
            )
        }))
        .await;
        Tenant { mock, issued }
    }

    /// The Azure side: only an issued, unexpired token is accepted.
    pub fn authorise(&self) -> Authorise {
        let issued = self.issued.clone();
        Arc::new(move |r: &Recv| {
            let now = Instant::now();
            let valid = r
                .header("authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .is_some_and(|t| {
                    issued
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .any(|(tok, until)| tok == t && now < *until)
                });
            if valid && r.header("api-key").is_none() {
                Ok(())
            } else {
                Err(Answer::json(
                    401,
                    json!({"error": {"code": "401", "message": "Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired."}}),
                ))
            }
        })
    }
}

/// An Azure provider's `entra` section for `tenant`.
pub fn entra_section(tenant: &Tenant, client_secret: &str) -> String {
    format!(
        "    entra:\n      tenant_id: tenant-1\n      client_id: app-123\n      client_secret: {client_secret}\n      token_url: {}/tenant-1/oauth2/v2.0/token\n",
        tenant.mock.base
    )
}

/// A gateway with one Azure deployment authorised by Entra client credentials.
pub async fn entra_gateway(tenant: &Tenant, up: &Mock, client_secret: &str) -> Gateway {
    let entra = entra_section(tenant, client_secret);
    let conf = format!(
        "providers:\n{}{}",
        azure_provider("az", &up.base, &entra),
        chat_model(&[("az", "gpt4o-prod")])
    );
    Gateway::start(&conf, "").await
}

pub const BEDROCK_MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// An error of each Bedrock class, chosen by a word in the prompt.
pub fn bedrock_error(prompt: &str) -> Option<Answer> {
    let (status, kind, message) = if prompt.contains("THROTTLE") {
        (
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        )
    } else if prompt.contains("INVALID") {
        (
            400,
            "ValidationException",
            "The model returned the following errors: messages: roles must alternate",
        )
    } else if prompt.contains("UNAVAILABLE") {
        (
            503,
            "ServiceUnavailableException",
            "Service is temporarily unavailable.",
        )
    } else if prompt.contains("NOTREADY") {
        (
            429,
            "ModelNotReadyException",
            "The model is not ready to serve inference requests.",
        )
    } else {
        return None;
    };
    let mut a = Answer::json(status, json!({"message": message}));
    a.headers.push((
        "x-amzn-errortype",
        format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    ));
    Some(a)
}

/// A Bedrock runtime: SigV4 checked, Converse and ConverseStream answered (AWS's documented
/// shapes), errors by prompt word when `failing`.
pub async fn bedrock(failing: bool) -> Mock {
    use switchyard_adapters::bedrock::eventstream::encode_event;
    Mock::start(Arc::new(move |r: &Recv| {
        if let Err(denied) = aws::verify(r) {
            return denied;
        }
        if r.method == "GET" && r.target == "/async-invoke?maxResults=1" {
            // ListAsyncInvokes: the health probe (signed like any call, nothing invoked).
            return Answer::json(200, json!({"asyncInvokeSummaries": []}));
        }
        let model = switchyard_adapters::bedrock::encode_model_id(BEDROCK_MODEL);
        let body = r.json();
        if failing {
            if let Some(e) = bedrock_error(&body.to_string()) {
                return e;
            }
        }
        if r.target == format!("/model/{model}/converse") {
            Answer::json(200, json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Hello from Bedrock!"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42,
                          "cacheReadInputTokens": 8, "cacheWriteInputTokens": 2},
                "metrics": {"latencyMs": 1275}}))
        } else if r.target == format!("/model/{model}/converse-stream") {
            let frames = [
                encode_event("messageStart", br#"{"p":"abcdefgh","role":"assistant"}"#),
                encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Hello from "},"p":"abc"}"#),
                encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Bedrock!"},"p":"abcd"}"#),
                encode_event("contentBlockStop", br#"{"contentBlockIndex":0,"p":"ab"}"#),
                encode_event("messageStop", br#"{"p":"abcdef","stopReason":"end_turn"}"#),
                encode_event("metadata", br#"{"metrics":{"latencyMs":463},"p":"abc","usage":{"inputTokens":30,"outputTokens":12,"totalTokens":42}}"#),
            ]
            .concat();
            Answer {
                status: 200,
                content_type: "application/vnd.amazon.eventstream",
                headers: Vec::new(),
                body: frames.into(),
            }
        } else {
            Answer::json(404, json!({"message": "Unknown operation"}))
        }
    }))
    .await
}

pub fn bedrock_provider(name: &str, base: &str, secret: &str) -> String {
    format!(
        "  - name: {name}\n    kind: bedrock\n    region: {}\n    base_url: {base}\n    aws_access_key_id: {}\n    aws_secret_access_key: {secret}\n    aws_session_token: {}\n",
        aws::REGION, aws::ACCESS_KEY_ID, aws::SESSION_TOKEN
    )
}
