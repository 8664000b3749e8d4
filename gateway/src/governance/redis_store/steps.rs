//! Several counter steps in one round trip: a request's admission (its rate windows, concurrency
//! limits and budget reservations) and its release (settles, token charges, exits) each run as
//! one call of [`STEPS_LUA`], which applies the steps in order, atomically, and stops at the first
//! that refuses. One call instead of one per step is what keeps a replica on Redis near the
//! embedded store's speed: each call is a command encoded, a trip through the multiplexed
//! connection and a reply parsed (seven per governed request before, two now).
//!
//! The single-step methods of [`super::RedisStore`] (`reserve`, `sliding_window`, …) are one-step
//! calls of the same script, so the semantics the tests compare with the local accounts are
//! those of the batch. It owns the script and the step encoding; which steps a request needs is
//! decided in [`crate::governance::admission`].

use super::{bounded, clamp_i64, RedisStore, RedisStoreError, WindowOutcome};
use super::{CONC_TTL_MS, WINDOW_TTL_MS};

/// Runs the steps of `KEYS`/`ARGV` (six arguments per key: the kind, four of its own — unused
/// ones `0` — and its group) in order; returns one reply per step. Within a group, the steps
/// after the first whose reply starts with 0 (a refusal) are skipped (`{-1}`): a group is one
/// request's admission, and one call may carry several requests'.
///
/// - `window` limit cost mode ttl_ms: a sliding window on the server's clock (`TIME`), mode
///   `acquire`, `check` or `charge`; replies `{allowed, remaining, reset_ns, retry_after_ns}` as
///   the local `SlidingWindow` computes them. It decides before it writes (the local limiter adds
///   first and takes back on a refusal only because it has no lock). Times are relative to now,
///   in nanoseconds below 2^53: exact in doubles.
/// - `enter` limit ttl_ms: a concurrency counter; `{1}` entered or `{0}`.
/// - `exit`: leaves one, never below zero; `{1}`.
/// - `reserve` limit amount ttl_s cutoff: committed += amount when it stays within the limit;
///   with cutoff `1`, what is left when the amount does not fit. `{1, committed_after, amount}`
///   or `{0, committed_now, 0}`.
/// - `settle` reserved actual ttl_s: committed = max(0, committed - reserved) + actual,
///   spent += actual; `{1}`.
pub(super) const STEPS_LUA: &str = r#"
if redis.replicate_commands then
  redis.replicate_commands()
end
local SEC = 1000000000
local clock = nil

