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

/// Failures of one address in the last seven 10-second slots. A failure counts for 60 to 70 s
/// (until its slot is seven slots old), never less than the minute the setting names: two fixed
/// minutes weighted by time (used before) forgot most of a burst sent just before a minute's
/// end, so a guesser at the boundary got nearly twice the limit.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// The newest slot written (unix seconds / `SLOT_SECS`).
    slot: u64,
    /// Failures per slot, indexed by slot % `SLOTS`.
    counts: [u16; SLOTS],
}

const SLOT_SECS: u64 = 10;
const SLOTS: usize = (WINDOW_SECS / SLOT_SECS) as usize + 1;

impl Window {
    fn new(now: u64) -> Window {
        Window {
            slot: now / SLOT_SECS,
            counts: [0; SLOTS],
        }
    }

    /// Failures still counted at `now` (seconds).
    fn recent(&self, now: u64) -> u32 {
        let age = (now / SLOT_SECS).saturating_sub(self.slot);
        if age >= SLOTS as u64 {
            return 0;
        }
        // The slots still live are the newest `SLOTS - age` ones written.
        (0..SLOTS as u64 - age)
            .map(|back| u32::from(self.counts[((self.slot - back) % SLOTS as u64) as usize]))
            .sum()
    }

    fn add(&mut self, now: u64) {
        let slot = now / SLOT_SECS;
        // Clear the slots between the newest written and this one (they held older failures).
        let gap = slot.saturating_sub(self.slot).min(SLOTS as u64);
        for step in 1..=gap {
            self.counts[((self.slot + step) % SLOTS as u64) as usize] = 0;
        }
        self.slot = self.slot.max(slot);
        let i = (self.slot % SLOTS as u64) as usize;
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    fn stale(&self, now: u64) -> bool {
        self.recent(now) == 0
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
        let mut w = Window::new(now);
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
        // A failure counts for a full minute (up to 70 s), then not at all.
        assert!(l.over(a, 10, 669));
        assert!(!l.over(a, 1, 670));
        // Failures spread over slots age out slot by slot.
        let b = v4(2);
        l.fail(b, 1_000);
        l.fail(b, 1_030);
        assert!(l.over(b, 2, 1_065));
        assert!(l.over(b, 1, 1_070) && !l.over(b, 2, 1_070));
        assert!(!l.over(b, 1, 1_100));
    }

    #[test]
    fn a_burst_at_a_minute_boundary_is_not_forgotten() {
        let l = FailureLimiter::default();
        let a = v4(3);
        for _ in 0..3 {
            l.fail(a, 659);
        }
        // One second later a new minute began; the three failures still count.
        assert!(l.over(a, 3, 660));
        assert!(l.over(a, 3, 718));
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
