//! A misconfigured worker exits non-zero with one clear line.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn eddy(args: &[&str]) -> (bool, String, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    (out.status.success(), stderr, start.elapsed())
}

#[test]
fn unknown_topic_is_refused_naming_the_topic() {
    let c = common::cluster();
    let missing = common::unique("no-such-topic");
    let (ok, stderr, _) = eddy(&[
        "pipe",
        "--brokers",
        &c.bootstrap,
        "--input",
        &missing,
        "--output",
        "x",
    ]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "eddy: error: source topic \"{missing}\" does not exist on {}",
            c.bootstrap
        )),
        "{stderr}"
    );
}

#[test]
fn unreachable_broker_is_refused_after_the_timeout() {
    let dead = common::free_addr().to_string();
    let (ok, stderr, took) = eddy(&["pipe", "--brokers", &dead, "--input", "a", "--output", "b"]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "eddy: error: cannot reach Kafka at {dead} within 10s"
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(30));
}

#[test]
fn gen_orders_produces_well_formed_order_created_events_keyed_by_order_id() {
    let c = common::cluster();
    let topic = common::unique("gen-orders");
    c.create_topic(&topic, 3);
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
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

#[test]
fn a_bad_topology_file_is_refused_by_validate_and_run() {
    let dir = std::env::temp_dir().join(common::unique("bad-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[application]\nid = \"a\"\n[topics.in]\n[nodes.src]\nop = \"source\"\ntopic = \"in\"\n[nodes.j]\nop = \"join\"\nleft = \"src\"\nright = \"src\"\nvalue = \"left\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let expected = format!(
        "{path}: nodes.j.window: a stream-stream join needs a window (for example window = \"30s\")"
    );
    let (ok, stderr, _) = eddy(&["validate", path]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!("{expected}\neddy: error: 1 of 1 files refused\n")
    );
    let (ok, stderr, _) = eddy(&["run", "--config", path]);
    assert!(!ok);
    assert_eq!(stderr, format!("eddy: error: {expected}\n"));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/order-saga.toml");
    let (ok, stderr, _) = eddy(&["validate", shipped]);
    assert!(ok, "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
