//! The order pipeline's topology files (`config/`) in the test driver, with
//! exact outputs: the saga's transitions, timeouts and compensations, the
//! payment rule, stock reservation, and the three services together.

mod common;

use std::path::PathBuf;

use eddy::config::{Overrides, Pipeline};
use eddy::processor::Headers;
use eddy::runtime::dlq_headers;
use eddy::serde::{BytesSerde, CompactValueSerde, I64Serde, JsonSerde, StringSerde};
use eddy::testing::{DriverConfig, TopologyTestDriver};
use eddy_orders::gateway::{Gateway, GatewayConfig};
use eddy_orders::webhook::Webhook;
use serde_json::{json, Value};

const T0: i64 = 1_700_000_000_000;

fn config(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(file)
}

struct Service {
    driver: TopologyTestDriver,
    reads: Vec<String>,
    /// The payment service's own gateway (idempotency keys are order ids,
    /// which the tests reuse with other amounts).
    _gateway: Option<Gateway>,
}

fn service_with(file: &str, mut vars: toml::Table, partitions: i32) -> Service {
    let gateway = (!vars.contains_key("gateway_url")).then(|| {
        let g = Gateway::start(GatewayConfig::pipeline(), "127.0.0.1:0".parse().unwrap()).unwrap();
        vars.insert("gateway_url".into(), format!("http://{}", g.addr()).into());
        g
    });
    let overrides = common::with_pii_key(Overrides {
        vars,
        ..Overrides::default()
    });
    let p = Pipeline::load_with(&config(file), &eddy_orders::registry(), &overrides).unwrap();
    let reads = p
        .topology
        .source_topics()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut cfg = DriverConfig {
        application_id: p.config.application_id.clone(),
        trace_sample_ratio: p.config.trace_sample_ratio,
        ..DriverConfig::default()
    };
    for t in &p.topics {
        cfg = cfg.partitions(t, partitions);
    }
    Service {
        driver: TopologyTestDriver::with_config(p.topology, cfg),
        reads,
        _gateway: gateway,
    }
}

fn service(file: &str) -> Service {
    service_with(file, toml::Table::new(), 1)
}

impl Service {
    fn pipe(&mut self, topic: &str, key: &str, value: &Value, ts: i64) {
        self.pipe_bytes(topic, key, value.to_string().as_bytes(), ts);
    }

    fn pipe_bytes(&mut self, topic: &str, key: &str, value: &[u8], ts: i64) {
        self.pipe_with(topic, key, value, ts, Headers::default());
    }

    fn pipe_with(&mut self, topic: &str, key: &str, value: &[u8], ts: i64, headers: Headers) {
        self.driver
            .pipe_raw(topic, None, Some(key.as_bytes()), Some(value), ts, headers)
            .unwrap();
    }

    /// Everything written to `topic` since the last read: (key, value, ts).
    fn read(&mut self, topic: &str) -> Vec<(String, Value, i64)> {
        self.driver
            .read_raw(topic)
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    serde_json::from_slice(&r.value.unwrap()).unwrap(),
                    r.timestamp,
                )
            })
            .collect()
    }

    fn summary(&self, order: &str) -> Value {
        self.driver
            .key_value_store("order-summary", 0, StringSerde, CompactValueSerde)
            .unwrap()
            .get(&order.to_owned())
            .unwrap()
            .unwrap()
    }

    fn stock(&self, product: &str) -> i64 {
        self.driver
            .key_value_store("stock-levels", 0, StringSerde, I64Serde)
            .unwrap()
            .get(&product.to_owned())
            .unwrap()
            .unwrap()
    }
}

fn order(id: &str, items: &[(&str, i64, i64)], created_at: i64) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q, price)| json!({"product_id": p, "qty": q, "unit_price": price}))
        .collect();
    let (email, address) = eddy_orders::customer(1);
    json!({"type": "order_created", "order_id": id, "user_id": "user-1", "email": email,
        "shipping_address": address, "items": items, "created_at": created_at})
}

fn paid(id: &str, amount: i64) -> Value {
    json!({"type": "payment_successful", "order_id": id, "amount": amount, "gateway_ref": format!("gw-{id}")})
}

fn declined(id: &str, amount: i64) -> Value {
    json!({"type": "payment_failed", "order_id": id, "amount": amount, "reason": "card_declined"})
}

fn reserved(id: &str, items: &[(&str, i64, i64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q, line)| json!({"product_id": p, "qty": q, "line": line}))
        .collect();
    json!({"type": "stock_reserved", "order_id": id, "items": items})
}

