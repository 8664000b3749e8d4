//! Rate limits as GCRA (generic cell rate algorithm): one atomic "theoretical arrival time" per
//! limited subject, updated lock-free. Smooth — there is no window boundary that lets twice the
//! rate through — and O(1) per request.
//!
//! A limit of `rate` units per minute admits a burst of [`burst_of`]`(rate)` units from idle and
//! then one unit every `60 s / rate`: over any one-minute window at most `rate + burst` units pass
//! (1.1 × the rate), and over longer runs exactly the rate. Times are nanoseconds on a monotonic
//! clock the caller reads; nothing here reads a clock.

use std::sync::atomic::{AtomicU64, Ordering};

const MINUTE_NS: u64 = 60_000_000_000;

/// The burst a per-minute `rate` allows from idle: a tenth of the rate, at least one unit.
pub fn burst_of(rate: u64) -> u64 {
    (rate / 10).max(1)
}

/// What an admitted request may report in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Units the limiter would still admit right now.
    pub remaining: u64,
    /// Nanoseconds until the limiter is back to its full burst.
    pub reset_ns: u64,
}

/// A refusal: retry after this many nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub retry_after_ns: u64,
}

/// One GCRA limiter (`rate` units per minute).
#[derive(Debug)]
pub struct Gcra {
    rate: u64,
    /// Nanoseconds per unit.
    emission_ns: u64,
    /// How far ahead of now the arrival time may run: the burst.
    tolerance_ns: u64,
    tat: AtomicU64,
}

impl Gcra {
    /// A limiter of `rate` units per minute (`rate` ≥ 1).
    pub fn per_minute(rate: u64) -> Self {
        let rate = rate.max(1);
        let emission_ns = (MINUTE_NS / rate).max(1);
        Gcra {
            rate,
            emission_ns,
            tolerance_ns: emission_ns * burst_of(rate),
            tat: AtomicU64::new(0),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn allowed(&self, tat: u64, now: u64) -> Allowed {
        let ahead = tat.saturating_sub(now);
        Allowed {
            remaining: self.tolerance_ns.saturating_sub(ahead) / self.emission_ns,
            reset_ns: ahead,
        }
    }

    /// Takes `cost` units at `now` if the limit allows it.
    pub fn acquire(&self, cost: u64, now: u64) -> Result<Allowed, Denied> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now) + cost.saturating_mul(self.emission_ns);
            let ahead = new_tat - now;
            if ahead > self.tolerance_ns {
                return Err(Denied {
                    retry_after_ns: ahead - self.tolerance_ns,
                });
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(self.allowed(new_tat, now)),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Whether one unit would be admitted at `now`, without taking it (for limits charged after
    /// the fact, like tokens).
    pub fn check(&self, now: u64) -> Result<Allowed, Denied> {
        let tat = self.tat.load(Ordering::Acquire);
        let ahead = tat.max(now) + self.emission_ns - now;
        if ahead > self.tolerance_ns {
            Err(Denied {
                retry_after_ns: ahead - self.tolerance_ns,
            })
        } else {
            Ok(self.allowed(tat.max(now), now))
        }
    }

    /// Charges `cost` units whatever the state (usage known only after the answer); later
    /// requests wait until it is paid off.
    pub fn charge(&self, cost: u64, now: u64) {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now) + cost.saturating_mul(self.emission_ns);
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => tat = actual,
            }
        }
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

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let g = Gcra::per_minute(600); // 10/s, burst 60
        let mut passed = 0;
        for _ in 0..100 {
            if g.acquire(1, 0).is_ok() {
                passed += 1;
            }
        }
        assert_eq!(passed, 60);
        let d = g.acquire(1, 0).unwrap_err();
        assert_eq!(d.retry_after_ns, S / 10);
        assert!(g.acquire(1, S / 10).is_ok());
    }

    #[test]
    fn never_twice_the_rate_in_any_minute() {
        let g = Gcra::per_minute(120);
        let mut times = Vec::new();
        // Hammer every millisecond for three minutes.
        for ms in 0..180_000u64 {
            if g.acquire(1, ms * 1_000_000).is_ok() {
                times.push(ms);
            }
        }
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|&&x| x < t + 60_000).count();
            assert!(
                in_window as u64 <= 120 + burst_of(120),
                "{in_window} in a minute"
            );
        }
        // Long run: about the rate (3 minutes → ~360 + burst).
        assert!(
            (360..=372).contains(&(times.len() as u64)),
            "{}",
            times.len()
        );
    }

    #[test]
    fn charge_after_the_fact_blocks_later_requests() {
        let g = Gcra::per_minute(1000);
        assert!(g.check(0).is_ok());
        g.charge(5000, 0);
        let d = g.check(0).unwrap_err();
        assert!(d.retry_after_ns > 4 * 60 * S / 1000 * 1000 / 1000);
    }

    #[test]
    fn remaining_counts_down() {
        let g = Gcra::per_minute(100); // burst 10
        let a = g.acquire(1, 0).unwrap();
        assert_eq!(a.remaining, 9);
        let b = g.acquire(1, 0).unwrap();
        assert_eq!(b.remaining, 8);
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
