//! What routing learns from each deployment's answers: a circuit breaker (closed → open after
//! `failures` consecutive failures → half-open after `open_for`, one probe at a time → closed on a
//! success), the provider's `Retry-After` (the deployment is skipped until then), and an EWMA of
//! time to first byte for `least_latency`, and the deployment's [`Reputation`] (fed by the same
//! observations).
//!
//! All atomics: routing reads and updates them on the request path without locks. A
//! [`DeploymentRuntime`] outlives config reloads for deployments that still exist.

use crate::config::BreakerPolicy;
use crate::routing::reputation::Reputation;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Why a deployment cannot take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    CircuitOpen,
    RetryAfter,
    /// The provider's quota for this minute is used up.
    Quota,
}

/// The wait told to a caller for a provider's 429 that said no `Retry-After`.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct DeploymentRuntime {
    consecutive_failures: AtomicU32,
    /// 0: closed. Otherwise open until this time, then half-open.
    open_until_ms: AtomicU64,
    /// When the current half-open probe started (0 = none). A probe whose request vanished
    /// (caller gone) expires after `open_for`, so the breaker cannot stick half-open.
    probe_started_ms: AtomicU64,
    retry_after_until_ms: AtomicU64,
    /// Microseconds; 0 = nothing measured yet.
    ewma_ttfb_us: AtomicU64,
    /// EWMA (weight 0.1) of the failure indicator, in millionths.
    error_rate_ppm: AtomicU64,
    /// Observed reliability over a decaying window (strategy `reliability`).
    pub reputation: Reputation,
}

impl DeploymentRuntime {
    pub fn state(&self, now: u64) -> BreakerState {
        match self.open_until_ms.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            t if now < t => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a request could be sent now (without claiming a half-open probe).
    pub fn available(&self, now: u64) -> bool {
        now >= self.retry_after_until_ms.load(Ordering::Acquire)
            && self.state(now) != BreakerState::Open
    }

    /// Claims the right to send a request now (in half-open state only one probe at a time).
    pub fn acquire(&self, policy: &BreakerPolicy, now: u64) -> Result<(), Unavailable> {
        if now < self.retry_after_until_ms.load(Ordering::Acquire) {
            return Err(Unavailable::RetryAfter);
        }
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => Err(Unavailable::CircuitOpen),
            BreakerState::HalfOpen => {
                let started = self.probe_started_ms.load(Ordering::Acquire);
                let stale = started != 0
                    && now.saturating_sub(started) > policy.open_for.as_millis() as u64;
                if started != 0 && !stale {
                    return Err(Unavailable::CircuitOpen);
                }
                self.probe_started_ms
                    .compare_exchange(started, now, Ordering::AcqRel, Ordering::Acquire)
                    .map(|_| ())
                    .map_err(|_| Unavailable::CircuitOpen)
            }
        }
    }

    fn fold_error(&self, failed: bool) {
        let old = self.error_rate_ppm.load(Ordering::Relaxed);
        let sample = if failed { 1_000_000 } else { 0 };
        self.error_rate_ppm
            .store((old * 9 + sample) / 10, Ordering::Relaxed);
    }

    /// Recent share of failed tries (EWMA, 0.0 to 1.0).
    pub fn error_rate(&self) -> f64 {
        self.error_rate_ppm.load(Ordering::Relaxed) as f64 / 1_000_000.0
    }

    /// A good answer at `now` (ms, [`crate::clock::now_ms`]).
    pub fn on_success(&self, now: u64) {
        self.reputation.success(now);
        self.fold_error(false);
        self.consecutive_failures.store(0, Ordering::Release);
        self.open_until_ms.store(0, Ordering::Release);
        self.probe_started_ms.store(0, Ordering::Release);
    }

