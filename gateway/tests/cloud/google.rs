//! A Google Cloud mock for the Vertex tests: a service account made with `openssl` at test time,
//! the OAuth token endpoint (the JWT-bearer assertion verified with the account's public key and
//! its claims checked), and Vertex AI's Gemini and Claude publisher paths (only issued tokens).

use super::common::scratch_dir;
use super::mock::{form, Answer, Mock, Recv};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

pub const PROJECT: &str = "proj-1";
pub const LOCATION: &str = "us-east5";
pub const SA_EMAIL: &str = "switchyard@proj-1.iam.gserviceaccount.com";

/// A test service account: an RSA key made by `openssl` now, its JSON key file, and the public
/// key (PKCS#1 DER) the token endpoint checks assertions with.
pub struct ServiceAccount {
    pub file: std::path::PathBuf,
    pub public_der: Vec<u8>,
}

pub fn service_account(token_uri: &str) -> ServiceAccount {
    let dir = scratch_dir("sy-cloud-sa");
    let key = dir.join("key.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    let public = dir.join("pub.der");
    run(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        public.to_str().unwrap(),
    ]);
    let file = dir.join("sa.json");
    let sa = json!({"type": "service_account", "project_id": PROJECT, "private_key_id": "kid-1",
                    "private_key": std::fs::read_to_string(&key).expect("key"),
                    "client_email": SA_EMAIL, "client_id": "1234567890",
                    "token_uri": token_uri});
    std::fs::write(&file, sa.to_string()).expect("sa file");
    ServiceAccount {
        file,
        public_der: std::fs::read(&public).expect("pub"),
    }
}

/// Google's token endpoint: the JWT-bearer assertion verified with the service account's public
/// key and its claims checked; tokens issued for an hour.
pub async fn google_oauth(
    public_der: Arc<Mutex<Vec<u8>>>,
    issued: Arc<Mutex<Vec<String>>>,
) -> Mock {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Mock::start(Arc::new(move |r: &Recv| {
        let refuse = |why: &str| {
            Answer::json(
                400,
                json!({"error": "invalid_grant", "error_description": why}),
            )
        };
        let f = form(&r.body);
        let get = |k: &str| {
            f.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if r.target != "/token"
            || get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer"
        {
            return refuse("bad grant");
        }
        let assertion = get("assertion");
        let parts: Vec<&str> = assertion.split('.').collect();
        if parts.len() != 3 {
            return refuse("not a JWT");
        }
        let key = public_der.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sig = b64.decode(parts[2]).unwrap_or_default();
        let signed = format!("{}.{}", parts[0], parts[1]);
        if ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &key,
        )
        .verify(signed.as_bytes(), &sig)
        .is_err()
        {
            return refuse("Invalid JWT Signature.");
        }
        let header: Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap_or_default()).unwrap_or_default();
        let claims: Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap_or_default()).unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ok = header["alg"] == "RS256"
            && header["kid"] == "kid-1"
            && claims["iss"] == SA_EMAIL
            && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
            && claims["aud"]
                .as_str()
                .is_some_and(|a| a.ends_with("/token"))
            && claims["exp"]
                .as_u64()
                .is_some_and(|e| e > now && e <= now + 3700)
            && claims["iat"].as_u64().is_some_and(|i| i <= now + 60);
        if !ok {
            return refuse("Invalid JWT claims");
        }
        let mut issued = issued.lock().unwrap_or_else(|e| e.into_inner());
        let token = format!("ya29.vertex-{}", issued.len() + 1);
        issued.push(token.clone());
        Answer::json(
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        )
    }))
    .await
}

