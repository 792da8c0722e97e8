//! The order pipeline started on a backlog: orders and their payments were
//! produced while every service was down, over more than a minute of event
//! time. Each order gets exactly the outcome its event times demand — paid
//! in time completes, declined is cancelled, paid after the 30 s deadline is
//! cancelled and refunded — as in a live run: no order is cancelled for a
//! payment that in event time arrived in time.
//!
//! The saga's stock answers come from the inventory service, which is
//! catching up too: the saga reads its own inputs far ahead of the answers,
//! and its 30 s stock deadlines pass in stream time before they arrive
//! (Kafka Streams with `max.task.idle.ms = 0` does the same: 220 of 300
//! orders were cancelled by a timeout here before upstream watching). The
//! saga's timeouts wait for the upstream services (`topics.*.upstream` in
//! `config/order-saga.toml`), watched through their consumer groups — on a
//! real broker only: the embedded cluster cannot describe groups.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy::runtime::RunningStreams;
use eddy_orders::order_created;
use serde_json::{json, Value};

use common::{order_pipeline, start_pipeline, unique, TestCluster};

const TOPICS: [&str; 5] = ["orders", "payments", "inventory", "stock", "order-outcomes"];
const ORDERS: u64 = 300;
const PRODUCTS: u64 = 12;
/// Event time between consecutive orders: 300 orders span 90 s, three
/// payment deadlines.
const SPACING_MS: i64 = 300;

/// What happens to order `i`: its payment's delay and decision.
fn payment_of(i: u64) -> (i64, &'static str) {
    match i % 4 {
        0 => (45_000, "payment_successful"), // after the 30 s deadline
        1 => (3_000, "payment_failed"),
        _ => (5_000, "payment_successful"),
    }
}

#[test]
fn a_backlog_of_orders_and_payments_gets_the_outcomes_of_a_live_run() {
    let c = TestCluster::from_env();
    if c.is_embedded() {
        eprintln!("skipped: upstream groups are watched on a real broker only");
        return;
    }
    let u = unique("backlog");
    for t in TOPICS {
        c.create_topic(&format!("{t}-{u}"), 3);
    }
    let topic = |t: &str| format!("{t}-{u}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let base = now.as_millis() as i64 - 3_600_000;
    let stock: Vec<_> = (0..PRODUCTS)
        .map(|p| {
            let id = format!("product-{p}");
            let v = json!({"product_id": id, "qty": 1_000_000}).to_string();
            (id, v, base - 60_000)
        })
        .collect();
    c.produce_at(&topic("stock"), &stock);

    let mut orders = Vec::new();
    let mut payments = Vec::new();
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..ORDERS {
        let at = base + i as i64 * SPACING_MS;
        let mut o = order_created(11, i, PRODUCTS, at);
        o["user_id"] = json!("manual");
        let id = o["order_id"].as_str().unwrap().to_owned();
        let amount = common::amount(&o);
        let (delay, kind) = payment_of(i);
        let mut payment = json!({"type": kind, "order_id": id, "amount": amount});
        if kind == "payment_failed" {
            payment["reason"] = json!("card_declined");
        } else {
            payment["gateway_ref"] = json!("manual");
        }
        payments.push((id.clone(), payment.to_string(), at + delay));
        orders.push((id.clone(), o.to_string(), at));
        let outcome = match (delay, kind) {
            (45_000, _) => json!({"type": "order_cancelled", "reason": "payment_timeout"}),
            (_, "payment_failed") => json!({"type": "order_cancelled", "reason": "payment_failed"}),
            _ => json!({"type": "order_completed"}),
        };
        expected.insert(id, outcome);
    }
    // The whole backlog is on the broker before any service starts.
    c.produce_at(&topic("orders"), &orders);
    c.produce_at(&topic("payments"), &payments);

    let state = std::env::temp_dir().join(&u);
    let workers: Vec<RunningStreams> = ["payment.toml", "inventory.toml", "order-saga.toml"]
        .into_iter()
        .map(|f| start_pipeline(order_pipeline(f, &u, &c, &state), &c))
        .collect();

    let outcomes = c.consume_count(
        &topic("order-outcomes"),
        expected.len(),
        Duration::from_secs(180),
        Duration::from_secs(5),
    );
    let mut got: HashMap<String, Vec<Value>> = HashMap::new();
    for r in &outcomes {
        let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        let kind = json!({"type": v["type"], "reason": v["reason"]});
        let kind = if v["reason"].is_null() {
            json!({"type": v["type"]})
        } else {
            kind
        };
        got.entry(String::from_utf8(r.key.clone().unwrap()).unwrap())
            .or_default()
            .push(kind);
    }
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, want)| got.get(*id).map(Vec::as_slice) != Some(std::slice::from_ref(*want)))
        .map(|(id, want)| (id, want, got.get(id)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} orders without the outcome their event times demand, e.g. {:?}",
        wrong.len(),
        expected.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(got.len(), expected.len());
    for w in workers {
        w.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&state);
}
