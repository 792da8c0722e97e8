//! A payment gateway simulator: the HTTP service the payment service
//! calls. It answers slowly (a latency drawn per request), fails now and
//! then (500, or 429 with `Retry-After`), goes down in outage windows
//! (503), approves or declines by a rule, and honours idempotency keys: a
//! repeated key gets the first answer again and charges nothing more. It
//! counts its charges, so tests can check that every paid order was charged
//! exactly once.
//!
//! `POST /charges` with `{"order_id": "...", "amount": cents}` and an
//! `Idempotency-Key` header answers 200 with
//! `{"status": "approved", "charge_id": "gw-<order_id>", "amount": n}` (the
//! same id on every run, so outputs compare exactly) or
//! `{"status": "declined", "reason": "amount_over_limit" | "card_declined"}`;
//! a replay carries `Idempotent-Replayed: true`. A key whose first request
//! is still being answered gets 409 (retry later). `GET /stats` answers
//! `{"charges", "amount_charged", "requests", "replays"}`.
//!
//! ```
//! use eddy_orders::gateway::{Gateway, GatewayConfig};
//! use std::time::Duration;
//!
//! let config = GatewayConfig {
//!     latency: Duration::from_millis(5),
//!     ..GatewayConfig::default()
//! };
//! let gateway = Gateway::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
//! assert_eq!(gateway.stats().charges, 0);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eddy::kafka::partitioner::murmur2;
use serde_json::{json, Value};

use crate::simulated;

/// How the simulated gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Every answer takes at least this long.
    pub latency: Duration,
    /// ... plus up to this much more, drawn uniformly per request.
    pub jitter: Duration,
    /// The share of requests (0 to 1) answered with a transient failure:
    /// half 500, half 429 with `Retry-After: 1`. Nothing is charged.
    pub failure_rate: f64,
    /// Windows, counted from the gateway's start, in which every request
    /// is answered 503 (after the latency). Nothing is charged.
    pub outages: Vec<Range<Duration>>,
    /// Charges above this amount (cents) are declined: `amount_over_limit`.
    pub amount_limit: i64,
    /// The share of the other charges declined, `card_declined`, drawn
    /// from the order id as `hash_unit` does in topology files (murmur2):
    /// the same orders are declined on every run and every retry.
    pub decline_rate: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            failure_rate: 0.0,
            outages: Vec::new(),
            amount_limit: 500_000,
            decline_rate: 0.0,
        }
    }
}

impl GatewayConfig {
    /// The order pipeline's payment rules, answered at once: charges over
    /// 500 000 cents declined, and 5 % of the others by their order id
    /// (what the tests and benchmarks run; the demo sets its own).
    pub fn pipeline() -> GatewayConfig {
        GatewayConfig {
            decline_rate: 0.05,
            ..GatewayConfig::default()
        }
    }
}

/// What the gateway has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Charges made (approved requests, replays not counted).
    pub charges: u64,
    /// Their sum, in cents.
    pub amount_charged: i64,
    /// Requests to `POST /charges`, all answers counted.
    pub requests: u64,
    /// Requests answered with an earlier answer to their key.
    pub replays: u64,
}

/// An idempotency key's state.
#[derive(Clone)]
enum Keyed {
    /// Its first request is being answered.
    InFlight,
    /// Its final answer (approved or declined).
    Answered(Value),
}

struct Shared {
    config: GatewayConfig,
    started: Instant,
    /// Down by [`Gateway::set_down`], whatever the outage windows say.
    down: std::sync::atomic::AtomicBool,
    keys: Mutex<HashMap<String, Keyed>>,
    stats: Mutex<GatewayStats>,
}

