//! Budgets: spend limits per scope and calendar period, with reservations so that concurrent
//! requests can never push spend over a hard limit.
//!
//! Money is counted in nano-dollars (`u64`). An account keeps one atomic `committed` = spent +
//! reserved: [`BudgetAccount::reserve`] adds a request's maximum cost only if the sum stays within
//! the limit (a compare-and-swap loop, no lock), [`BudgetAccount::settle`] swaps the reservation
//! for the actual cost. Periods are UTC calendar windows (day, ISO week from Monday, month) or the
//! whole lifetime; an account rolls over by itself when a new window starts. Nothing here reads a
//! clock: callers pass Unix seconds.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Nano-dollars per dollar.
pub const NANOS_PER_USD: f64 = 1e9;

pub fn usd_to_nanos(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * NANOS_PER_USD).round() as u64
    } else {
        0
    }
}

pub fn nanos_to_usd(n: u64) -> f64 {
    n as f64 / NANOS_PER_USD
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        Some(match s {
            "daily" => Period::Daily,
            "weekly" => Period::Weekly,
            "monthly" => Period::Monthly,
            "total" => Period::Total,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Total => "total",
        }
    }

    /// The window containing `now` (Unix seconds): (start, end); `end` is `None` for `total`.
    pub fn window(self, now: i64) -> (i64, Option<i64>) {
        let day = now.div_euclid(86_400);
        match self {
            Period::Total => (0, None),
            Period::Daily => (day * 86_400, Some((day + 1) * 86_400)),
            Period::Weekly => {
                // 1970-01-01 was a Thursday: Monday-based weeks start 3 days later.
                let monday = (day - 4).div_euclid(7) * 7 + 4;
                (monday * 86_400, Some((monday + 7) * 86_400))
            }
            Period::Monthly => {
                let (y, m, _) = civil_from_days(day);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (start * 86_400, Some(days_from_civil(ny, nm, 1) * 86_400))
            }
        }
    }
}

/// (year, month, day) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day number since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub limit: u64,
    /// Spent plus reserved by requests in flight.
    pub committed: u64,
    /// Unix seconds when the period resets (`None`: a total budget never does).
    pub resets_at: Option<i64>,
}

/// A reservation to settle; it belongs to the period it was made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub amount: u64,
    pub period_start: i64,
}

/// One budget's running account.
#[derive(Debug)]
pub struct BudgetAccount {
    pub limit: u64,
    pub soft: u64,
    pub period: Period,
    period_start: AtomicI64,
    /// End of the current window (`i64::MAX` for a total budget), so the calendar is worked out
    /// once per window, not on every request. Stored after `period_start` on a roll.
    period_end: AtomicI64,
    committed: AtomicU64,
    spent: AtomicU64,
}

impl BudgetAccount {
    /// An account with `spent` already recorded in the window containing `now`.
    pub fn new(limit: u64, soft_ratio: f64, period: Period, spent: u64, now: i64) -> Self {
        BudgetAccount {
            limit,
            soft: (limit as f64 * soft_ratio.clamp(0.0, 1.0)) as u64,
            period,
            period_start: AtomicI64::new(period.window(now).0),
            period_end: AtomicI64::new(period.window(now).1.unwrap_or(i64::MAX)),
            committed: AtomicU64::new(spent),
            spent: AtomicU64::new(spent),
        }
    }

    /// Starts a new window when `now` left the current one; returns the start of `now`'s window.
    fn roll(&self, now: i64) -> i64 {
        // Fast path: `now` is inside the current window. A reader that sees a new end also sees
        // its start (stored before it); one that sees the old end after a roll falls through.
        if now < self.period_end.load(Ordering::Acquire) {
            let start = self.period_start.load(Ordering::Acquire);
            if start <= now {
                return start;
            }
        }
        let (start, end) = self.period.window(now);
        let cur = self.period_start.load(Ordering::Acquire);
        if start > cur
            && self
                .period_start
                .compare_exchange(cur, start, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.committed.store(0, Ordering::Release);
            self.spent.store(0, Ordering::Release);
            self.period_end
                .store(end.unwrap_or(i64::MAX), Ordering::Release);
        }
        start
    }

