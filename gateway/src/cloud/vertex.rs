//! Google Vertex AI (`kind: vertex`): the service account (`credentials_file`) and its OAuth 2.0
//! JWT-bearer grant (an RS256 assertion signed with `ring`, posted to the file's `token_uri`;
//! the token is cached by [`super::token::TokenCache`]), and where a model's calls go: Gemini
//! models to `publishers/google/models/{model}:generateContent` (Gemini dialect), Claude models
//! (ids starting `claude`) to `publishers/anthropic/models/{model}:rawPredict` /
//! `:streamRawPredict` with the Anthropic body (`anthropic_version: "vertex-2023-10-16"`, no
//! `model`); embeddings to the model's `:predict` (`instances[{content}]`, see
//! [`Vertex::predict_body`]). Must not touch anything but the URL, the body's Vertex shapes and
//! the token.

use super::token::{form_encode, Grant};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use switchyard_adapters::canonical::Dialect;

/// The scope Vertex AI tokens need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The method of Vertex's text-embedding models.
pub const PREDICT: &str = ":predict";
/// The `anthropic_version` Vertex's Claude endpoints take in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// A parsed service-account key file.
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a service-account JSON file (errors never quote the key).
    pub fn load(path: &str) -> Result<ServiceAccount, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|_| format!("{path:?} is not a service-account JSON file"))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if field("type").as_deref() != Some("service_account") {
            return Err(format!(
                "{path:?} is not a service-account key (type must be \"service_account\")"
            ));
        }
        let missing = |k: &str| format!("{path:?} has no {k}");
        let pem = field("private_key").ok_or_else(|| missing("private_key"))?;
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| format!("{path:?}: private_key is not a PEM private key"))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_der())
            .map_err(|_| format!("{path:?}: private_key is not a PKCS#8 RSA key"))?;
        Ok(ServiceAccount {
            client_email: field("client_email").ok_or_else(|| missing("client_email"))?,
            private_key_id: field("private_key_id"),
            token_uri: field("token_uri")
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            key,
        })
    }

    /// A signed JWT assertion for the grant, issued at `now` (Unix seconds), valid one hour.
    pub fn assertion(&self, now: u64) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email, "sub": self.client_email, "scope": SCOPE,
            "aud": self.token_uri, "iat": now, "exp": now + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "cannot sign the JWT assertion".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

impl Grant for ServiceAccount {
    fn form(&self) -> Result<String, String> {
        let assertion = self.assertion(crate::clock::unix_secs())?;
        Ok(form_encode(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ]))
    }
}

/// `kind: vertex`: where a project's models live.
#[derive(Debug)]
pub struct Vertex {
    pub project: String,
    pub location: String,
    pub tokens: std::sync::Arc<super::token::TokenCache>,
}

impl Vertex {
    /// Claude models speak Anthropic's Messages; the rest Gemini's.
    pub fn dialect_for(model: &str) -> Dialect {
        if model.starts_with("claude") {
            Dialect::Anthropic
        } else {
            Dialect::Gemini
        }
    }

    /// The health probe: the project's location (Locations.get), below `base_url`.
    pub fn probe_path(&self) -> String {
        format!("/v1/projects/{}/locations/{}", self.project, self.location)
    }

    fn prefix(&self) -> String {
        format!(
            "/v1/projects/{}/locations/{}/publishers",
            self.project, self.location
        )
    }

    /// The path of a call the dialect's encoder addressed as `api_path`.
    pub fn api_path(&self, api_path: &str, model: &str, stream: bool) -> String {
        match Self::dialect_for(model) {
            Dialect::Anthropic => format!(
                "{}/anthropic/models/{model}:{}",
                self.prefix(),
                if stream {
                    "streamRawPredict"
                } else {
                    "rawPredict"
                }
            ),
            // The Gemini encoder's `/models/{model}:generateContent` (or the stream's);
            // embeddings go to the model's `:predict`.
            _ => match api_path
                .strip_suffix(":embedContent")
                .or_else(|| api_path.strip_suffix(":batchEmbedContents"))
            {
                Some(model_path) => format!("{}/google{model_path}{PREDICT}", self.prefix()),
                None => format!("{}/google{api_path}", self.prefix()),
            },
        }
    }

