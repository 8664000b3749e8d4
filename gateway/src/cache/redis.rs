//! `cache.kind: redis`: cached answers in the store's Redis, shared by every replica on it, each
//! key expiring by Redis TTL (`SET … PX`). Connected on first use; a Redis that is away or slow
//! (over [`OP_TIMEOUT`]) is a miss and a skipped store, never an error to the caller. It stores
//! and reads only; what is cached is decided in [`super`].

use super::key::{hex, Key};
use super::Entry;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

use crate::governance::redis_store::{CONNECT_TIMEOUT, OP_TIMEOUT};

/// Bytes of the fixed header before the body: tokens in and out, cost, stored and expiry times.
const HEADER: usize = 40;

/// The Redis store.
pub struct RedisCache {
    url: String,
    conn: tokio::sync::OnceCell<ConnectionManager>,
}

fn redis_key(key: &Key) -> String {
    format!("switchyard:cache:{}", hex(&key.digest()))
}

/// An entry as stored: the fixed header, then the body.
fn encode(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + e.body.len());
    out.extend_from_slice(&e.prompt_tokens.to_le_bytes());
    out.extend_from_slice(&e.completion_tokens.to_le_bytes());
    out.extend_from_slice(&e.cost_usd.to_bits().to_le_bytes());
    out.extend_from_slice(&e.stored_ms.to_le_bytes());
    out.extend_from_slice(&e.expires_ms.to_le_bytes());
    out.extend_from_slice(&e.body);
    out
}

fn decode(raw: &[u8]) -> Option<Entry> {
    let word = |i: usize| -> Option<u64> {
        let b: [u8; 8] = raw.get(i * 8..i * 8 + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    Some(Entry {
        prompt_tokens: word(0)?,
        completion_tokens: word(1)?,
        cost_usd: f64::from_bits(word(2)?),
        stored_ms: word(3)?,
        expires_ms: word(4)?,
        body: Bytes::copy_from_slice(raw.get(HEADER..)?),
    })
}

impl RedisCache {
    pub fn new(url: &str) -> RedisCache {
        RedisCache {
            url: url.to_string(),
            conn: tokio::sync::OnceCell::new(),
        }
    }

    async fn conn(&self) -> Option<ConnectionManager> {
        let c = self
            .conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(OP_TIMEOUT)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client, config).await
            })
            .await;
        match c {
            Ok(c) => Some(c.clone()),
            Err(e) => {
                log::warn!("cache: redis unavailable: {e}");
                None
            }
        }
    }

    /// The entry under `key`, if Redis has it and answers in time.
    pub async fn get(&self, key: &Key) -> Option<Entry> {
        let mut conn = self.conn().await?;
        let cmd = redis::cmd("GET").arg(redis_key(key)).to_owned();
        let got: Option<Vec<u8>> = tokio::time::timeout(OP_TIMEOUT, cmd.query_async(&mut conn))
            .await
            .ok()?
            .ok()?;
        decode(&got?)
    }

    /// Stores `entry` under `key` for `ttl`.
    pub async fn put(&self, key: Key, entry: Entry, ttl: Duration) {
        let Some(mut conn) = self.conn().await else {
            return;
        };
        let ms = ttl.as_millis().max(1) as u64;
        let cmd = redis::cmd("SET")
            .arg(redis_key(&key))
            .arg(encode(&entry))
            .arg("PX")
            .arg(ms)
            .to_owned();
        let done: Result<Result<(), redis::RedisError>, _> =
            tokio::time::timeout(OP_TIMEOUT, cmd.query_async(&mut conn)).await;
        if !matches!(done, Ok(Ok(()))) {
            log::warn!("cache: redis store failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            body: Bytes::from_static(b"{\"a\":1}"),
            prompt_tokens: 9,
            completion_tokens: 12,
            cost_usd: 0.033,
            stored_ms: 5,
            expires_ms: 6,
        };
        let d = decode(&encode(&e)).expect("decodes");
        assert_eq!(d.body, e.body);
        assert_eq!(
            (
                d.prompt_tokens,
                d.completion_tokens,
                d.cost_usd,
                d.stored_ms,
                d.expires_ms
            ),
            (9, 12, 0.033, 5, 6)
        );
        assert!(decode(b"short").is_none());
    }
}