fn completed(id: &str) -> Value {
    json!({"type": "order_completed", "order_id": id})
}

fn cancelled(id: &str, reason: &str) -> Value {
    json!({"type": "order_cancelled", "order_id": id, "reason": reason})
}

fn refunded(id: &str, amount: i64, reason: &str) -> Value {
    json!({"type": "payment_refunded", "order_id": id, "amount": amount, "reason": reason})
}

fn kv(key: &str, value: Value, ts: i64) -> (String, Value, i64) {
    (key.to_owned(), value, ts)
}

/// Payments written by the saga (its refunds), without the inputs it was
/// given on the same topic.
fn refunds(s: &mut Service) -> Vec<(String, Value, i64)> {
    s.read("payments")
        .into_iter()
        .filter(|(_, v, _)| v["type"] == "payment_refunded")
        .collect()
}

fn releases(s: &mut Service) -> Vec<(String, Value, i64)> {
    s.read("inventory")
        .into_iter()
        .filter(|(_, v, _)| v["type"] == "stock_released")
        .collect()
}

#[test]
fn saga_completes_a_paid_and_reserved_order() {
    let mut s = service("order-saga.toml");
    s.pipe("orders", "o1", &order("o1", &[("p1", 2, 500)], T0), T0);
    s.pipe("payments", "o1", &paid("o1", 1000), T0 + 1_000);
    s.pipe(
        "inventory",
        "o1",
        &reserved("o1", &[("p1", 2, 0)]),
        T0 + 2_000,
    );
    assert_eq!(
        s.read("order-outcomes"),
        [kv("o1", completed("o1"), T0 + 2_000)]
    );
    assert_eq!(refunds(&mut s), []);
    assert_eq!(releases(&mut s), []);
    assert_eq!(
        s.summary("o1"),
        json!({
            "order_id": "o1", "status": "completed", "reason": null, "amount": 1000, "paid": true,
            "customer": common::hashed_email("shopper.1@example.com"),
            "entered_at": {"awaiting_payment": T0, "awaiting_stock": T0 + 1_000, "completed": T0 + 2_000},
        })
    );
}

#[test]
fn saga_cancels_on_failures_with_the_right_compensations() {
    let mut s = service("order-saga.toml");
    // Payment declined: nothing to compensate.
    s.pipe("orders", "o1", &order("o1", &[("p1", 1, 700)], T0), T0);
    s.pipe("payments", "o1", &declined("o1", 700), T0 + 500);
    // Paid, then stock unavailable: the payment is refunded.
    s.pipe("orders", "o2", &order("o2", &[("p1", 3, 100)], T0), T0);
    s.pipe("payments", "o2", &paid("o2", 300), T0 + 600);
    let unavailable =
        json!({"type": "stock_unavailable", "order_id": "o2", "missing": ["p1"], "released": []});
    s.pipe("inventory", "o2", &unavailable, T0 + 700);
    assert_eq!(
        s.read("order-outcomes"),
        [
            kv("o1", cancelled("o1", "payment_failed"), T0 + 500),
            kv("o2", cancelled("o2", "stock_unavailable"), T0 + 700),
        ]
    );
    assert_eq!(
        refunds(&mut s),
        [kv("o2", refunded("o2", 300, "stock_unavailable"), T0 + 700)]
    );
    assert_eq!(releases(&mut s), []);
    assert_eq!(s.summary("o2")["status"], "cancelled");
    assert_eq!(s.summary("o2")["reason"], "stock_unavailable");
}

#[test]
fn payment_timeout_fires_at_the_deadline_and_a_late_payment_is_refunded() {
    let mut s = service("order-saga.toml");
    s.pipe("orders", "o1", &order("o1", &[("p1", 1, 900)], T0), T0);
    // Another order 29.999 s later: stream time is short of o1's deadline.
    s.pipe(
        "orders",
        "o2",
        &order("o2", &[("p1", 1, 100)], T0 + 29_999),
        T0 + 29_999,
    );
    assert_eq!(s.read("order-outcomes"), []);
    // Stream time passes T0 + 30 s: o1 times out, stamped with its deadline.
    s.pipe(
        "orders",
        "o3",
        &order("o3", &[("p1", 1, 100)], T0 + 31_000),
        T0 + 31_000,
    );
    assert_eq!(
        s.read("order-outcomes"),
        [kv("o1", cancelled("o1", "payment_timeout"), T0 + 30_000)]
    );
    // The payment comes after all: refunded; the reservation it led to is
    // released; duplicates of both change nothing.
    for _ in 0..2 {
        s.pipe("payments", "o1", &paid("o1", 900), T0 + 32_000);
        s.pipe(
            "inventory",
            "o1",
            &reserved("o1", &[("p1", 1, 0)]),
            T0 + 33_000,
        );
    }
    assert_eq!(
        refunds(&mut s),
        [kv("o1", refunded("o1", 900, "late_payment"), T0 + 32_000)]
    );
    assert_eq!(
        releases(&mut s),
        [kv(
            "o1",
            json!({"type": "stock_released", "order_id": "o1", "items": [{"product_id": "p1", "qty": 1, "line": 0}], "reason": "late_reservation"}),
            T0 + 33_000
        )]
    );
    assert_eq!(s.read("order-outcomes"), []);
}

