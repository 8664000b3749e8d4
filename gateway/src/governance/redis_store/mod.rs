//! Shared counters in Redis: budgets with reservations, sliding-window rate limits and concurrency
//! limits
//! that several gateway processes enforce together, each read-modify-write done atomically by a
//! Lua script on the server.
//!
//! This module owns only the Redis side: the key layout, the scripts and the connection. The
//! semantics mirror the single-node versions exactly — [`switchyard_filters::budget`]
//! (`committed` = spent + reserved, reserve only if committed + amount ≤ limit, settle swaps the
//! reservation for the actual cost) and [`switchyard_filters::ratelimit`] (a sliding window of
//! per-second counts: the seconds `s-60..=s` are counted, a unit of second `b` leaves at the start
//! of second `b+61`; `limit` units back to back pass, the next waits until enough have left; the
//! token check refuses while the window holds `limit` or more) — but nothing here
//! decides which budget or limit applies to a request, computes periods or costs, or falls back
//! to local state when Redis is down: callers own all of that.
//!
//! Keys (every one under the store's `prefix`):
//! - `{prefix}budget:{key}:{period_start}`: a hash `{committed, spent}` in nano-dollars;
//! - `{prefix}win:{key}`: a hash of per-second counts (field: the second since the Unix epoch
//!   on the Redis server's clock — `TIME` inside the script, so all gateways agree; value: the
//!   units counted in it) with two bookkeeping fields: `n`, the sum of the counted seconds, and
//!   `h`, the oldest second still holding units. A call reads those two, deletes the seconds that
//!   left the window since `h` (each second is visited once in the key's life) and adds its own:
//!   a handful of commands whatever the traffic, where reading the whole hash cost up to 61 fields
//!   and a sort per call. The key expires [`WINDOW_TTL_MS`] after its last write, when all of
//!   them have left. (`win:`, not the earlier releases' `window:` layout without `n`/`h`: during
//!   a rolling upgrade each layout counts its own replicas for at most a minute.)
//! - `{prefix}conc:{key}`: requests in flight, expiring 10 minutes after the last entry (a safety
//!   net against holders that crashed without exiting).
//!
//! Lua numbers are doubles: budgets are exact below 2^53 nano-dollars (about $9 million per
//! period; the script computes in doubles and writes the results back), and a rate window's sum
//! is exact below 2^53 units (a call adds at most `u32::MAX`, as the local buckets).
//!
//! Every call is bounded by [`OP_TIMEOUT`] so that a dead Redis never hangs a request; the
//! connection manager reconnects by itself when Redis comes back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

pub mod steps;

pub use steps::{Outcome, Step, WindowMode};

/// The longest any one command may take before it fails with [`RedisStoreError::Timeout`].
pub const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`RedisStore::connect`] waits for a first connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A rate window's key expires this long after its last write: a little over the 61 s its newest
/// field is counted.
const WINDOW_TTL_MS: u64 = 62_000;
/// Concurrency keys expire this long after the last entry.
const CONC_TTL_MS: u64 = 600_000;

#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: invalid url: {0}")]
    Url(String),
    #[error("redis: {0} timed out")]
    Timeout(&'static str),
    #[error("redis: {0}: an unexpected reply")]
    Reply(&'static str),
    /// A batch this call was part of failed.
    #[error("{0}")]
    Shared(String),
}

/// The outcome of a sliding-window call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOutcome {
    pub allowed: bool,
    /// Units the limiter would still admit right now (after this call's units, if taken).
    pub remaining: u64,
    /// Nanoseconds until the oldest units counted leave the window (0 when it is empty).
    pub reset_ns: u64,
    /// When refused: nanoseconds to wait before retrying (0 when allowed).
    pub retry_after_ns: u64,
}

/// Seeds a period only if it has no key yet: `KEYS[1]` budget hash; `ARGV` spent, ttl.
const SEED_LUA: &str = r#"
local k = KEYS[1]
if redis.call('EXISTS', k) == 1 then
  return 0
