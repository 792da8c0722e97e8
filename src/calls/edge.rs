//! The async runtime at the edge where a worker's calls run, and what the
//! tasks of a worker share per call operator: the limit of calls in flight
//! and a caller per endpoint (its connection pool and circuit breaker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Semaphore;

use super::breaker::{BreakerState, CircuitBreaker};
use super::caller::Caller;
use super::spec::CallSettings;
use crate::observability::{CallMetrics, Metrics};

/// A worker's calls: the tokio runtime they run on (started with the first
/// call operator) and each operator's shared state.
#[derive(Default)]
pub(crate) struct CallRuntime {
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    operators: Mutex<HashMap<String, Arc<OperatorShare>>>,
    /// Where the operators' series go, and the application they are of.
    metrics: Option<(Arc<Metrics>, String)>,
}

/// What the tasks of one worker share of a call operator.
pub(crate) struct OperatorShare {
    name: String,
    /// Calls in flight over the worker's tasks.
    pub(crate) permits: Arc<Semaphore>,
    /// A caller per endpoint (`scheme://host:port`).
    callers: Mutex<HashMap<String, Caller>>,
    settings: CallSettings,
    pub(crate) metrics: Option<CallMetrics>,
}

impl OperatorShare {
    /// The caller of the endpoint at `origin` (`scheme://host:port`): one
    /// connection pool and one breaker per worker, which logs its changes
    /// and shows them in the metrics.
    pub(crate) fn caller(&self, origin: &str) -> Caller {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        callers
            .entry(origin.to_owned())
            .or_insert_with(|| {
                let series = self.metrics.as_ref().map(|m| m.breaker(origin));
                let (call, endpoint) = (self.name.clone(), origin.to_owned());
                let config = self.settings.breaker;
                let breaker = Arc::new(CircuitBreaker::observed(config, move |state| {
                    if let Some((gauge, opened)) = &series {
                        gauge.set(match state {
                            BreakerState::Closed => 0,
                            BreakerState::HalfOpen => 1,
                            BreakerState::Open => 2,
                        });
                        if state == BreakerState::Open {
                            opened.inc();
                        }
                    }
                    match state {
                        BreakerState::Open => tracing::warn!(
                            call,
                            endpoint,
                            "circuit breaker open: {} failed calls in a row or a failed probe; no calls for {:?}",
                            config.failures,
                            config.open_for
                        ),
                        BreakerState::HalfOpen => {
                            tracing::info!(call, endpoint, "circuit breaker half-open: one probe call")
                        }
                        BreakerState::Closed => {
                            tracing::info!(call, endpoint, "circuit breaker closed: calls go through")
                        }
                    }
                }));
                let s = &self.settings;
                match &s.tls {
                    Some(tls) => Caller::with_tls(s.retry, s.limits, breaker, tls),
                    None => Caller::new(s.retry, s.limits, breaker),
                }
            })
            .clone()
    }
}

impl CallRuntime {
    /// A runtime whose operators report to `metrics` as `application`'s.
    pub(crate) fn with_metrics(metrics: Arc<Metrics>, application: &str) -> CallRuntime {
        CallRuntime {
            runtime: OnceLock::new(),
            operators: Mutex::default(),
            metrics: Some((metrics, application.to_owned())),
        }
    }

    /// The runtime's handle, started on first use (two threads: calls are
    /// I/O, and the stream threads keep the cores).
    pub(crate) fn handle(&self) -> Result<tokio::runtime::Handle, String> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("eddy-calls")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the runtime for calls: {e}"))
            })
            .as_ref()
            .map(|r| r.handle().clone())
            .map_err(Clone::clone)
    }

    /// The shared state of the call operator `name`, made on first use with
    /// its settings.
    pub(crate) fn operator(&self, name: &str, settings: &CallSettings) -> Arc<OperatorShare> {
        let mut operators = self.operators.lock().unwrap_or_else(|e| e.into_inner());
        operators
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(OperatorShare {
                    name: name.to_owned(),
                    permits: Arc::new(Semaphore::new(settings.worker_concurrency.max(1))),
                    callers: Mutex::new(HashMap::new()),
                    settings: settings.clone(),
                    metrics: self.metrics.as_ref().map(|(m, app)| m.call(app, name)),
                })
            })
            .clone()
    }
}

impl Drop for CallRuntime {
    fn drop(&mut self) {
        // Calls still in flight belong to tasks that are gone: their
        // records are made again by whoever owns the tasks next.
        if let Some(Ok(runtime)) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
