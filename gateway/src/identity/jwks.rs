//! The issuer's signing keys (JWKS), fetched over HTTP(S) with Pingora's connector: at start,
//! every `refresh` interval, and on demand when a token names an unknown `kid` (at most once per
//! [`ON_DEMAND_INTERVAL`], so a flood of bogus `kid`s cannot hammer the issuer).
//!
//! Also the cache of verified tokens, so the hot path verifies a signature once per token. An
//! entry lives until the token's `exp` but never longer than [`MAX_CACHE`], and carries the key
//! that verified it: swapping in a new JWKS drops the entries of every key that left it, so a
//! rotated-out key stops working at once (introspection answers have no key and are bounded by
//! [`MAX_CACHE`] alone). Refused introspection answers are remembered for [`REFUSAL_TTL`], so a
//! replayed bad opaque token does not reach the issuer each time.

use crate::config::OAuthSettings;
use arc_swap::ArcSwap;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_filters::auth::jwt::{self, JwkSet, JwtError, Verified};
use switchyard_filters::auth::keys::{hash_key, KeyHash, KEY_PREFIX};
use switchyard_filters::auth::AuthError;

pub const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a verified token (or an introspection answer) is reused without checking it again.
pub const MAX_CACHE: Duration = Duration::from_secs(300);
/// How long a refused introspection answer is reused.
pub const REFUSAL_TTL: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_SHARDS: usize = 16;
const CACHE_MAX_PER_SHARD: usize = 4096;
const REFUSALS_MAX_PER_SHARD: usize = 1024;

/// Prefixes of credentials that are API keys, never OAuth tokens: Switchyard's virtual keys,
/// OpenAI/Anthropic (`sk-`, `sk-ant-`), AWS access key ids, Google API keys, GitHub and Slack
/// tokens. Such a credential is never sent to the identity provider.
const KEY_SHAPED: &[&str] = &[
    KEY_PREFIX,
    "sk-",
    "AKIA",
    "ASIA",
    "AIza",
    "ghp_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
];

/// Whether `secret` looks like an API key (ours or a provider's) rather than an opaque token.
pub fn key_shaped(secret: &str) -> bool {
    KEY_SHAPED.iter().any(|p| secret.starts_with(p))
}

/// A cached answer, reusable until `until` (unix seconds, inclusive).
struct Timed<T> {
    value: T,
    until: u64,
}

/// The answer cached for `key`, if still valid at `now`.
fn live<T: Clone>(map: &HashMap<KeyHash, Timed<T>>, key: &KeyHash, now: u64) -> Option<T> {
    map.get(key)
        .filter(|e| e.until >= now)
        .map(|e| e.value.clone())
}

/// Caches `entry` under `key`; a full map first drops what expired, then everything.
fn insert_bounded<T>(
    map: &mut HashMap<KeyHash, Timed<T>>,
    max: usize,
    key: KeyHash,
    entry: Timed<T>,
    now: u64,
) {
    if map.len() >= max {
        map.retain(|_, e| e.until >= now);
        if map.len() >= max {
            map.clear();
        }
    }
    map.insert(key, entry);
}

/// One lock's worth of the cache: verified tokens and refused introspections by token hash.
#[derive(Default)]
struct Shard {
    verified: HashMap<KeyHash, Timed<Verified>>,
    refused: HashMap<KeyHash, Timed<AuthError>>,
}

pub struct Jwks {
    pub set: ArcSwap<JwkSet>,
    connector: Connector,
    started: Instant,
    /// Milliseconds since `started` of the last fetch attempt (0 = never).
    last_attempt_ms: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
    cache: [Mutex<Shard>; CACHE_SHARDS],
}

