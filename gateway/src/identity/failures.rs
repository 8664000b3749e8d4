//! The failed-credential limiter: how many wrong keys, tokens or admin tokens each client
//! address sent in the last minute, counted exactly per address (IPv6 grouped by its /64, the
//! smallest block one subscriber usually holds) in a bounded, sharded map.
//!
//! An address over the limit has every credential refused (429) before it is checked, so a guesser
//! cannot tell a hit from a miss; other addresses are never affected, whatever their number. When
//! the map is full of live entries, a new address is simply not tracked (the limiter fails open:
//! it never locks anyone out to make room). It owns only counting; what counts as a guess is the
//! caller's decision ([`switchyard_filters::auth::AuthError::is_guess`]).
//!
//! Written by hand: `pingora_limits::rate::Rate` (used before) is a shared count-min sketch, so
//! a flood from many addresses raised every address's estimate; no bounded exact per-key window
//! counter among the crates in use does this with a per-shard lock only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const SHARDS: usize = 16;
/// Addresses tracked per shard (16 × 4,096 = 65,536 in all, about 2 MiB at most).
const PER_SHARD: usize = 4096;
const WINDOW_SECS: u64 = 60;

/// The unit failures are counted by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Source {
    V4(u32),
    /// The address's first 64 bits.
    V6(u64),
    /// No address (a Unix socket): one shared bucket.
    Local,
}

impl Source {
    fn of(addr: Option<IpAddr>) -> Source {
        match addr {
            None => Source::Local,
            Some(IpAddr::V4(a)) => Source::V4(u32::from(a)),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6((u128::from(a) >> 64) as u64),
            },
        }
    }

    fn shard(&self) -> usize {
        let mix = match *self {
            Source::V4(a) => u64::from(a),
            Source::V6(p) => p ^ (p >> 29),
            Source::Local => 0,
        };
        (mix.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
    }
}

/// Failures of one address in the current fixed minute and the one before it.
#[derive(Clone, Copy, Debug)]
struct Window {
    minute: u64,
    current: u32,
    previous: u32,
}

impl Window {
    /// Failures in the last 60 s at `now` (seconds): the previous minute's weighted by how much
    /// of it the sliding window still covers.
    fn recent(&self, now: u64) -> u32 {
        let minute = now / WINDOW_SECS;
        let (current, previous) = match minute.saturating_sub(self.minute) {
            0 => (self.current, self.previous),
            1 => (0, self.current),
            _ => (0, 0),
        };
        let left = WINDOW_SECS - now % WINDOW_SECS;
        current + (u64::from(previous) * left / WINDOW_SECS) as u32
    }

    fn add(&mut self, now: u64) {
        let minute = now / WINDOW_SECS;
        match minute.saturating_sub(self.minute) {
            0 => {}
            1 => {
                self.previous = self.current;
                self.current = 0;
            }
            _ => {
                self.previous = 0;
                self.current = 0;
            }
        }
        self.minute = minute;
        self.current = self.current.saturating_add(1);
    }

    fn stale(&self, now: u64) -> bool {
        now / WINDOW_SECS > self.minute + 1
    }
}

#[derive(Default)]
struct Shard {
    windows: HashMap<Source, Window>,
    /// The last second at which stale entries were swept (a full shard sweeps at most once a
    /// second, so a flood of new addresses does not make every failure a full scan).
    swept: u64,
}

/// Failed credentials per client address over a sliding minute.
pub struct FailureLimiter {
    shards: [Mutex<Shard>; SHARDS],
    /// Entries in each shard, readable without its lock: a request from a shard with no recent
    /// failure (the common case) is checked without locking anything.
    tracked: [AtomicUsize; SHARDS],
}

impl Default for FailureLimiter {
    fn default() -> Self {
        FailureLimiter {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            tracked: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

impl FailureLimiter {
    /// Whether `addr` sent at least `limit` failed credentials in the last minute (at `now`,
    /// unix seconds).
    pub fn over(&self, addr: Option<IpAddr>, limit: u32, now: u64) -> bool {
        let source = Source::of(addr);
        let i = source.shard();
        if self.tracked[i].load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Ok(shard) = self.shards[i].lock() else {
            return false;
        };
        shard
            .windows
            .get(&source)
            .is_some_and(|w| w.recent(now) >= limit)
    }

    /// Counts one failed credential from `addr`.
    pub fn fail(&self, addr: Option<IpAddr>, now: u64) {
        let source = Source::of(addr);
        let i = source.shard();
        let Ok(mut shard) = self.shards[i].lock() else {
            return;
        };
        if let Some(w) = shard.windows.get_mut(&source) {
            w.add(now);
            return;
        }
        // Stale entries go when the shard is full (at most once a second) or a minute after the
        // last sweep, so a shard empties again once its failures are old.
        let full = shard.windows.len() >= PER_SHARD;
        if (full && shard.swept != now) || now >= shard.swept + WINDOW_SECS {
            shard.swept = now;
            shard.windows.retain(|_, w| !w.stale(now));
            self.tracked[i].store(shard.windows.len(), Ordering::Relaxed);
        }
        if shard.windows.len() >= PER_SHARD {
            return;
        }
        let mut w = Window {
            minute: now / WINDOW_SECS,
            current: 0,
            previous: 0,
        };
        w.add(now);
        shard.windows.insert(source, w);
        self.tracked[i].store(shard.windows.len(), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.windows.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn counts_each_address_exactly() {
        let l = FailureLimiter::default();
        let t = 6_000;
        for n in 0..4_000u32 {
            for _ in 0..30 {
                l.fail(v4(0x7f00_0000 + n), t);
            }
        }
        assert!(l.over(v4(0x7f00_0001), 30, t));
        for fresh in 10_000..10_020u32 {
            assert!(!l.over(v4(0x7f00_0000 + fresh), 30, t), "{fresh}");
        }
        assert!(!l.over(None, 1, t));
    }

    #[test]
    fn the_window_slides() {
        let l = FailureLimiter::default();
        let a = v4(1);
        for _ in 0..10 {
            l.fail(a, 600);
        }
        assert!(l.over(a, 10, 659));
        // Half a minute into the next minute, half of the previous minute's failures remain.
        assert!(l.over(a, 5, 690) && !l.over(a, 6, 690));
        assert!(!l.over(a, 1, 720));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let l = FailureLimiter::default();
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        l.fail(Some(IpAddr::V6(a)), 60);
        l.fail(Some(IpAddr::V6(b)), 60);
        assert!(l.over(Some(IpAddr::V6(a)), 2, 60));
        assert!(!l.over(Some(IpAddr::V6(other)), 1, 60));
        let mapped = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped();
        l.fail(Some(IpAddr::V6(mapped)), 60);
        assert!(l.over(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), 1, 60));
    }

    #[test]
    fn a_full_map_fails_open_and_sweeps_stale_entries() {
        let l = FailureLimiter::default();
        for n in 0..200_000u32 {
            l.fail(v4(n), 60);
        }
        assert!(l.tracked() <= SHARDS * PER_SHARD);
        // Untracked addresses are never refused.
        assert!((0..200_000u32).any(|n| !l.over(v4(n), 1, 60)));
        // Two minutes later the old entries are stale and make room for new addresses.
        let late = v4(0xdead_beef);
        l.fail(late, 300);
        assert!(l.over(late, 1, 300));
    }
}
