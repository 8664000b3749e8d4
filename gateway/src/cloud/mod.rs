//! Cloud accounts as provider kinds: `azure` (Azure OpenAI), `bedrock` (Amazon Bedrock
//! Converse) and `vertex` (Google Vertex AI). Each speaks dialects of `switchyard_adapters`
//! (Azure: OpenAI's, byte for byte; Bedrock: Converse; Vertex: Gemini's, or Anthropic's for
//! Claude models) and adds where a request goes (the URL layout) and how it is authorised
//! (`api-key`, an Entra ID or Google OAuth bearer token, an AWS SigV4 signature). This module owns those
//! two things: [`Cloud::api_path`] and [`Cloud::authorize`] (with the async
//! [`Cloud::credential`] fetched before the request head is built). It must not touch bodies,
//! routing or the relay.

pub mod content_filter;
pub mod egress;
pub mod entra;
pub mod sigv4;
pub mod token;
pub mod vertex;

use crate::config::Secret;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use switchyard_adapters::canonical::Dialect;
use token::TokenCache;

/// A cloud account behind an HTTP provider.
#[derive(Debug)]
pub enum Cloud {
    Azure(Azure),
    Bedrock(Bedrock),
    Vertex(vertex::Vertex),
}

/// `kind: bedrock`.
#[derive(Debug)]
pub struct Bedrock {
    pub region: String,
    pub credentials: sigv4::AwsCredentials,
}

/// The request a credential is for (SigV4 signs all of it).
pub struct Outgoing<'a> {
    /// The token from [`Cloud::credential`].
    pub token: Option<&'a Secret>,
    pub method: &'a str,
    /// Path and query as sent.
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

/// `kind: azure`.
#[derive(Debug)]
pub struct Azure {
    /// `api_version`: the `?api-version=` of every call.
    pub api_version: String,
    pub auth: AzureAuth,
}

/// How Azure OpenAI calls are authorised.
#[derive(Debug)]
pub enum AzureAuth {
    /// `api_key`: the `api-key` header.
    Key(Secret),
    /// `entra`: a client-credentials bearer token.
    Entra(Arc<TokenCache>),
}

/// Bedrock's health probe: `ListAsyncInvokes`, one result at most.
const BEDROCK_PROBE: &str = "/async-invoke?maxResults=1";

/// The header Azure OpenAI reads its key from.
static API_KEY: HeaderName = HeaderName::from_static("api-key");

