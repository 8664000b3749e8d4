//! OAuth access tokens for cloud accounts (Azure Entra client credentials, Google's JWT-bearer
//! grant): fetched from the account's token endpoint, cached until shortly before they expire and
//! refreshed ahead of that in the background, so no request waits for (or fails on) a refresh
//! while a valid token is at hand. Owns only the token and its endpoint; the grant's form comes
//! from the source ([`super::entra`], [`super::vertex`]). Tokens are [`Secret`]s: never logged.

use crate::config::{HttpEndpoint, Secret};
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one token request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the form of one token request (a fresh assertion each time, for JWT grants).
pub trait Grant: Send + Sync + std::fmt::Debug {
    /// The `application/x-www-form-urlencoded` body.
    fn form(&self) -> Result<String, String>;
}

/// A token endpoint: where the grant is posted.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    pub endpoint: HttpEndpoint,
    /// Path and query below the endpoint's host.
    pub path: String,
    /// The provider's `proxy`: the token is fetched through it too.
    pub proxy: Option<Arc<super::egress::EgressProxy>>,
}

#[derive(Debug)]
struct Token {
    value: Arc<Secret>,
    /// Past this, a request fetches a new token before it is sent.
    usable_until: Instant,
    /// Past this, a background refresh is started (the current token is still used).
    refresh_at: Instant,
}

/// A cached access token and how to get the next one.
pub struct TokenCache {
    endpoint: TokenEndpoint,
    grant: Box<dyn Grant>,
    current: Mutex<Option<Token>>,
    /// One fetch at a time (inline or in the background).
    fetching: tokio::sync::Mutex<()>,
    connector: OnceLock<Connector>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("endpoint", &self.endpoint.endpoint.base_url)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(endpoint: TokenEndpoint, grant: Box<dyn Grant>) -> Self {
        TokenCache {
            endpoint,
            grant,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            connector: OnceLock::new(),
        }
    }

    /// A valid token: the cached one (refreshing it in the background when it nears its end),
    /// or a fresh one fetched now when there is none that is still usable.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<Secret>, String> {
        let now = Instant::now();
        if let Some((value, stale)) = self.cached(now) {
            if stale {
                if let Ok(guard) = self.fetching.try_lock() {
                    drop(guard);
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.refresh(true).await {
                            log::warn!("background token refresh failed: {e}");
                        }
                    });
                }
            }
            return Ok(value);
        }
        self.refresh(false).await
    }

    /// The cached token when usable at `now`, and whether it is due for a refresh.
    fn cached(&self, now: Instant) -> Option<(Arc<Secret>, bool)> {
        let guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let t = guard.as_ref().filter(|t| now < t.usable_until)?;
        Some((t.value.clone(), now >= t.refresh_at))
    }

    /// Fetches a new token (one fetch at a time; a caller that waited for another's fetch takes
    /// its result). `ahead`: a background refresh, which fetches even while a token is usable.
    async fn refresh(&self, ahead: bool) -> Result<Arc<Secret>, String> {
        let _one = self.fetching.lock().await;
        let now = Instant::now();
        if let Some((value, stale)) = self.cached(now) {
            if !ahead || !stale {
                return Ok(value);
            }
        }
        let (value, lifetime) = self.fetch().await?;
        let value = Arc::new(value);
        let now = Instant::now();
        // Refresh once half the lifetime is gone (at most 5 minutes before the end); stop using
        // a token a little before it expires, so a request in flight never carries a dead one.
        let ahead_by = (lifetime / 2).min(Duration::from_secs(300));
        let margin = (lifetime / 4).min(Duration::from_secs(30));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Token {
            value: value.clone(),
            usable_until: now + lifetime - margin,
            refresh_at: now + lifetime - ahead_by,
        });
        Ok(value)
    }

    async fn fetch(&self) -> Result<(Secret, Duration), String> {
        let connector = self.connector.get_or_init(|| Connector::new(None));
        let form = self.grant.form()?;
        let ep = &self.endpoint;
        let target = crate::identity::http::Target {
            ep: &ep.endpoint,
            proxy: ep.proxy.as_deref(),
        };
        let (status, body) = crate::identity::http::call_to(
            connector,
            target,
            "POST",
            &ep.path,
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
                ("accept", "application/json".to_string()),
            ],
            Bytes::from(form),
            FETCH_TIMEOUT,
        )
        .await
        .map_err(|e| format!("token endpoint {}: {e}", ep.endpoint.base_url))?;
        parse_token_answer(status, &body)
            .map_err(|e| format!("token endpoint {}: {e}", ep.endpoint.base_url))
    }
}

/// Reads an OAuth token answer: `access_token` and `expires_in` (seconds; a number or a string,
/// as Entra's v1 endpoint sends). Error answers name their `error` code only (never the body).
pub fn parse_token_answer(status: u16, body: &[u8]) -> Result<(Secret, Duration), String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| format!("answered {status} with a body that is not JSON"))?;
    if !(200..300).contains(&status) {
        let code = v.get("error").and_then(|e| e.as_str()).unwrap_or("unknown");
        return Err(format!("answered {status} ({code})"));
    }
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("answer has no access_token")?;
    let secs = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3600)
    .max(1);
    Ok((Secret::new(token.to_string()), Duration::from_secs(secs)))
}

/// `application/x-www-form-urlencoded` from pairs.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const FORM: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, FORM),
                utf8_percent_encode(v, FORM)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        let (t, d) = parse_token_answer(
            200,
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0"}"#,
        )
        .unwrap();
        assert_eq!((t.expose(), d), ("eyJ0", Duration::from_secs(3599)));
        let (_, d) = parse_token_answer(200, br#"{"expires_in":"60","access_token":"x"}"#).unwrap();
        assert_eq!(d, Duration::from_secs(60));
        let e = parse_token_answer(
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: secret xyz"}"#,
        )
        .unwrap_err();
        assert_eq!(e, "answered 401 (invalid_client)");
        assert!(parse_token_answer(200, br#"{"expires_in":5}"#).is_err());
    }

    #[test]
    fn forms_are_encoded() {
        assert_eq!(
            form_encode(&[("scope", "https://x/.default"), ("a b", "c&d")]),
            "scope=https%3A%2F%2Fx%2F.default&a%20b=c%26d"
        );
    }
}