    /// Reserves `amount` if spent + reserved + `amount` stays within the limit.
    pub fn reserve(&self, amount: u64, now: i64) -> Result<Reservation, Exhausted> {
        let period_start = self.roll(now);
        let mut cur = self.committed.load(Ordering::Acquire);
        loop {
            let next = cur.saturating_add(amount);
            if next > self.limit {
                return Err(Exhausted {
                    limit: self.limit,
                    committed: cur,
                    resets_at: self.period.window(now).1,
                });
            }
            match self.committed.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        amount,
                        period_start,
                    })
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Reserves up to `max_amount`: as much as is left when that is less (`on_exhaust: cutoff`
    /// budgets let a request start with what remains and end it there). Fails only when nothing
    /// is left.
    pub fn reserve_up_to(&self, max_amount: u64, now: i64) -> Result<Reservation, Exhausted> {
        let period_start = self.roll(now);
        let mut cur = self.committed.load(Ordering::Acquire);
        loop {
            let room = self.limit.saturating_sub(cur);
            if room == 0 {
                return Err(Exhausted {
                    limit: self.limit,
                    committed: cur,
                    resets_at: self.period.window(now).1,
                });
            }
            let amount = max_amount.min(room);
            match self.committed.compare_exchange_weak(
                cur,
                cur + amount,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        amount,
                        period_start,
                    })
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Replaces a reservation by the actual cost (which may be lower, or — when the estimate was
    /// short — higher).
    pub fn settle(&self, r: Reservation, actual: u64, now: i64) {
        let start = self.roll(now);
        if start != r.period_start {
            // The reservation's window is over; the cost lands in the new one.
            self.committed.fetch_add(actual, Ordering::AcqRel);
            self.spent.fetch_add(actual, Ordering::AcqRel);
            return;
        }
        let _ = self
            .committed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(r.amount).saturating_add(actual))
            });
        self.spent.fetch_add(actual, Ordering::AcqRel);
    }

    /// Adds spend that had no reservation (e.g. from another path).
    pub fn record(&self, actual: u64, now: i64) {
        self.roll(now);
        self.committed.fetch_add(actual, Ordering::AcqRel);
        self.spent.fetch_add(actual, Ordering::AcqRel);
    }

    pub fn spent(&self, now: i64) -> u64 {
        self.roll(now);
        self.spent.load(Ordering::Acquire)
    }

    pub fn committed(&self, now: i64) -> u64 {
        self.roll(now);
        self.committed.load(Ordering::Acquire)
    }

    /// Past the soft ratio: the router should prefer the cheapest deployments.
    pub fn over_soft(&self, now: i64) -> bool {
        self.committed(now) >= self.soft
    }

