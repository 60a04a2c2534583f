//! What an answer means and when the next attempt comes (pure, table-tested)
//!
//! 2xx is delivered. 408, 425, 429 and 5xx are worth another attempt, and so is any failure to
//! connect, send or read in time; a `Retry-After` on 429 or 503 sets the wait (capped at
//! `retry_max`). 3xx is a failure for good (redirects are not followed: the URL should be the
//! final one), and so is any other 4xx (the receiver refuses this request, and will again).
//! The wait after attempt n is `retry_base × 2^(n−1)`, capped at `retry_max`, plus up to 25%
//! random; a delivery is given up after `max_attempts`, or when the next attempt would come
//! later than `max_age` after it was enqueued.

use std::time::Duration;

use super::AttemptOutcome;
use crate::config::NotifyTuning;
use crate::time::Micros;

/// What one attempt's result asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Delivered,
    /// Try again; `wait` if the receiver said how long.
    Retry {
        wait: Option<Duration>,
    },
    /// Do not try again.
    Permanent,
}

/// An HTTP status (with its `Retry-After`, if any) → what to do.
pub(super) fn classify_http(status: u16, retry_after: Option<&str>, now_unix: i64) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 | 503 => Verdict::Retry {
            wait: retry_after.and_then(|v| parse_retry_after(v, now_unix)),
        },
        408 | 425 | 500..=599 => Verdict::Retry { wait: None },
        _ => Verdict::Permanent,
    }
}

/// `Retry-After`: delay-seconds, or an HTTP date (a date in the past is no wait).
pub(super) fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = date.timestamp().saturating_sub(now_unix).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// The wait after attempt `number` (1-based), with `jitter` in [0, 1) scaling the extra 25%.
pub(super) fn backoff(tuning: &NotifyTuning, number: u32, jitter: f64) -> Duration {
    let doublings = number.saturating_sub(1).min(40);
    let base = tuning
        .retry_base
        .saturating_mul(1u32 << doublings.min(31))
        .min(tuning.retry_max);
    let extra = base.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
    (base + extra).min(tuning.retry_max)
}

fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// After attempt `number` ended at `now` with `verdict`: delivered, retrying at a time, or
/// failed (permanent, or out of attempts or of time since `created_at`).
pub(super) fn decide(
    tuning: &NotifyTuning,
    verdict: Verdict,
    number: u32,
    created_at: Micros,
    now: Micros,
    jitter: f64,
) -> (AttemptOutcome, Option<&'static str>) {
    let wait = match verdict {
        Verdict::Delivered => return (AttemptOutcome::Delivered, None),
        Verdict::Permanent => return (AttemptOutcome::Failed, None),
        Verdict::Retry { wait: Some(w) } => w.min(tuning.retry_max),
        Verdict::Retry { wait: None } => backoff(tuning, number, jitter),
    };
    if number >= tuning.max_attempts {
        return (AttemptOutcome::Failed, Some("out of attempts"));
    }
    let next_at = now.saturating_add(micros(wait));
    if next_at > created_at.saturating_add(micros(tuning.max_age)) {
        return (AttemptOutcome::Failed, Some("out of time"));
    }
    (AttemptOutcome::Retrying { next_at }, None)
}

/// A jitter draw in [0, 1) from the OS random source.
pub(super) fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MICROS_PER_SEC as SECOND;

    fn tuning() -> NotifyTuning {
        NotifyTuning::default()
    }

    #[test]
    fn statuses_are_classified() {
        let cases: &[(u16, Option<&str>, Verdict)] = &[
            (200, None, Verdict::Delivered),
            (204, None, Verdict::Delivered),
            (301, None, Verdict::Permanent),
            (400, None, Verdict::Permanent),
            (401, None, Verdict::Permanent),
            (404, None, Verdict::Permanent),
            (410, None, Verdict::Permanent),
            (408, None, Verdict::Retry { wait: None }),
            (429, None, Verdict::Retry { wait: None }),
            (
                429,
                Some("7"),
                Verdict::Retry {
                    wait: Some(Duration::from_secs(7)),
                },
            ),
            (
                503,
                Some("Thu, 01 Jan 1970 00:01:40 GMT"),
                Verdict::Retry {
                    wait: Some(Duration::from_secs(40)),
                },
            ),
            (503, Some("soon"), Verdict::Retry { wait: None }),
            // Retry-After is honoured on 429 and 503 only
            (500, Some("9"), Verdict::Retry { wait: None }),
            (502, None, Verdict::Retry { wait: None }),
        ];
        for (status, after, want) in cases {
            assert_eq!(
                classify_http(*status, *after, 60),
                *want,
                "{status} {after:?}"
            );
        }
    }

    #[test]
    fn a_retry_after_date_in_the_past_is_no_wait() {
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 1000),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_at_most_a_quarter_more() {
        let t = tuning();
        assert_eq!(backoff(&t, 1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&t, 2, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(&t, 3, 0.0), Duration::from_secs(20));
        assert_eq!(
            backoff(&t, 1, 0.999_999),
            Duration::from_secs(5).mul_f64(1.249_999_75)
        );
        assert_eq!(backoff(&t, 10, 0.0), Duration::from_secs(2560));
        assert_eq!(backoff(&t, 11, 0.0), Duration::from_secs(3600));
        assert_eq!(backoff(&t, 200, 0.9), Duration::from_secs(3600));
    }

    #[test]
    fn gives_up_on_attempts_or_age() {
        let t = tuning();
        let retry = Verdict::Retry { wait: None };
        let (o, why) = decide(&t, retry, 1, 0, 0, 0.0);
        assert_eq!(
            o,
            AttemptOutcome::Retrying {
                next_at: 5 * SECOND
            }
        );
        assert_eq!(why, None);
        let (o, why) = decide(&t, retry, 12, 0, 0, 0.0);
        assert_eq!((o, why), (AttemptOutcome::Failed, Some("out of attempts")));
        let day = 24 * 3600 * SECOND;
        let (o, why) = decide(&t, retry, 3, 0, day - SECOND, 0.0);
        assert_eq!((o, why), (AttemptOutcome::Failed, Some("out of time")));
        let (o, _) = decide(&t, Verdict::Permanent, 1, 0, 0, 0.0);
        assert_eq!(o, AttemptOutcome::Failed);
        // a receiver's wait is capped at retry_max
        let (o, _) = decide(
            &t,
            Verdict::Retry {
                wait: Some(Duration::from_secs(86_400)),
            },
            1,
            0,
            0,
            0.0,
        );
        assert_eq!(
            o,
            AttemptOutcome::Retrying {
                next_at: 3600 * SECOND
            }
        );
    }
}
