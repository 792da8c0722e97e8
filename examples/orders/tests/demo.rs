//! `eddy demo`, the README's main job: the order pipeline runs to a
//! consistent summary, then serves `POST /orders` and `GET /orders/{id}`;
//! an order posted with trace context is one trace across the services.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::collections::{BTreeSet, HashMap};

use eddy::observability::{TraceContext, TRACEPARENT};
use eddy::testing::{CollectedSpan, OtlpCollector};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, _, body) = exchange(addr, method, path, "", body);
    (status, body)
}

/// One request with `headers` (`name: value\r\n` lines): the status, the
/// response's head and its JSON body.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let (status, head, body) = common::exchange(addr, method, path, headers, body);
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// The lines `output` (a child's stdout or stderr) writes, as they come.
fn lines(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

#[test]
fn demo_runs_to_a_consistent_summary_and_serves_orders() {
    let http_addr = common::free_addr();
    let args = [
        "--count",
        "150",
        "--rate",
        "300",
        "--malformed-every",
        "50",
        "--payment-failure-rate",
        "0",
    ];
    let mut child = common::demo_command(http_addr, &common::unique("demo"), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(child.stdout.take().unwrap());
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

/// Every record of `topic` (all partitions, from the beginning to the end
/// at the time of the call): (partition, offset, key, traceparent).
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(i32, i64, String, Option<TraceContext>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", common::unique("trace-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        left += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while left > 0 {
        assert!(
            Instant::now() < deadline,
            "{topic}: {left} records not read"
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        left -= 1;
        let ctx = m.headers().and_then(|h| {
            h.iter()
                .filter(|h| h.key == TRACEPARENT)
                .last()
                .and_then(|h| TraceContext::parse(h.value?))
        });
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        records.push((m.partition(), m.offset(), key, ctx));
    }
    records
}

/// An order posted to the demo with a caller's `traceparent` is one trace
/// from `POST /orders` to its notification across the four services
/// (through the payment gateway's and the webhook's calls): every record
/// it causes carries it, each hop's span (exported to a collector) has as
/// parent the span of the record it read, and the spans cover the API and
/// the four services.
#[test]
fn one_order_is_one_trace_across_the_four_services() {
    let collector = OtlpCollector::start();
    let http_addr = common::free_addr();
    let addr = http_addr.to_string();
    let endpoint = collector.endpoint();
    let suffix = common::unique("trace");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut args = vec![
        "demo",
        "--count",
        "10",
        "--rate",
        "100",
        "--malformed-every",
        "0",
        "--payment-failure-rate",
        "0",
        "--http",
        &addr,
        "--config-dir",
        config,
        "--suffix",
        &suffix,
        "--otlp-endpoint",
        &endpoint,
        "--serve",
    ];
    let brokers = std::env::var("EDDY_TEST_BOOTSTRAP").unwrap_or_default();
    if !brokers.is_empty() {
        args.extend(["--brokers", &brokers]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy-orders"))
        .args(&args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(child.stderr.take().unwrap());
    // The cluster's address (the embedded one's is printed), then the
    // summary of the generated orders.
    let mut bootstrap = brokers.clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("the demo serves");
        if let Some(rest) = line.split("the embedded cluster at ").nth(1) {
            bootstrap = rest.split(' ').next().unwrap().to_owned();
        }
        if line.starts_with("serving until Ctrl-C") {
            break;
        }
    }

    let caller = TraceContext::root(true);
    let order = json!({"order_id": format!("traced-{suffix}"), "user_id": "u-trace",
        "items": [{"product_id": "product-2", "qty": 1, "unit_price": 700}]});
    let id = order["order_id"].as_str().unwrap().to_owned();
    let (status, reply, traceparent) = post_traced(http_addr, &order, &caller);
    assert_eq!(status, 202, "{reply}");
    let api = TraceContext::parse(traceparent.as_bytes()).expect("a traceparent answered");
    assert_eq!(api.trace_id, caller.trace_id);
    common::wait_for("the order's outcome", Duration::from_secs(60), || {
        let (status, summary) = http(http_addr, "GET", &format!("/orders/{id}"), None);
        status == 200 && summary["value"]["status"] == "completed"
    });

    // Every record of the order, on its way through the pipeline's topics.
    let topic = |t: &str| format!("{t}-{suffix}");
    let mut ours = Vec::new();
    for t in [
        "orders",
        "payments",
        "inventory",
        "order-outcomes",
        "notifications",
    ] {
        for (partition, offset, key, ctx) in read_topic(&bootstrap, &topic(t)) {
            if key == id {
                let ctx = ctx.unwrap_or_else(|| panic!("{t}/{partition}@{offset} has no trace"));
                assert_eq!(ctx.trace_id, caller.trace_id, "{t}/{partition}@{offset}");
                ours.push((t, ctx));
            }
        }
    }
    let kinds: Vec<&str> = ours.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        kinds,
        [
            "orders",
            "payments",
            "inventory",
            "order-outcomes",
            "notifications"
        ],
        "one record per topic for one completed order"
    );
    assert_eq!(
        ours[0].1.span_id, api.span_id,
        "the order carries the API's span"
    );
    // The spans of every record arrive (sent every half second).
    let spans = || -> HashMap<u64, CollectedSpan> {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == caller.trace_id)
            .map(|s| (s.span_id, s))
            .collect()
    };
    common::wait_for(
        "the spans of the order's records",
        Duration::from_secs(30),
        || {
            let spans = spans();
            ours.iter().all(|(_, ctx)| spans.contains_key(&ctx.span_id))
        },
    );
    let spans = spans();
    let post = &spans[&api.span_id];
    assert_eq!(
        (post.name.as_str(), post.kind, post.parent),
        ("POST /orders", 2, Some(caller.span_id))
    );
    assert_eq!(post.service, topic("orders-api"));
    // Each hop's parent is the span of the record it read, wherever that
    // was (an input topic, or a service's own repartition topic).
    let mut services = BTreeSet::new();
    for s in spans.values() {
        services.insert(s.service.clone());
        if s.kind != 5 {
            continue;
        }
        let read = &s.attributes["messaging.destination.name"];
        let partition: i32 = s.attributes["messaging.destination.partition.id"]
            .parse()
            .unwrap();
        let offset: i64 = s.attributes["messaging.kafka.offset"].parse().unwrap();
        let records = read_topic(&bootstrap, read);
        let (.., ctx) = records
            .iter()
            .find(|(p, o, ..)| (*p, *o) == (partition, offset))
            .unwrap_or_else(|| panic!("{read}/{partition}@{offset} read by {s:?}"));
        let ctx = ctx.expect("the record read carries the trace");
        assert_eq!(ctx.trace_id, caller.trace_id);
        assert_eq!(
            s.parent,
            Some(ctx.span_id),
            "{s:?} read {read}/{partition}@{offset}"
        );
    }
    let expected: BTreeSet<String> = [
        "orders-api",
        "payment-service",
        "inventory-service",
        "order-saga",
        "notification-service",
    ]
    .into_iter()
    .map(topic)
    .collect();
    assert_eq!(services, expected);
    // The outcome was written by the saga's hop.
    let outcome = &spans[&ours[3].1.span_id];
    assert_eq!(
        (outcome.service.clone(), outcome.kind),
        (topic("order-saga"), 5)
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
}

/// `POST /orders` with the caller's `traceparent`: status, body, and the
/// `traceparent` answered.
fn post_traced(addr: SocketAddr, body: &Value, caller: &TraceContext) -> (u16, Value, String) {
    let parent = String::from_utf8(caller.header_value().to_vec()).unwrap();
    let headers = format!("traceparent: {parent}\r\n");
    let (status, head, body) = exchange(addr, "POST", "/orders", &headers, Some(body));
    let traceparent = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_default()
        .to_owned();
    (status, body, traceparent)
}