    /// Records a failure; returns true when this failure opened (or re-opened) the circuit.
    pub fn on_failure(&self, policy: &BreakerPolicy, now: u64) -> bool {
        self.reputation.failure(now);
        self.fold_error(true);
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probe = self.probe_started_ms.swap(0, Ordering::AcqRel) != 0;
        if was_probe || (n >= policy.failures && self.state(now) == BreakerState::Closed) {
            self.open_until_ms
                .store(now + policy.open_for.as_millis() as u64, Ordering::Release);
            return true;
        }
        false
    }

    /// The provider answered 429: not a failure of the deployment (its circuit is not moved
    /// toward opening, a half-open probe is given back), only a wait when the provider said how
    /// long (without one, the plan's own retry backoff spaces the next try).
    pub fn rate_limited(&self, wait: Option<Duration>, now: u64) {
        self.reputation.throttled(now);
        self.probe_started_ms.store(0, Ordering::Release);
        if let Some(wait) = wait {
            self.retry_after(wait, now);
        }
    }

    /// Milliseconds left of the wait a provider asked for (0 when none).
    pub fn wait_left_ms(&self, now: u64) -> u64 {
        self.retry_after_until_ms
            .load(Ordering::Acquire)
            .saturating_sub(now)
    }

    /// The provider asked to wait (`Retry-After`): skip this deployment until then.
    pub fn retry_after(&self, wait: Duration, now: u64) {
        self.retry_after_until_ms
            .fetch_max(now + wait.as_millis() as u64, Ordering::AcqRel);
    }

    /// The total latency of an answer sent in full, for the reputation score, at `now` (ms).
    pub fn observe_total(&self, took: Duration, now: u64) {
        self.reputation.total(now, took);
    }

    /// Folds one time-to-first-byte sample, taken at `now` (ms), into the EWMA (weight 0.2).
    pub fn observe_ttfb(&self, ttfb: Duration, now: u64) {
        self.reputation.ttfb(now, ttfb);
        let sample = ttfb.as_micros().max(1) as u64;
        let old = self.ewma_ttfb_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 4 + sample) / 5
        };
        self.ewma_ttfb_us.store(new, Ordering::Relaxed);
    }

    /// `None` until a first sample.
    pub fn ewma_ttfb(&self) -> Option<Duration> {
        match self.ewma_ttfb_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }
}