    pub fn remaining(&self, now: i64) -> u64 {
        self.limit.saturating_sub(self.committed(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_windows() {
        // 2026-11-29 12:00:00 UTC is a Sunday.
        let now = days_from_civil(2026, 11, 29) * 86_400 + 12 * 3600;
        assert_eq!(civil_from_days(now / 86_400), (2026, 11, 29));
        let (s, e) = Period::Daily.window(now);
        assert_eq!((s, e), (now - 12 * 3600, Some(now + 12 * 3600)));
        let (s, e) = Period::Weekly.window(now);
        assert_eq!(civil_from_days(s / 86_400), (2026, 11, 23)); // Monday
        assert_eq!(civil_from_days(e.unwrap() / 86_400), (2026, 11, 30));
        let (s, e) = Period::Monthly.window(now);
        assert_eq!(civil_from_days(s / 86_400), (2026, 11, 1));
        assert_eq!(civil_from_days(e.unwrap() / 86_400), (2026, 12, 1));
        let dec = days_from_civil(2026, 12, 31) * 86_400;
        assert_eq!(
            civil_from_days(Period::Monthly.window(dec).1.unwrap() / 86_400),
            (2027, 1, 1)
        );
        assert_eq!(Period::Total.window(now), (0, None));
    }

    #[test]
    fn reservations_never_overshoot() {
        let a = BudgetAccount::new(100, 0.8, Period::Total, 0, 0);
        let rs: Vec<_> = (0..20).filter_map(|_| a.reserve(10, 0).ok()).collect();
        assert_eq!(rs.len(), 10);
        assert!(a.reserve(1, 0).is_err());
        // Actual costs lower than reserved free room again.
        for r in rs {
            a.settle(r, 4, 0);
        }
        assert_eq!(a.spent(0), 40);
        assert_eq!(a.remaining(0), 60);
        assert!(!a.over_soft(0));
    }

    #[test]
    fn concurrent_reservations_stay_within_the_limit() {
        let a = std::sync::Arc::new(BudgetAccount::new(50_000, 0.8, Period::Total, 0, 0));
        let ok = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (a, ok) = (a.clone(), ok.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if let Ok(r) = a.reserve(100, 0) {
                            ok.fetch_add(1, Ordering::Relaxed);
                            a.settle(r, 100, 0);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ok.load(Ordering::Relaxed), 500);
        assert_eq!(a.spent(0), 50_000);
    }

    #[test]
    fn reserve_up_to_takes_what_is_left() {
        let a = BudgetAccount::new(100, 0.8, Period::Total, 70, 0);
        let r = a.reserve_up_to(50, 0).unwrap();
        assert_eq!(r.amount, 30);
        assert!(a.reserve_up_to(1, 0).is_err());
        a.settle(r, 10, 0);
        assert_eq!(a.reserve_up_to(50, 0).unwrap().amount, 20);
    }

    #[test]
    fn a_new_day_starts_from_zero() {
        let a = BudgetAccount::new(100, 0.5, Period::Daily, 90, 10);
        assert!(a.reserve(20, 10).is_err());
        let e = a.reserve(20, 10).unwrap_err();
        assert_eq!(e.resets_at, Some(86_400));
        assert!(a.over_soft(10));
        assert!(a.reserve(20, 86_400 + 5).is_ok());
        assert_eq!(a.spent(86_400 + 5), 0);
    }

    #[test]
    fn windows_roll_more_than_once_and_a_late_reading_does_not_roll_back() {
        let day = 86_400;
        let a = BudgetAccount::new(100, 0.5, Period::Daily, 0, 10);
        let r1 = a.reserve(30, 10).unwrap();
        assert_eq!(r1.period_start, 0);
        // Day 2: a fresh window; the day-1 reservation settles into it.
        let r2 = a.reserve(40, day + 1).unwrap();
        assert_eq!((r2.period_start, a.committed(day + 1)), (day, 40));
        a.settle(r1, 5, day + 2);
        assert_eq!(a.spent(day + 2), 5);
        // A thread that read the clock just before midnight neither rolls back nor resets.
        assert_eq!(a.reserve(1, day - 1).unwrap().period_start, 0);
        assert_eq!(a.committed(day + 3), 46);
        // Day 4 (skipping day 3): from zero again, and the fast path follows the new window.
        assert_eq!(a.committed(3 * day + 7), 0);
        assert_eq!(a.reserve(100, 3 * day + 8).unwrap().period_start, 3 * day);
        assert!(a.reserve(1, 4 * day - 1).is_err());
        assert!(a.reserve(1, 4 * day).is_ok());
        // A total budget never rolls.
        let t = BudgetAccount::new(10, 1.0, Period::Total, 0, 0);
        t.record(7, 0);
        assert_eq!(t.spent(i64::MAX - 1), 7);
    }

    #[test]
    fn money_conversions() {
        assert_eq!(usd_to_nanos(1.5), 1_500_000_000);
        assert_eq!(usd_to_nanos(-1.0), 0);
        assert!((nanos_to_usd(250_000_000) - 0.25).abs() < 1e-12);
    }
}
