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
/// ones `0` — and its group) in order; replies with every step's numbers in one string (see
/// [`Replies`]). Within a group, the steps after the first whose reply starts with 0 (a refusal)
/// are skipped (`-1`): a group is one request's admission, and one call may carry several
/// requests'.
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
  local lo = now_s - 60
  local meta = redis.call('HMGET', k, 'n', 'h')
  local sum = tonumber(meta[1]) or 0
  local head = tonumber(meta[2])
  local dirty = false
  if head and head < lo then
    -- Seconds that left the window, oldest first: each is visited once in the key's life.
    while head < lo do
      local c = redis.call('HGET', k, head)
      if c then
        sum = sum - tonumber(c)
        redis.call('HDEL', k, head)
      end
      head = head + 1
    end
    -- The oldest second still holding units (the reset is counted from it).
    while head <= now_s and redis.call('HEXISTS', k, head) == 0 do
      head = head + 1
    end
    if head > now_s then
      head = nil
      sum = 0
    end
    dirty = true
  end
  -- Nanoseconds until the units of second s leave the window (at the start of second s + 61).
  local function leaves(s)
    return (s + 61 - now_s) * SEC - into_ns
  end
  -- Until at least `excess` units have left, oldest first; at least a second.
  local function wait(excess)
    local freed, last = 0, now_s
    if head then
      for s = head, math.max(now_s, head) do
        local c = tonumber(redis.call('HGET', k, s))
        if c then
          freed = freed + c
          last = s
          if freed >= excess then break end
        end
      end
    end
    return math.max(leaves(last), SEC)
  end
  local function reset()
    if not head then return 0 end
    return leaves(head)
  end
  local function add()
    if cost > 0 then
      redis.call('HINCRBY', k, clock[1], cost)
      redis.call('PEXPIRE', k, ttl)
      sum = sum + cost
      if not head or head > now_s then head = now_s end
      dirty = true
    end
  end
  local function decide()
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
  local r = decide()
  -- The bookkeeping, once, when seconds left or units came in.
  if dirty and head then
    redis.call('HSET', k, 'n', string.format('%d', sum), 'h', string.format('%d', head))
  elseif dirty then
    redis.call('HDEL', k, 'n', 'h')
  end
  return r
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

-- One flat reply: every step's numbers in order, space-separated (a step that did not run is
-- `-1`). One bulk string costs the client one value to parse where nested arrays cost one per
-- number.
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
  for _, v in ipairs(r) do
    if type(v) == 'number' then v = string.format('%d', v) end
    out[#out + 1] = v
  end
  if r[1] == 0 then skip = group end
end
return table.concat(out, ' ')
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

/// The script's reply read number by number: `{1, 59, 60123, 0}` of a window step, then the next
/// step's, all in one space-separated string; a step that did not run is the single number `-1`.
struct Replies<'a>(std::slice::Split<'a, u8, fn(&u8) -> bool>);

impl<'a> Replies<'a> {
    fn new(text: &'a [u8]) -> Replies<'a> {
        Replies(text.split((|b: &u8| *b == b' ') as fn(&u8) -> bool))
    }

    /// The next number (0 when the reply ran out or a number is malformed).
    fn int(&mut self) -> i64 {
        self.0
            .next()
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.parse().ok())
            .unwrap_or(0)
    }

    fn nonneg(&mut self) -> u64 {
        u64::try_from(self.int()).unwrap_or(0)
    }

    /// A step's outcome, or None when it did not run (its group had been refused before it).
    fn outcome<K>(&mut self, step: &Step<K>) -> Option<Outcome> {
        let first = self.int();
        if first == -1 {
            return None;
        }
        Some(match step {
            Step::Window { .. } => Outcome::Window(WindowOutcome {
                allowed: first == 1,
                remaining: self.nonneg(),
                reset_ns: self.nonneg(),
                retry_after_ns: self.nonneg(),
            }),
            Step::Enter { .. } => Outcome::Entered(first == 1),
            Step::Reserve { .. } => {
                let (committed, amount) = (self.nonneg(), self.nonneg());
                Outcome::Reserved(if first == 1 {
                    Ok((committed, amount))
                } else {
                    Err(committed)
                })
            }
            Step::Exit { .. } | Step::Settle { .. } => Outcome::Done,
        })
    }
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
        // One `EVALSHA` written straight into a command's single buffer: the client's script
        // invocation kept each argument in a vector of its own and copied them all into a
        // command (about 50 allocations per governed request). Keys first, then each step's six
        // arguments; numbers go in as integers, unused ones `0`.
        let steps = || {
            groups
                .iter()
                .enumerate()
                .flat_map(|(group, steps)| steps.iter().map(move |s| (group, s)))
        };
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.steps.get_hash())
            .arg(groups.iter().map(|g| g.len()).sum::<usize>());
        let mut key = String::new();
        for (_, step) in steps() {
            key.clear();
            self.write_key(&mut key, step);
            cmd.arg(key.as_str());
        }
        for (group, step) in steps() {
            write_args(&mut cmd, step);
            cmd.arg(group);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<u8> = match bounded("counter steps", cmd.query_async(&mut conn)).await {
            // A Redis that restarted (or flushed its scripts) does not know the script yet.
            Err(RedisStoreError::Redis(e)) if e.kind() == redis::ErrorKind::NoScriptError => {
                bounded(
                    "script load",
                    self.scripts.steps.prepare_invoke().load_async(&mut conn),
                )
                .await?;
                bounded("counter steps", cmd.query_async(&mut conn)).await?
            }
            other => other?,
        };
        let mut replies = Replies::new(&reply);
        Ok(groups
            .iter()
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|step| replies.outcome(step))
                    .collect()
            })
            .collect())
    }
}

