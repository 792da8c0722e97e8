//! A `call` node of a topology file, in the test driver against a local
//! HTTP service: the request made from the record (URL, body, idempotency
//! key), the answer mapped to the output, and every way a call can fail —
//! a failure status after the retries, a status not worth a retry,
//! malformed JSON, a redirect, a body over the limit, no answer, a bad URL
//! — mapped by `on_failure` or, without it, sent to the dead-letter topic
//! with the reason and the record's origin.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use eddy::config::{Overrides, Pipeline, Registry};
use eddy::processor::Headers;
use eddy::runtime::dlq_headers;
use eddy::testing::{DriverConfig, TopologyTestDriver};
use serde_json::{json, Value};

/// Requests each path got.
#[derive(Default)]
struct Hits {
    fail: AtomicU64,
    declined: AtomicU64,
    echo: AtomicU64,
}

/// A service with one path per behaviour, on a thread of its own.
fn service() -> (SocketAddr, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let router = Router::new()
        .route("/echo", post(echo))
        .route(
            "/fail",
            post(|State(h): State<Arc<Hits>>| async move {
                h.fail.fetch_add(1, Ordering::SeqCst);
                (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"down"}"#)
            }),
        )
        .route(
            "/declined",
            post(|State(h): State<Arc<Hits>>| async move {
                h.declined.fetch_add(1, Ordering::SeqCst);
                (StatusCode::PAYMENT_REQUIRED, r#"{"error":"declined"}"#)
            }),
        )
        .route("/bad", post(|| async { (StatusCode::OK, "{not json") }))
        .route(
            "/redirect",
            post(|| async { (StatusCode::FOUND, [("location", "/redirect")], "") }),
        )
        .route("/huge", post(|| async { "x".repeat(2 << 20) }))
        .route(
            "/never",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        )
        .with_state(hits.clone());
    (common::serve(router), hits)
}

async fn echo(State(h): State<Arc<Hits>>, headers: HeaderMap, body: String) -> Response {
    h.echo.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    let got: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    axum::Json(json!({"got": got, "key": key})).into_response()
}

fn file(on_failure: bool, keyed: bool) -> String {
    format!(
        r#"
[application]
id = "calls"

[vars]
base = "http://unset"

[topics.in]
[topics.out]

[nodes.in]
op = "source"
topic = "in"

[nodes.checked]
op = "call"
input = "in"
url = "value.path.startsWith('/') ? vars.base + value.path : value.path"
body = "{{'order': key, 'amount': value.amount}}"
{key}
response = "{{'order': key, 'echo': body.got, 'key': body.key, 'status': status}}"
{failure}
attempts = 2
backoff = "10ms"
timeout = "300ms"
max_answer_bytes = 65536
breaker_failures = 1000

[nodes.to-out]
op = "sink"
input = "checked"
topic = "out"
"#,
        key = if keyed {
            r#"idempotency_key = "key + ':charge'""#
        } else {
            ""
        },
        failure = if on_failure {
            r#"on_failure = "{'order': key, 'failed': reason, 'status': status, 'body': body}""#
        } else {
            ""
        },
    )
}

fn driver(addr: SocketAddr, on_failure: bool, keyed: bool) -> TopologyTestDriver {
    let mut overrides = Overrides::default();
    overrides
        .vars
        .insert("base".into(), format!("http://{addr}").into());
    let text = file(on_failure, keyed);
    let p =
        Pipeline::parse_with(&text, Path::new("calls.toml"), &Registry::new(), &overrides).unwrap();
    let config = DriverConfig {
        application_id: p.config.application_id.clone(),
        ..DriverConfig::default()
    };
    TopologyTestDriver::with_config(p.topology, config)
}

fn pipe(d: &mut TopologyTestDriver, key: &str, path: &str) -> Value {
    let value = json!({"amount": 5, "path": path});
    d.pipe_raw(
        "in",
        None,
        Some(key.as_bytes()),
        Some(value.to_string().as_bytes()),
        7,
        Headers::default(),
    )
    .unwrap();
    value
}

fn read(d: &mut TopologyTestDriver, topic: &str) -> Vec<(String, Value)> {
    d.read_raw(topic)
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                serde_json::from_slice(&r.value.unwrap()).unwrap(),
            )
        })
        .collect()
}

const PATHS: [(&str, &str); 8] = [
    ("o1", "/echo"),
    ("o2", "/fail"),
    ("o3", "/declined"),
    ("o4", "/bad"),
    ("o5", "/redirect"),
    ("o6", "/huge"),
    ("o7", "/never"),
    ("o8", "ftp://example.com/x"),
];

