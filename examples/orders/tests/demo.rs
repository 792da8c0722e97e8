//! `eddy demo`, the README's main job: the order pipeline runs to a
//! consistent summary, then serves `POST /orders` and `GET /orders/{id}`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn demo_runs_to_a_consistent_summary_and_serves_orders() {
    let http_addr = common::free_addr();
    let addr = http_addr.to_string();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let suffix = common::unique("demo");
    let mut args = vec![
        "demo",
        "--count",
        "150",
        "--rate",
        "300",
        "--malformed-every",
        "50",
        "--payment-failure-rate",
        "0",
        "--http",
        &addr,
        "--config-dir",
        config,
        "--serve",
    ];
    let brokers = std::env::var("EDDY_TEST_BOOTSTRAP").unwrap_or_default();
    if !brokers.is_empty() {
        args.extend(["--brokers", &brokers, "--suffix", &suffix]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy-orders"))
        .args(&args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut summary = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !summary
        .iter()
        .any(|l: &String| l.starts_with("  GET /orders/"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => summary.push(line),
            Err(_) => panic!("no summary: {summary:?}"),
        }
    }
    let text = summary.join("\n");
    // 150 generated, every 50th malformed: 147 valid, each with an outcome.
    assert!(
        text.contains("eddy demo: 147 valid orders, 147 outcomes"),
        "{text}"
    );
    assert!(text.contains("dead letters: 9"), "{text}");
    assert!(text.contains(": consistent"), "{text}");
    assert!(
        text.contains("latency order_created -> outcome: p50"),
        "{text}"
    );

    // The second one writes its numbers as floats (`1.0` is an integer for
    // the schema, and so for the pipeline): accepted, so processed.
    let order = json!({"user_id": "u-test", "items": [{"product_id": "product-1", "qty": 1, "unit_price": 500}]});
    let floats = json!({"user_id": "u-test", "items": [{"product_id": "product-1", "qty": 1.0, "unit_price": 500.0}]});
    for order in [&order, &floats] {
        let (status, reply) = http(http_addr, "POST", "/orders", Some(order));
        assert_eq!(status, 202, "{reply}");
        let id = reply["order_id"].as_str().unwrap().to_owned();
        common::wait_for(
            "the posted order's outcome",
            Duration::from_secs(60),
            || {
                let (status, summary) = http(http_addr, "GET", &format!("/orders/{id}"), None);
                status == 200 && summary["value"]["status"] == "completed"
            },
        );
        let (_, summary) = http(http_addr, "GET", &format!("/orders/{id}"), None);
        assert_eq!(summary["value"]["amount"], 500);
        assert_eq!(summary["value"]["paid"], true);
    }
    // Beyond the contract's bound: refused at once, never accepted.
    let mut huge = order.clone();
    huge["items"][0]["unit_price"] = json!(1e300);
    let (status, reply) = http(http_addr, "POST", "/orders", Some(&huge));
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("unit_price"),
        "{reply}"
    );

    let mut bad = order.clone();
    bad["items"][0]["qty"] = json!(0);
    let (status, reply) = http(http_addr, "POST", "/orders", Some(&bad));
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"],
        "at /items/0/qty: 0 is less than the minimum of 1"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
}
