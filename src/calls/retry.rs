//! When a failed call is tried again: exponential backoff with full
//! jitter, a server's `Retry-After` honoured, a bounded number of tries.

use std::time::Duration;

/// How often and how soon failed calls are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The backoff before the first retry, doubled for each next one.
    pub initial_backoff: Duration,
    /// The longest backoff, and the longest `Retry-After` waited for.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Whether an HTTP status is worth another try: 408, 429, the 5xx that
/// say the server may answer later (500, 502, 503, 504), and 409, which a
/// service honouring idempotency keys answers while a request with the
/// same key is still in progress (the IETF `Idempotency-Key` draft; the
/// call operator always sends a key). A 409 that is a lasting conflict
/// comes back the same on every try and is delivered as the answer once
/// the tries are used up.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429 | 500 | 502 | 503 | 504)
}

impl RetryPolicy {
    /// The wait before try `next` (2 for the first retry), or `None` when
    /// the tries are used up. `unit` is a random draw in [0, 1): the wait
    /// is drawn uniformly up to the exponential backoff ("full jitter"),
    /// so that callers refused together do not come back together; a
    /// server's `Retry-After` is a floor.
    pub fn backoff(&self, next: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        if next < 2 || next > self.attempts.max(1) {
            return None;
        }
        let doublings = (next - 2).min(31);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        Some(match retry_after {
            Some(at_least) => jittered.max(at_least.min(self.max_backoff)),
            None => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter_and_retry_after() {
        let p = RetryPolicy {
            attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        assert_eq!(ms(p.backoff(1, None, 0.5)), None);
        assert_eq!(ms(p.backoff(2, None, 1.0)), Some(100));
        assert_eq!(ms(p.backoff(3, None, 1.0)), Some(200));
        assert_eq!(ms(p.backoff(4, None, 1.0)), Some(400));
        assert_eq!(ms(p.backoff(5, None, 1.0)), Some(500));
        assert_eq!(ms(p.backoff(6, None, 0.5)), Some(250));
        assert_eq!(ms(p.backoff(7, None, 0.5)), None);
        assert_eq!(ms(p.backoff(3, None, 0.0)), Some(0));
        // Retry-After is a floor, itself capped.
        assert_eq!(
            ms(p.backoff(2, Some(Duration::from_millis(300)), 0.1)),
            Some(300)
        );
        assert_eq!(
            ms(p.backoff(2, Some(Duration::from_secs(60)), 0.1)),
            Some(500)
        );
        // Huge attempt counts do not overflow.
        let many = RetryPolicy {
            attempts: u32::MAX,
            ..p
        };
        assert_eq!(ms(many.backoff(u32::MAX, None, 1.0)), Some(500));
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 422, 501, 505] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