end
redis.call('HSET', k, 'committed', ARGV[1], 'spent', ARGV[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', k, ARGV[2])
end
return 1
"#;

struct Scripts {
    seed: Script,
    steps: Script,
}

/// A handle on the shared counters; cheap to share behind an `Arc`, usable from many tasks.
pub struct RedisStore {
    conn: ConnectionManager,
    scripts: Scripts,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Amounts travel as Redis integers (signed 64-bit).
fn clamp_i64(v: u64) -> u64 {
    v.min(i64::MAX as u64)
}

async fn bounded<T>(
    what: &'static str,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisStoreError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisStoreError::Timeout(what)),
    }
}

impl RedisStore {
    /// Connects (fails fast if unreachable: a connect timeout of ~1 s). `prefix` namespaces every
    /// key (e.g. "switchyard:").
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, RedisStoreError> {
        let client = redis::Client::open(url).map_err(|e| RedisStoreError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT)
            // Reconnection: a few quick attempts (100 ms, 200 ms, …, at most 1 s apart); once
            // they are spent, the next command that fails on I/O starts another round.
            .set_number_of_retries(3)
            .set_factor(100)
            .set_exponent_base(2)
            .set_max_delay(1000);
        let conn = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(c) => c?,
            Err(_) => return Err(RedisStoreError::Timeout("connect")),
        };
        Ok(RedisStore {
            conn,
            scripts: Scripts {
                seed: Script::new(SEED_LUA),
                steps: Script::new(steps::STEPS_LUA),
            },
            prefix: prefix.to_string(),
        })
    }

    /// The key layout of the module doc: `{prefix}{kind}{key}`, then `:{period}` for budgets.
    fn write_key_of(&self, out: &mut String, kind: &str, key: &str, period: Option<i64>) {
        use std::fmt::Write;
        out.push_str(&self.prefix);
        out.push_str(kind);
        out.push_str(key);
        if let Some(p) = period {
            let _ = write!(out, ":{p}");
        }
    }

    fn budget_key(&self, key: &str, period_start: i64) -> String {
        let mut out = String::new();
        self.write_key_of(&mut out, "budget:", key, Some(period_start));
        out
    }

    /// Budget `key` for the period starting `period_start` (unix s); `ttl_secs` = seconds until the
    /// period's end + 1 day (None for total budgets: no expiry).
    /// Atomically: if committed + amount <= limit then committed += amount, return
    /// Ok(committed_after) else return Err(committed_now).
    pub async fn reserve(
        &self,
        key: &str,
        period_start: i64,
        limit: u64,
        amount: u64,
        ttl_secs: Option<u64>,
    ) -> Result<Result<u64, u64>, RedisStoreError> {
        let step = Step::Reserve {
            key,
            period_start,
            limit,
            amount,
            ttl_secs,
            cutoff: false,
        };
        match self.steps(&[step]).await?.first() {
            Some(Outcome::Reserved(r)) => Ok(r.map(|(committed, _)| committed)),
            _ => Err(RedisStoreError::Reply("reserve")),
        }
    }

    /// committed = max(0, committed - reserved) + actual; spent += actual (same period key; if the
    /// period changed since the reservation, the caller passes the new period_start and
    /// reserved = 0).
    pub async fn settle(
        &self,
        key: &str,
        period_start: i64,
        reserved: u64,
        actual: u64,
        ttl_secs: Option<u64>,
    ) -> Result<(), RedisStoreError> {
        let step = Step::Settle {
            key,
            period_start,
            reserved,
            actual,
            ttl_secs,
        };
        self.steps(&[step]).await.map(|_| ())
    }

    /// (spent, committed) for the period.
    pub async fn totals(
        &self,
        key: &str,
        period_start: i64,
    ) -> Result<(u64, u64), RedisStoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.budget_key(key, period_start))
            .arg("spent")
            .arg("committed");
        let (spent, committed): (Option<u64>, Option<u64>) =
            bounded("totals", cmd.query_async(&mut conn)).await?;
        Ok((spent.unwrap_or(0), committed.unwrap_or(0)))
    }

    /// Seeds spent/committed for a period only if the period key does not exist yet (SETNX
    /// semantics; used at start-up from the local ledger).
    pub async fn seed(
        &self,
        key: &str,
        period_start: i64,
        spent: u64,
        ttl_secs: Option<u64>,
    ) -> Result<(), RedisStoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.seed.key(self.budget_key(key, period_start));
        inv.arg(clamp_i64(spent))
            .arg(clamp_i64(ttl_secs.unwrap_or(0)));
        let _: i64 = bounded("seed", inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn window_call(
        &self,
        key: &str,
        limit_per_minute: u64,
        cost: u64,
        mode: WindowMode,
    ) -> Result<WindowOutcome, RedisStoreError> {
        let step = Step::Window {
            key,
            limit_per_minute,
            cost,
            mode,
        };
        match self.steps(&[step]).await?.first() {
            Some(Outcome::Window(o)) => Ok(*o),
            _ => Err(RedisStoreError::Reply("sliding window")),
        }
    }

    /// A sliding-window rate limit on the Redis server's clock (TIME inside the script, so all
    /// gateways agree): takes `cost` units if the window has room for them. `check_only` (the
    /// tokens pre-check) takes nothing and answers whether the window holds less than the limit,
    /// as the local `SlidingWindow::check` (`cost` is then ignored).
    pub async fn sliding_window(
        &self,
        key: &str,
        limit_per_minute: u64,
        cost: u64,
        check_only: bool,
    ) -> Result<WindowOutcome, RedisStoreError> {
        let mode = if check_only {
            WindowMode::Check
        } else {
            WindowMode::Acquire
        };
        self.window_call(key, limit_per_minute, cost, mode).await
    }

    /// Charges `cost` units after the fact, whatever the state (tokens, once the answer is in).
    pub async fn sliding_window_charge(
        &self,
        key: &str,
        limit_per_minute: u64,
        cost: u64,
    ) -> Result<(), RedisStoreError> {
        self.window_call(key, limit_per_minute, cost, WindowMode::Charge)
            .await
            .map(|_| ())
    }

    /// Concurrency: INCR if below limit (key expires after 10 min as a safety net against crashed
    /// holders), returns whether entered.
    pub async fn enter(&self, key: &str, limit: u64) -> Result<bool, RedisStoreError> {
        match self.steps(&[Step::Enter { key, limit }]).await?.first() {
            Some(Outcome::Entered(e)) => Ok(*e),
            _ => Err(RedisStoreError::Reply("enter")),
        }
    }

    /// Leaves a concurrency limit: DECR, never below 0.
    pub async fn exit(&self, key: &str) -> Result<(), RedisStoreError> {
        self.steps(&[Step::Exit { key, count: 1 }])
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
