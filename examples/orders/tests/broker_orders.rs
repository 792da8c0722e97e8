//! The order pipeline end to end on a cluster (the real broker in CI, the
//! embedded one otherwise): the three topology files of `config/` run as
//! three workers over 3-partition topics, with generated orders, duplicates,
//! an out-of-order payment, a delayed payment, and malformed records.

mod common;

use common::{order_pipeline, start_pipeline, unique, Consumed, TestCluster};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::kafka::send_blocking;
use eddy::runtime::{dlq_headers, Lookup, RunningStreams};
use eddy::serde::{I64Serde, StringSerde};
use eddy_orders::order_created;
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::{json, Value};

const TOPICS: [&str; 5] = ["orders", "payments", "inventory", "stock", "order-outcomes"];
const ORDERS: u64 = 240;
const PRODUCTS: u64 = 12;
const STOCK: i64 = 90;

fn json_of(r: &Consumed) -> Value {
    serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap_or(Value::Null)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn every_order_gets_one_outcome_with_exact_compensations_and_stock() {
    let c = TestCluster::from_env();
    let u = unique("orders");
    for t in TOPICS {
        c.create_topic(&format!("{t}-{u}"), 3);
    }
    let topic = |t: &str| format!("{t}-{u}");
    let producer = c.producer();
    let send = |t: &str, key: &str, value: &str, ts: i64| {
        let t = topic(t);
        send_blocking(
            &producer,
            BaseRecord::to(&t).key(key).payload(value).timestamp(ts),
        )
        .unwrap();
    };
    for p in 0..PRODUCTS {
        let id = format!("product-{p}");
        send(
            "stock",
            &id,
            &json!({"product_id": id, "qty": STOCK}).to_string(),
            0,
        );
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let state = std::env::temp_dir().join(&u);
    let workers: Vec<RunningStreams> = ["payment.toml", "inventory.toml", "order-saga.toml"]
        .into_iter()
        .map(|f| start_pipeline(order_pipeline(f, &u, &c, &state), &c))
        .collect();

    let base = now_ms();
    let mut sent: BTreeMap<String, Value> = BTreeMap::new();
    // Generated orders; every tenth is sent twice.
    for i in 0..ORDERS {
        let o = order_created(7, i, PRODUCTS, base + i as i64);
        let id = o["order_id"].as_str().unwrap().to_owned();
        send("orders", &id, &o.to_string(), base + i as i64);
        if i % 10 == 0 {
            send("orders", &id, &o.to_string(), base + i as i64);
        }
        sent.insert(id, o);
    }
    // Manual payments: one 45 s late (past the 30 s deadline, sent once the
    // other orders are done, so its stream time cancels nothing else), one
    // that arrives before its order.
    let manual = |id: &str, at: i64| {
        let mut o = order_created(8, 0, PRODUCTS, at);
        o["order_id"] = json!(id);
        o["user_id"] = json!("manual");
        o
    };
    let amount = |o: &Value| -> i64 {
        o["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["qty"].as_i64().unwrap() * i["unit_price"].as_i64().unwrap())
            .sum()
    };
    let paid = |id: &str, amount: i64| {
        json!({"type": "payment_successful", "order_id": id, "amount": amount, "gateway_ref": "manual"})
            .to_string()
    };
    let late = manual("manual-late", base);
    send("orders", "manual-late", &late.to_string(), base);
    let early = manual("manual-early", base + 10);
    send(
        "payments",
        "manual-early",
        &paid("manual-early", amount(&early)),
        base + 1_000,
    );
    producer.flush(Duration::from_secs(30)).unwrap();
    send("orders", "manual-early", &early.to_string(), base + 10);
    sent.insert("manual-late".into(), late);
    sent.insert("manual-early".into(), early);
    // Bad records.
    send("orders", "bad-json", "{not json", base);
    let mut invalid = order_created(9, 0, PRODUCTS, base);
    invalid["items"][0]["qty"] = json!(0);
    send("orders", "bad-schema", &invalid.to_string(), base);
    producer.flush(Duration::from_secs(30)).unwrap();

    let others = c.consume_count(
        &topic("order-outcomes"),
        sent.len() - 1,
        Duration::from_secs(180),
        Duration::ZERO,
    );
    assert_eq!(others.len(), sent.len() - 1);
    send(
        "payments",
        "manual-late",
        &paid("manual-late", amount(&sent["manual-late"])),
        base + 45_000,
    );
    producer.flush(Duration::from_secs(30)).unwrap();

    // Exactly one outcome per order.
    let outcomes = c.consume_count(
        &topic("order-outcomes"),
        sent.len(),
        Duration::from_secs(180),
        Duration::from_secs(5),
    );
    let mut by_order: HashMap<String, Vec<(Value, i64)>> = HashMap::new();
    for r in &outcomes {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        by_order
            .entry(key)
            .or_default()
            .push((json_of(r), r.timestamp));
    }
    let missing: Vec<&String> = sent.keys().filter(|k| !by_order.contains_key(*k)).collect();
    assert!(missing.is_empty(), "no outcome for {missing:?}");
    let repeated: Vec<(&String, &Vec<(Value, i64)>)> =
        by_order.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(repeated.is_empty(), "several outcomes: {repeated:?}");
    assert_eq!(by_order.len(), sent.len());

    // The delayed payment: cancelled at the deadline, then refunded.
    assert_eq!(
        by_order["manual-late"],
        [(
            json!({"type": "order_cancelled", "order_id": "manual-late", "reason": "payment_timeout"}),
            base + 30_000
        )]
    );
    // The payment that came first still completes its order (or finds no
    // stock and is refunded).
    let early_outcome = &by_order["manual-early"][0].0;
    assert!(
        early_outcome["type"] == "order_completed"
            || early_outcome["reason"] == "stock_unavailable",
        "{early_outcome}"
    );

    // Compensations: one refund per cancelled order that was paid, one
    // release per cancelled order that reserved stock, none otherwise.
    let settle = Duration::from_secs(5);
    let payments = c.consume_until(&topic("payments"), settle, |_| false);
    let inventory = c.consume_until(&topic("inventory"), settle, |_| false);
    let count = |records: &[Consumed], kind: &str| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for r in records {
            let v = json_of(r);
            if v["type"] == kind {
                *n.entry(v["order_id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        n
    };
    let was_paid: BTreeSet<String> = count(&payments, "payment_successful").into_keys().collect();
    let reserved: BTreeSet<String> = count(&inventory, "stock_reserved").into_keys().collect();
    let refunds = count(&payments, "payment_refunded");
    let releases = count(&inventory, "stock_released");
    let mut cancelled_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut completed = Vec::new();
    for (id, v) in &by_order {
        let outcome = &v[0].0;
        if outcome["type"] == "order_completed" {
            assert!(reserved.contains(id) && was_paid.contains(id), "{id}");
            assert_eq!((refunds.get(id), releases.get(id)), (None, None), "{id}");
            completed.push(id.clone());
        } else {
            *cancelled_reasons
                .entry(outcome["reason"].as_str().unwrap().to_owned())
                .or_default() += 1;
            let refund = refunds.get(id).copied().unwrap_or(0);
            let release = releases.get(id).copied().unwrap_or(0);
            assert_eq!(
                refund,
                usize::from(was_paid.contains(id)),
                "refunds of {id}"
            );
            assert_eq!(
                release,
                usize::from(reserved.contains(id)),
                "releases of {id}"
            );
        }
    }
    assert_eq!(refunds["manual-late"], 1);
    assert!(
        cancelled_reasons.contains_key("payment_failed"),
        "{cancelled_reasons:?}"
    );
    assert!(!completed.is_empty());

    // Stock: never below zero, and ends at seed minus what completed
    // orders took (once the releases are applied).
    let mut expected: BTreeMap<String, i64> = (0..PRODUCTS)
        .map(|p| (format!("product-{p}"), STOCK))
        .collect();
    for id in &completed {
        for item in sent[id]["items"].as_array().unwrap() {
            *expected
                .get_mut(item["product_id"].as_str().unwrap())
                .unwrap() -= item["qty"].as_i64().unwrap();
        }
    }
    let levels = || -> BTreeMap<String, i64> {
        expected
            .keys()
            .map(|p| {
                let found = workers[1]
                    .queries()
                    .get("stock-levels", p, &StringSerde, &I64Serde)
                    .unwrap();
                match found {
                    Lookup::Local { value, .. } => (p.clone(), value.unwrap_or(0)),
                    Lookup::Remote { .. } => panic!("one worker holds every partition"),
                }
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while levels() != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(levels(), expected);
    let changelog = c.consume_until(
        &format!("inventory-service-{u}-stock-levels-changelog"),
        settle,
        |_| false,
    );
    assert!(!changelog.is_empty());
    for r in &changelog {
        let level = i64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap());
        assert!(level >= 0, "stock level {level}");
    }

    // The bad records are in each service's dead-letter topic, with reasons.
    for app in ["payment-service", "inventory-service", "order-saga"] {
        let dead = c.consume_until(&format!("{app}-{u}-dlq"), settle, |r| r.len() >= 2);
        let mut keys: Vec<(String, String)> = dead
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.clone().unwrap()).unwrap(),
                    r.header(dlq_headers::MESSAGE).unwrap(),
                )
            })
            .collect();
        keys.sort();
        assert_eq!(keys.len(), 2, "{app}: {keys:?}");
        assert_eq!(keys[0].0, "bad-json");
        assert!(keys[0].1.starts_with("value is not JSON"), "{}", keys[0].1);
        assert_eq!(
            keys[1],
            (
                "bad-schema".to_owned(),
                "schema schemas/order.json: at /items/0/qty: 0 is less than the minimum of 1"
                    .to_owned()
            )
        );
    }
    for w in workers {
        w.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&state);
}
