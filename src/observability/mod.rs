//! Metrics, the HTTP server that exposes them, and log set-up.

mod http;
mod logging;
mod metrics;

pub use http::HttpServer;
pub use logging::init_logging;
pub use metrics::Metrics;
pub(crate) use metrics::ThreadMetrics;
