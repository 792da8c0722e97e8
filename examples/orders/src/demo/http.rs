//! `POST /orders`: the demo's order intake, with its limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use eddy::observability::{
    ApiError, JsonBody, Span, SpanKind, Spans, TraceContext, TRACEPARENT, TRACESTATE,
};
use eddy::security::HttpAuth;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use super::{now_ms, units, Tally};

/// Longest request body `POST /orders` reads: 512 KiB, half of Kafka's
/// default maximum message size (1 MiB: the broker's `message.max.bytes` of
/// 1048588, the producer's 1000000), so the record made of it fits with room
/// for the fields the route adds. A longer body is refused with 413 once
/// this much of it has been read.
const MAX_ORDER_BODY: usize = 512 * 1024;

/// Largest `order_created` record `POST /orders` produces: the producer's
/// default `message.max.bytes`. JSON under [`MAX_ORDER_BODY`] can still grow
/// when written out again (`1e9` becomes `1000000000.0`); such an order is
/// refused with 413 instead of failing in the producer.
const MAX_ORDER_RECORD: usize = 1_000_000;

/// Items an order posted to `/orders` may have.
const MAX_ORDER_ITEMS: usize = 100;

/// Orders posted to `/orders` remembered to answer a repeated `order_id`
/// (in [`Tally::sent`], with the generated ones); beyond it the oldest
/// posted order is forgotten, and its id can be posted again.
const REMEMBERED_POSTS: usize = 10_000;

/// What a client-chosen `order_id` or `product_id` must look like.
const KEY_RULE: &str = "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";

/// Whether `s` is a key a client may choose: 1 to 64 characters of
/// `[A-Za-z0-9_-]`, so it is safe as a record key, a store key and a path
/// segment of `GET /orders/{id}`.
fn valid_key(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What `POST /orders` checks beyond the schema: the keys a client chose
/// and the number of items.
fn check_order(order: &Value) -> Result<(), ApiError> {
    if !order["order_id"].as_str().is_some_and(valid_key) {
        return Err(ApiError::bad_request(format!("at /order_id: {KEY_RULE}")));
    }
    let items = order["items"].as_array().map_or(&[][..], Vec::as_slice);
    if items.len() > MAX_ORDER_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at /items: at most {MAX_ORDER_ITEMS} items"
        )));
    }
    for (i, item) in items.iter().enumerate() {
        if !item["product_id"].as_str().is_some_and(valid_key) {
            return Err(ApiError::bad_request(format!(
                "at /items/{i}/product_id: {KEY_RULE}"
            )));
        }
    }
    Ok(())
}

/// The state of `POST /orders`.
#[derive(Clone)]
struct OrderRoute {
    producer: FutureProducer,
    validator: Arc<jsonschema::Validator>,
    tally: Arc<Mutex<Tally>>,
    posted: Arc<AtomicU64>,
    topic: Arc<str>,
    spans: Option<Spans>,
}