/// A running simulator; stopped when dropped.
pub struct Gateway {
    served: eddy::observability::HttpServer,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Serves `config` at `addr` (port 0: any free port) on a thread of
    /// its own.
    pub fn start(config: GatewayConfig, addr: SocketAddr) -> std::io::Result<Gateway> {
        let shared = Arc::new(Shared {
            config,
            started: Instant::now(),
            down: Default::default(),
            keys: Mutex::new(HashMap::new()),
            stats: Mutex::new(GatewayStats::default()),
        });
        let router = Router::new()
            .route("/charges", post(charge))
            .route("/stats", get(stats))
            .with_state(shared.clone());
        Ok(Gateway {
            served: simulated(router, addr)?,
            shared,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    /// Takes it down (every request answered 503, as in an outage
    /// window) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// What it has done so far.
    pub fn stats(&self) -> GatewayStats {
        *lock(&self.shared.stats)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `hash_unit` of topology files: murmur2 of the text, in [0, 1).
fn hash_unit(text: &str) -> f64 {
    let h = murmur2(text.as_bytes()) & 0x7fff_ffff;
    f64::from(h) / f64::from(0x8000_0000u32)
}

async fn charge(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    // Decided to the end even if the client goes away (a killed worker), as
    // a real gateway would: its key is then answered, not held in flight.
    match tokio::spawn(decide(s, headers, body)).await {
        Ok(response) => response,
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

async fn decide(s: Arc<Shared>, headers: HeaderMap, body: String) -> Response {
    lock(&s.stats).requests += 1;
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "an Idempotency-Key header is required"}),
        );
    };
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("not JSON: {e}")}),
            )
        }
    };
    let (Some(order), Some(amount)) = (request["order_id"].as_str(), request["amount"].as_i64())
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "order_id (a string) and amount (an integer) are required"}),
        );
    };
    let c = &s.config;
    let delay = c.latency + c.jitter.mul_f64(fastrand::f64());
    // The key is claimed before the delay, so that a second request with
    // it, while the first is answered, cannot charge again.
    let claimed = {
        let mut keys = lock(&s.keys);
        match keys.get(&key) {
            Some(Keyed::Answered(first)) => Err(Some(first.clone())),
            Some(Keyed::InFlight) => Err(None),
            None => {
                keys.insert(key.clone(), Keyed::InFlight);
                Ok(())
            }
        }
    };
    tokio::time::sleep(delay).await;
    match claimed {
        Err(Some(first)) => {
            lock(&s.stats).replays += 1;
            let mut response = answer(StatusCode::OK, first);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        Err(None) => {
            return answer(
                StatusCode::CONFLICT,
                json!({"error": "a request with this Idempotency-Key is in progress"}),
            )
        }
        Ok(()) => {}
    }
    let since = s.started.elapsed();
    let down = s.down.load(std::sync::atomic::Ordering::SeqCst);
    let failure = if down || c.outages.iter().any(|w| w.contains(&since)) {
        Some(answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "gateway unavailable"}),
        ))
    } else if fastrand::f64() < c.failure_rate {
        Some(if fastrand::bool() {
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error"}),
            )
        } else {
            let mut r = answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "too many requests"}),
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            r
        })
    } else {
        None
    };
    if let Some(failure) = failure {
        // Nothing happened: the key is free for a retry.
        lock(&s.keys).remove(&key);
        return failure;
    }
    let decision = if amount > c.amount_limit {
        json!({"status": "declined", "reason": "amount_over_limit"})
    } else if hash_unit(order) < c.decline_rate {
        json!({"status": "declined", "reason": "card_declined"})
    } else {
        let mut stats = lock(&s.stats);
        stats.charges += 1;
        stats.amount_charged += amount;
        json!({"status": "approved", "charge_id": format!("gw-{order}"), "amount": amount})
    };
    lock(&s.keys).insert(key, Keyed::Answered(decision.clone()));
    answer(StatusCode::OK, decision)
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let st = *lock(&s.stats);
    Json(json!({
        "charges": st.charges,
        "amount_charged": st.amount_charged,
        "requests": st.requests,
        "replays": st.replays,
    }))
}
