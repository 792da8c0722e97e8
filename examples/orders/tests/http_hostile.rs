//! Hostile HTTP clients: oversized, malformed and mistyped bodies, unsafe
//! or repeated order ids, and connections that never finish their request.
//! The server's own limits are tested in-process on
//! [`HttpServer::start_with`]; `POST /orders` on an `eddy demo --serve`
//! process.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use eddy::observability::{HttpLimits, HttpServer, JsonBody, Metrics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

/// A body over every limit: 1.9 MB of JSON.
fn huge_order() -> Vec<u8> {
    let filler = "x".repeat(1_900_000);
    json!({"user_id": filler, "items": [{"product_id": "product-1", "qty": 1, "unit_price": 1}]})
        .to_string()
        .into_bytes()
}

fn order(id: Option<&str>) -> Value {
    let mut order = json!({"user_id": "u-hostile", "items": [{"product_id": "product-1", "qty": 1, "unit_price": 500}]});
    if let Some(id) = id {
        order["order_id"] = json!(id);
    }
    order
}

/// Sends one request (`headers` beside `Host`, `Content-Length` and
/// `Connection: close`) and returns the status and the body parsed as JSON
/// (`Null` if it is not JSON). The body is written from another thread, so
/// an answer that comes before the server read all of it is still read.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut writer = s.try_clone().unwrap();
    // The server may answer and close before reading everything: a failed
    // write is fine, the answer is what counts.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let reply = read_reply(&mut s);
    let _ = sender.join();
    let status = reply
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {reply:?}"));
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Everything the server sends until it closes (a reset after the answer
/// included).
fn read_reply(s: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut buf = [0; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if reply.is_empty() => panic!("no answer: {e}"),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

fn post_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    request(
        addr,
        "POST",
        path,
        &["Content-Type: application/json"],
        body.to_string().into_bytes(),
    )
}

/// Asserts a JSON refusal with `status` whose reason contains `reason`.
#[track_caller]
fn assert_refused(reply: (u16, Value), status: u16, reason: &str) {
    let (got, body) = reply;
    assert_eq!(got, status, "{body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error in {body}"));
    assert!(error.contains(reason), "{error:?} lacks {reason:?}");
}

/// A server with `POST /echo` reading a JSON body, within `limits`.
fn echo_server(limits: HttpLimits) -> HttpServer {
    let echo = Router::new().route(
        "/echo",
        post(|JsonBody(v): JsonBody<Value>| async move { Json(v) }),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    HttpServer::start_with(addr, Arc::new(Metrics::new()), echo, limits).unwrap()
}

#[test]
fn a_body_over_the_limit_is_413_json() {
    let server = echo_server(HttpLimits::default());
    let reply = request(
        server.addr(),
        "POST",
        "/echo",
        &["Content-Type: application/json"],
        huge_order(),
    );
    assert_refused(reply, 413, "length limit exceeded");
    // A body within the limit is read.
    let (status, body) = post_json(server.addr(), "/echo", &json!({"a": 1}));
    assert_eq!((status, body), (200, json!({"a": 1})));
}

#[test]
fn malformed_json_is_400_json() {
    let server = echo_server(HttpLimits::default());
    let malformed = |body: &str| {
        request(
            server.addr(),
            "POST",
            "/echo",
            &["Content-Type: application/json"],
            body.as_bytes().to_vec(),
        )
    };
    assert_refused(
        malformed("{not json"),
        400,
        "parse the request body as JSON",
    );
    assert_refused(malformed(""), 400, "parse the request body as JSON");
    assert_refused(
        malformed("{\"a\": 1"),
        400,
        "parse the request body as JSON",
    );
    let deep = "[".repeat(10_000);
    assert_refused(malformed(&deep), 400, "recursion limit");
}

#[test]
fn a_body_that_is_not_declared_json_is_415_json() {
    let server = echo_server(HttpLimits::default());
    let body = || b"{\"a\": 1}".to_vec();
    let addr = server.addr();
    assert_refused(
        request(addr, "POST", "/echo", &[], body()),
        415,
        "Content-Type: application/json",
    );
    assert_refused(
        request(addr, "POST", "/echo", &["Content-Type: text/plain"], body()),
        415,
        "Content-Type: application/json",
    );
}

#[test]
fn unknown_routes_and_methods_are_404_and_405_json() {
    let server = echo_server(HttpLimits::default());
    let addr = server.addr();
    assert_refused(
        request(addr, "GET", "/../../etc/passwd", &[], Vec::new()),
        404,
        "no route",
    );
    assert_refused(
        request(addr, "GET", "/nope", &[], Vec::new()),
        404,
        "no route for /nope",
    );
    assert_refused(
        request(addr, "GET", "/echo", &[], Vec::new()),
        405,
        "/echo does not serve GET",
    );
    assert_refused(
        request(addr, "DELETE", "/metrics", &[], Vec::new()),
        405,
        "/metrics does not serve DELETE",
    );
}

#[test]
fn a_body_that_never_arrives_is_408_json() {
    let server = echo_server(HttpLimits {
        request_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    });
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Promises 100 bytes, sends 2.
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\""
    )
    .unwrap();
    let reply = read_reply(&mut s);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let body: Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not complete within"));
}

/// Opens `n` connections that each send the start of a request head and
/// never finish it.
fn slow_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect()
}

