//! The inventory service (`config/inventory.toml`) in the test driver,
//! reserving orders of many lines: wall time per order, which grows
//! linearly with the lines.
//!
//! `cargo bench -p eddy-orders --bench inventory` (`EDDY_BENCH_LINES` the
//! order sizes, default `1000`, comma-separated).

use std::hint::black_box;
use std::time::Instant;

use eddy::config::Pipeline;
use eddy::processor::Headers;
use eddy::runtime::dlq_headers;
use eddy::testing::{DriverConfig, TopologyTestDriver};

/// Orders of each size in `EDDY_BENCH_LINES` through the inventory service:
/// stock seeded, each order created then paid, and the time from the
/// payment to its `stock_reserved`, averaged over a few orders.
fn main() {
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
        let p = Pipeline::load(&file, &eddy_orders::registry()).unwrap();
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