impl Cloud {
    /// The provider kind's name (metrics, `/v1/health`, the capability table).
    pub fn kind(&self) -> &'static str {
        match self {
            Cloud::Azure(_) => "azure",
            Cloud::Bedrock(_) => "bedrock",
            Cloud::Vertex(_) => "vertex",
        }
    }

    /// The dialect a deployment of `model` speaks (`default`: the provider's).
    pub fn dialect_for(&self, model: &str, default: Dialect) -> Dialect {
        match self {
            Cloud::Vertex(_) => vertex::Vertex::dialect_for(model),
            _ => default,
        }
    }

    /// The body as the cloud takes it for a call to `path` (from [`Cloud::api_path`]), when it
    /// differs from the dialect's (Vertex Claude; Vertex embeddings, `:predict`).
    pub fn adapt_body(
        &self,
        model: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Option<Bytes>, String> {
        match self {
            Cloud::Vertex(_) if vertex::Vertex::dialect_for(model) == Dialect::Anthropic => {
                vertex::Vertex::claude_body(body).map(Some)
            }
            Cloud::Vertex(_) if path.ends_with(vertex::PREDICT) => {
                vertex::Vertex::predict_body(body).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The upstream path (below `base_url`) of an API call (`/chat/completions`,
    /// `/embeddings`, `/completions`) to `model` (Azure: the deployment name).
    pub fn api_path(&self, api_path: &str, model: &str, stream: bool) -> String {
        match self {
            Cloud::Vertex(v) => v.api_path(api_path, model, stream),
            Cloud::Azure(a) => format!(
                "/openai/deployments/{}{api_path}?api-version={}",
                encode_segment(model),
                encode_segment(&a.api_version)
            ),
            // The Converse encoder already built `/model/{modelId}/converse[-stream]`.
            Cloud::Bedrock(_) => api_path.to_string(),
        }
    }

    /// The health probe's path (below `base_url`): a cheap authenticated read on the same
    /// endpoint the provider's calls go to. Azure: the resource's model list
    /// (`GET /openai/models`); Bedrock: `ListAsyncInvokes` of the runtime API
    /// (`GET /async-invoke?maxResults=1`, SigV4-signed like a Converse call: the signature,
    /// the credentials and the region are checked, nothing is invoked); Vertex: the
    /// project's location (`GET /v1/projects/{project}/locations/{location}`, Locations.get,
    /// with the service account's token, so a token fetch is part of every probe).
    pub fn probe_path(&self) -> Option<String> {
        match self {
            Cloud::Azure(a) => Some(format!(
                "/openai/models?api-version={}",
                encode_segment(&a.api_version)
            )),
            Cloud::Bedrock(_) => Some(BEDROCK_PROBE.to_string()),
            Cloud::Vertex(v) => Some(v.probe_path()),
        }
    }

    /// The credential a request needs fetched ahead (a cached bearer token), if any.
    pub async fn credential(&self) -> Result<Option<Arc<Secret>>, String> {
        match self {
            Cloud::Azure(Azure {
                auth: AzureAuth::Entra(cache),
                ..
            })
            | Cloud::Vertex(vertex::Vertex { tokens: cache, .. }) => cache.token().await.map(Some),
            Cloud::Azure(_) | Cloud::Bedrock(_) => Ok(None),
        }
    }

    /// Adds the credential headers (marked sensitive) to a request head that already carries
    /// its `host` and `content-type`.
    pub fn authorize(&self, out: &Outgoing<'_>, h: &mut HeaderMap) -> Result<(), String> {
        let (name, value) = match (self, out.token) {
            (Cloud::Bedrock(b), _) => {
                let amz_date = sigv4::amz_date(crate::clock::unix_secs());
                let req = sigv4::Request {
                    method: out.method,
                    path_and_query: out.path_and_query,
                    body: out.body,
                    region: &b.region,
                    service: "bedrock",
                    amz_date: &amz_date,
                };
                return sigv4::sign(&b.credentials, &req, h);
            }
            (
                Cloud::Azure(Azure {
                    auth: AzureAuth::Key(k),
                    ..
                }),
                _,
            ) => (API_KEY.clone(), k.expose().to_string()),
            (Cloud::Azure(_) | Cloud::Vertex(_), Some(t)) => (
                http::header::AUTHORIZATION,
                format!("Bearer {}", t.expose()),
            ),
            (Cloud::Azure(_) | Cloud::Vertex(_), None) => return Err("no access token".into()),
        };
        let mut value =
            HeaderValue::from_str(&value).map_err(|_| "credential is not a valid header value")?;
        value.set_sensitive(true);
        h.insert(name, value);
        Ok(())
    }

    /// The credential headers of a `GET` of `path` on `host` as pairs (health checks, on the
    /// small identity client, which sends the same `host`).
    pub async fn auth_pairs(
        &self,
        host: &str,
        path: &str,
    ) -> Result<Vec<(&'static str, String)>, String> {
        let token = self.credential().await?;
        let mut h = HeaderMap::new();
        h.insert(
            http::header::HOST,
            HeaderValue::from_str(host).map_err(|_| "invalid host")?,
        );
        let out = Outgoing {
            token: token.as_deref(),
            method: "GET",
            path_and_query: path,
            body: b"",
        };
        self.authorize(&out, &mut h)?;
        Ok(h.iter()
            .filter(|(k, _)| *k != http::header::HOST)
            .filter_map(|(k, v)| {
                let name: &'static str = match k.as_str() {
                    "api-key" => "api-key",
                    "x-amz-date" => "x-amz-date",
                    "x-amz-security-token" => "x-amz-security-token",
                    "x-amz-content-sha256" => "x-amz-content-sha256",
                    _ => "authorization",
                };
                v.to_str().ok().map(|v| (name, v.to_string()))
            })
            .collect())
    }
}

/// Percent-encodes one path segment or query value.
fn encode_segment(s: &str) -> percent_encoding::PercentEncode<'_> {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure_key() -> Cloud {
        Cloud::Azure(Azure {
            api_version: "2024-10-21".into(),
            auth: AzureAuth::Key(Secret::new("k-123".into())),
        })
    }

    #[test]
    fn azure_paths() {
        let c = azure_key();
        assert_eq!(
            c.api_path("/chat/completions", "gpt-4o-prod", false),
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            c.api_path("/embeddings", "a b/c", false),
            "/openai/deployments/a%20b%2Fc/embeddings?api-version=2024-10-21"
        );
        assert_eq!(
            c.probe_path().as_deref(),
            Some("/openai/models?api-version=2024-10-21")
        );
    }

    #[test]
    fn azure_key_header_is_sensitive() {
        let mut h = HeaderMap::new();
        let out = Outgoing {
            token: None,
            method: "POST",
            path_and_query: "/",
            body: b"",
        };
        azure_key().authorize(&out, &mut h).unwrap();
        let v = h.get("api-key").unwrap();
        assert_eq!(v, "k-123");
        assert!(v.is_sensitive());
        assert!(h.get("authorization").is_none());
    }
}