/// Vertex AI: only issued tokens; Gemini and Claude publishers at their documented paths.
pub async fn vertex(issued: Arc<Mutex<Vec<String>>>) -> Mock {
    Mock::start(Arc::new(move |r: &Recv| {
        let bearer = r.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
        if !issued.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|t| t == bearer) {
            return Answer::json(401, json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}));
        }
        let base = format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers");
        let body = r.json();
        let gemini = |text: &str| json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                                         "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 11},
                                         "modelVersion": "gemini-2.0-flash"});
        let t = r.target.as_str();
        let location = format!("/v1/projects/{PROJECT}/locations/{LOCATION}");
        if t == format!("{base}/google/models/text-embedding-005:predict") {
            // Text embeddings: one prediction per instance, its tokens counted (one per word).
            let dims = body["parameters"]["outputDimensionality"].as_u64().unwrap_or(4) as usize;
            let Some(instances) = body["instances"].as_array() else {
                return Answer::json(400, json!({"error": {"code": 400, "message": "instances required", "status": "INVALID_ARGUMENT"}}));
            };
            let predictions: Vec<Value> = instances.iter().map(|i| {
                let text = i["content"].as_str().unwrap_or("");
                let words = text.split_whitespace().count();
                let values: Vec<f64> = (0..dims).map(|k| (words * 10 + k) as f64 / 100.0).collect();
                json!({"embeddings": {"statistics": {"truncated": false, "token_count": words}, "values": values}})
            }).collect();
            return Answer::json(200, json!({"predictions": predictions, "metadata": {"billableCharacterCount": 10}}));
        }
        if r.method == "GET" && t == location {
            // Locations.get: the health probe.
            Answer::json(200, json!({"name": location.trim_start_matches("/v1/"), "locationId": LOCATION}))
        } else if t == format!("{base}/google/models/gemini-2.0-flash:generateContent") {
            Answer::json(200, gemini("Hello from Vertex Gemini!"))
        } else if t == format!("{base}/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse") {
            let mut first = gemini("Hello from ");
            first["candidates"][0]["finishReason"] = Value::Null;
            Answer::sse(&[first, gemini("Vertex Gemini!")], false)
        } else if t.starts_with(&format!("{base}/anthropic/models/claude-sonnet-4-5@20250929:")) {
            if body["anthropic_version"] != "vertex-2023-10-16" || body.get("model").is_some() {
                return Answer::json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic_version: vertex-2023-10-16 required; model not allowed"}}));
            }
            if t.ends_with(":rawPredict") {
                Answer::json(200, json!({"id": "msg_vrtx_01", "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5@20250929",
                    "content": [{"type": "text", "text": "Hello from Vertex Claude!"}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": 9, "output_tokens": 7}}))
            } else if t.ends_with(":streamRawPredict") {
                let events = [
                    ("message_start", json!({"type": "message_start", "message": {"id": "msg_vrtx_02", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5@20250929", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 1}}})),
                    ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                    ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello from Vertex Claude!"}})),
                    ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                    ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}})),
                    ("message_stop", json!({"type": "message_stop"})),
                ];
                let body: String = events.iter().map(|(e, d)| format!("event: {e}\ndata: {d}\n\n")).collect();
                Answer { status: 200, content_type: "text/event-stream", headers: Vec::new(), body: body.into() }
            } else {
                Answer::json(404, json!({"error": {"code": 404, "message": "not found"}}))
            }
        } else {
            Answer::json(404, json!({"error": {"code": 404, "message": format!("no route {t}"), "status": "NOT_FOUND"}}))
        }
    }))
    .await
}

/// A Google OAuth endpoint and a Vertex AI project whose tokens it issues, for `sa`'s key.
pub struct VertexSetup {
    pub oauth: Mock,
    pub up: Mock,
    pub sa: ServiceAccount,
    pub issued: Arc<Mutex<Vec<String>>>,
}

pub async fn vertex_setup() -> VertexSetup {
    let public: Arc<Mutex<Vec<u8>>> = Arc::default();
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let oauth = google_oauth(public.clone(), issued.clone()).await;
    let sa = service_account(&format!("{}/token", oauth.base));
    *public.lock().unwrap_or_else(|e| e.into_inner()) = sa.public_der.clone();
    let up = vertex(issued.clone()).await;
    VertexSetup {
        oauth,
        up,
        sa,
        issued,
    }
}
