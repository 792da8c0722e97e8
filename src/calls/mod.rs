//! Calls to external services from a topology (issue 17, under way): the
//! policies a call operator applies per endpoint — a circuit breaker that
//! stops calling a service that keeps failing, and retries with backoff
//! and jitter for the failures worth another try — and the [`Caller`]
//! that makes one HTTP call under them.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use eddy::calls::{Admission, BreakerConfig, CircuitBreaker, RetryPolicy};
//!
//! let breaker = CircuitBreaker::new(BreakerConfig { failures: 2, open_for: Duration::from_secs(5) });
//! let now = Instant::now();
//! breaker.record(false, now);
//! breaker.record(false, now);
//! assert!(matches!(breaker.admit(now), Admission::Refused(_)));
//!
//! let retry = RetryPolicy::default();
//! assert!(retry.backoff(2, None, 0.5).unwrap() <= retry.initial_backoff);
//! ```

mod breaker;
mod caller;
mod retry;

pub use breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
pub use caller::{CallLimits, CallOutcome, CallRequest, Caller};
pub use retry::{retryable_status, RetryPolicy};