local function window(k, limit, cost, mode, ttl)
  if not clock then clock = redis.call('TIME') end
  local now_s = tonumber(clock[1])
  local into_ns = tonumber(clock[2]) * 1000
  local flat = redis.call('HGETALL', k)
  local seconds, counts, stale = {}, {}, {}
  local sum = 0
  for i = 1, #flat, 2 do
    local s = tonumber(flat[i])
    local c = tonumber(flat[i + 1]) or 0
    if not s or s < now_s - 60 then
      stale[#stale + 1] = flat[i]
    elseif c > 0 then
      seconds[#seconds + 1] = s
      counts[s] = c
      sum = sum + c
    end
  end
  if #stale > 0 then
    redis.call('HDEL', k, unpack(stale))
  end
  table.sort(seconds)
  -- Nanoseconds until the units of second s leave the window (at the start of second s + 61).
  local function leaves(s)
    return (s + 61 - now_s) * SEC - into_ns
  end
  -- Until at least `excess` units have left, oldest first; at least a second.
  local function wait(excess)
    local freed, last = 0, now_s
    for _, s in ipairs(seconds) do
      freed = freed + counts[s]
      last = s
      if freed >= excess then break end
    end
    return math.max(leaves(last), SEC)
  end
  local function reset()
    if #seconds == 0 then return 0 end
    return leaves(seconds[1])
  end
  local function add()
    redis.call('HINCRBY', k, clock[1], cost)
    redis.call('PEXPIRE', k, ttl)
    sum = sum + cost
    if cost > 0 and (#seconds == 0 or seconds[1] > now_s) then
      table.insert(seconds, 1, now_s)
    end
  end
  if mode == 'charge' then
    add()
    return {1, math.max(limit - sum, 0), reset(), 0}
  end
  if mode == 'check' then
    if sum >= limit then
      return {0, 0, reset(), wait(sum + 1 - limit)}
    end
    return {1, limit - sum, reset(), 0}
  end
  if sum + cost > limit then
    return {0, math.max(limit - sum, 0), reset(), wait(sum + cost - limit)}
  end
  add()
  return {1, limit - sum, reset(), 0}
end

local function enter(k, limit, ttl)
  local c = tonumber(redis.call('GET', k) or '0') or 0
  if c >= limit then
    return {0}
  end
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, ttl)
  return {1}
end

local function exit(k)
  local c = tonumber(redis.call('GET', k) or '0') or 0
  if c > 1 then
    redis.call('DECR', k)
  else
    redis.call('DEL', k)
  end
  return {1}
end

local function reserve(k, limit, amount, ttl, cutoff)
  local raw = redis.call('HGET', k, 'committed')
  if not raw then raw = '0' end
  local committed = tonumber(raw)
  if committed + tonumber(amount) > limit then
    if cutoff == '1' and committed < limit then
      amount = string.format('%d', limit - committed)
    else
      return {0, raw, '0'}
    end
  end
  redis.call('HINCRBY', k, 'committed', amount)
  redis.call('HSETNX', k, 'spent', '0')
  if ttl > 0 then
    redis.call('EXPIRE', k, ttl)
  end
  return {1, redis.call('HGET', k, 'committed'), amount}
end

local function settle(k, reserved, actual, ttl)
  local raw = redis.call('HGET', k, 'committed')
  if not raw then raw = '0' end
  if reserved ~= '0' then
    if tonumber(reserved) >= tonumber(raw) then
      redis.call('HSET', k, 'committed', '0')
    elseif redis.call('HINCRBY', k, 'committed', '-' .. reserved) < 0 then
      redis.call('HSET', k, 'committed', '0')
    end
  end
  redis.call('HINCRBY', k, 'committed', actual)
  redis.call('HINCRBY', k, 'spent', actual)
  if tonumber(ttl) > 0 then
    redis.call('EXPIRE', k, ttl)
  end
  return {1}
end

local out = {}
local skip = nil
for i = 1, #KEYS do
  local a = (i - 1) * 6
  local kind, k, group = ARGV[a + 1], KEYS[i], ARGV[a + 6]
  local r
  if group == skip then
    r = {-1}
  elseif kind == 'window' then
    r = window(k, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5])
  elseif kind == 'enter' then
    r = enter(k, tonumber(ARGV[a + 2]), ARGV[a + 3])
  elseif kind == 'exit' then
    r = exit(k)
  elseif kind == 'reserve' then
    r = reserve(k, tonumber(ARGV[a + 2]), ARGV[a + 3], tonumber(ARGV[a + 4]), ARGV[a + 5])
  elseif kind == 'settle' then
    r = settle(k, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  else
    return redis.error_reply('unknown step ' .. tostring(kind))
  end
  out[#out + 1] = r
  if r[1] == 0 then skip = group end
end
return out
"#;

/// How a sliding-window step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowMode {
    /// Takes the units if the window has room for them.
    Acquire,
    /// Takes nothing; refuses while the window holds the limit or more (the tokens pre-check).
    Check,
    /// Adds the units whatever the state (tokens, once the answer is in).
    Charge,
}

/// One step of a batch. Keys are the caller's names (borrowed or owned); the store adds its
/// prefix and kind.
#[derive(Debug, Clone)]
pub enum Step<K> {
    Window {
        key: K,
        limit_per_minute: u64,
        cost: u64,
        mode: WindowMode,
    },
    Enter {
        key: K,
        limit: u64,
    },
    Exit {
        key: K,
    },
    /// A reservation on the budget `key` for the period starting `period_start`; `ttl_secs`:
    /// seconds until the period's end + 1 day (None: no expiry). `cutoff`: reserve what is left
    /// when `amount` does not fit.
    Reserve {
        key: K,
        period_start: i64,
        limit: u64,
        amount: u64,
        ttl_secs: Option<u64>,
        cutoff: bool,
    },
    /// Swaps `reserved` for `actual` (the period's key; `reserved` 0 when the period changed).
    Settle {
        key: K,
        period_start: i64,
        reserved: u64,
        actual: u64,
        ttl_secs: Option<u64>,
    },
}

/// What a step answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Window(WindowOutcome),
    Entered(bool),
    /// `Ok((committed after, amount reserved))` or `Err(committed now)`.
    Reserved(Result<(u64, u64), u64>),
    Done,
}

impl Outcome {
    /// Whether the step refused (the batch stopped there).
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Outcome::Window(WindowOutcome { allowed: false, .. })
                | Outcome::Entered(false)
                | Outcome::Reserved(Err(_))
        )
    }
}