/// `POST /orders`: validates an order and emits `order_created`.
///
/// - A new order: 202 `{"order_id": id}`, once the broker acknowledged it.
///   Without an `order_id` one is made up (`web-<ms>-<n>`); a client's own
///   must be 1 to 64 characters of `[A-Za-z0-9_-]`, like each `product_id`.
/// - An `order_id` this run already sent (generated, or one of the last
///   [`REMEMBERED_POSTS`] posted): 200 `{"order_id": id, "duplicate": true}`
///   and nothing emitted, whatever the body, so a client may retry a create
///   safely. A repeat while the first is still in flight counts as one too.
/// - With `auth`, a request without a valid bearer token granting
///   `orders:write` is refused first: 401, or 403 without the scope.
/// - Refusals are JSON `{"error": reason}`: 400 for malformed JSON, an
///   order against the schema or the rules above, 413 for a body over
///   [`MAX_ORDER_BODY`] (or a record over [`MAX_ORDER_RECORD`]), 415
///   without `Content-Type: application/json`, 503 when the broker does not
///   take the record (the id is then free to be posted again).
pub(super) fn order_route(
    servers: &str,
    topic: &str,
    config_dir: &std::path::Path,
    tally: &Arc<Mutex<Tally>>,
    spans: Option<Spans>,
    auth: Option<&HttpAuth>,
) -> anyhow::Result<Router> {
    let schema_file = config_dir.join("schemas/order.json");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&schema_file)
            .with_context(|| format!("reading {}", schema_file.display()))?,
    )?;
    let validator = Arc::new(
        jsonschema::validator_for(&schema)
            .map_err(|e| anyhow::anyhow!("{}: {e}", schema_file.display()))?,
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("partitioner", "murmur2_random")
        .create()?;
    async fn create(
        State(s): State<OrderRoute>,
        request_headers: HeaderMap,
        body: Result<JsonBody<Value>, ApiError>,
    ) -> Result<(StatusCode, HeaderMap, Json<Value>), ApiError> {
        let started = SystemTime::now();
        let JsonBody(mut body) = body.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                e.status(),
                format!("request body over the {MAX_ORDER_BODY} byte limit"),
            ),
            _ => e,
        })?;
        if let Value::Object(m) = &mut body {
            m.entry("order_id").or_insert_with(|| {
                let n = s.posted.fetch_add(1, Ordering::Relaxed);
                json!(format!("web-{}-{n}", now_ms()))
            });
            m.insert("type".into(), json!("order_created"));
            m.entry("created_at").or_insert_with(|| json!(now_ms()));
        }
        if let Some(e) = s.validator.iter_errors(&body).next() {
            let at = e.instance_path().to_string();
            return Err(ApiError::bad_request(format!("at {at}: {e}")));
        }
        check_order(&body)?;
        let id = body["order_id"].as_str().unwrap_or_default().to_owned();
        let payload = body.to_string();
        if payload.len() + id.len() > MAX_ORDER_RECORD {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the order makes a record of {} bytes, over the {MAX_ORDER_RECORD} byte limit",
                    payload.len() + id.len()
                ),
            ));
        }
        {
            let mut t = s.tally.lock().unwrap_or_else(|e| e.into_inner());
            if t.sent.contains_key(&id) {
                return Ok((
                    StatusCode::OK,
                    HeaderMap::new(),
                    Json(json!({"order_id": id, "duplicate": true})),
                ));
            }
            t.sent.insert(id.clone(), (Instant::now(), units(&body)));
            t.posted.push_back(id.clone());
            if t.posted.len() > REMEMBERED_POSTS {
                if let Some(oldest) = t.posted.pop_front() {
                    t.sent.remove(&oldest);
                }
            }
        }
        let (record_headers, response_headers, span) = trace(&request_headers);
        let record = FutureRecord::to(&s.topic)
            .key(&id)
            .payload(&payload)
            .headers(record_headers);
        let sent = s.producer.send(record, Duration::from_secs(10)).await;
        let status = match sent {
            Ok(_) => StatusCode::ACCEPTED,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let Some(spans) = &s.spans {
            spans.record(Span {
                end: SystemTime::now(),
                attributes: vec![
                    ("http.request.method", "POST".to_owned()),
                    ("http.route", "/orders".to_owned()),
                    ("http.response.status_code", status.as_u16().to_string()),
                    ("order.id", id.clone()),
                ],
                ..Span::new(span.0, span.1, "POST /orders", SpanKind::Server, started)
            });
        }
        match sent {
            Ok(_) => Ok((status, response_headers, Json(json!({"order_id": id})))),
            Err((e, _)) => {
                let mut t = s.tally.lock().unwrap_or_else(|e| e.into_inner());
                t.sent.remove(&id);
                t.posted.retain(|p| *p != id);
                Err(ApiError::new(status, e.to_string()))
            }
        }
    }
    let router = Router::new()
        .route("/orders", post(create))
        .layer(DefaultBodyLimit::max(MAX_ORDER_BODY))
        .with_state(OrderRoute {
            producer,
            validator,
            tally: tally.clone(),
            posted: Arc::new(AtomicU64::new(0)),
            topic: Arc::from(topic),
            spans,
        });
    Ok(match auth {
        Some(auth) => auth.protect(router, super::auth::WRITE_SCOPE),
        None => router,
    })
}

/// The trace of a posted order: a span of the caller's trace (its
/// `traceparent` request header), or the root of a new, sampled one when
/// the request has no valid header. The order's record carries the span
/// (and the caller's `tracestate`); the response's `traceparent` header
/// tells the caller which trace to follow. Also returns the span and its
/// parent (the caller's span).
fn trace(request: &HeaderMap) -> (OwnedHeaders, HeaderMap, (TraceContext, Option<u64>)) {
    let caller = request
        .get(TRACEPARENT)
        .and_then(|v| TraceContext::parse(v.as_bytes()));
    let span = caller.map_or_else(|| TraceContext::root(true), |c| c.child());
    let value = span.header_value();
    let mut record = OwnedHeaders::new().insert(Header {
        key: TRACEPARENT,
        value: Some(&value[..]),
    });
    if let (Some(_), Some(state)) = (caller, request.get(TRACESTATE)) {
        record = record.insert(Header {
            key: TRACESTATE,
            value: Some(state.as_bytes()),
        });
    }
    let mut response = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(&value) {
        response.insert(TRACEPARENT, v);
    }
    (record, response, (span, caller.map(|c| c.span_id)))
}
