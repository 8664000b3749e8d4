//! The issuer's signing keys (JWKS), fetched over HTTP(S) with Pingora's connector: at start,
//! every `refresh` interval, and on demand when a token names an unknown `kid` (at most once per
//! [`ON_DEMAND_INTERVAL`], so a flood of bogus `kid`s cannot hammer the issuer).
//! Also the cache of verified tokens, so the hot path verifies a signature once per token.

use crate::config::OAuthSettings;
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_filters::auth::jwt::{JwkSet, Verified};
use switchyard_filters::auth::keys::{hash_key, KeyHash};

pub const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const CACHE_SHARDS: usize = 16;
const CACHE_MAX_PER_SHARD: usize = 4096;

pub struct Jwks {
    pub set: ArcSwap<JwkSet>,
    connector: Connector,
    started: Instant,
    /// Milliseconds since `started` of the last fetch attempt (0 = never).
    last_attempt_ms: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
    cache: [Mutex<HashMap<KeyHash, Verified>>; CACHE_SHARDS],
}

impl Jwks {
    pub fn new(connector: Connector) -> Self {
        Jwks {
            set: ArcSwap::from_pointee(JwkSet::default()),
            connector,
            started: Instant::now(),
            last_attempt_ms: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            cache: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Fetches the JWKS now and swaps it in.
    pub async fn fetch(&self, oauth: &OAuthSettings) -> Result<usize, String> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        self.last_attempt_ms.store(
            self.started.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
        let body = pingora_timeout::timeout(FETCH_TIMEOUT, self.get(oauth))
            .await
            .map_err(|_| format!("timed out after {FETCH_TIMEOUT:?}"))??;
        let set = JwkSet::parse(&body)?;
        let n = set.keys.len();
        self.set.store(Arc::new(set));
        Ok(n)
    }

    /// Fetches unless an attempt was made within [`ON_DEMAND_INTERVAL`].
    pub async fn refresh_on_demand(&self, oauth: &OAuthSettings) -> bool {
        let last = self.last_attempt_ms.load(Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64 + 1;
        if last != 0 && now.saturating_sub(last) < ON_DEMAND_INTERVAL.as_millis() as u64 {
            return false;
        }
        match self.fetch(oauth).await {
            Ok(n) => {
                log::info!("JWKS refreshed on demand ({n} keys)");
                true
            }
            Err(e) => {
                log::warn!("JWKS refresh failed: {e}");
                false
            }
        }
    }

    async fn get(&self, oauth: &OAuthSettings) -> Result<Bytes, String> {
        let ep = &oauth.jwks;
        let addr = tokio::net::lookup_host((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", ep.host))?
            .next()
            .ok_or_else(|| format!("{} resolved to no address", ep.host))?;
        let mut peer = HttpPeer::new(
            addr,
            ep.tls,
            if ep.tls {
                ep.host.clone()
            } else {
                String::new()
            },
        );
        peer.options.connection_timeout = Some(FETCH_TIMEOUT);
        peer.options.read_timeout = Some(FETCH_TIMEOUT);
        let (mut session, _) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connecting: {}", e.etype().as_str()))?;
        let mut req = RequestHeader::build("GET", oauth.jwks_path.as_bytes(), Some(3))
            .map_err(|e| e.to_string())?;
        req.insert_header("host", &ep.host_header)
            .map_err(|e| e.to_string())?;
        req.insert_header("accept", "application/json")
            .map_err(|e| e.to_string())?;
        req.insert_header(
            "user-agent",
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(|e| e.to_string())?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| e.to_string())?;
        session
            .finish_request_body()
            .await
            .map_err(|e| e.to_string())?;
        session
            .read_response_header()
            .await
            .map_err(|e| e.to_string())?;
        let status = session
            .response_header()
            .map(|h| h.status.as_u16())
            .unwrap_or(0);
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| e.to_string())?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("JWKS document too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        if status != 200 {
            return Err(format!("JWKS endpoint answered {status}"));
        }
        Ok(body.freeze())
    }

    fn shard(&self, key: &KeyHash) -> &Mutex<HashMap<KeyHash, Verified>> {
        &self.cache[key[0] as usize % CACHE_SHARDS]
    }

    /// A cached verification of `token`, if still valid at `now_unix`.
    pub fn cached(&self, token: &str, now_unix: u64) -> Option<Verified> {
        let key = hash_key(token);
        let shard = self.shard(&key).lock().ok()?;
        shard
            .get(&key)
            .filter(|v| v.expires_unix >= now_unix)
            .cloned()
    }

    pub fn remember(&self, token: &str, verified: &Verified, now_unix: u64) {
        let key = hash_key(token);
        if let Ok(mut shard) = self.shard(&key).lock() {
            if shard.len() >= CACHE_MAX_PER_SHARD {
                shard.retain(|_, v| v.expires_unix >= now_unix);
                if shard.len() >= CACHE_MAX_PER_SHARD {
                    shard.clear();
                }
            }
            shard.insert(key, verified.clone());
        }
    }

    /// Forgets cached verifications (the policy or the keys changed).
    pub fn clear_cache(&self) {
        for s in &self.cache {
            if let Ok(mut s) = s.lock() {
                s.clear();
            }
        }
    }
}
