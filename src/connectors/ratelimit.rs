//! One rate gate per integration: a governor limiter at the connector's declared pace, tightened
//! when the vendor's remaining/reset headers say the budget is running out, and closed outright
//! until a time the vendor named (Retry-After, reset)
//!
//! What a vendor's answer says of its budget (`RateHeaders`) is read here too.
//!
//! Waits are tokio sleeps (governor only answers "not until"), so shutdown can cut them short.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::definition::{RateLimitSpec, ResetFormat};
use crate::time::{Micros, MICROS_PER_SEC};

/// Longest pause the gate accepts from a vendor header; beyond it the header is not trusted.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

pub struct RateGate {
    base: Quota,
    limiter: Mutex<Arc<DefaultDirectRateLimiter>>,
    tightened: Mutex<Option<Duration>>,
    closed_until: Mutex<Option<Instant>>,
    clock: DefaultClock,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is never zero")
}

impl RateGate {
    /// A gate at the connector's pace, or at `requests_per_minute` if the integration sets one.
    pub fn new(spec: &RateLimitSpec, requests_per_minute: Option<u32>) -> RateGate {
        let rpm = requests_per_minute.unwrap_or(spec.requests_per_minute);
        let base = Quota::per_minute(nonzero(rpm)).allow_burst(nonzero(spec.burst));
        RateGate {
            base,
            limiter: Mutex::new(Arc::new(RateLimiter::direct(base))),
            tightened: Mutex::new(None),
            closed_until: Mutex::new(None),
            clock: DefaultClock::default(),
        }
    }

    /// How long to wait before the next request may go out; `None` = now (and it is counted).
    pub fn next_wait(&self) -> Option<Duration> {
        let now = Instant::now();
        if let Ok(mut closed) = self.closed_until.lock() {
            match *closed {
                Some(t) if t > now => return Some(t - now),
                Some(_) => *closed = None,
                None => {}
            }
        }
        let limiter = self.limiter.lock().ok()?.clone();
        match limiter.check() {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Closes the gate for `wait` (a 429's Retry-After, or until the vendor's reset).
    pub fn close_for(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_PAUSE);
        if let Ok(mut closed) = self.closed_until.lock() {
            if closed.is_none_or(|t| t < until) {
                *closed = Some(until);
            }
        }
    }

    /// Adapts to the vendor's budget headers: with nothing left, close until the reset; with
    /// little left, spread what remains evenly over the time to the reset; otherwise go back to
    /// the declared pace.
    pub fn observe(&self, remaining: Option<u64>, reset_in: Option<Duration>) {
        let (Some(remaining), Some(reset_in)) = (remaining, reset_in) else {
            return;
        };
        let reset_in = reset_in.min(MAX_PAUSE);
        if remaining == 0 {
            self.close_for(reset_in);
            return;
        }
        let spread = reset_in / (remaining.min(u32::MAX as u64) as u32);
        let base_period = self.base.replenish_interval();
        let wanted = (spread > base_period).then_some(spread);
        let Ok(mut tightened) = self.tightened.lock() else {
            return;
        };
        if *tightened == wanted {
            return;
        }
        let quota = match wanted.and_then(Quota::with_period) {
            Some(q) => q,
            None => self.base,
        };
        *tightened = wanted;
        if let Ok(mut limiter) = self.limiter.lock() {
            *limiter = Arc::new(RateLimiter::direct(quota));
        }
        tracing::debug!(remaining, reset_secs = reset_in.as_secs(), tightened = ?wanted, "rate gate adjusted");
    }
}

/// What a vendor's answer says about its rate limit, read from its headers alone: pure, so that
/// tests and the fuzz targets (docs/FUZZING.md) can feed it any header a vendor could send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    /// Requests left in the budget (the definition's `remaining_header`).
    pub remaining: Option<u64>,
    /// Time until the budget resets (the definition's `reset_header` and `reset_format`).
    pub reset_in: Option<Duration>,
    /// `Retry-After`, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
}

impl RateHeaders {
    pub fn read(spec: &RateLimitSpec, headers: &HeaderMap, now: Micros) -> RateHeaders {
        RateHeaders {
            remaining: header_number(headers, spec.remaining_header.as_deref()),
            reset_in: reset_in(spec, headers, now),
            retry_after: retry_after(headers, now),
        }
    }
}

fn header_number(headers: &HeaderMap, name: Option<&str>) -> Option<u64> {
    headers
        .get(name?)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|f| *f >= 0.0)
        .map(|f| f as u64)
}

/// Time until the vendor's budget resets, from the reset header.
fn reset_in(spec: &RateLimitSpec, headers: &HeaderMap, now: Micros) -> Option<Duration> {
    let n = header_number(headers, spec.reset_header.as_deref())?;
    let secs = match spec.reset_format {
        ResetFormat::EpochSeconds => {
            // outside input: a reset past i64 must not wrap into the past, nor overflow
            let reset_at = i64::try_from(n).unwrap_or(i64::MAX);
            reset_at
                .saturating_sub(now / MICROS_PER_SEC)
                .max(0)
                .unsigned_abs()
                .saturating_add(1)
        }
        ResetFormat::DeltaSeconds => n,
    };
    Some(Duration::from_secs(secs))
}

fn retry_after(headers: &HeaderMap, now: Micros) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        // outside input: NaN, negative or absurd values must not panic
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.timestamp_micros().saturating_sub(now);
    Some(Duration::from_micros(delta.max(0).unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rpm: u32) -> RateLimitSpec {
        RateLimitSpec {
            requests_per_minute: rpm,
            burst: 1,
            remaining_header: None,
            reset_header: None,
            reset_format: super::super::definition::ResetFormat::EpochSeconds,
            body_markers: Vec::new(),
            default_wait: 0,
            scope: super::super::definition::LimitScope::Integration,
        }
    }

    #[test]
    fn paces_closes_and_tightens() {
        let gate = RateGate::new(&spec(60), None);
        assert_eq!(gate.next_wait(), None);
        let w = gate
            .next_wait()
            .expect("second request within the second waits");
        assert!(w <= Duration::from_secs(1), "{w:?}");
        let gate = RateGate::new(&spec(1), Some(6000));
        gate.close_for(Duration::from_millis(300));
        assert!(gate.next_wait().expect("closed") > Duration::from_millis(200));
        let gate = RateGate::new(&spec(1), Some(6000));
        gate.observe(Some(2), Some(Duration::from_secs(20)));
        assert_eq!(gate.next_wait(), None);
        let w = gate.next_wait().expect("tightened to one per 10 s");
        assert!(w > Duration::from_secs(5), "{w:?}");
        gate.observe(Some(1000), Some(Duration::from_secs(20)));
        assert_eq!(gate.next_wait(), None, "back to the declared pace");
        gate.observe(Some(0), Some(Duration::from_secs(5)));
        assert!(gate.next_wait().expect("exhausted") > Duration::from_secs(4));
    }

    #[test]
    fn retry_after_from_outside_never_panics() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, v.parse().expect("header"));
            retry_after(&h, crate::time::now_micros())
        };
        assert_eq!(h("2"), Some(Duration::from_secs(2)));
        assert_eq!(h("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(h("1e400"), None);
        assert_eq!(h("-3"), None);
        assert_eq!(h("NaN"), None);
        assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(h("soon"), None);
    }
}
