//! Metrics, the HTTP server that exposes them, and log set-up.

mod http;
mod logging;
mod metrics;
mod trace_context;

pub use http::{
    ApiError, HttpLimits, HttpServer, JsonBody, HEADER_READ_TIMEOUT, MAX_BODY_BYTES,
    MAX_CONNECTIONS, REQUEST_TIMEOUT,
};
pub use logging::init_logging;
pub use metrics::Metrics;
pub(crate) use metrics::{lap, CommitPhases, StandbyMetrics, ThreadMetrics};
pub(crate) use trace_context::Tracer;
pub use trace_context::{TraceContext, TRACEPARENT, TRACESTATE};
