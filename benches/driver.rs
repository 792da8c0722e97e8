//! The processor path alone, no broker: records/s through the test driver
//! (source decode, filter, map_values, sink encode, output capture) beside a
//! hand-written loop doing the same decode/filter/map/encode work in the
//! same run; then the inventory service (`config/inventory.toml`) reserving
//! orders of many lines, as wall time per order, which grows linearly with
//! the lines.
//!
//! `cargo bench --bench driver` (`EDDY_BENCH_RECORDS` sets the count;
//! `EDDY_BENCH_LINES` the order sizes, default `1000`, comma-separated).

use std::hint::black_box;
use std::time::Instant;

use eddy::config::{Pipeline, Registry};
use eddy::processor::Headers;
use eddy::runtime::dlq_headers;
use eddy::serde::{BytesSerde, Serde, StringSerde};
use eddy::testing::{DriverConfig, TopologyTestDriver};
use eddy::topology::StreamsBuilder;

fn records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = format!("key-{i}").into_bytes();
            let mut value = format!("value-{i}-").into_bytes();
            value.resize(100, b'x');
            (key, value)
        })
        .collect()
}

fn keep(v: &[u8]) -> bool {
    v[0] != b'#'
}

fn shout(mut v: Vec<u8>) -> Vec<u8> {
    v.make_ascii_uppercase();
    v
}

/// Orders of each size in `EDDY_BENCH_LINES` through the inventory service:
/// stock seeded, each order created then paid, and the time from the
/// payment to its `stock_reserved`, averaged over a few orders.
fn inventory_orders() {
    const ORDERS: usize = 5;
    const PRODUCTS: usize = 100;
    let sizes: Vec<usize> = std::env::var("EDDY_BENCH_LINES")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("EDDY_BENCH_LINES: sizes"))
        .collect();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/inventory.toml");
    let pipe = |d: &mut TopologyTestDriver, topic: &str, key: &str, value: String| {
        d.pipe_raw(
            topic,
            None,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            1_700_000_000_000,
            Headers::new(),
        )
        .unwrap();
    };
    println!("inventory benchmark: one order at a time, {ORDERS} orders per size");
    for lines in sizes {
        let p = Pipeline::load(&file, &Registry::builtin()).unwrap();
        let cfg = DriverConfig {
            application_id: p.config.application_id.clone(),
            ..DriverConfig::default()
        };
        let mut d = TopologyTestDriver::with_config(p.topology, cfg);
        for i in 0..PRODUCTS {
            let value = format!(r#"{{"product_id":"p{i}","qty":1000000000}}"#);
            pipe(&mut d, "stock", &format!("p{i}"), value);
        }
        let items: Vec<String> = (0..lines)
            .map(|i| {
                format!(
                    r#"{{"product_id":"p{}","qty":1,"unit_price":1}}"#,
                    i % PRODUCTS
                )
            })
            .collect();
        let mut total = std::time::Duration::ZERO;
        for o in 0..ORDERS {
            let id = format!("o{o}");
            let order = format!(
                r#"{{"type":"order_created","order_id":"{id}","user_id":"u","items":[{}],"created_at":1700000000000}}"#,
                items.join(",")
            );
            pipe(&mut d, "orders", &id, order);
            let paid = format!(
                r#"{{"type":"payment_successful","order_id":"{id}","amount":1,"gateway_ref":"g"}}"#
            );
            let start = Instant::now();
            pipe(&mut d, "payments", &id, paid);
            total += start.elapsed();
            if let Some(dead) = d.read_raw("inventory-service-dlq").first() {
                let reason = dead.headers.last(dlq_headers::MESSAGE).unwrap_or_default();
                panic!(
                    "{lines} lines: dead-lettered: {}",
                    String::from_utf8_lossy(reason)
                );
            }
            let out = d.read_raw("inventory");
            assert_eq!(out.len(), 1, "{lines} lines: one answer per order");
            black_box(out);
        }
        let per_order = total / ORDERS as u32;
        println!(
            "  {lines:>6} lines  {:>10.1} ms per order  {:>8.1} us per line",
            per_order.as_secs_f64() * 1e3,
            per_order.as_secs_f64() * 1e6 / lines as f64
        );
    }
}

fn main() {
    let n: usize = std::env::var("EDDY_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let data = records(n);

    // Yardstick: the same work with no engine.
    let start = Instant::now();
    let mut out = Vec::with_capacity(256);
    let mut bytes = 0usize;
    for (k, v) in &data {
        let key = StringSerde.deserialize(Some(k)).unwrap();
        let value = BytesSerde.deserialize(Some(v)).unwrap();
        if keep(&value) {
            let value = shout(value);
            out.clear();
            StringSerde.serialize(&key, &mut out).unwrap();
            BytesSerde.serialize(&value, &mut out).unwrap();
            bytes += black_box(out.len());
        }
    }
    let raw = start.elapsed();
    black_box(bytes);

    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, BytesSerde)
        .filter(|_, v| keep(v))
        .map_values(shout)
        .to("out", StringSerde, BytesSerde);
    let mut driver = TopologyTestDriver::new(b.build().unwrap());
    let start = Instant::now();
    for (i, (k, v)) in data.iter().enumerate() {
        driver
            .pipe_raw("in", Some(0), Some(k), Some(v), i as i64, Headers::new())
            .unwrap();
        if i % 10_000 == 9_999 {
            black_box(driver.read_raw("out"));
        }
    }
    let eddy = start.elapsed();
    assert_eq!(driver.read_raw("out").len(), n % 10_000);

    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!("driver benchmark: {n} records of 100 bytes, one partition");
    println!("  plain loop     {:>12.0} records/s", rate(raw));
    println!("  eddy driver    {:>12.0} records/s", rate(eddy));
    println!(
        "  ratio          {:>12.2} (eddy / plain loop)",
        rate(eddy) / rate(raw)
    );
    inventory_orders();
}
