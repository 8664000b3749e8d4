//! The issuer's signing keys (JWKS), fetched over HTTP(S) with Pingora's connector: at start,
//! every `refresh` interval, and on demand when a token names an unknown `kid` (at most once per
//! [`ON_DEMAND_INTERVAL`], so a flood of bogus `kid`s cannot hammer the issuer).
//! Also the cache of verified tokens, so the hot path verifies a signature once per token.

use crate::config::OAuthSettings;
use arc_swap::ArcSwap;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_filters::auth::jwt::{JwkSet, Verified};
use switchyard_filters::auth::keys::{hash_key, KeyHash};

pub const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
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
        let (status, body) = super::http::call(
            &self.connector,
            &oauth.jwks,
            "GET",
            &oauth.jwks_path,
            &[("accept", "application/json".to_string())],
            Bytes::new(),
            FETCH_TIMEOUT,
        )
        .await?;
        if status != 200 {
            return Err(format!("JWKS endpoint answered {status}"));
        }
        Ok(body)
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
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
