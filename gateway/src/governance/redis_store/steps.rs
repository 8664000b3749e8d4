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

/// Runs the steps written in `ARGV[1]`, one program of space-separated tokens, seven per step:
/// the kind (`w` window, `e` enter, `x` exit, `r` reserve, `s` settle), the index of its key in
/// `KEYS` (each key is sent once per call however many steps name it), four numbers of its own (unused ones `0`) and its group. Replies with every step's numbers in one string (see
/// [`Replies`]). Within a group, the steps after the first whose reply starts with 0 (a refusal)
/// are skipped (`-1`): a group is one request's admission, and one call may carry several
/// requests'.
///
/// - `w` limit cost mode ttl_ms: a sliding window on the server's clock (`TIME`), mode `0`
///   (acquire), `1` (check) or `2` (charge); replies `{allowed, remaining, reset_ns,
///   retry_after_ns}` as the local `SlidingWindow` computes them. It decides before it writes (the
///   local limiter adds first and takes back on a refusal only because it has no lock). Times are
///   relative to now, in nanoseconds below 2^53: exact in doubles.
/// - `e` limit ttl_ms: a concurrency counter; `{1}` entered or `{0}`.
/// - `x` count: leaves `count` times, never below zero; `{1}`.
/// - `r` limit amount ttl_s cutoff: committed += amount when it stays within the limit; with
///   cutoff `1`, what is left when the amount does not fit. `{1, committed_after, amount}` or
///   `{0, committed_now, 0}`.
/// - `s` reserved actual ttl_s: committed = max(0, committed - reserved) + actual,
///   spent += actual; `{1}`.
///
/// One string instead of six arguments and a key per step: a governed request's admission and
/// release came to ~700 bytes of RESP (the same key names written again for every request);
/// the program is ~25 bytes a step and each key goes once per call.
///
/// Each counter is read once per call and written once at its end (the steps work on its value
/// in a Lua table in between): the requests batched into one call mostly name the same few
/// counters (a key's windows and concurrency, a team's budget), and each `redis.call` is most of
/// a step's cost on the server — 13 a governed request when every step read and wrote its own.
/// Within one atomic script this is the same as running the steps one by one. Numbers are Lua
/// doubles: a budget's committed and spent stay exact below 2^53 nano-dollars (~$9 million a
/// period).
pub(super) const STEPS_LUA: &str = r#"
if redis.replicate_commands then
  redis.replicate_commands()
end
local SEC = 1000000000
local clock, now_s, into_ns = nil, 0, 0

-- Each counter is read once per call and written once at its end, however many steps of the
-- call's requests name it (see the doc above): the state of each lives in these tables.
local windows, conc, budgets = {}, {}, {}

local function window_state(k, ttl)
  local w = windows[k]
  if w then
    return w
  end
  if not clock then
    clock = redis.call('TIME')
    now_s = tonumber(clock[1])
    into_ns = tonumber(clock[2]) * 1000
  end
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
  -- `add`: units this call counts in the current second, written at the end.
  w = {sum = sum, head = head, add = 0, dirty = dirty, ttl = ttl}
  windows[k] = w
  return w
end

local function window(k, limit, cost, mode, ttl)
  local w = window_state(k, ttl)
  -- Nanoseconds until the units of second s leave the window (at the start of second s + 61).
  local function leaves(s)
    return (s + 61 - now_s) * SEC - into_ns
  end
  -- Until at least `excess` units have left, oldest first; at least a second.
  local function wait(excess)
    local freed, last = 0, now_s
    if w.head then
      for s = w.head, math.max(now_s, w.head) do
        local c = tonumber(redis.call('HGET', k, s))
        if s == now_s and w.add > 0 then
          c = (c or 0) + w.add
        end
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
    if not w.head then return 0 end
    return leaves(w.head)
  end
  local function add()
    if cost > 0 then
      w.add = w.add + cost
      w.sum = w.sum + cost
      if not w.head or w.head > now_s then w.head = now_s end
      w.dirty = true
      w.ttl = ttl
    end
  end
  if mode == '2' then
    add()
    return {1, math.max(limit - w.sum, 0), reset(), 0}
  end
  if mode == '1' then
    if w.sum >= limit then
      return {0, 0, reset(), wait(w.sum + 1 - limit)}
    end
    return {1, limit - w.sum, reset(), 0}
  end
  if w.sum + cost > limit then
    return {0, math.max(limit - w.sum, 0), reset(), wait(w.sum + cost - limit)}
  end
  add()
  return {1, limit - w.sum, reset(), 0}