    /// A Gemini `embedContent` / `batchEmbedContents` body as Vertex's text-embedding
    /// `:predict` takes it: `{"instances":[{"content"}],"parameters":{"outputDimensionality"}}`
    /// (answered `{"predictions":[{"embeddings":{"values","statistics":{"token_count"}}}]}`,
    /// which the Gemini embeddings decoder reads).
    pub fn predict_body(body: &[u8]) -> Result<Bytes, String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
        let one = std::slice::from_ref(&v);
        let requests = v
            .get("requests")
            .and_then(serde_json::Value::as_array)
            .map_or(one, Vec::as_slice);
        let text = |r: &serde_json::Value| -> String {
            r.pointer("/content/parts")
                .and_then(serde_json::Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(serde_json::Value::as_str))
                        .collect::<Vec<_>>()
                        .join("")
                })
                .unwrap_or_default()
        };
        let instances: Vec<serde_json::Value> = requests
            .iter()
            .map(|r| serde_json::json!({ "content": text(r) }))
            .collect();
        let mut out = serde_json::json!({ "instances": instances });
        if let Some(d) = requests.first().and_then(|r| r.get("outputDimensionality")) {
            out["parameters"] = serde_json::json!({ "outputDimensionality": d });
        }
        serde_json::to_vec(&out)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// The Anthropic body as Vertex takes it: `anthropic_version` set, `model` removed.
    pub fn claude_body(body: &[u8]) -> Result<Bytes, String> {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
        v.remove("model");
        v.insert("anthropic_version".into(), ANTHROPIC_VERSION.into());
        serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex() -> Vertex {
        let endpoint = super::super::token::TokenEndpoint {
            endpoint: crate::config::endpoint::parse_endpoint("http://127.0.0.1:1/token").unwrap(),
            path: "/token".into(),
            proxy: None,
        };
        struct NoGrant;
        impl std::fmt::Debug for NoGrant {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("NoGrant")
            }
        }
        impl Grant for NoGrant {
            fn form(&self) -> Result<String, String> {
                Err("none".into())
            }
        }
        Vertex {
            project: "p1".into(),
            location: "us-east5".into(),
            tokens: std::sync::Arc::new(super::super::token::TokenCache::new(
                endpoint,
                Box::new(NoGrant),
            )),
        }
    }

    #[test]
    fn embeddings_go_to_predict_with_instances() {
        let v = vertex();
        let base = "/v1/projects/p1/locations/us-east5/publishers/google/models";
        for gemini in [":embedContent", ":batchEmbedContents"] {
            assert_eq!(
                v.api_path(
                    &format!("/models/text-embedding-005{gemini}"),
                    "text-embedding-005",
                    false
                ),
                format!("{base}/text-embedding-005:predict")
            );
        }
        assert_eq!(v.probe_path(), "/v1/projects/p1/locations/us-east5");
        let batch = br#"{"requests":[{"model":"models/e","content":{"parts":[{"text":"a b"}]},"outputDimensionality":3},{"model":"models/e","content":{"parts":[{"text":"c"}]},"outputDimensionality":3}]}"#;
        let body: serde_json::Value =
            serde_json::from_slice(&Vertex::predict_body(batch).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"instances": [{"content": "a b"}, {"content": "c"}],
                               "parameters": {"outputDimensionality": 3}})
        );
        let one = br#"{"model":"models/e","content":{"parts":[{"text":"hello"}]}}"#;
        let body: serde_json::Value =
            serde_json::from_slice(&Vertex::predict_body(one).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"instances": [{"content": "hello"}]})
        );
    }
}
