//! The worker's HTTP endpoint: `/metrics` (Prometheus), `/health`,
//! `/ready`, the status page (`/`, `/status.json`) and the routes a worker
//! adds, served within [`HttpLimits`].
//!
//! The refusals this server makes are JSON, `{"error": "..."}`: an unknown
//! path (404), a method a path does not serve (405), a request not answered
//! within the request timeout (408), and, for routes that read their body
//! with [`JsonBody`], malformed JSON (400), a content type other than
//! `application/json` (415) and a body over the limit (413). Only what
//! hyper refuses before a request exists is not: a request head that is not
//! complete within the header read timeout closes the connection without an
//! answer, and an unparsable request head gets a bare 400 (or 431 when too
//! large).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, Semaphore};
use tower::ServiceBuilder;

use super::Metrics;
use crate::error::Error;

/// Default of [`HttpLimits::max_connections`]: 512, far more than a
/// Prometheus scraper and a few clients need, and few enough file
/// descriptors to leave the worker's stores and Kafka clients theirs under
/// a 1024 descriptor limit.
pub const MAX_CONNECTIONS: usize = 512;
/// Default of [`HttpLimits::header_read_timeout`]: 10 s.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`HttpLimits::request_timeout`]: 30 s, room for a route that
/// waits seconds for a broker's acknowledgement.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`HttpLimits::max_body_bytes`]: 512 KiB, half of Kafka's
/// default maximum message size (1 MiB), so a body a route turns into one
/// record fits in a record with room to spare.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the server grants one client, against slow or numerous ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once. When all are taken the server accepts
    /// no more until one closes; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a connection has to send a complete request head, counted from
    /// its accept or from the end of its previous response (so it is also
    /// the keep-alive idle timeout); the connection is closed after it.
    pub header_read_timeout: Duration,
    /// Time from a complete request head to the response, reading the body
    /// included; 408 after it.
    pub request_timeout: Duration,
    /// Bytes of body an extractor ([`JsonBody`], `Json`, `Bytes`, ...)
    /// reads at most; 413 beyond. A route may set its own with
    /// [`DefaultBodyLimit`].
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// A refused HTTP request, answered with its status and
/// `{"error": "<message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// A refusal with `status` and the reason `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason given.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    /// Keeps the status axum chose (400 syntax, 415 content type, 413 body
    /// limit, 422 shape) and its reason, as JSON.
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

/// A JSON request body, like [`axum::Json`], but refused with an
/// [`ApiError`]: JSON, with the status axum gives each failure (400 for
/// malformed JSON, 415 without `Content-Type: application/json`, 413 over
/// the body limit, 422 for JSON of the wrong shape).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(value))
    }
}

/// A running HTTP server on its own thread; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `/metrics` and `/health` plus the routes of `extra` on `addr`
    /// (port 0 picks a free port; see [`addr`](Self::addr)), within the
    /// default [`HttpLimits`].
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>, extra: Router) -> Result<Self, Error> {
        Self::start_with(addr, metrics, extra, HttpLimits::default())
    }

    /// [`start`](Self::start) within `limits`.
    ///
    /// # Panics
    /// If `limits.max_connections` is 0.
    pub fn start_with(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        extra: Router,
        limits: HttpLimits,
    ) -> Result<Self, Error> {
        let server = Self::serve(addr, app(metrics, extra, &limits), limits)?;
        tracing::info!("serving /metrics on http://{}", server.addr);
        Ok(server)
    }

    /// Serves `app` as it is (no routes added) on `addr`, on its own
    /// thread, within the connection limits of `limits` (the request
    /// timeout and body limit are the router's own): a service of your
    /// own, such as the order example's simulated payment gateway.
    ///
    /// # Panics
    /// If `limits.max_connections` is 0.
    pub fn serve(addr: SocketAddr, app: Router, limits: HttpLimits) -> Result<Self, Error> {
        assert!(limits.max_connections > 0, "max_connections must be > 0");
        let http_err = |source| Error::Http { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(http_err)?;
        listener.set_nonblocking(true).map_err(http_err)?;
        let bound = listener.local_addr().map_err(http_err)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(http_err)?;
        let thread = std::thread::Builder::new()
            .name("eddy-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, app, limits, stopped).await,
                        Err(e) => tracing::error!("http listener: {e}"),
                    }
                })
            })
            .map_err(http_err)?;
        Ok(HttpServer {
            addr: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The routes, with JSON refusals for unknown paths and methods, the body
/// limit and the request timeout.
fn app(metrics: Arc<Metrics>, extra: Router, limits: &HttpLimits) -> Router {
    let timeout = limits.request_timeout;
    let ready = metrics.clone();
    let status = super::status::routes(metrics.clone());
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.encode() }
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.ready() {
                        Ok("ready")
                    } else {
                        Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "tasks are being restored or wait for their input partitions",
                        ))
                    }
                }
            }),
        )
        .merge(status)
        .merge(extra)
        .fallback(|uri: Uri| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no route for {}", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} does not serve {method}", uri.path()),
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            format!("request not complete within {timeout:?}"),
                        )
                    } else {
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                    }
                }))
                .timeout(timeout),
        )
}

/// Accepts connections while fewer than `limits.max_connections` are open
/// and serves each with hyper's HTTP/1 server, until `stop`; then lets the
/// requests in flight finish for up to [`SHUTDOWN_GRACE`].
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // closed: never, the semaphore is ours
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("http connection: {e}");
            }
            drop(slot);
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("http: requests still in flight after {SHUTDOWN_GRACE:?}, dropped");
    }
}

/// After a failed accept: a connection that went away before its accept is
/// nothing; anything else (out of file descriptors, say) is logged and
/// waited out briefly rather than retried in a busy loop.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!("http accept: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
