//! `eddy-orders gen orders`: the load generator's events.

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn gen_orders_produces_well_formed_order_created_events_keyed_by_order_id() {
    let c = common::cluster();
    let topic = common::unique("gen-orders");
    c.create_topic(&topic, 3);
    let out = Command::new(env!("CARGO_BIN_EXE_eddy-orders"))
        .args([
            "gen",
            "orders",
            "--brokers",
            &c.bootstrap,
            "--topic",
            &topic,
            "--count",
            "200",
            "--rate",
            "2000",
        ])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = c.consume_count(
        &topic,
        200,
        Duration::from_secs(30),
        Duration::from_millis(500),
    );
    assert_eq!(records.len(), 200);
    let mut ids = std::collections::HashSet::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["type"], "order_created");
        let id = v["order_id"].as_str().unwrap();
        assert_eq!(r.key.as_deref(), Some(id.as_bytes()));
        assert!(ids.insert(id.to_owned()), "duplicate order id {id}");
        let items = v["items"].as_array().unwrap();
        assert!((1..=3).contains(&items.len()));
        for item in items {
            assert!(item["product_id"].as_str().unwrap().starts_with("product-"));
            assert!(item["qty"].as_u64().unwrap() >= 1);
            assert!(item["unit_price"].as_i64().unwrap() >= 100);
        }
        let at = v["created_at"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
    }
}
