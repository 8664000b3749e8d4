//! Rate limits as sliding windows of per-second counts, and concurrency limits; lock-free.
//!
//! A limit of `N` units per minute means what it says: `N` units sent back to back are admitted,
//! the next is refused with the time after which it would fit, and no rolling 60 s ever holds
//! more than `N` admitted units. [`SlidingWindow`] owns that decision; times are nanoseconds on a
//! clock the caller reads (the gateway's monotonic clock), nothing here reads one.
//!
//! How: a ring of [`SLOTS`] buckets, one per second, each an `AtomicU64` packing the bucket's
//! second (high 32 bits) and its count (low 32 bits, saturating). At time `t` (second
//! `s = floor(t)`) the window counted is the 61 seconds `s-60..=s`: a superset of the rolling
//! `(t-60 s, t]`, so a refusal may come up to a second early, but no rolling minute ever holds
//! more than `N`. A unit admitted in second `b` is counted through second `b+60` and leaves at
//! the start of second `b+61`; [`Denied::retry_after_ns`] is the time until enough of the oldest
//! counted units have left for the request to fit.
//!
//! Admitting `cost` units adds them to the current bucket first (one compare-and-swap that also
//! rolls a bucket left from 64 s ago over to the current second), then sums the window; over `N`,
//! it takes them back and refuses. Because every request's own units are visible before it
//! sums (sequentially consistent operations), two racing requests can never both be admitted
//! past `N`; at worst both see each other and both refuse at the boundary. Nothing is locked and
//! nothing is allocated: a request costs one CAS, 64 loads and a sum.
//!
//! Why not the alternatives: GCRA (what this was) is smooth but must pick a burst — a small one
//! refuses a limit's own rate sent at once (`requests_per_minute: 2` admitted one request), a
//! large one lets up to twice the rate through some minute; the two-bucket "sliding window"
//! estimate (previous minute weighted by overlap) is not exact and can over-admit; a log of
//! admitted times is exact but grows with `N`. Per-second buckets are exact on whole seconds and
//! bounded (512 bytes per limited subject).
//!
//! Tokens are known only after the answer: [`SlidingWindow::check`] refuses while the window
//! already holds `N` or more, and [`SlidingWindow::charge`] adds the real usage afterwards,
//! whatever the state (a large answer then keeps the subject refused until it leaves the
//! window).
//!
//! Counts per second saturate at `u32::MAX` units. Times come from the caller: every bucket of a
//! second at or after `s-60` is counted, newer ones included, and a caller whose bucket was
//! already rolled over to a newer second counts there, so a caller that stalled after reading
//! the clock never sees less than is there; only its own unit is counted in the second it read
//! (and leaves that much early).

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets in a ring: the 61 counted seconds, and a few spare so that a bucket leaving the
/// window is not the one being rolled over.
pub const SLOTS: usize = 64;
/// A bucket of second `b` is counted through second `b + WINDOW_SECS`.
const WINDOW_SECS: u64 = 60;
const SEC_NS: u64 = 1_000_000_000;

/// Every atomic operation is sequentially consistent: a request's own add must be ordered before
/// its reads of the other buckets, as another request's add is before its reads.
const SC: Ordering = Ordering::SeqCst;

fn pack(second: u32, count: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(count)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// The second of a clock reading (saturating after 136 years of the caller's clock).
fn second_of(now_ns: u64) -> u32 {
    u32::try_from(now_ns / SEC_NS).unwrap_or(u32::MAX)
}

/// Nanoseconds from `now_ns` until bucket `second` leaves the window.
fn until_leaves(second: u32, now_ns: u64) -> u64 {
    (u64::from(second) + WINDOW_SECS + 1)
        .saturating_mul(SEC_NS)
        .saturating_sub(now_ns)
}

/// What an admitted request may report in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Units the limiter would still admit right now.
    pub remaining: u64,
    /// Nanoseconds until the oldest units counted leave the window (the next time `remaining`
    /// grows); 0 when the window is empty.
    pub reset_ns: u64,
}

/// A refusal: retry after this many nanoseconds (at least one second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub retry_after_ns: u64,
}

/// One copy of the ring, read bucket by bucket (not one atomic snapshot: each request's own add
/// precedes its reads, which is what the guarantee needs).
struct Window {
    buckets: [u64; SLOTS],
    /// The current second: buckets of seconds `second - 60` and later are counted.
    second: u32,
}

impl Window {
    fn counted(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let from = u64::from(self.second).saturating_sub(WINDOW_SECS);
        self.buckets
            .iter()
            .map(|&v| unpack(v))
            .filter(move |&(s, c)| c > 0 && u64::from(s) >= from)
    }

