//! `eddy run --config`: a topology file as a worker process.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[test]
fn eddy_run_serves_the_payment_service_from_its_file() {
    let c = common::cluster();
    let u = common::unique("run");
    for t in ["orders", "payments"] {
        c.create_topic(&format!("{t}-{u}"), 2);
    }
    if c.is_embedded() {
        // The embedded cluster has no CreateTopics API for the worker.
        c.create_topic(&format!("payment-service-{u}-dlq"), 1);
        // The store of the gateway calls not done yet, and the members
        // topic of an application with stores.
        c.create_topic(&format!("payment-service-{u}-charged-changelog"), 2);
        c.create_topic(&format!("payment-service-{u}-members"), 1);
    }
    let http = common::free_addr();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/payment.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy-orders"))
        .args([
            "run",
            "--config",
            file,
            "--suffix",
            &u,
            "--brokers",
            &c.bootstrap,
        ])
        .args(["--http", &http.to_string()])
        .args(["--var", &format!("gateway_url={}", common::gateway_url())])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let order = eddy_orders::order_created(3, 1, 5, 1_700_000_000_000);
    let id = order["order_id"].as_str().unwrap().to_owned();
    c.produce(
        &format!("orders-{u}"),
        &[(
            Some(id.clone().into_bytes()),
            Some(order.to_string().into_bytes()),
        )],
    );
    let out = c.consume_count(
        &format!("payments-{u}"),
        1,
        Duration::from_secs(60),
        Duration::ZERO,
    );
    assert_eq!(out.len(), 1);
    let payment: Value = serde_json::from_slice(out[0].value.as_deref().unwrap()).unwrap();
    // The amount is the order's sum of qty x unit_price; order-3-1 is not
    // among the 5 % the gateway declines (hash_unit of its id is above
    // 0.05).
    let amount = common::amount(&order);
    assert_eq!(
        payment,
        serde_json::json!({"type": "payment_successful", "order_id": "order-3-1", "amount": amount, "gateway_ref": "gw-order-3-1"})
    );
    assert_eq!(amount, 7702);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
