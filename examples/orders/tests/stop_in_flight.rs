//! A worker asked to stop while it is busy with orders of thousands of
//! lines stops promptly: each line costs the same whatever the order's
//! size, and a stop request is honoured between records (issue 10's
//! hostile case of a 10 000-item order that held the inventory service for
//! minutes and past SIGTERM).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use common::{cluster, order_pipeline, start_pipeline, unique, wait_for};

const ORDERS: usize = 20;
const LINES: usize = 2_000;
const PRODUCTS: usize = 50;

#[test]
fn an_inventory_busy_with_large_orders_stops_promptly() {
    let c = cluster();
    let u = unique("stop");
    let topic = |t: &str| format!("{t}-{u}");
    for t in ["orders", "payments", "inventory", "stock", "order-outcomes"] {
        c.create_topic(&topic(t), 3);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stock: Vec<_> = (0..PRODUCTS)
        .map(|p| {
            let id = format!("product-{p}");
            (
                id.clone(),
                json!({"product_id": id, "qty": 1_000_000_000}).to_string(),
                now,
            )
        })
        .collect();
    c.produce_at(&topic("stock"), &stock);
    let (mut orders, mut payments) = (Vec::new(), Vec::new());
    for i in 0..ORDERS {
        let id = format!("big-{i}");
        let items: Vec<_> = (0..LINES)
            .map(|j| json!({"product_id": format!("product-{}", j % PRODUCTS), "qty": 1, "unit_price": 1}))
            .collect();
        let order = json!({"type": "order_created", "order_id": id, "user_id": "u", "items": items, "created_at": now});
        let paid = json!({"type": "payment_successful", "order_id": id, "amount": LINES, "gateway_ref": "g"});
        orders.push((id.clone(), order.to_string(), now));
        payments.push((id, paid.to_string(), now + 1));
    }
    c.produce_at(&topic("orders"), &orders);
    c.produce_at(&topic("payments"), &payments);

    let state = std::env::temp_dir().join(&u);
    let w = start_pipeline(order_pipeline("inventory.toml", &u, &c, &state), &c);
    // Busy: reservations are flowing, most orders not yet answered.
    wait_for("reservations under way", Duration::from_secs(120), || {
        let text = w.metrics().encode();
        text.lines()
            .filter(|l| l.starts_with("eddy_thread_records_processed_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            > (2 * ORDERS) as f64
    });
    let asked = Instant::now();
    w.close().unwrap();
    let took = asked.elapsed();
    // Generous for a debug build on a shared machine; before, one order of
    // 2 000 lines alone took about a minute.
    assert!(took < Duration::from_secs(20), "stopping took {took:?}");
    let _ = std::fs::remove_dir_all(&state);
}
