//! `eddy demo --jwt-secret-env`: `POST /orders` takes only a bearer token
//! granting `orders:write`, the read model only one granting `query`
//! (missing, expired, foreign-audience and forged tokens get 401, a token
//! without the scope 403, each with a JSON reason); the status page,
//! /metrics and /health stay open; the token the demo prints works.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "the demo's token secret, 32 bytes or more";

/// A token by `secret` with `scope`, for `aud`, expiring `exp_in` seconds
/// from now (negative: in the past).
fn token(secret: &str, scope: &str, aud: &str, exp_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    encode(
        &Header::default(),
        &json!({"iss": "eddy-demo", "aud": aud, "exp": now + exp_in, "scope": scope}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn request(
    http: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let headers = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (status, head, body) = common::exchange(http, method, path, &headers, body);
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[test]
fn orders_and_the_read_model_take_only_tokens_with_their_scope() {
    let http = common::free_addr();
    let child = common::demo_command(
        http,
        &common::unique("auth"),
        &[
            "--count",
            "20",
            "--rate",
            "200",
            "--payment-failure-rate",
            "0",
            "--jwt-secret-env",
            "DEMO_JWT",
        ],
    )
    .env("DEMO_JWT", SECRET)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut child = common::KillOnDrop(child);
    // The token the demo prints, then its summary (whose read-model line
    // it got with a token of its own).
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    let mut printed = None;
    let mut read_model_line = None;
    let mut serving = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !(serving && read_model_line.is_some()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("the demo serves");
        if let Some(t) = line.split("valid for an hour: ").nth(1) {
            printed = Some(t.trim().to_owned());
        }
        if line.trim_start().starts_with("GET /orders/") {
            read_model_line = Some(line.clone());
        }
        serving |= line.starts_with("serving until Ctrl-C");
    }
    let printed = printed.expect("the demo prints a token");
    let read_model_line = read_model_line.unwrap();
    assert!(
        read_model_line.contains("\"status\":\"completed\""),
        "{read_model_line}"
    );

    let order = json!({"user_id": "u-auth", "email": "someone@example.com",
        "items": [{"product_id": "product-1", "qty": 1, "unit_price": 500}]});
    let write = token(SECRET, "orders:write", "eddy-orders", 600);
    let query = token(SECRET, "query", "eddy-orders", 600);
    // Refused before the body is looked at.
    for (what, t, status, reason) in [
        ("no token", None, 401, "a bearer token is required"),
        (
            "expired",
            Some(token(SECRET, "orders:write", "eddy-orders", -3600)),
            401,
            "invalid token: ExpiredSignature",
        ),
        (
            "another audience",
            Some(token(SECRET, "orders:write", "billing", 600)),
            401,
            "invalid token: InvalidAudience",
        ),
        (
            "another secret",
            Some(token(
                "not the demo's secret, but as long",
                "orders:write",
                "eddy-orders",
                600,
            )),
            401,
            "invalid token: InvalidSignature",
        ),
        (
            "the query scope only",
            Some(query.clone()),
            403,
            "the token does not grant the scope \"orders:write\"",
        ),
    ] {
        let (got, head, body) = request(http, "POST", "/orders", t.as_deref(), Some(&order));
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"], reason, "{what}");
        if status == 401 {
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{what}: {head}"
            );
        }
    }
    for t in [&write, &printed] {
        let (status, _, reply) = request(http, "POST", "/orders", Some(t), Some(&order));
        assert_eq!(status, 202, "{reply}");
        let id = reply["order_id"].as_str().unwrap().to_owned();
        let path = format!("/orders/{id}");
        common::wait_for(
            "the posted order's outcome",
            Duration::from_secs(60),
            || {
                let (status, _, summary) = request(http, "GET", &path, Some(&query), None);
                status == 200 && summary["value"]["status"] == "completed"
            },
        );
        let (status, _, body) = request(http, "GET", &path, None, None);
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("a bearer token is required"))
        );
        let (status, _, body) = request(http, "GET", &path, Some(&write), None);
        assert_eq!(status, 403, "{body}");
        let (status, _, body) = request(http, "GET", &path, Some(&printed), None);
        assert_eq!(status, 200, "{body}");
    }
    // Open: the status page, metrics and health.
    for path in ["/", "/metrics", "/health", "/status.json"] {
        let (status, _, _) = request(http, "GET", path, None, None);
        assert_eq!(status, 200, "{path}");
    }

    child.terminate();
}
