//! A webhook receiver: where the notification service delivers each
//! order's outcome, as a shop's mail or push service would take it. It
//! keeps the first delivery of each idempotency key and counts the
//! repeats, so tests can check that every outcome arrived once as far as
//! the user sees, however often it was sent.
//!
//! `POST /notify` with a JSON body and an `Idempotency-Key` header answers
//! 202 `{"accepted": true}` (`"repeat": true` for a key seen before);
//! without a key, or with a body that is not JSON, 400. `failure_rate`
//! answers that share of requests 503 (nothing kept), which the service
//! retries.
//!
//! ```
//! use eddy_orders::webhook::Webhook;
//!
//! let hook = Webhook::start(0.0, "127.0.0.1:0".parse().unwrap()).unwrap();
//! assert!(hook.deliveries().is_empty());
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::simulated;

#[derive(Default)]
struct Received {
    /// The first body of each key.
    first: BTreeMap<String, Value>,
    requests: u64,
}

struct Shared {
    failure_rate: f64,
    received: Mutex<Received>,
}

/// A running receiver; stopped when dropped.
pub struct Webhook {
    served: eddy::observability::HttpServer,
    shared: Arc<Shared>,
}

impl Webhook {
    /// Serves at `addr` (port 0: any free port), failing `failure_rate`
    /// of the requests (0 to 1) with 503.
    pub fn start(failure_rate: f64, addr: SocketAddr) -> std::io::Result<Webhook> {
        let shared = Arc::new(Shared {
            failure_rate,
            received: Mutex::default(),
        });
        let router = Router::new()
            .route("/notify", post(notify))
            .with_state(shared.clone());
        Ok(Webhook {
            served: simulated(router, addr)?,
            shared,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    /// The first delivery of each idempotency key, by key.
    pub fn deliveries(&self) -> BTreeMap<String, Value> {
        lock(&self.shared.received).first.clone()
    }

    /// Requests to `POST /notify`, all answers counted.
    pub fn requests(&self) -> u64 {
        lock(&self.shared.received).requests
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn notify(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let mut received = lock(&s.received);
    received.requests += 1;
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
    else {
        let error = json!({"error": "an Idempotency-Key header is required"});
        return (StatusCode::BAD_REQUEST, Json(error));
    };
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            let error = json!({"error": format!("not JSON: {e}")});
            return (StatusCode::BAD_REQUEST, Json(error));
        }
    };
    if fastrand::f64() < s.failure_rate {
        let error = json!({"error": "unavailable"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(error));
    }
    let repeat = received.first.contains_key(key);
    received.first.entry(key.to_owned()).or_insert(body);
    (
        StatusCode::ACCEPTED,
        Json(json!({"accepted": true, "repeat": repeat})),
    )
}