#[test]
fn an_event_past_the_deadline_finds_the_order_already_timed_out() {
    let mut s = service("order-saga.toml");
    s.pipe("orders", "o1", &order("o1", &[("p1", 1, 900)], T0), T0);
    // The delayed payment itself carries a timestamp 45 s after creation.
    s.pipe("payments", "o1", &paid("o1", 900), T0 + 45_000);
    assert_eq!(
        s.read("order-outcomes"),
        [kv("o1", cancelled("o1", "payment_timeout"), T0 + 30_000)]
    );
    assert_eq!(
        refunds(&mut s),
        [kv("o1", refunded("o1", 900, "late_payment"), T0 + 45_000)]
    );
}

#[test]
fn stock_timeout_refunds_and_a_late_reservation_is_released() {
    let mut s = service("order-saga.toml");
    s.pipe("orders", "o1", &order("o1", &[("p1", 2, 250)], T0), T0);
    s.pipe("payments", "o1", &paid("o1", 500), T0 + 1_000);
    s.pipe(
        "orders",
        "o2",
        &order("o2", &[("p1", 1, 100)], T0 + 40_000),
        T0 + 40_000,
    );
    assert_eq!(
        s.read("order-outcomes"),
        [kv("o1", cancelled("o1", "stock_timeout"), T0 + 31_000)]
    );
    assert_eq!(
        refunds(&mut s),
        [kv("o1", refunded("o1", 500, "stock_timeout"), T0 + 31_000)]
    );
    s.pipe(
        "inventory",
        "o1",
        &reserved("o1", &[("p1", 2, 0)]),
        T0 + 41_000,
    );
    assert_eq!(releases(&mut s).len(), 1);
    assert_eq!(s.summary("o1")["reason"], "stock_timeout");
}

#[test]
fn duplicates_and_out_of_order_events_change_no_outcome() {
    let mut s = service("order-saga.toml");
    // Stock answer first, then the payment, then the order (twice each).
    for _ in 0..2 {
        s.pipe(
            "inventory",
            "o1",
            &reserved("o1", &[("p1", 1, 0)]),
            T0 + 2_000,
        );
    }
    for _ in 0..2 {
        s.pipe("payments", "o1", &paid("o1", 100), T0 + 1_000);
    }
    assert_eq!(s.read("order-outcomes"), []);
    for _ in 0..2 {
        s.pipe("orders", "o1", &order("o1", &[("p1", 1, 100)], T0), T0);
    }
    // Completed by the deferred stock answer, at its timestamp.
    assert_eq!(
        s.read("order-outcomes"),
        [kv("o1", completed("o1"), T0 + 2_000)]
    );
    // A failure reported after completion changes nothing either.
    s.pipe("payments", "o1", &declined("o1", 100), T0 + 3_000);
    assert_eq!(s.read("order-outcomes"), []);
    assert_eq!(refunds(&mut s), []);
    assert_eq!(s.summary("o1")["status"], "completed");
}