/// Whether the server closed `s`: end of stream or a reset, not a read
/// timeout.
fn closed_by_server(mut s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn unfinished_request_heads_do_not_stall_other_requests() {
    // A header timeout far beyond the test: the slow clients stay open.
    let server = echo_server(HttpLimits {
        header_read_timeout: Duration::from_secs(600),
        ..HttpLimits::default()
    });
    let slow = slow_clients(server.addr(), 300);
    let (status, body) = post_json(server.addr(), "/echo", &json!({"still": "served"}));
    assert_eq!((status, body), (200, json!({"still": "served"})));
    let (status, _) = request(server.addr(), "GET", "/metrics", &[], Vec::new());
    assert_eq!(status, 200);
    // ...while they are all still open.
    assert!(!closed_by_server(&slow[0], Duration::from_millis(100)));
}

#[test]
fn unfinished_request_heads_are_closed_after_the_header_timeout() {
    let server = echo_server(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    });
    let slow = slow_clients(server.addr(), 300);
    // Generous: all of them closed within a minute of the first second.
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = slow
        .iter()
        .filter(|s| {
            let left = deadline.saturating_duration_since(Instant::now());
            !closed_by_server(s, left.max(Duration::from_millis(1)))
        })
        .count();
    assert_eq!(open, 0, "of 300 connections, still open after a minute");
    // The server serves on.
    let (status, body) = post_json(server.addr(), "/echo", &json!([1]));
    assert_eq!((status, body), (200, json!([1])));
}

#[test]
fn connections_beyond_the_limit_wait_for_a_free_one() {
    let server = echo_server(HttpLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(600),
        ..HttpLimits::default()
    });
    let mut slow = slow_clients(server.addr(), 4);
    // A fifth connection is not served while the four hold every slot...
    let mut fifth = TcpStream::connect(server.addr()).unwrap();
    fifth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 256];
    let early = fifth.read(&mut buf);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "answered beyond the connection limit: {early:?}"
    );
    // ...and is once one of them goes.
    drop(slow.pop());
    fifth
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let reply = read_reply(&mut fifth);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("ok"), "{reply}");
}

/// An `eddy demo --serve` process with a few generated orders, once it
/// printed its summary.
struct Demo {
    child: Child,
    http: SocketAddr,
    bootstrap: String,
    orders_topic: String,
}

