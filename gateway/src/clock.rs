//! The gateway's clocks, in one place: a process-wide monotonic clock for durations that must
//! never go backwards (breakers, rate limiters) and the wall clock for what is shown or stored
//! (ledger rows, `created`, token expiry). Owns no state beyond the monotonic origin; nothing
//! else in the gateway reads `SystemTime` or keeps its own `Instant` origin for these purposes.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn origin() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds on the process-wide monotonic clock (never 0, so 0 can mean "never").
pub fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64 + 1
}

/// [`now_ms`] as it read at `at`: a path that already read the clock (a try's answer, a
/// relay's end) passes that reading on instead of reading again (each read ~30 ns on a VM).
pub fn ms_at(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_millis() as u64 + 1
}

/// The Unix time in milliseconds of an earlier [`now_ms`] reading (for display: hot paths keep
/// the monotonic reading they already have and are converted only when shown).
pub fn unix_ms_of(ms: u64) -> u64 {
    unix_ms().saturating_sub(now_ms().saturating_sub(ms))
}

/// Nanoseconds on the process-wide monotonic clock (rate-limit windows).
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Seconds since the Unix epoch (0 if the wall clock is before it).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch as a signed number (budget periods, usage queries).
pub fn unix_secs_i64() -> i64 {
    i64::try_from(unix_secs()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch (0 if the wall clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
pub const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// Unix seconds as RFC 3339, clamped to what RFC 3339 can write (never a panic).
pub fn rfc3339(secs: u64) -> String {
    let secs = secs.min(LAST_RFC3339_SECOND);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_moves_forward_and_is_never_zero() {
        let a = now_ms();
        let b = now_ms();
        assert!(a >= 1 && b >= a);
        assert!(now_ns() <= now_ns());
        assert!(unix_secs() > 1_700_000_000);
        assert_eq!(unix_secs_i64() as u64 / 10, unix_secs() / 10);
        assert!(unix_ms() / 1000 >= unix_secs() - 1);
    }
}
