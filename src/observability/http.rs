//! The worker's HTTP endpoint: `/metrics` (Prometheus) and `/health`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use super::Metrics;
use crate::error::Error;

/// A running HTTP server on its own thread; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `/metrics` and `/health` plus the routes of `extra` on `addr`
    /// (port 0 picks a free port; see [`addr`](Self::addr)).
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>, extra: Router) -> Result<Self, Error> {
        let http_err = |source| Error::Http { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(http_err)?;
        listener.set_nonblocking(true).map_err(http_err)?;
        let bound = listener.local_addr().map_err(http_err)?;
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move { metrics.encode() }
                }),
            )
            .route("/health", get(|| async { "ok" }))
            .merge(extra);
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(http_err)?;
        let thread = std::thread::Builder::new()
            .name("eddy-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!("http listener: {e}"),
                    };
                    let server = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = server.await {
                        tracing::error!("http server: {e}");
                    }
                })
            })
            .map_err(http_err)?;
        tracing::info!("serving /metrics on http://{bound}");
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