end

local function conc_state(k)
  local c = conc[k]
  if not c then
    c = {n = tonumber(redis.call('GET', k) or '0') or 0, ttl = nil, dirty = false}
    conc[k] = c
  end
  return c
end

local function enter(k, limit, ttl)
  local c = conc_state(k)
  if c.n >= limit then
    return {0}
  end
  c.n = c.n + 1
  c.ttl = ttl
  c.dirty = true
  return {1}
end

local function exit(k, n)
  local c = conc_state(k)
  c.n = math.max(c.n - n, 0)
  c.dirty = true
  return {1}
end

local function budget_state(k)
  local b = budgets[k]
  if not b then
    b = {committed = tonumber(redis.call('HGET', k, 'committed') or '0') or 0, spent = 0,
         ttl = 0, dirty = false}
    budgets[k] = b
  end
  return b
end

local function reserve(k, limit, amount, ttl, cutoff)
  local b = budget_state(k)
  if b.committed + amount > limit then
    if cutoff == '1' and b.committed < limit then
      amount = limit - b.committed
    else
      return {0, b.committed, 0}
    end
  end
  b.committed = b.committed + amount
  if ttl > 0 then b.ttl = ttl end
  b.dirty = true
  return {1, b.committed, amount}
end

local function settle(k, reserved, actual, ttl)
  local b = budget_state(k)
  b.committed = math.max(b.committed - reserved, 0) + actual
  b.spent = b.spent + actual
  if ttl > 0 then b.ttl = ttl end
  b.dirty = true
  return {1}
end