#[test]
fn answers_and_failures_map_to_outputs() {
    let (addr, hits) = service();
    let mut d = driver(addr, true, true);
    for (key, path) in PATHS {
        pipe(&mut d, key, path);
    }
    let failed = |order: &str, reason: &str, status: Value, body: Value| {
        (
            order.to_owned(),
            json!({"order": order, "failed": reason, "status": status, "body": body}),
        )
    };
    assert_eq!(
        read(&mut d, "out"),
        [
            (
                "o1".to_owned(),
                json!({"order": "o1", "echo": {"order": "o1", "amount": 5}, "key": "o1:charge", "status": 200})
            ),
            failed("o2", "status", json!(503), json!({"error": "down"})),
            failed("o3", "status", json!(402), json!({"error": "declined"})),
            failed("o4", "bad_answer", json!(200), Value::Null),
            failed("o5", "redirect", Value::Null, Value::Null),
            failed("o6", "too_large", Value::Null, Value::Null),
            failed("o7", "timeout", Value::Null, Value::Null),
            failed("o8", "bad_request", Value::Null, Value::Null),
        ]
    );
    // 503 is worth another try (two in all), 402 is not.
    assert_eq!(hits.fail.load(Ordering::SeqCst), 2);
    assert_eq!(hits.declined.load(Ordering::SeqCst), 1);
    assert!(read(&mut d, "calls-dlq").is_empty());
}

#[test]
fn failures_without_a_mapping_are_dead_lettered_with_their_reason() {
    let (addr, _) = service();
    let mut d = driver(addr, false, false);
    let mut inputs = Vec::new();
    for (key, path) in PATHS {
        inputs.push((key, pipe(&mut d, key, path)));
    }
    // The one success; its idempotency key is the record's source position.
    assert_eq!(
        read(&mut d, "out"),
        [(
            "o1".to_owned(),
            json!({"order": "o1", "echo": {"order": "o1", "amount": 5}, "key": "calls-in-0-0", "status": 200})
        )]
    );
    let letters = d.read_raw("calls-dlq");
    let reasons: Vec<(String, Value, String, String)> = letters
        .iter()
        .map(|r| {
            let h = |name: &str| {
                let v = r.headers.last(name).unwrap_or_else(|| panic!("{name}"));
                String::from_utf8(v.to_vec()).unwrap()
            };
            assert_eq!(h(dlq_headers::EXCEPTION), "call");
            assert_eq!(h(dlq_headers::TOPIC), "in");
            assert_eq!(h(dlq_headers::PARTITION), "0");
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                serde_json::from_slice(r.value.as_deref().unwrap()).unwrap(),
                h(dlq_headers::OFFSET),
                h(dlq_headers::MESSAGE),
            )
        })
        .collect();
    let messages = [
        r#"call checked failed: status: answered 503 after 2 tries: {"error":"down"}"#,
        r#"call checked failed: status: answered 402 after 1 try: {"error":"declined"}"#,
        "call checked failed: bad_answer: answer 200: the answer is not JSON: key must be a string at line 1 column 2",
        "call checked failed: redirect: a redirect (302 Found) to /redirect, not followed",
        "call checked failed: too_large: an answer over 65536 bytes",
        "call checked failed: timeout: no answer within 300ms (after 2 tries)",
        r#"call checked failed: bad_request: "ftp://example.com/x" is not an http:// or https:// URL"#,
    ];
    let expected: Vec<_> = inputs[1..]
        .iter()
        .zip(messages)
        .enumerate()
        .map(|(i, ((key, value), message))| {
            (
                key.to_string(),
                value.clone(),
                (i + 1).to_string(),
                message.to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons, expected);
}

#[test]
fn bad_call_settings_are_refused_with_their_field() {
    let path = Path::new("calls.toml");
    let err = |from: &str, to: &str| {
        let text = file(true, true).replace(from, to);
        Pipeline::parse(&text, path, &Registry::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        err("attempts = 2", "attempts = 0"),
        "calls.toml: nodes.checked.attempts: must be at least 1 (the first try)"
    );
    assert_eq!(
        err("attempts = 2", "method = \"TRACE\""),
        "calls.toml: nodes.checked.method: \"TRACE\" is not one of GET, POST, PUT, PATCH, DELETE"
    );
    assert_eq!(
        err("attempts = 2", "concurrency = 8\nmax_pending = 4"),
        "calls.toml: nodes.checked.max_pending: must be at least concurrency (8)"
    );
    assert_eq!(
        err("attempts = 2", "order = \"global\""),
        "calls.toml: nodes.checked.order: \"global\" is not \"key\" or \"partition\""
    );
    assert_eq!(
        err("timeout = \"300ms\"", "timeout = \"0s\""),
        "calls.toml: nodes.checked.timeout: must be more than 0"
    );
    assert_eq!(
        err("attempts = 2", "headers = { \"bad header\" = \"'x'\" }"),
        "calls.toml: nodes.checked.headers.bad header: \"bad header\" is not a header name"
    );
    assert!(
        err("response = \"", "response = \"nope + ")
            .starts_with("calls.toml: nodes.checked.response: "),
        "{}",
        err("response = \"", "response = \"nope + ")
    );
    assert!(err("attempts = 2", "retries = 2")
        .starts_with("calls.toml: nodes.checked: unknown field `retries`"));
}