/// An integer of a reply (Lua numbers come as integers, hash fields as bulk strings).
fn int(v: Option<&redis::Value>) -> i64 {
    match v {
        Some(redis::Value::Int(i)) => *i,
        Some(redis::Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Some(redis::Value::SimpleString(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl RedisStore {
    /// Runs `steps` in one round trip, in order, stopping after the first that refuses; returns
    /// the outcome of each step that ran.
    pub async fn steps<K: AsRef<str>>(
        &self,
        steps: &[Step<K>],
    ) -> Result<Vec<Outcome>, RedisStoreError> {
        let mut out = self.groups(&[steps]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Runs several groups of steps (several requests' admissions) in one round trip; each group
    /// stops at its own first refusal. Returns each group's outcomes, as [`RedisStore::steps`].
    pub async fn groups<K: AsRef<str>>(
        &self,
        groups: &[&[Step<K>]],
    ) -> Result<Vec<Vec<Outcome>>, RedisStoreError> {
        if groups.iter().all(|g| g.is_empty()) {
            return Ok(vec![Vec::new(); groups.len()]);
        }
        let mut inv = self.scripts.steps.prepare_invoke();
        // Numbers go in as integers (the client writes them without a String each); unused
        // arguments are `0`.
        for (group, steps) in groups.iter().enumerate() {
            for step in steps.iter() {
                match step {
                    Step::Window {
                        key,
                        limit_per_minute,
                        cost,
                        mode,
                    } => {
                        let mode = match mode {
                            WindowMode::Acquire => "acquire",
                            WindowMode::Check => "check",
                            WindowMode::Charge => "charge",
                        };
                        inv.key(self.window_key(key.as_ref()))
                            .arg("window")
                            .arg(clamp_i64((*limit_per_minute).max(1)))
                            // At most u32::MAX units per call, as the local buckets count.
                            .arg((*cost).min(u64::from(u32::MAX)))
                            .arg(mode)
                            .arg(WINDOW_TTL_MS);
                    }
                    Step::Enter { key, limit } => {
                        inv.key(self.conc_key(key.as_ref()))
                            .arg("enter")
                            .arg(clamp_i64(*limit))
                            .arg(CONC_TTL_MS)
                            .arg(0)
                            .arg(0);
                    }
                    Step::Exit { key } => {
                        inv.key(self.conc_key(key.as_ref()))
                            .arg("exit")
                            .arg(0)
                            .arg(0)
                            .arg(0)
                            .arg(0);
                    }
                    Step::Reserve {
                        key,
                        period_start,
                        limit,
                        amount,
                        ttl_secs,
                        cutoff,
                    } => {
                        inv.key(self.budget_key(key.as_ref(), *period_start))
                            .arg("reserve")
                            .arg(clamp_i64(*limit))
                            .arg(clamp_i64(*amount))
                            .arg(clamp_i64(ttl_secs.unwrap_or(0)))
                            .arg(u8::from(*cutoff));
                    }
                    Step::Settle {
                        key,
                        period_start,
                        reserved,
                        actual,
                        ttl_secs,
                    } => {
                        inv.key(self.budget_key(key.as_ref(), *period_start))
                            .arg("settle")
                            .arg(clamp_i64(*reserved))
                            .arg(clamp_i64(*actual))
                            .arg(clamp_i64(ttl_secs.unwrap_or(0)))
                            .arg(0);
                    }
                }
                inv.arg(group);
            }
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Vec<redis::Value>> =
            bounded("counter steps", inv.invoke_async(&mut conn)).await?;
        let mut replies = replies.into_iter();
        Ok(groups
            .iter()
            .map(|steps| {
                steps
                    .iter()
                    .zip(replies.by_ref())
                    .filter(|(_, r)| int(r.first()) != -1)
                    .map(|(step, r)| outcome(step, &r))
                    .collect()
            })
            .collect())
    }
}

/// A step's reply as its outcome.
fn outcome<K>(step: &Step<K>, r: &[redis::Value]) -> Outcome {
    match step {
        Step::Window { .. } => Outcome::Window(WindowOutcome {
            allowed: int(r.first()) == 1,
            remaining: nonneg(int(r.get(1))),
            reset_ns: nonneg(int(r.get(2))),
            retry_after_ns: nonneg(int(r.get(3))),
        }),
        Step::Enter { .. } => Outcome::Entered(int(r.first()) == 1),
        Step::Reserve { .. } => Outcome::Reserved(if int(r.first()) == 1 {
            Ok((nonneg(int(r.get(1))), nonneg(int(r.get(2)))))
        } else {
            Err(nonneg(int(r.get(1))))
        }),
        Step::Exit { .. } | Step::Settle { .. } => Outcome::Done,
    }
}