    /// Nanoseconds until at least `excess` counted units have left the window (when the oldest
    /// buckets go first), at least one second; if they never can, until the window is empty.
    fn wait_ns(&self, excess: u64, now_ns: u64) -> u64 {
        let mut counted = [(0u32, 0u32); SLOTS];
        let mut n = 0;
        for b in self.counted() {
            counted[n] = b;
            n += 1;
        }
        let counted = &mut counted[..n];
        counted.sort_unstable_by_key(|&(s, _)| s);
        let mut freed = 0u64;
        let mut leaves = self.second;
        for &(s, c) in counted.iter() {
            freed += u64::from(c);
            leaves = s;
            if freed >= excess {
                break;
            }
        }
        until_leaves(leaves, now_ns).max(SEC_NS)
    }
}

/// One sliding-window limiter: at most `limit` units in any rolling minute.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u64,
    buckets: [AtomicU64; SLOTS],
}

impl SlidingWindow {
    /// A limiter of `limit` units per minute (`limit` ≥ 1).
    pub fn per_minute(limit: u64) -> Self {
        SlidingWindow {
            limit: limit.max(1),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Adds up to `cost` units to the bucket of `second` (rolling it over if it holds an older
    /// second; if it already holds a newer one, this caller is late and counts there). Returns
    /// the second counted at and the units actually added (fewer when the count saturates).
    fn add(&self, cost: u64, second: u32) -> (u32, u32) {
        let slot = &self.buckets[second as usize % SLOTS];
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        let mut cur = slot.load(SC);
        loop {
            let (s, c) = unpack(cur);
            let (s, base) = if s < second { (second, 0) } else { (s, c) };
            let count = base.saturating_add(cost);
            match slot.compare_exchange_weak(cur, pack(s, count), SC, SC) {
                Ok(_) => return (s, count - base),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes back `added` units from the bucket of `second`, unless it has rolled over since.
    fn undo(&self, second: u32, added: u32) {
        let slot = &self.buckets[second as usize % SLOTS];
        let _ = slot.fetch_update(SC, SC, |v| {
            let (s, c) = unpack(v);
            (s == second).then(|| pack(s, c.saturating_sub(added)))
        });
    }

    fn window(&self, second: u32) -> Window {
        Window {
            buckets: std::array::from_fn(|i| self.buckets[i].load(SC)),
            second,
        }
    }

    /// The units counted at `second` and the second of the oldest non-empty counted bucket, read
    /// in one pass over the ring (the admitted path; a refusal copies the ring to work out its
    /// wait).
    fn counted(&self, second: u32) -> (u64, Option<u32>) {
        let from = u64::from(second).saturating_sub(WINDOW_SECS);
        let mut sum = 0u64;
        let mut oldest = u32::MAX;
        for b in &self.buckets {
            let (s, c) = unpack(b.load(SC));
            if c > 0 && u64::from(s) >= from {
                sum += u64::from(c);
                oldest = oldest.min(s);
            }
        }
        (sum, (sum > 0).then_some(oldest))
    }

    fn allowed(&self, sum: u64, oldest: Option<u32>, now_ns: u64) -> Allowed {
        Allowed {
            remaining: self.limit.saturating_sub(sum),
            reset_ns: oldest.map_or(0, |s| until_leaves(s, now_ns)),
        }
    }

    /// Takes `cost` units at `now_ns` if the window has room for them.
    pub fn acquire(&self, cost: u64, now_ns: u64) -> Result<Allowed, Denied> {
        let (second, added) = self.add(cost, second_of(now_ns));
        let (sum, oldest) = self.counted(second);
        if sum <= self.limit {
            return Ok(self.allowed(sum, oldest, now_ns));
        }
        let window = self.window(second);
        self.undo(second, added);
        // What must leave: everyone else's units plus this request's, less the limit.
        let others = sum - u64::from(added);
        Err(Denied {
            retry_after_ns: window.wait_ns(others.saturating_add(cost) - self.limit, now_ns),
        })
    }

    /// Whether the window has room for one more unit at `now_ns`, without taking it (for limits
    /// charged after the fact, like tokens): refused while it holds `limit` or more.
    pub fn check(&self, now_ns: u64) -> Result<Allowed, Denied> {
        let second = second_of(now_ns);
        let (sum, oldest) = self.counted(second);
        if sum < self.limit {
            return Ok(self.allowed(sum, oldest, now_ns));
        }
        let window = self.window(second);
        Err(Denied {
            retry_after_ns: window.wait_ns(sum + 1 - self.limit, now_ns),
        })
    }

    /// Charges `cost` units at `now_ns` whatever the state (usage known only after the answer).
    pub fn charge(&self, cost: u64, now_ns: u64) {
        self.add(cost, second_of(now_ns));
    }
}

/// A concurrency limit: at most `limit` requests in flight.
#[derive(Debug)]
pub struct Concurrency {
    limit: u64,
    current: AtomicU64,
}

impl Concurrency {
    pub fn new(limit: u64) -> Self {
        Concurrency {
            limit,
            current: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Enters if below the limit; the caller must [`Concurrency::exit`] exactly once after.
    pub fn try_enter(&self) -> bool {
        let mut cur = self.current.load(Ordering::Acquire);
        loop {
            if cur >= self.limit {
                return false;
            }
            match self.current.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn exit(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
    }

    pub fn in_flight(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const S: u64 = SEC_NS;
    const MS: u64 = 1_000_000;

    /// A small deterministic generator (xorshift64*), so the tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn the_limit_is_admitted_back_to_back_and_the_next_is_told_when_it_fits() {
        let w = SlidingWindow::per_minute(2);
        let t = 10 * S + 500 * MS;
        let a = w.acquire(1, t).unwrap();
        assert_eq!(a.remaining, 1);
        // The units counted at second 10 leave at the start of second 71.
        assert_eq!(a.reset_ns, 60 * S + 500 * MS);
        assert_eq!(w.acquire(1, t).unwrap().remaining, 0);
        let d = w.acquire(1, t).unwrap_err();
        assert_eq!(d.retry_after_ns, 60 * S + 500 * MS);
        // A refusal takes nothing: still refused just before, admitted right at that time.
        assert!(w.acquire(1, t + d.retry_after_ns - 1).is_err());
        let a = w.acquire(1, t + d.retry_after_ns).unwrap();
        assert_eq!(a.remaining, 1);

        // Larger limits: exactly N back to back, then a refusal with the wait until the first
        // second's units leave; units spread over seconds leave second by second.
        let w = SlidingWindow::per_minute(600);
        for i in 0..600u64 {
            // 300 in second 0, 300 in second 1.
            let now = if i < 300 { 0 } else { S + 200 * MS };
            assert!(w.acquire(1, now).is_ok(), "unit {i}");
        }
        let d = w.acquire(1, S + 200 * MS).unwrap_err();
        assert_eq!(d.retry_after_ns, 61 * S - (S + 200 * MS));
        // After second 0 left, 300 fit again, and the 301st waits for second 1 to leave.
        let d = w.acquire(301, 61 * S).unwrap_err();
        assert_eq!(d.retry_after_ns, S);
        assert_eq!(w.acquire(300, 61 * S).unwrap().remaining, 0);
        // The wait is never under a second, even when the bucket leaves sooner.
        let d = w.acquire(1, 61 * S + 900 * MS).unwrap_err();
        assert_eq!(d.retry_after_ns, S);
        // A cost above the limit never fits: told to wait until the window is empty.
        let d = w.acquire(601, 61 * S).unwrap_err();
        assert_eq!(d.retry_after_ns, 61 * S);
    }

    #[test]
    fn no_rolling_minute_ever_holds_more_than_the_limit() {
        for (limit, seed) in [(1u64, 7u64), (2, 11), (7, 13), (60, 17), (250, 19)] {
            let w = SlidingWindow::per_minute(limit);
            let mut rng = Rng(seed);
            let mut admitted: Vec<u64> = Vec::new();
            let mut now = 0u64;
            let mut refused = 0;
            let mut k = 1;
            // Twenty simulated minutes: phases at 8, 4, 2 and 1 times the limit's rate, and lulls.
            while now < 1200 * S {
                if rng.below(2 * limit + 10) == 0 {
                    k = [1, 2, 4, 8][rng.below(4) as usize];
                }
                now += if rng.below(20 * limit + 50) == 0 {
                    rng.below(90 * S)
                } else {
                    rng.below(k * 15 * S / limit) + 1
                };
                // What the window counts: admitted units of seconds s-60..=s.
                let s = now / S;
                let from = s.saturating_sub(60) * S;
                let counted = admitted.iter().rev().take_while(|&&t| t >= from).count() as u64;
                match w.acquire(1, now) {
                    Ok(a) => {
                        assert!(counted < limit, "limit {limit}: admitted past {counted}");
                        assert_eq!(a.remaining, limit - counted - 1);
                        admitted.push(now);
                    }
                    Err(d) => {
                        refused += 1;
                        assert_eq!(counted, limit, "limit {limit}: refused below the limit");
                        assert!(d.retry_after_ns >= S);
                        // It fits exactly when the oldest counted second has left.
                        let oldest = admitted[admitted.len() - counted as usize] / S;
                        let leaves = (oldest + 61) * S;
                        assert_eq!(d.retry_after_ns, (leaves - now).max(S), "limit {limit}");
                    }
                }
            }
            // Every rolling (t-60 s, t] holds at most the limit; the fullest ones end on an
            // admission, so checking those checks them all.
            let mut start = 0;
            for (end, &t) in admitted.iter().enumerate() {
                while admitted[start] + 60 * S <= t {
                    start += 1;
                }
                let in_window = (end - start + 1) as u64;
                assert!(
                    in_window <= limit,
                    "limit {limit}: {in_window} in (t-60s, t]"
                );
            }
            eprintln!(
                "limit {limit}: {} admitted, {refused} refused",
                admitted.len()
            );
            assert!(refused > 0, "limit {limit}: never reached");
            assert!(
                admitted.len() as u64 >= 5 * limit,
                "limit {limit}: {}",
                admitted.len()
            );
        }
    }

    #[test]
    fn buckets_roll_over_after_idle() {
        let w = SlidingWindow::per_minute(3);
        for _ in 0..3 {
            assert!(w.acquire(1, 0).is_ok());
        }
        assert!(w.acquire(1, 60 * S + 999 * MS).is_err());
        // Second 64 reuses second 0's bucket: rolled over, counted afresh.
        for i in 0..3 {
            assert!(w.acquire(1, 64 * S).is_ok(), "unit {i}");
        }
        assert!(w.acquire(1, 64 * S).is_err());
        // Long idle: every bucket is stale, the window is empty.
        let a = w.check(10_000 * S).unwrap();
        assert_eq!(
            a,
            Allowed {
                remaining: 3,
                reset_ns: 0
            }
        );
        for _ in 0..3 {
            assert!(w.acquire(1, 10_000 * S).is_ok());
        }
        assert!(w.acquire(1, 10_000 * S).is_err());
    }

    #[test]
    fn tokens_are_checked_before_and_charged_after() {
        let w = SlidingWindow::per_minute(1000);
        let a = w.check(0).unwrap();
        assert_eq!(a.remaining, 1000);
        // Checking takes nothing.
        assert_eq!(w.check(0).unwrap().remaining, 1000);
        w.charge(400, 0);
        assert_eq!(w.check(2 * S).unwrap().remaining, 600);
        // An answer larger than what was left is charged in full; then refused until enough of
        // it leaves.
        w.charge(5000, 3 * S);
        let d = w.check(3 * S + 100 * MS).unwrap_err();
        assert_eq!(d.retry_after_ns, 64 * S - (3 * S + 100 * MS));
        // Second 0's 400 left: 5000 still counted, still refused.
        assert!(w.check(61 * S).is_err());
        let a = w.check(64 * S).unwrap();
        assert_eq!(
            a,
            Allowed {
                remaining: 1000,
                reset_ns: 0
            }
        );
        // Exactly at the limit is refused (no room for one more unit).
        w.charge(1000, 70 * S);
        assert!(w.check(70 * S).is_err());
        // Counts saturate instead of spilling into the second.
        w.charge(u64::MAX, 80 * S);
        w.charge(u64::MAX, 80 * S);
        assert!(w.check(80 * S).is_err());
        assert!(w.check(141 * S).is_ok());
    }

    #[test]
    fn threads_hammering_one_limiter_never_admit_past_it() {
        for limit in [1u64, 5, 100] {
            let w = Arc::new(SlidingWindow::per_minute(limit));
            let threads: Vec<_> = (0..8u64)
                .map(|i| {
                    let w = w.clone();
                    std::thread::spawn(move || {
                        let mut rng = Rng(i + 1);
                        // All within one second of simulated time.
                        (0..2000)
                            .filter(|_| w.acquire(1, 5 * S + rng.below(S)).is_ok())
                            .count() as u64
                    })
                })
                .collect();
            let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            assert!(admitted <= limit, "{admitted} admitted past {limit}");
            // Refusals took back what they added: what is left is exactly the rest.
            let mut more = 0;
            while w.acquire(1, 5 * S + 999 * MS).is_ok() {
                more += 1;
            }
            assert_eq!(admitted + more, limit);
        }
    }

    #[test]
    fn concurrency_limit() {
        let c = Concurrency::new(2);
        assert!(c.try_enter());
        assert!(c.try_enter());
        assert!(!c.try_enter());
        c.exit();
        assert!(c.try_enter());
        c.exit();
        c.exit();
        c.exit();
        assert_eq!(c.in_flight(), 0);
    }
}
