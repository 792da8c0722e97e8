//! The call operators' series (`eddy_call_*`): calls by outcome, their
//! duration, calls in flight, and each endpoint's breaker.

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use super::{counters, gauges, histograms};

/// Buckets of call durations: 1 ms to 60 s.
const CALL: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub(super) struct CallFamilies {
    calls: IntCounterVec,
    tries: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    breaker: IntGaugeVec,
    opened: IntCounterVec,
}

impl CallFamilies {
    pub(super) fn new(r: &Registry) -> Self {
        CallFamilies {
            calls: counters(
                r,
                "eddy_calls_total",
                "Calls of a call operator done, by outcome: succeeded (a success answer), answered (another status, after the retries), failed (no usable answer).",
                &["application", "call", "outcome"],
            ),
            tries: counters(
                r,
                "eddy_call_tries_total",
                "Requests a call operator sent, retries included.",
                &["application", "call"],
            ),
            duration: histograms(
                r,
                "eddy_call_duration_seconds",
                "Time from a call's first try to its outcome, retries and waits for an open breaker included.",
                &["application", "call"],
                CALL,
            ),
            in_flight: gauges(
                r,
                "eddy_calls_in_flight",
                "Calls of a call operator under way in the worker (waiting for an open breaker included).",
                &["application", "call"],
            ),
            breaker: gauges(
                r,
                "eddy_call_breaker_state",
                "The circuit breaker of an endpoint: 0 closed, 1 half-open, 2 open.",
                &["application", "call", "endpoint"],
            ),
            opened: counters(
                r,
                "eddy_call_breaker_opened_total",
                "Times the circuit breaker of an endpoint opened.",
                &["application", "call", "endpoint"],
            ),
        }
    }

    pub(super) fn resolve(&self, application: &str, call: &str) -> CallMetrics {
        let l = [application, call];
        let outcome = |o: &str| self.calls.with_label_values(&[application, call, o]);
        CallMetrics {
            succeeded: outcome("succeeded"),
            answered: outcome("answered"),
            failed: outcome("failed"),
            tries: self.tries.with_label_values(&l),
            duration: self.duration.with_label_values(&l),
            in_flight: self.in_flight.with_label_values(&l),
            breaker: self.breaker.clone(),
            opened: self.opened.clone(),
            labels: (application.to_owned(), call.to_owned()),
        }
    }
}

/// The series of one call operator in a worker.
#[derive(Clone)]
pub(crate) struct CallMetrics {
    pub(crate) succeeded: IntCounter,
    pub(crate) answered: IntCounter,
    pub(crate) failed: IntCounter,
    pub(crate) tries: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) in_flight: IntGauge,
    breaker: IntGaugeVec,
    opened: IntCounterVec,
    labels: (String, String),
}

impl CallMetrics {
    /// The state gauge and the opened counter of the breaker of
    /// `endpoint`.
    pub(crate) fn breaker(&self, endpoint: &str) -> (IntGauge, IntCounter) {
        let l = [self.labels.0.as_str(), self.labels.1.as_str(), endpoint];
        (
            self.breaker.with_label_values(&l),
            self.opened.with_label_values(&l),
        )
    }
}