impl Jwks {
    pub fn new(connector: Connector) -> Self {
        Jwks {
            set: ArcSwap::from_pointee(JwkSet::default()),
            connector,
            started: Instant::now(),
            last_attempt_ms: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            cache: std::array::from_fn(|_| Mutex::new(Shard::default())),
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
        self.swap(set);
        Ok(n)
    }

    /// Serves `set` from now on and forgets the tokens verified by keys it no longer holds.
    fn swap(&self, set: JwkSet) {
        let set = Arc::new(set);
        // Stored before the purge: `remember` checks the key against the stored set under the
        // shard lock, so an entry verified by a removed key cannot slip in after its shard is
        // purged.
        self.set.store(set.clone());
        for shard in &self.cache {
            if let Ok(mut shard) = shard.lock() {
                shard
                    .verified
                    .retain(|_, e| e.value.key.as_ref().is_none_or(|k| set.contains(k)));
            }
        }
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

    fn shard(&self, key: &KeyHash) -> &Mutex<Shard> {
        &self.cache[key[0] as usize % CACHE_SHARDS]
    }

    /// A cached verification of `token`, if still valid at `now_unix`.
    pub fn cached(&self, token: &str, now_unix: u64) -> Option<Verified> {
        let key = hash_key(token);
        live(&self.shard(&key).lock().ok()?.verified, &key, now_unix)
    }

    /// Caches `verified` until its `exp`, at most [`MAX_CACHE`]. A token verified by a key that
    /// is no longer in the JWKS (swapped out meanwhile) is not cached.
    pub fn remember(&self, token: &str, verified: &Verified, now_unix: u64) {
        let key = hash_key(token);
        let until = verified
            .expires_unix
            .min(now_unix.saturating_add(MAX_CACHE.as_secs()));
        if let Ok(mut shard) = self.shard(&key).lock() {
            if verified
                .key
                .as_ref()
                .is_some_and(|k| !self.set.load().contains(k))
            {
                return;
            }
            let entry = Timed {
                value: verified.clone(),
                until,
            };
            insert_bounded(
                &mut shard.verified,
                CACHE_MAX_PER_SHARD,
                key,
                entry,
                now_unix,
            );
        }
    }

    /// A refusal of `token` remembered within the last [`REFUSAL_TTL`].
    pub fn refused(&self, token: &str, now_unix: u64) -> Option<AuthError> {
        let key = hash_key(token);
        live(&self.shard(&key).lock().ok()?.refused, &key, now_unix)
    }

    /// Remembers for [`REFUSAL_TTL`] that the issuer refused `token` (not for an issuer error).
    pub fn remember_refusal(&self, token: &str, refusal: &AuthError, now_unix: u64) {
        let key = hash_key(token);
        if let Ok(mut shard) = self.shard(&key).lock() {
            let entry = Timed {
                value: refusal.clone(),
                until: now_unix.saturating_add(REFUSAL_TTL.as_secs()),
            };
            insert_bounded(
                &mut shard.refused,
                REFUSALS_MAX_PER_SHARD,
                key,
                entry,
                now_unix,
            );
        }
    }

    /// Forgets cached verifications and refusals (the policy or the keys changed).
    pub fn clear_cache(&self) {
        for s in &self.cache {
            if let Ok(mut s) = s.lock() {
                s.verified.clear();
                s.refused.clear();
            }
        }
    }

    /// Verifies a bearer JWT for `oauth`: from the cache, else against the JWKS (refreshed on
    /// demand once when the token names an unknown `kid`), caching the result.
    pub async fn verify(
        &self,
        oauth: &OAuthSettings,
        token: &str,
        now: u64,
    ) -> Result<Verified, AuthError> {
        if let Some(v) = self.cached(token, now) {
            return Ok(v);
        }
        let attempt = |set: &JwkSet| jwt::verify(token, set, &oauth.policy, now);
        let verified = match attempt(&self.set.load()) {
            Err(JwtError::UnknownKid(_)) => {
                // Boxed: a key fetch is ~2.5 KB of future that every token check carried.
                Box::pin(self.refresh_on_demand(oauth)).await;
                attempt(&self.set.load())
            }
            other => other,
        }
        .map_err(|e| match e {
            JwtError::Auth(a) => a,
            JwtError::UnknownKid(kid) => {
                AuthError::InvalidToken(format!("unknown key id `{}`", super::bounded(&kid)))
            }
        })?;
        self.remember(token, &verified, now);
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_filters::auth::jwt::KeyId;
    use switchyard_filters::auth::{CredentialKind, Identity};

    const NOW: u64 = 1_800_000_000;
    /// 2200-01-01: an `exp` its author chose far away.
    const YEAR_2200: u64 = 7_258_118_400;

    /// A JWKS of RSA keys given as (kid, modulus in base64url); `None` = no kid.
    fn set(keys: &[(Option<&str>, &str)]) -> JwkSet {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|(kid, n)| {
                let mut k = serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB"});
                if let Some(kid) = kid {
                    k["kid"] = serde_json::json!(kid);
                }
                k
            })
            .collect();
        JwkSet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn verified(name: &str, key: Option<KeyId>, exp: u64) -> Verified {
        Verified {
            identity: Identity {
                name: name.into(),
                team: None,
                project: None,
                user: Some(name.into()),
                kind: CredentialKind::UserToken,
                models: None,
            },
            scopes: Vec::new(),
            expires_unix: exp,
            key,
        }
    }

    fn jwks() -> Jwks {
        Jwks::new(Connector::new(None))
    }

    #[test]
    fn an_entry_lives_until_its_exp_and_at_most_max_cache() {
        let j = jwks();
        let s = set(&[(Some("k1"), "AQAB")]);
        j.swap(s.clone());
        let key = Some(s.keys[0].id());
        j.remember("far", &verified("far", key.clone(), YEAR_2200), NOW);
        let max = MAX_CACHE.as_secs();
        assert_eq!(max, 300);
        assert!(j.cached("far", NOW + max).is_some());
        assert!(
            j.cached("far", NOW + max + 1).is_none(),
            "outlived MAX_CACHE"
        );
        j.remember("near", &verified("near", key, NOW + 10), NOW);
        assert!(j.cached("near", NOW + 10).is_some());
        assert!(j.cached("near", NOW + 11).is_none(), "outlived its exp");
    }

    #[test]
    fn a_swap_drops_the_entries_of_removed_keys_and_keeps_the_others() {
        let j = jwks();
        let old = set(&[
            (Some("k1"), "AQAB"),
            (Some("k2"), "AQAD"),
            (None, "AQAF"),
            (Some("k4"), "AQAH"),
        ]);
        j.swap(old.clone());
        let ids: Vec<KeyId> = old.keys.iter().map(|k| k.id()).collect();
        for (i, id) in ids.iter().enumerate() {
            let name = format!("t{i}");
            j.remember(&name, &verified(&name, Some(id.clone()), YEAR_2200), NOW);
            assert!(j.cached(&name, NOW).is_some());
        }
        // An introspection answer has no key.
        j.remember("opaque", &verified("opaque", None, NOW + 60), NOW);

        // k1 and the kid-less key leave; k2 stays; k4's kid now names other material.
        j.swap(set(&[
            (Some("k2"), "AQAD"),
            (Some("k4"), "AQAJ"),
            (Some("k5"), "AQAL"),
        ]));
        assert!(j.cached("t0", NOW).is_none(), "k1 was rotated out");
        assert!(j.cached("t1", NOW).is_some(), "k2 is still served");
        assert!(j.cached("t2", NOW).is_none(), "the kid-less key left");
        assert!(j.cached("t3", NOW).is_none(), "k4 is another key now");
        assert!(
            j.cached("opaque", NOW).is_some(),
            "introspection is unaffected"
        );

        // A token verified against the old set just before the swap is not cached after it.
        j.remember(
            "late",
            &verified("late", Some(ids[0].clone()), YEAR_2200),
            NOW,
        );
        assert!(j.cached("late", NOW).is_none());
    }

    #[test]
    fn refusals_are_remembered_briefly() {
        let j = jwks();
        let refusal = AuthError::InvalidToken("token is not active".into());
        assert_eq!(j.refused("bad", NOW), None);
        j.remember_refusal("bad", &refusal, NOW);
        assert_eq!(j.refused("bad", NOW + REFUSAL_TTL.as_secs()), Some(refusal));
        assert_eq!(j.refused("bad", NOW + REFUSAL_TTL.as_secs() + 1), None);
        assert_eq!(j.refused("other", NOW), None);
        assert!(
            j.cached("bad", NOW).is_none(),
            "a refusal is no verification"
        );
        j.remember_refusal("bad", &AuthError::TokenExpired, NOW);
        j.clear_cache();
        assert_eq!(j.refused("bad", NOW), None);
    }

    #[test]
    fn the_refusal_cache_is_bounded() {
        let j = jwks();
        for i in 0..CACHE_SHARDS * REFUSALS_MAX_PER_SHARD * 2 {
            j.remember_refusal(&format!("t{i}"), &AuthError::TokenExpired, NOW);
        }
        for shard in &j.cache {
            assert!(shard.lock().unwrap().refused.len() <= REFUSALS_MAX_PER_SHARD);
        }
    }

    #[test]
    fn api_keys_are_told_from_opaque_tokens() {
        for key in [
            "sy-abc",
            "sk-proj-abc",
            "sk-ant-api03-abc",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA-abc",
            "ghp_abc",
            "xoxb-1-2",
        ] {
            assert!(key_shaped(key), "{key}");
        }
        for token in ["opaque-good-token", "2YotnFZFEjr1zCsicMWpAA", "Sk-x", "skx"] {
            assert!(!key_shaped(token), "{token}");
        }
    }
}