impl Demo {
    fn start() -> Demo {
        let http = common::free_addr();
        let suffix = common::unique("hostile");
        let brokers = std::env::var("EDDY_TEST_BOOTSTRAP").unwrap_or_default();
        let mut child =
            common::demo_command(http, &suffix, &["--count", "5", "--malformed-every", "0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        // The embedded cluster's address is on the first line of stderr.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once("the embedded cluster at ") {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("  GET /orders/") {
                    let _ = done_tx.send(());
                }
            }
        });
        let mut demo = Demo {
            child,
            http,
            bootstrap: brokers.clone(),
            orders_topic: "orders".into(),
        };
        if brokers.is_empty() {
            demo.bootstrap = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("the demo names its embedded cluster");
        } else {
            demo.orders_topic = format!("orders-{suffix}");
        }
        done_rx
            .recv_timeout(Duration::from_secs(180))
            .expect("the demo prints its summary");
        demo
    }

    /// How many records of the orders topic have key `id`, reading to the
    /// end offsets of now.
    fn records_with_key(&self, id: &str) -> usize {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", common::unique("hostile-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&self.orders_topic), timeout)
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in metadata.topics()[0].partitions() {
            let (_, high) = consumer
                .fetch_watermarks(&self.orders_topic, p.id(), timeout)
                .unwrap();
            tpl.add_partition_offset(&self.orders_topic, p.id(), Offset::Beginning)
                .unwrap();
            ends.push((p.id(), high));
        }
        consumer.assign(&tpl).unwrap();
        let mut read: std::collections::HashMap<i32, i64> = Default::default();
        let mut found = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while ends
            .iter()
            .any(|(p, high)| read.get(p).map_or(0, |o| o + 1) < *high)
        {
            assert!(
                Instant::now() < deadline,
                "could not read {}",
                self.orders_topic
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                read.insert(m.partition(), m.offset());
                found += usize::from(m.key() == Some(id.as_bytes()));
            }
        }
        found
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_orders_refuses_hostile_bodies_with_json() {
    let demo = Demo::start();
    let addr = demo.http;
    let json = &["Content-Type: application/json"];
    // 1. Too large: refused before it reaches the producer.
    assert_refused(
        request(addr, "POST", "/orders", json, huge_order()),
        413,
        "request body over the 524288 byte limit",
    );
    // A body under the limit that grows into a record over Kafka's.
    // (`1e9` is written out again as `1000000000.0`.)
    let order_json = order(None).to_string();
    let padding = vec!["1e9"; 120_000].join(",");
    let growing = format!(
        "{},\"padding\":[{padding}]}}",
        &order_json[..order_json.len() - 1]
    );
    let growing = growing.into_bytes();
    assert!(growing.len() < 512 * 1024);
    assert_refused(
        request(addr, "POST", "/orders", json, growing),
        413,
        "over the 1000000 byte limit",
    );
    // 2. Malformed JSON, a missing or wrong content type, a wrong method.
    assert_refused(
        request(addr, "POST", "/orders", json, b"{not json".to_vec()),
        400,
        "parse the request body as JSON",
    );
    let body = || order(None).to_string().into_bytes();
    assert_refused(
        request(addr, "POST", "/orders", &[], body()),
        415,
        "Content-Type: application/json",
    );
    assert_refused(
        request(
            addr,
            "POST",
            "/orders",
            &["Content-Type: text/plain"],
            body(),
        ),
        415,
        "Content-Type: application/json",
    );
    assert_refused(
        request(addr, "PUT", "/orders", json, body()),
        405,
        "/orders does not serve PUT",
    );
    assert_refused(
        request(addr, "GET", "/no/such/route", &[], Vec::new()),
        404,
        "no route",
    );
    // The schema's refusals are JSON as before.
    let mut bad = order(None);
    bad["items"][0]["qty"] = json!(0);
    assert_refused(post_json(addr, "/orders", &bad), 400, "at /items/0/qty");
    // 3. Order ids a client chooses.
    let rule = "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";
    for id in [
        "../../../etc/passwd",
        "a b",
        "ä",
        &"x".repeat(65),
        &"x".repeat(100_000),
    ] {
        let reply = post_json(addr, "/orders", &order(Some(id)));
        assert_refused(reply, 400, &format!("at /order_id: {rule}"));
    }
    for id in [json!(""), json!(7), json!(null)] {
        let mut odd = order(None);
        odd["order_id"] = id;
        assert_refused(post_json(addr, "/orders", &odd), 400, "at /order_id");
    }
    let mut evil_product = order(None);
    evil_product["items"][0]["product_id"] = json!("../stock");
    let reply = post_json(addr, "/orders", &evil_product);
    assert_refused(reply, 400, &format!("at /items/0/product_id: {rule}"));
    let mut many = order(None);
    many["items"] = json!(vec![order(None)["items"][0].clone(); 101]);
    assert_refused(post_json(addr, "/orders", &many), 400, "at most 100 items");
    // After all that, orders are still taken.
    let (status, reply) = post_json(addr, "/orders", &order(Some(&"x".repeat(64))));
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn demo_orders_repeated_id_is_answered_once_and_emitted_once() {
    let demo = Demo::start();
    let addr = demo.http;
    let id = format!("hostile-{}", std::process::id());
    let (status, reply) = post_json(addr, "/orders", &order(Some(&id)));
    assert_eq!((status, &reply), (202, &json!({"order_id": id})));
    // The same id again, even with another body: nothing new emitted.
    let mut changed = order(Some(&id));
    changed["items"][0]["qty"] = json!(3);
    for again in [order(Some(&id)), changed] {
        let (status, reply) = post_json(addr, "/orders", &again);
        assert_eq!(
            (status, &reply),
            (200, &json!({"order_id": id, "duplicate": true}))
        );
    }
    // A generated order's id counts too.
    let (status, reply) = post_json(addr, "/orders", &order(Some("order-1-0")));
    assert_eq!(
        (status, &reply),
        (200, &json!({"order_id": "order-1-0", "duplicate": true}))
    );
    // Every answer came after the broker acknowledged what was sent, so
    // the topic's end offsets of now include any duplicate.
    assert_eq!(demo.records_with_key(&id), 1);
    assert_eq!(demo.records_with_key("order-1-0"), 1);
    // Ids made up by the server are new each time.
    let (s1, r1) = post_json(addr, "/orders", &order(None));
    let (s2, r2) = post_json(addr, "/orders", &order(None));
    assert_eq!((s1, s2), (202, 202), "{r1} {r2}");
    assert_ne!(r1["order_id"], r2["order_id"]);
}
