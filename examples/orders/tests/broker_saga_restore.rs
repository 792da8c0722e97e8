//! The order saga's state survives a restart on an empty state directory:
//! it is restored from its changelog topics, deadlines included.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use eddy::config::{Overrides, Pipeline};
use eddy::kafka::send_blocking;
use eddy::runtime::RunningStreams;
use eddy::testing::{unique, TestCluster};
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::{json, Value};

fn saga(c: &TestCluster, u: &str) -> RunningStreams {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/order-saga.toml");
    let overrides = common::with_pii_key(Overrides {
        suffix: Some(u.to_owned()),
        ..Overrides::default()
    });
    let mut p = Pipeline::load_with(&path, &eddy_orders::registry(), &overrides).unwrap();
    if !c.is_embedded() {
        p.config.bootstrap_servers = Some(c.bootstrap.clone());
    }
    // A new state directory each time: everything comes from the changelogs.
    p.config.state_dir = std::env::temp_dir().join(unique("saga-state"));
    p.config.embedded_partitions = 2;
    if c.is_embedded() {
        // The classic protocol there; the real broker's groups have a 6 s
        // session (scripts/kafka/start.sh).
        p.config = p.config.set("consumer.session.timeout.ms", "6000");
    }
    let mut s = p.into_streams();
    if let Some(e) = c.embedded() {
        s = s.embedded_cluster(e);
    }
    s.start().unwrap()
}

#[test]
fn saga_state_and_deadlines_are_restored_after_a_restart() {
    let c = TestCluster::from_env();
    let u = unique("restore");
    // A minute ago: recent enough that the broker's retention (counted from
    // record timestamps) does not delete the inputs during the test, and
    // the latest event (45 s later) is not in the future.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    for t in ["orders", "payments", "inventory", "order-outcomes"] {
        c.create_topic(&format!("{t}-{u}"), 2);
    }
    let producer = c.producer();
    let send = |t: &str, v: Value, ts: i64| {
        let topic = format!("{t}-{u}");
        let key = v["order_id"].as_str().unwrap().to_owned();
        let payload = v.to_string();
        send_blocking(
            &producer,
            BaseRecord::to(&topic)
                .key(&key)
                .payload(&payload)
                .timestamp(ts),
        )
        .unwrap();
    };
    let order = |id: &str| {
        json!({"type": "order_created", "order_id": id, "user_id": "u", "created_at": t0,
               "items": [{"product_id": "p1", "qty": 1, "unit_price": 250}]})
    };
    let paid = |id: &str| json!({"type": "payment_successful", "order_id": id, "amount": 250, "gateway_ref": "g"});

    let first = saga(&c, &u);
    send("orders", order("o1"), t0);
    send("orders", order("o2"), t0);
    send("payments", paid("o1"), t0 + 1_000);
    producer.flush(Duration::from_secs(30)).unwrap();
    // Wait until the saga has seen all three events (its summary says so).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = |id: &str| match first.queries().get(
            "order-summary",
            &id.to_owned(),
            &eddy::serde::StringSerde,
            &eddy::serde::CompactValueSerde,
        ) {
            Ok(eddy::runtime::Lookup::Local { value: Some(v), .. }) => v["status"].clone(),
            _ => Value::Null,
        };
        if status("o1") == "awaiting_stock" && status("o2") == "awaiting_payment" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the saga did not see the events"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    first.close().unwrap();

    let second = saga(&c, &u);
    send(
        "inventory",
        json!({"type": "stock_reserved", "order_id": "o1", "items": [{"product_id": "p1", "qty": 1, "line": 0}]}),
        t0 + 2_000,
    );
    // o2's payment comes 45 s after the order: past its 30 s deadline.
    send("payments", paid("o2"), t0 + 45_000);
    producer.flush(Duration::from_secs(30)).unwrap();
    let outcomes = c.consume_count(
        &format!("order-outcomes-{u}"),
        2,
        Duration::from_secs(60),
        Duration::from_secs(3),
    );
    let mut got: Vec<(String, i64)> = outcomes
        .iter()
        .map(|r| (r.value_str(), r.timestamp))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                json!({"type": "order_completed", "order_id": "o1"}).to_string(),
                t0 + 2_000
            ),
            (
                json!({"type": "order_cancelled", "order_id": "o2", "reason": "payment_timeout"})
                    .to_string(),
                t0 + 30_000
            ),
        ]
    );
    let refunds: Vec<String> = c
        .consume_until(&format!("payments-{u}"), Duration::from_secs(3), |_| false)
        .iter()
        .map(|r| r.value_str())
        .filter(|v| v.contains("payment_refunded"))
        .collect();
    assert_eq!(
        refunds,
        [json!({"type": "payment_refunded", "order_id": "o2", "amount": 250, "reason": "late_payment"}).to_string()]
    );
    second.close().unwrap();
}