/// A wait as `Retry-After` seconds: rounded up, at least 1.
pub fn whole_seconds(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// Parses `Retry-After` (delta seconds) or `retry-after-ms`, capped at 10 minutes.
pub fn parse_retry_after(seconds: Option<&[u8]>, millis: Option<&[u8]>) -> Option<Duration> {
    let parse = |v: &[u8]| std::str::from_utf8(v).ok()?.trim().parse::<f64>().ok();
    let d = millis
        .and_then(parse)
        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
        .or_else(|| {
            seconds
                .and_then(parse)
                .map(|s| Duration::from_secs_f64(s.max(0.0)))
        })?;
    Some(d.min(Duration::from_secs(600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        open_for: Duration::from_millis(1000),
    };

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_with_one_probe() {
        let r = DeploymentRuntime::default();
        assert!(r.acquire(&POLICY, 10).is_ok());
        assert!(!r.on_failure(&POLICY, 10));
        assert!(!r.on_failure(&POLICY, 11));
        assert!(r.on_failure(&POLICY, 12), "third failure opens");
        assert_eq!(r.state(500), BreakerState::Open);
        assert_eq!(r.acquire(&POLICY, 500), Err(Unavailable::CircuitOpen));
        // Half-open after open_for: one probe.
        assert_eq!(r.state(1013), BreakerState::HalfOpen);
        assert!(r.acquire(&POLICY, 1013).is_ok());
        assert_eq!(
            r.acquire(&POLICY, 1014),
            Err(Unavailable::CircuitOpen),
            "only one probe"
        );
        // The probe fails: open again.
        assert!(r.on_failure(&POLICY, 1015));
        assert_eq!(r.state(1500), BreakerState::Open);
        // Next probe succeeds: closed.
        assert!(r.acquire(&POLICY, 2100).is_ok());
        r.on_success(2100);
        assert_eq!(r.state(2100), BreakerState::Closed);
        assert!(r.acquire(&POLICY, 2101).is_ok());
    }

    #[test]
    fn an_abandoned_probe_expires() {
        let r = DeploymentRuntime::default();
        for t in 0..3 {
            r.on_failure(&POLICY, t);
        }
        assert!(r.acquire(&POLICY, 1100).is_ok(), "probe");
        // The probe's caller vanished: nothing was recorded. After open_for another probe may go.
        assert!(r.acquire(&POLICY, 1500).is_err());
        assert!(r.acquire(&POLICY, 2200).is_ok());
    }

    #[test]
    fn a_success_resets_the_count() {
        let r = DeploymentRuntime::default();
        r.on_failure(&POLICY, 1);
        r.on_failure(&POLICY, 2);
        r.on_success(2);
        assert!(!r.on_failure(&POLICY, 3));
        assert_eq!(r.state(4), BreakerState::Closed);
    }

    #[test]
    fn retry_after_skips_until_then() {
        let r = DeploymentRuntime::default();
        r.retry_after(Duration::from_millis(500), 100);
        assert_eq!(r.acquire(&POLICY, 599), Err(Unavailable::RetryAfter));
        assert!(r.acquire(&POLICY, 600).is_ok());
        assert_eq!(
            parse_retry_after(Some(b"2"), None),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after(Some(b"2"), Some(b"250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(Some(b"99999"), None),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_retry_after(Some(b"Wed, 21 Oct 2015 07:28:00 GMT"), None),
            None
        );
    }

    #[test]
    fn ewma_moves_towards_samples() {
        let r = DeploymentRuntime::default();
        assert_eq!(r.ewma_ttfb(), None);
        r.observe_ttfb(Duration::from_millis(100), 1);
        assert_eq!(r.ewma_ttfb(), Some(Duration::from_millis(100)));
        r.observe_ttfb(Duration::from_millis(200), 1);
        assert_eq!(r.ewma_ttfb(), Some(Duration::from_millis(120)));
    }
}

/// A provider's quota as Switchyard sees it: requests and tokens in the current UTC minute
/// (counted locally), plus what the provider's rate-limit headers said (`x-ratelimit-remaining-*`
/// at 0 blocks the provider until the matching `x-ratelimit-reset-*`).
#[derive(Debug, Default)]
pub struct QuotaTracker {
    minute: AtomicU64,
    requests: AtomicU64,
    tokens: AtomicU64,
    blocked_until_ms: AtomicU64,
}

impl QuotaTracker {
    fn roll(&self, minute: u64) {
        let seen = self.minute.load(Ordering::Acquire);
        if seen != minute
            && self
                .minute
                .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requests.store(0, Ordering::Release);
            self.tokens.store(0, Ordering::Release);
        }
    }

    /// Milliseconds until the quota may admit a request again: what the provider asked for, or
    /// the next minute (`unix_ms` for the minute's boundary, `now` on the gateway's clock).
    pub fn wait_ms(&self, unix_ms: u64, now: u64) -> u64 {
        let blocked = self
            .blocked_until_ms
            .load(Ordering::Acquire)
            .saturating_sub(now);
        blocked.max(60_000 - unix_ms % 60_000)
    }

    /// The provider asked for a pause at least once (its rate-limit headers said it was spent).
    pub fn ever_blocked(&self) -> bool {
        self.blocked_until_ms.load(Ordering::Acquire) != 0
    }

    /// Counts one request if the quota allows it now.
    pub fn admit(&self, quota: Option<&crate::config::Quota>, unix_minute: u64, now: u64) -> bool {
        if now < self.blocked_until_ms.load(Ordering::Acquire) {
            return false;
        }
        let Some(q) = quota else { return true };
        self.roll(unix_minute);
        if q.tokens_per_minute
            .is_some_and(|t| self.tokens.load(Ordering::Acquire) >= t)
        {
            return false;
        }
        let n = self.requests.fetch_add(1, Ordering::AcqRel);
        if q.requests_per_minute.is_some_and(|r| n >= r) {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn add_tokens(&self, n: u64, unix_minute: u64) {
        self.roll(unix_minute);
        self.tokens.fetch_add(n, Ordering::AcqRel);
    }

    /// Applies the provider's rate-limit headers (OpenAI style, and Anthropic's variant whose
    /// reset is an RFC 3339 instant, not a duration). Header names are built once: formatting
    /// and parsing eight names cost ~3,800 instructions on every answer.
    pub fn observe_headers(&self, headers: &http::HeaderMap, now: impl FnOnce() -> u64) {
        use http::HeaderName as H;
        static OPENAI: [(H, H); 2] = [
            (
                H::from_static("x-ratelimit-remaining-requests"),
                H::from_static("x-ratelimit-reset-requests"),
            ),
            (
                H::from_static("x-ratelimit-remaining-tokens"),
                H::from_static("x-ratelimit-reset-tokens"),
            ),
        ];
        static ANTHROPIC: [(H, H); 2] = [
            (
                H::from_static("anthropic-ratelimit-requests-remaining"),
                H::from_static("anthropic-ratelimit-requests-reset"),
            ),
            (
                H::from_static("anthropic-ratelimit-tokens-remaining"),
                H::from_static("anthropic-ratelimit-tokens-reset"),
            ),
        ];
        // Most answers carry none of them (mock and local providers, many compatible servers):
        // one pass over the names is ~100 instructions, the eight lookups ~1,000.
        if !headers.keys().any(|k| is_quota_header(k.as_str())) {
            return;
        }
        let now = now();
        let text = |name: &H| headers.get(name).and_then(|v| v.to_str().ok());
        let exhausted = |name: &H| text(name).and_then(|v| v.trim().parse::<u64>().ok()) == Some(0);
        let block = |reset: Option<Duration>| {
            let reset = reset
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(600));
            self.blocked_until_ms
                .fetch_max(now + reset.as_millis() as u64, Ordering::AcqRel);
        };
        for (remaining, reset) in &OPENAI {
            if exhausted(remaining) {
                block(text(reset).and_then(parse_reset));
            }
        }
        for (remaining, reset) in &ANTHROPIC {
            if exhausted(remaining) {
                block(
                    text(reset)
                        .and_then(|v| humantime::parse_rfc3339_weak(v.trim()).ok())
                        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok()),
                );
            }
        }
    }
}

/// A provider's account-quota header (OpenAI's `x-ratelimit-*`, Anthropic's
/// `anthropic-ratelimit-*`): read here, never shown to callers.
pub fn is_quota_header(name: &str) -> bool {
    name.starts_with("x-ratelimit-") || name.starts_with("anthropic-ratelimit-")
}

/// OpenAI's reset durations: `1s`, `6m0s`, `12ms`, `1h2m3.5s`.
pub fn parse_reset(s: &str) -> Option<Duration> {
    let s = s.trim();
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let value: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod quota_tests {
    use super::*;
    use crate::config::Quota;

    #[test]
    fn counts_per_minute() {
        let q = Quota {
            requests_per_minute: Some(2),
            tokens_per_minute: Some(100),
        };
        let t = QuotaTracker::default();
        assert!(t.admit(Some(&q), 10, 1));
        assert!(t.admit(Some(&q), 10, 1));
        assert!(!t.admit(Some(&q), 10, 1), "third request in the minute");
        assert!(t.admit(Some(&q), 11, 1), "next minute");
        t.add_tokens(100, 11);
        assert!(!t.admit(Some(&q), 11, 1), "token quota used up");
        assert!(t.admit(None, 11, 1));
    }

    #[test]
    fn provider_headers_block_until_reset() {
        let t = QuotaTracker::default();
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "1.5s".parse().unwrap());
        t.observe_headers(&h, || 1000);
        assert!(!t.admit(None, 0, 2000));
        assert!(t.admit(None, 0, 2600));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_reset("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_reset("soon"), None);
    }
}
