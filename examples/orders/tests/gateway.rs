//! The payment gateway simulator: approvals and declines by its rule, one
//! charge per idempotency key however often it is sent (a concurrent
//! repeat is told to retry), transient failures and outage windows that
//! charge nothing and leave the key free, and refusals of bad requests.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eddy_orders::gateway::{Gateway, GatewayConfig, GatewayStats};
use serde_json::{json, Value};

fn post(addr: SocketAddr, key: Option<&str>, body: &Value) -> (u16, String, Value) {
    let headers = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    let (status, head, body) = common::exchange(addr, "POST", "/charges", &headers, Some(body));
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

fn start(config: GatewayConfig) -> Gateway {
    Gateway::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

#[test]
fn one_charge_per_key_by_the_rule() {
    let g = start(GatewayConfig {
        latency: Duration::from_millis(30),
        amount_limit: 10_000,
        decline_rate: 0.0,
        ..GatewayConfig::default()
    });
    let a = g.addr();
    let started = Instant::now();
    let (status, _, first) = post(a, Some("o1-pay"), &json!({"order_id": "o1", "amount": 500}));
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(status, 200);
    assert_eq!(
        first,
        json!({"status": "approved", "charge_id": "gw-o1", "amount": 500})
    );
    // The same key again, even with another body: the first answer, no
    // second charge.
    let (status, head, again) = post(a, Some("o1-pay"), &json!({"order_id": "o1", "amount": 900}));
    assert_eq!((status, &again), (200, &first));
    assert!(
        head.to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{head}"
    );
    // Over the limit: declined, and the decline is what a replay gets.
    for _ in 0..2 {
        let (status, _, v) = post(
            a,
            Some("o2-pay"),
            &json!({"order_id": "o2", "amount": 20_000}),
        );
        assert_eq!(
            (status, v),
            (
                200,
                json!({"status": "declined", "reason": "amount_over_limit"})
            )
        );
    }
    assert_eq!(
        g.stats(),
        GatewayStats {
            charges: 1,
            amount_charged: 500,
            requests: 4,
            replays: 2,
        }
    );
    // The stats route says the same.
    let (status, _, body) = common::exchange(a, "GET", "/stats", "", None);
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&stats["charges"], &stats["amount_charged"]),
        (&json!(1), &json!(500))
    );
}

#[test]
fn a_repeat_while_the_first_is_answered_is_told_to_retry() {
    let g = start(GatewayConfig {
        latency: Duration::from_millis(500),
        ..GatewayConfig::default()
    });
    let a = g.addr();
    let body = json!({"order_id": "o3", "amount": 100});
    let first = {
        let body = body.clone();
        std::thread::spawn(move || post(a, Some("o3-pay"), &body).0)
    };
    std::thread::sleep(Duration::from_millis(150));
    let second = post(a, Some("o3-pay"), &body).0;
    let mut statuses = [first.join().unwrap(), second];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(g.stats().charges, 1);
}

#[test]
fn declines_are_drawn_from_the_order_id() {
    let g = start(GatewayConfig {
        decline_rate: 0.5,
        ..GatewayConfig::default()
    });
    let decide = |order: &str, key: &str| {
        let (status, _, v) = post(
            g.addr(),
            Some(key),
            &json!({"order_id": order, "amount": 100}),
        );
        assert_eq!(status, 200);
        v["status"].as_str().unwrap().to_owned()
    };
    let first: Vec<String> = (0..40)
        .map(|i| decide(&format!("o{i}"), &format!("a{i}")))
        .collect();
    // Other keys, the same orders: the same decisions.
    let second: Vec<String> = (0..40)
        .map(|i| decide(&format!("o{i}"), &format!("b{i}")))
        .collect();
    assert_eq!(first, second);
    let declined = first.iter().filter(|s| *s == "declined").count();
    assert!(
        (5..35).contains(&declined),
        "{declined} of 40 declined at 0.5"
    );
}

#[test]
fn failures_and_outages_charge_nothing_and_free_the_key() {
    let g = start(GatewayConfig {
        failure_rate: 1.0,
        ..GatewayConfig::default()
    });
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (status, head, v) = post(
            g.addr(),
            Some("k"),
            &json!({"order_id": "o1", "amount": 100}),
        );
        if status == 429 {
            assert!(
                head.to_ascii_lowercase().contains("retry-after: 1"),
                "{head}"
            );
        }
        assert!(v["error"].is_string(), "{v}");
        seen.push(status);
    }
    assert!(seen.iter().all(|s| *s == 500 || *s == 429), "{seen:?}");
    assert!(seen.contains(&500) && seen.contains(&429), "{seen:?}");
    assert_eq!(g.stats().charges, 0);

    let g = start(GatewayConfig {
        outages: vec![Duration::ZERO..Duration::from_millis(300)],
        ..GatewayConfig::default()
    });
    let body = json!({"order_id": "o1", "amount": 100});
    let (status, _, v) = post(g.addr(), Some("k"), &body);
    assert_eq!((status, v), (503, json!({"error": "gateway unavailable"})));
    std::thread::sleep(Duration::from_millis(350));
    let (status, _, v) = post(g.addr(), Some("k"), &body);
    assert_eq!((status, &v["status"]), (200, &json!("approved")));
    assert_eq!(g.stats().charges, 1);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let g = start(GatewayConfig::default());
    let (status, _, v) = post(g.addr(), None, &json!({"order_id": "o1", "amount": 1}));
    assert_eq!(
        (status, v),
        (
            400,
            json!({"error": "an Idempotency-Key header is required"})
        )
    );
    let (status, _, v) = post(g.addr(), Some("k"), &json!({"order_id": 7, "amount": 1}));
    assert_eq!(
        (status, v),
        (
            400,
            json!({"error": "order_id (a string) and amount (an integer) are required"})
        )
    );
    assert_eq!(g.stats().charges, 0);
}
