//! Metrics, the HTTP server that exposes them, trace context and span
//! export, and log set-up.

mod http;
mod logging;
mod metrics;
mod otlp;
mod span_export;
mod status;
mod trace_context;

pub use http::{
    ApiError, HttpLimits, HttpServer, JsonBody, HEADER_READ_TIMEOUT, MAX_BODY_BYTES,
    MAX_CONNECTIONS, REQUEST_TIMEOUT,
};
pub use logging::init_logging;
pub(crate) use metrics::{
    lap, CallMetrics, CommitPhases, NodeInfo, OpStat, SagaMetrics, StandbyMetrics, StoreSizes,
    TaskMetrics, ThreadMetrics,
};
pub use metrics::{Metrics, SAMPLE_EVERY};
pub(crate) use span_export::{traces_url, HopSpan};
pub use span_export::{Span, SpanExportError, SpanKind, Spans, SPAN_QUEUE};
pub(crate) use trace_context::Tracer;
pub use trace_context::{TraceContext, TRACEPARENT, TRACESTATE};