impl RedisStore {
    /// A step's key, prefixed (`{prefix}win:…`, `{prefix}conc:…`, `{prefix}budget:…:{period}`).
    fn write_key<K: AsRef<str>>(&self, out: &mut String, step: &Step<K>) {
        match step {
            Step::Window { key, .. } => self.write_key_of(out, "win:", key.as_ref(), None),
            Step::Enter { key, .. } | Step::Exit { key } => {
                self.write_key_of(out, "conc:", key.as_ref(), None)
            }
            Step::Reserve {
                key, period_start, ..
            }
            | Step::Settle {
                key, period_start, ..
            } => self.write_key_of(out, "budget:", key.as_ref(), Some(*period_start)),
        }
    }
}

/// A step's five arguments before its group (see [`STEPS_LUA`]).
fn write_args<K>(cmd: &mut redis::Cmd, step: &Step<K>) {
    match step {
        Step::Window {
            limit_per_minute,
            cost,
            mode,
            ..
        } => {
            let mode = match mode {
                WindowMode::Acquire => "acquire",
                WindowMode::Check => "check",
                WindowMode::Charge => "charge",
            };
            cmd.arg("window")
                .arg(clamp_i64((*limit_per_minute).max(1)))
                // At most u32::MAX units per call, as the local buckets count.
                .arg((*cost).min(u64::from(u32::MAX)))
                .arg(mode)
                .arg(WINDOW_TTL_MS);
        }
        Step::Enter { limit, .. } => {
            cmd.arg("enter")
                .arg(clamp_i64(*limit))
                .arg(CONC_TTL_MS)
                .arg(0)
                .arg(0);
        }
        Step::Exit { .. } => {
            cmd.arg("exit").arg(0).arg(0).arg(0).arg(0);
        }
        Step::Reserve {
            limit,
            amount,
            ttl_secs,
            cutoff,
            ..
        } => {
            cmd.arg("reserve")
                .arg(clamp_i64(*limit))
                .arg(clamp_i64(*amount))
                .arg(clamp_i64(ttl_secs.unwrap_or(0)))
                .arg(u8::from(*cutoff));
        }
        Step::Settle {
            reserved,
            actual,
            ttl_secs,
            ..
        } => {
            cmd.arg("settle")
                .arg(clamp_i64(*reserved))
                .arg(clamp_i64(*actual))
                .arg(clamp_i64(ttl_secs.unwrap_or(0)))
                .arg(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_reply_reads_back_step_by_step() {
        let steps: [Step<&str>; 4] = [
            Step::Window {
                key: "w",
                limit_per_minute: 60,
                cost: 1,
                mode: WindowMode::Acquire,
            },
            Step::Reserve {
                key: "b",
                period_start: 0,
                limit: 10,
                amount: 3,
                ttl_secs: None,
                cutoff: false,
            },
            Step::Enter { key: "c", limit: 2 },
            Step::Exit { key: "c" },
        ];
        let mut r = Replies::new(b"1 59 60123456789 0 0 9007199254740993 0 -1 -1");
        assert_eq!(
            r.outcome(&steps[0]),
            Some(Outcome::Window(WindowOutcome {
                allowed: true,
                remaining: 59,
                reset_ns: 60_123_456_789,
                retry_after_ns: 0
            }))
        );
        assert_eq!(
            r.outcome(&steps[1]),
            Some(Outcome::Reserved(Err(9_007_199_254_740_993)))
        );
        assert_eq!(r.outcome(&steps[2]), None);
        assert_eq!(r.outcome(&steps[3]), None);
        // A short or malformed reply reads as zeros, never a panic.
        let mut short = Replies::new(b"1 x");
        assert_eq!(
            short.outcome(&steps[0]),
            Some(Outcome::Window(WindowOutcome {
                allowed: true,
                remaining: 0,
                reset_ns: 0,
                retry_after_ns: 0
            }))
        );
    }
}
