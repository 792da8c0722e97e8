//! A circuit breaker per endpoint: after `failures` failed calls in a row
//! it opens and refuses calls for `open_for`; then it lets one probe
//! through (half-open): a success closes it, a failure opens it again.
//! Shared by the tasks of a worker that call the same endpoint.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failed calls in a row that open the breaker (at least 1).
    pub failures: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the open time is over.
    Open,
    /// One probe call is let through; the others are refused.
    HalfOpen,
}

/// Whether a call may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call.
    Call,
    /// Call: the probe of a half-open breaker, whose outcome decides.
    Probe,
    /// Do not call; ask again after this long.
    Refused(Duration),
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failed_in_a_row: u32,
    opened_at: Instant,
    probing: bool,
}

/// Told of every change of a breaker's state.
type Observer = Box<dyn Fn(BreakerState) + Send + Sync>;

/// A circuit breaker (see the module's documentation).
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// How long a refused call waits before asking again while a probe is out.
const PROBE_WAIT: Duration = Duration::from_millis(100);

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            config: BreakerConfig {
                failures: config.failures.max(1),
                ..config
            },
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failed_in_a_row: 0,
                opened_at: Instant::now(),
                probing: false,
            }),
            observer: None,
        }
    }

    /// A closed breaker that calls `observer` with each new state (for
    /// metrics and logs), outside its lock.
    pub fn observed(
        config: BreakerConfig,
        observer: impl Fn(BreakerState) + Send + Sync + 'static,
    ) -> CircuitBreaker {
        CircuitBreaker {
            observer: Some(Box::new(observer)),
            ..CircuitBreaker::new(config)
        }
    }

    fn tell(&self, changed: Option<BreakerState>) -> Option<BreakerState> {
        if let (Some(state), Some(observer)) = (changed, &self.observer) {
            observer(state);
        }
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its state at `now` (an open breaker whose time is over is half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            BreakerState::Open if now >= inner.opened_at + self.config.open_for => {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// Whether a call may start at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        let mut changed = None;
        if inner.state == BreakerState::Open {
            let reopen = inner.opened_at + self.config.open_for;
            if now < reopen {
                return Admission::Refused(reopen - now);
            }
            inner.state = BreakerState::HalfOpen;
            inner.probing = false;
            changed = Some(BreakerState::HalfOpen);
        }
        let admission = match inner.state {
            BreakerState::Closed => Admission::Call,
            _ if inner.probing => Admission::Refused(PROBE_WAIT),
            _ => {
                inner.probing = true;
                Admission::Probe
            }
        };
        drop(inner);
        self.tell(changed);
        admission
    }

    /// Records a call's outcome at `now`; the new state if it changed.
    pub fn record(&self, succeeded: bool, now: Instant) -> Option<BreakerState> {
        let mut inner = self.lock();
        let before = inner.state;
        if succeeded {
            inner.failed_in_a_row = 0;
            inner.state = BreakerState::Closed;
            inner.probing = false;
        } else {
            inner.failed_in_a_row = inner.failed_in_a_row.saturating_add(1);
            let open = match inner.state {
                BreakerState::Closed => inner.failed_in_a_row >= self.config.failures,
                // A failed probe opens it again; a late failure of a call
                // started before it opened changes nothing.
                BreakerState::HalfOpen => inner.probing,
                BreakerState::Open => false,
            };
            if open {
                inner.state = BreakerState::Open;
                inner.opened_at = now;
                inner.probing = false;
            }
        }
        let changed = (inner.state != before).then_some(inner.state);
        drop(inner);
        self.tell(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_probes_once() {
        let b = CircuitBreaker::new(BreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admission::Call);
        // A success between failures starts the count again.
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(true, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), Some(BreakerState::Open));
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(b.admit(t1), Admission::Refused(Duration::from_secs(6)));
        assert_eq!(b.state(t1), BreakerState::Open);
        // Over: one probe, the others wait for it.
        let t2 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t2), BreakerState::HalfOpen);
        assert_eq!(b.admit(t2), Admission::Probe);
        assert_eq!(b.admit(t2), Admission::Refused(PROBE_WAIT));
        // The probe fails: open again, from now.
        assert_eq!(b.record(false, t2), Some(BreakerState::Open));
        assert_eq!(
            b.admit(t2 + Duration::from_secs(9)),
            Admission::Refused(Duration::from_secs(1))
        );
        let t3 = t2 + Duration::from_secs(10);
        assert_eq!(b.admit(t3), Admission::Probe);
        // The probe succeeds: closed, calls go through.
        assert_eq!(b.record(true, t3), Some(BreakerState::Closed));
        assert_eq!(b.admit(t3), Admission::Call);
        assert_eq!(b.state(t3), BreakerState::Closed);
    }

    #[test]
    fn late_failures_of_calls_started_before_opening_change_nothing() {
        let b = CircuitBreaker::new(BreakerConfig {
            failures: 1,
            open_for: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        assert_eq!(b.record(false, t0), Some(BreakerState::Open));
        assert_eq!(b.record(false, t0), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.record(true, t1), Some(BreakerState::Closed));
    }
}
