//! Calls to external services from a topology: the call operator
//! ([`Call`], added with [`KStream::call`] or `op = "call"` in topology
//! files), which makes an HTTP call per record on an async runtime at the
//! edge while the stream thread goes on, and what it is made of — the
//! [`Caller`] that makes one call under an endpoint's policies, a
//! [`CircuitBreaker`] per endpoint, a [`RetryPolicy`] with backoff and
//! jitter. `spec.rs` holds what users describe, `node.rs` the operator in a
//! task, `pending.rs` the records it keeps until their calls are done,
//! `edge.rs` the runtime and what a worker's tasks share, `tls.rs` whom
//! `https://` calls trust and what they present.
//!
//! [`KStream::call`]: crate::topology::KStream::call
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
mod edge;
mod node;
mod pending;
mod retry;
mod spec;
mod tls;

pub use breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
pub use caller::{CallLimits, CallOutcome, CallRequest, Caller, FailReason};
pub(crate) use edge::CallRuntime;
pub(crate) use node::CallFactory;
pub use retry::{retryable_status, RetryPolicy};
pub use spec::{Answer, Call, CallFailure, CallOrder, CallSettings, OnOpen};
pub use tls::{CallTls, CallTlsError, TlsFiles};