#[test]
fn malformed_and_schema_invalid_events_go_to_the_dead_letter_topic() {
    let mut s = service("order-saga.toml");
    s.pipe_bytes("orders", "bad-1", b"{not json", T0);
    let mut invalid = order("bad-2", &[("p1", 1, 100)], T0);
    invalid["items"][0]["qty"] = json!(0);
    s.pipe("orders", "bad-2", &invalid, T0);
    s.pipe(
        "payments",
        "o9",
        &json!({"type": "payment_successful", "order_id": "o9"}),
        T0,
    );
    s.pipe("orders", "o1", &order("o1", &[("p1", 1, 100)], T0), T0);
    s.pipe("payments", "o1", &declined("o1", 100), T0);
    let dead = s.driver.read_raw("order-saga-dlq");
    let reasons: Vec<(String, String)> = dead
        .iter()
        .map(|r| {
            let h = |k| String::from_utf8_lossy(r.headers.last(k).unwrap()).into_owned();
            (h(dlq_headers::TOPIC), h(dlq_headers::MESSAGE))
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, "orders");
    assert_eq!(
        reasons[0].1,
        "value is not JSON (key must be a string at line 1 column 2), so it has no timestamp field created_at"
    );
    assert_eq!(
        reasons[1],
        (
            "orders".to_owned(),
            "schema schemas/order.json: at /items/0/qty: 0 is less than the minimum of 1"
                .to_owned()
        )
    );
    assert_eq!(reasons[2].0, "payments");
    assert!(
        reasons[2].1.contains("\"amount\" is a required property"),
        "{}",
        reasons[2].1
    );
    assert_eq!(
        s.read("order-outcomes"),
        [kv("o1", cancelled("o1", "payment_failed"), T0)]
    );
}

#[test]
fn the_gateway_declines_large_orders_and_a_drawn_share() {
    let mut s = service("payment.toml");
    s.pipe("orders", "o1", &order("o1", &[("p1", 2, 150)], T0), T0);
    s.pipe(
        "orders",
        "o2",
        &order("o2", &[("p1", 100, 9_999)], T0 + 1),
        T0 + 1,
    );
    assert_eq!(
        s.read("payments"),
        [
            kv(
                "o1",
                json!({"type": "payment_successful", "order_id": "o1", "amount": 300, "gateway_ref": "gw-o1"}),
                T0
            ),
            kv(
                "o2",
                json!({"type": "payment_failed", "order_id": "o2", "amount": 999_900, "reason": "amount_over_limit"}),
                T0 + 1
            ),
        ]
    );
    // A gateway that declines every card.
    let declining = Gateway::start(
        GatewayConfig {
            decline_rate: 1.0,
            ..GatewayConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let mut vars = toml::Table::new();
    vars.insert(
        "gateway_url".into(),
        format!("http://{}", declining.addr()).into(),
    );
    vars.insert("manual_users".into(), toml::Value::Array(vec!["u2".into()]));
    let mut s = service_with("payment.toml", vars, 1);
    s.pipe("orders", "o1", &order("o1", &[("p1", 1, 100)], T0), T0);
    let mut manual = order("o3", &[("p1", 1, 100)], T0);
    manual["user_id"] = json!("u2");
    s.pipe("orders", "o3", &manual, T0);
    assert_eq!(
        s.read("payments"),
        [kv(
            "o1",
            json!({"type": "payment_failed", "order_id": "o1", "amount": 100, "reason": "card_declined"}),
            T0
        )]
    );
}

#[test]
fn inventory_reserves_per_product_never_below_zero_and_releases_once() {
    let mut s = service("inventory.toml");
    s.pipe("stock", "p1", &json!({"product_id": "p1", "qty": 5}), 0);
    s.pipe("stock", "p2", &json!({"product_id": "p2", "qty": 10}), 0);
    s.pipe("orders", "o1", &order("o1", &[("p1", 3, 100)], T0), T0);
    s.pipe("payments", "o1", &paid("o1", 300), T0);
    s.pipe(
        "orders",
        "o2",
        &order("o2", &[("p2", 1, 100), ("p1", 3, 100)], T0),
        T0,
    );
    s.pipe("payments", "o2", &paid("o2", 400), T0);
    // A duplicated payment reserves nothing more.
    s.pipe("payments", "o1", &paid("o1", 300), T0);
    let out: Vec<(String, Value, i64)> = s
        .read("inventory")
        .into_iter()
        .filter(|(_, v, _)| v["type"] != "stock_released")
        .collect();
    assert_eq!(
        out,
        [
            kv("o1", reserved("o1", &[("p1", 3, 0)]), T0),
            kv(
                "o2",
                json!({"type": "stock_unavailable", "order_id": "o2", "missing": ["p1"], "released": [{"product_id": "p2", "qty": 1, "line": 0}]}),
                T0
            ),
            kv("o1", reserved("o1", &[("p1", 3, 0)]), T0),
        ]
    );
    // o2's reserved line went back; p1 never went below zero.
    assert_eq!((s.stock("p1"), s.stock("p2")), (2, 10));
    // The saga releases o1 (twice, by a retry): stock comes back once.
    let release = json!({"type": "stock_released", "order_id": "o1", "items": [{"product_id": "p1", "qty": 3, "line": 0}]});
    s.pipe("inventory", "o1", &release, T0 + 1);
    s.pipe("inventory", "o1", &release, T0 + 2);
    assert_eq!((s.stock("p1"), s.stock("p2")), (5, 10));
}

/// Moves every record written to a shared topic into the other services
/// that read it, until none is left.
fn settle(services: &mut [Service], log: &mut Vec<(String, String, Value)>) {
    loop {
        let mut moved = 0;
        for i in 0..services.len() {
            for topic in ["orders", "payments", "inventory", "stock", "order-outcomes"] {
                for (k, v, ts) in services[i].read(topic) {
                    log.push((topic.to_owned(), k.clone(), v.clone()));
                    for (j, other) in services.iter_mut().enumerate() {
                        if j != i && other.reads.iter().any(|t| t == topic) {
                            other.pipe(topic, &k, &v, ts);
                            moved += 1;
                        }
                    }
                }
            }
        }
        if moved == 0 {
            return;
        }
    }
}

#[test]
fn the_three_services_together() {
    let mut services = vec![
        service_with("payment.toml", toml::Table::new(), 2),
        service_with("inventory.toml", toml::Table::new(), 2),
        service_with("order-saga.toml", toml::Table::new(), 2),
    ];
    let mut log = Vec::new();
    // Seed stock through the inventory service.
    services[1].pipe("stock", "p1", &json!({"product_id": "p1", "qty": 10}), 0);
    services[1].pipe("stock", "p2", &json!({"product_id": "p2", "qty": 1}), 0);
    let orders = [
        order("o1", &[("p1", 2, 100)], T0),
        order("o2", &[("p2", 2, 100)], T0 + 1),
        order("o3", &[("p1", 100, 9_999)], T0 + 2),
        order("o4", &[("p1", 3, 100), ("p2", 1, 100)], T0 + 3),
    ];
    for o in &orders {
        let id = o["order_id"].as_str().unwrap();
        let ts = T0 + id[1..].parse::<i64>().unwrap() - 1;
        // Every service reads orders.
        for s in services.iter_mut() {
            s.pipe("orders", id, o, ts);
        }
        settle(&mut services, &mut log);
    }
    let outcomes: Vec<(String, Value)> = log
        .iter()
        .filter(|(t, _, _)| t == "order-outcomes")
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("o1".to_owned(), completed("o1")),
            ("o2".to_owned(), cancelled("o2", "stock_unavailable")),
            ("o3".to_owned(), cancelled("o3", "payment_failed")),
            ("o4".to_owned(), completed("o4")),
        ]
    );
    let compensations: Vec<(String, String)> = log
        .iter()
        .filter(|(_, _, v)| v["type"] == "payment_refunded" || v["type"] == "stock_released")
        .map(|(_, k, v)| (k.clone(), v["type"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        compensations,
        [("o2".to_owned(), "payment_refunded".to_owned())]
    );
    // Stock: seed minus the completed orders' items.
    let stock = |p: &str| {
        (0..2)
            .filter_map(|part| {
                services[1]
                    .driver
                    .key_value_store("stock-levels", part, StringSerde, I64Serde)?
                    .get(&p.to_owned())
                    .unwrap()
            })
            .sum::<i64>()
    };
    assert_eq!((stock("p1"), stock("p2")), (10 - 2 - 3, 0));
}

#[test]
fn an_output_that_breaks_its_topic_contract_is_dead_lettered() {
    let text = r#"
[application]
id = "contract"

[topics.in]

[topics.order-outcomes]
schema = "schemas/outcome.json"

[nodes.src]
op = "source"
topic = "in"

[nodes.outcome]
op = "map"
input = "src"
value = "value.ok ? {'type': 'order_completed', 'order_id': key} : {'type': 'order_completed'}"

[nodes.out]
op = "sink"
input = "outcome"
topic = "order-outcomes"
"#;
    let p = Pipeline::parse(text, &config("contract.toml"), &eddy_orders::registry()).unwrap();
    let cfg = DriverConfig {
        application_id: "contract".into(),
        ..DriverConfig::default()
    };
    let mut s = Service {
        driver: TopologyTestDriver::with_config(p.topology, cfg),
        reads: Vec::new(),
        _gateway: None,
    };
    s.pipe("in", "o1", &json!({"ok": true}), T0);
    s.pipe("in", "o2", &json!({"ok": false}), T0);
    assert_eq!(s.read("order-outcomes"), [kv("o1", completed("o1"), T0)]);
    let dead = s.driver.read_raw("contract-dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key.as_deref(), Some(&b"o2"[..]));
    assert_eq!(
        dead[0].headers.last(dlq_headers::MESSAGE),
        Some(&b"schema schemas/outcome.json: at /: \"order_id\" is a required property"[..])
    );
}

#[test]
fn a_timeout_that_cannot_be_applied_does_not_hold_back_the_others() {
    use eddy::topology::{Saga, Step, StreamsBuilder};
    use std::time::Duration;
    let saga = Saga::new("new")
        .on("new", "order_created", Step::to("waiting"))
        .timeout(
            "waiting",
            Duration::from_secs(30),
            Step::to("cancelled").emit(|s| match s.key {
                "bad" => Err("cannot build the event".into()),
                key => Ok(cancelled(key, "payment_timeout")),
            }),
        )
        .final_states(["cancelled"]);
    let b = StreamsBuilder::new();
    b.stream("events", StringSerde, JsonSerde::<Value>::new())
        .saga("s", saga)
        .unwrap()
        .to("out", StringSerde, JsonSerde::<Value>::new());
    let mut s = Service {
        driver: TopologyTestDriver::new(b.build().unwrap()),
        reads: Vec::new(),
        _gateway: None,
    };
    // "bad" sorts before "good" and its deadline comes first.
    s.pipe("events", "bad", &json!({"type": "order_created"}), T0);
    s.pipe("events", "good", &json!({"type": "order_created"}), T0 + 1);
    s.pipe(
        "events",
        "later",
        &json!({"type": "order_created"}),
        T0 + 40_000,
    );
    assert_eq!(
        s.read("out"),
        [kv(
            "good",
            cancelled("good", "payment_timeout"),
            T0 + 30_001
        )]
    );
}

/// A saga whose `order_created` transition fails for orders marked
/// `poison`, as an expression would on data it cannot handle.
fn fragile_saga(rejected: bool) -> Service {
    use eddy::topology::{Saga, Step, StreamsBuilder};
    use std::time::Duration;
    let mut saga = Saga::new("new")
        .on(
            "new",
            "order_created",
            Step::to("waiting").emit(|s| match s.event.and_then(|e| e.get("poison")) {
                Some(_) => Err("cannot price the order".into()),
                None => Ok(json!({"type": "order_accepted", "order_id": s.key})),
            }),
        )
        .on("waiting", "payment_successful", Step::to("completed"))
        .timeout("waiting", Duration::from_secs(30), Step::to("cancelled"))
        .final_states(["completed", "cancelled"])
        .retention(Duration::from_secs(600));
    if rejected {
        saga = saga
            .final_states(["rejected"])
            .on_error(Step::to("rejected").emit(|s| {
                Ok(json!({"type": "order_rejected", "order_id": s.key, "reason": s.reason}))
            }));
    }
    let b = StreamsBuilder::new();
    b.stream("events", StringSerde, JsonSerde::<Value>::new())
        .saga("s", saga)
        .unwrap()
        .to("out", StringSerde, JsonSerde::<Value>::new());
    Service {
        driver: TopologyTestDriver::new(b.build().unwrap()),
        reads: Vec::new(),
        _gateway: None,
    }
}

#[test]
fn an_event_the_saga_cannot_apply_rejects_the_instance_with_the_reason() {
    let mut s = fragile_saga(true);
    s.pipe(
        "events",
        "o1",
        &json!({"type": "order_created", "poison": true}),
        T0,
    );
    s.pipe("events", "o2", &json!({"type": "order_created"}), T0 + 1);
    assert_eq!(
        s.read("out"),
        [
            kv(
                "o1",
                json!({"type": "order_rejected", "order_id": "o1", "reason": "cannot price the order"}),
                T0
            ),
            kv(
                "o2",
                json!({"type": "order_accepted", "order_id": "o2"}),
                T0 + 1
            ),
        ]
    );
    // Rejected is final: a later event changes nothing, and nothing was
    // dead-lettered.
    s.pipe(
        "events",
        "o1",
        &json!({"type": "payment_successful"}),
        T0 + 2,
    );
    assert!(s.read("out").is_empty());
    assert!(s.driver.read_raw("test-app-dlq").is_empty());

    // Without a rejection step the record is dead-lettered, as before.
    let mut s = fragile_saga(false);
    s.pipe(
        "events",
        "o1",
        &json!({"type": "order_created", "poison": true}),
        T0,
    );
    assert!(s.read("out").is_empty());
    assert_eq!(s.driver.read_raw("test-app-dlq").len(), 1);
}

#[test]
fn saga_instances_expire_after_their_retention_in_stream_time() {
    let mut s = fragile_saga(true);
    // An order that never appears: its payment is held back, then expires.
    s.pipe(
        "events",
        "ghost",
        &json!({"type": "payment_successful"}),
        T0,
    );
    // A completed order, kept as long.
    s.pipe("events", "done", &json!({"type": "order_created"}), T0 + 1);
    s.pipe(
        "events",
        "done",
        &json!({"type": "payment_successful"}),
        T0 + 2,
    );
    let instances = |s: &Service| {
        let store = s
            .driver
            .key_value_store("s", 0, StringSerde, BytesSerde)
            .unwrap();
        ["ghost", "done"].map(|k| store.get(&k.to_owned()).unwrap().is_some())
    };
    assert_eq!(instances(&s), [true, true]);
    // Stream time 10 minutes on, less 1 ms: both still kept.
    s.pipe("events", "tick", &json!({"type": "tick"}), T0 + 599_999);
    assert_eq!(instances(&s), [true, true]);
    assert_eq!(s.driver.expired_state(), 0);
    s.pipe("events", "tick", &json!({"type": "tick"}), T0 + 602_000);
    assert_eq!(instances(&s), [false, false]);
    assert_eq!(s.driver.expired_state(), 2);
    // The order that then appears starts afresh, and waits for a payment.
    s.read("out");
    s.pipe(
        "events",
        "ghost",
        &json!({"type": "order_created"}),
        T0 + 603_000,
    );
    assert_eq!(
        s.read("out"),
        [kv(
            "ghost",
            json!({"type": "order_accepted", "order_id": "ghost"}),
            T0 + 603_000
        )]
    );
}

#[test]
fn stock_reservations_are_forgotten_after_their_retention() {
    let mut s = service("inventory.toml");
    s.pipe("stock", "p1", &json!({"product_id": "p1", "qty": 5}), 0);
    s.pipe("stock", "p2", &json!({"product_id": "p2", "qty": 10}), 0);
    s.pipe("orders", "o1", &order("o1", &[("p1", 3, 100)], T0), T0);
    s.pipe("payments", "o1", &paid("o1", 300), T0);
    s.pipe(
        "orders",
        "o2",
        &order("o2", &[("p2", 1, 100), ("p1", 3, 100)], T0),
        T0,
    );
    s.pipe("payments", "o2", &paid("o2", 400), T0);
    assert_eq!((s.stock("p1"), s.stock("p2")), (2, 10));
    // An hour of stream time later, less 1 ms, all three order lines are
    // still remembered; then they are forgotten.
    s.pipe(
        "stock",
        "p9",
        &json!({"product_id": "p9", "qty": 1}),
        T0 + 3_599_999,
    );
    assert_eq!(s.driver.expired_state(), 0);
    s.pipe(
        "stock",
        "p9",
        &json!({"product_id": "p9", "qty": 1}),
        T0 + 3_601_000,
    );
    assert_eq!(s.driver.expired_state(), 3);
    // A release after that returns nothing: the reservation is unknown.
    let release = json!({"type": "stock_released", "order_id": "o1", "items": [{"product_id": "p1", "qty": 3, "line": 0}]});
    s.pipe("inventory", "o1", &release, T0 + 3_602_000);
    assert_eq!((s.stock("p1"), s.stock("p2")), (2, 10));
}

/// What the order contract accepts, the pipeline processes: `1.0` is an
/// integer for the schema and for the expressions; a price beyond the
/// schema's bound is refused by every service on the way in (and by
/// `POST /orders` with a 400), so no order is left without an outcome.
#[test]
fn integral_floats_are_processed_and_out_of_bound_prices_are_refused_by_the_contract() {
    let mut services = vec![
        service("payment.toml"),
        service("inventory.toml"),
        service("order-saga.toml"),
    ];
    let mut log = Vec::new();
    services[1].pipe("stock", "p1", &json!({"product_id": "p1", "qty": 10}), 0);
    let mut float = order("o1", &[("p1", 1, 100)], T0);
    float["items"][0]["qty"] = json!(1.0);
    float["items"][0]["unit_price"] = json!(100.0);
    let mut huge = order("o2", &[("p1", 1, 100)], T0 + 1);
    huge["items"][0]["unit_price"] = json!(1e300);
    for (id, o, ts) in [("o1", &float, T0), ("o2", &huge, T0 + 1)] {
        for s in services.iter_mut() {
            s.pipe("orders", id, o, ts);
        }
        settle(&mut services, &mut log);
    }
    let outcomes: Vec<(String, Value)> = log
        .iter()
        .filter(|(t, _, _)| t == "order-outcomes")
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(outcomes, [("o1".to_owned(), completed("o1"))]);
    assert_eq!(services[2].summary("o1")["amount"], json!(100));
    for (s, app) in services
        .iter_mut()
        .zip(["payment-service", "inventory-service", "order-saga"])
    {
        let dlq = format!("{app}-dlq");
        let dead = s.driver.read_raw(&dlq);
        assert_eq!(dead.len(), 1, "{dlq}");
        let m = String::from_utf8(dead[0].headers.last(dlq_headers::MESSAGE).unwrap().to_vec())
            .unwrap();
        assert!(m.contains("unit_price") || m.contains("maximum"), "{m}");
    }
}

#[test]
fn a_timeout_stays_in_the_trace_of_its_order() {
    use eddy::observability::{TraceContext, TRACEPARENT};
    let mut s = service("order-saga.toml");
    // Tracing on, as `trace_sample_ratio` in the file would set it.
    let overrides = common::with_pii_key(Overrides::default());
    let p = Pipeline::load_with(
        &config("order-saga.toml"),
        &eddy_orders::registry(),
        &overrides,
    )
    .unwrap();
    let config = DriverConfig {
        application_id: p.config.application_id.clone(),
        trace_sample_ratio: Some(1.0),
        ..DriverConfig::default()
    };
    s.driver = TopologyTestDriver::with_config(p.topology, config);
    let caller =
        TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let traced = |ctx: TraceContext| {
        let mut h = Headers::new();
        h.add(TRACEPARENT, ctx.header_value().to_vec());
        h
    };
    let order_o1 = order("o1", &[("p1", 2, 250)], T0).to_string();
    s.pipe_with("orders", "o1", order_o1.as_bytes(), T0, traced(caller));
    let payment = paid("o1", 500).to_string();
    s.pipe_with(
        "payments",
        "o1",
        payment.as_bytes(),
        T0 + 1_000,
        traced(caller.child()),
    );
    // Another order moves stream time past o1's stock deadline.
    s.pipe(
        "orders",
        "o2",
        &order("o2", &[("p1", 1, 100)], T0 + 40_000),
        T0 + 40_000,
    );
    let outcomes = s.driver.read_raw("order-outcomes");
    assert_eq!(outcomes.len(), 1, "o1's stock timeout");
    let outcome = TraceContext::parse(outcomes[0].headers.last(TRACEPARENT).unwrap()).unwrap();
    assert_eq!((outcome.trace_id, outcome.sampled), (caller.trace_id, true));
    assert_ne!(outcome.span_id, caller.span_id);
}

#[test]
fn the_notification_service_delivers_each_outcome_once() {
    let hook = Webhook::start(0.0, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut vars = toml::Table::new();
    vars.insert(
        "webhook_url".into(),
        format!("http://{}", hook.addr()).into(),
    );
    let mut s = service_with("notification.toml", vars, 1);
    s.pipe("order-outcomes", "o1", &completed("o1"), T0);
    s.pipe(
        "order-outcomes",
        "o2",
        &cancelled("o2", "payment_failed"),
        T0 + 1,
    );
    // The same outcome again (an upstream retry): sent again, kept once.
    s.pipe("order-outcomes", "o1", &completed("o1"), T0 + 2);
    let sent = |id: &str, outcome: &str, ts| {
        kv(
            id,
            json!({"type": "notification_sent", "order_id": id, "outcome": outcome}),
            ts,
        )
    };
    assert_eq!(
        s.read("notifications"),
        [
            sent("o1", "order_completed", T0),
            sent("o2", "order_cancelled", T0 + 1),
            sent("o1", "order_completed", T0 + 2),
        ]
    );
    assert_eq!(
        hook.deliveries().into_iter().collect::<Vec<_>>(),
        [
            (
                "o1:order_completed".to_owned(),
                json!({"order_id": "o1", "outcome": "order_completed", "reason": null})
            ),
            (
                "o2:order_cancelled".to_owned(),
                json!({"order_id": "o2", "outcome": "order_cancelled", "reason": "payment_failed"})
            ),
        ]
    );
    assert_eq!(hook.requests(), 3);
}