-- One flat reply: every step's numbers in order, space-separated (a step that did not run is
-- `-1`). One bulk string costs the client one value to parse where nested arrays cost one per
-- number.
local T = {}
for t in string.gmatch(ARGV[1], '%S+') do
  T[#T + 1] = t
end
local out = {}
local skip = nil
for a = 0, #T - 7, 7 do
  local kind, k, group = T[a + 1], KEYS[tonumber(T[a + 2])], T[a + 7]
  local r
  if group == skip then
    r = {-1}
  elseif kind == 'w' then
    r = window(k, tonumber(T[a + 3]), tonumber(T[a + 4]), T[a + 5], T[a + 6])
  elseif kind == 'e' then
    r = enter(k, tonumber(T[a + 3]), T[a + 4])
  elseif kind == 'x' then
    r = exit(k, tonumber(T[a + 3]))
  elseif kind == 'r' then
    r = reserve(k, tonumber(T[a + 3]), tonumber(T[a + 4]), tonumber(T[a + 5]), T[a + 6])
  elseif kind == 's' then
    r = settle(k, tonumber(T[a + 3]), tonumber(T[a + 4]), tonumber(T[a + 5]))
  else
    return redis.error_reply('unknown step ' .. tostring(kind))
  end
  for _, v in ipairs(r) do
    out[#out + 1] = string.format('%d', v)
  end
  if r[1] == 0 then skip = group end
end

-- Each counter's writes, once.
for k, w in pairs(windows) do
  if w.add > 0 then
    redis.call('HINCRBY', k, clock[1], string.format('%d', w.add))
    redis.call('PEXPIRE', k, w.ttl)
  end
  if w.dirty and w.head then
    redis.call('HSET', k, 'n', string.format('%d', w.sum), 'h', string.format('%d', w.head))
  elseif w.dirty then
    redis.call('HDEL', k, 'n', 'h')
  end
end
for k, c in pairs(conc) do
  if c.dirty then
    if c.n <= 0 then
      redis.call('DEL', k)
    elseif c.ttl then
      redis.call('SET', k, string.format('%d', c.n), 'PX', c.ttl)
    else
      redis.call('SET', k, string.format('%d', c.n), 'KEEPTTL')
    end
  end
end
for k, b in pairs(budgets) do
  if b.dirty then
    redis.call('HSET', k, 'committed', string.format('%d', b.committed))
    if b.spent > 0 then
      redis.call('HINCRBY', k, 'spent', string.format('%d', b.spent))
    else
      redis.call('HSETNX', k, 'spent', '0')
    end
    if b.ttl > 0 then
      redis.call('EXPIRE', k, b.ttl)
    end
  end
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
    /// Leaves the concurrency limit `count` times (a batch's releases of one key, merged).
    Exit {
        key: K,
        count: u64,
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
        // One `EVALSHA`: the distinct keys, then the whole batch as one program string (see
        // [`STEPS_LUA`]).
        let (keys, program) = self.encode(groups);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.steps.get_hash()).arg(keys.len());
        for key in &keys {
            cmd.arg(key.as_str());
        }
        cmd.arg(program.as_bytes());
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

/// How far back [`RedisStore::encode`] looks for a key already sent in the same call: the steps of
/// one request, and the same keys named by the requests queued beside it, sit close together; a
/// batch of many distinct keys costs at most this many comparisons a step (a key seen earlier is
/// then sent twice, which is only less compact).
const KEY_LOOKBACK: usize = 32;

/// A step's key as the script sees it, before its prefix is written: (kind, caller's key, period).
type KeyId<'a> = (&'static str, &'a str, Option<i64>);

impl RedisStore {
    /// The call's distinct keys (prefixed) and its program: seven tokens a step, as [`STEPS_LUA`]
    /// reads them.
    fn encode<K: AsRef<str>>(&self, groups: &[&[Step<K>]]) -> (Vec<String>, String) {
        let steps: usize = groups.iter().map(|g| g.len()).sum();
        let mut ids: Vec<KeyId<'_>> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut program = String::with_capacity(steps * 32);
        for (group, steps) in groups.iter().enumerate() {
            for step in steps.iter() {
                let id = key_id(step);
                let seen = ids.len().saturating_sub(KEY_LOOKBACK);
                let index = match ids[seen..].iter().position(|k| *k == id) {
                    Some(i) => seen + i,
                    None => {
                        let mut key = String::with_capacity(self.prefix.len() + id.1.len() + 24);
                        self.write_key_of(&mut key, id.0, id.1, id.2);
                        ids.push(id);
                        keys.push(key);
                        ids.len() - 1
                    }
                };
                write_step(&mut program, step, index + 1, group);
            }
        }
        (keys, program)
    }
}

/// A step's key layout: `{prefix}win:…`, `{prefix}conc:…`, `{prefix}budget:…:{period}`.
fn key_id<K: AsRef<str>>(step: &Step<K>) -> KeyId<'_> {
    match step {
        Step::Window { key, .. } => ("win:", key.as_ref(), None),
        Step::Enter { key, .. } | Step::Exit { key, .. } => ("conc:", key.as_ref(), None),
        Step::Reserve {
            key, period_start, ..
        }
        | Step::Settle {
            key, period_start, ..
        } => ("budget:", key.as_ref(), Some(*period_start)),
    }
}

/// A step's seven tokens (see [`STEPS_LUA`]), each followed by a space; `key` is its 1-based
/// index in `KEYS`.
fn write_step<K>(out: &mut String, step: &Step<K>, key: usize, group: usize) {
    let num = |out: &mut String, n: u64| {
        out.push_str(itoa::Buffer::new().format(n));
        out.push(' ');
    };
    let (kind, args): (&str, [u64; 4]) = match step {
        Step::Window {
            limit_per_minute,
            cost,
            mode,
            ..
        } => (
            "w ",
            [
                clamp_i64((*limit_per_minute).max(1)),
                // At most u32::MAX units per call, as the local buckets count.
                (*cost).min(u64::from(u32::MAX)),
                match mode {
                    WindowMode::Acquire => 0,
                    WindowMode::Check => 1,
                    WindowMode::Charge => 2,
                },
                WINDOW_TTL_MS,
            ],
        ),
        Step::Enter { limit, .. } => ("e ", [clamp_i64(*limit), CONC_TTL_MS, 0, 0]),
        Step::Exit { count, .. } => ("x ", [*count, 0, 0, 0]),
        Step::Reserve {
            limit,
            amount,
            ttl_secs,
            cutoff,
            ..
        } => (
            "r ",
            [
                clamp_i64(*limit),
                clamp_i64(*amount),
                clamp_i64(ttl_secs.unwrap_or(0)),
                u64::from(*cutoff),
            ],
        ),
        Step::Settle {
            reserved,
            actual,
            ttl_secs,
            ..
        } => (
            "s ",
            [
                clamp_i64(*reserved),
                clamp_i64(*actual),
                clamp_i64(ttl_secs.unwrap_or(0)),
                0,
            ],
        ),
    };
    out.push_str(kind);
    num(out, key as u64);
    for a in args {
        num(out, a);
    }
    num(out, group as u64);
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
            Step::Exit { key: "c", count: 1 },
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
