//! JSON logs of a traced worker (`eddy run --json-logs`) carry, for a
//! record sent to the dead-letter topic, the trace and span it belongs to,
//! the application, the task and the event type.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{cluster, unique};
use eddy::kafka::send_blocking;
use eddy::observability::{TraceContext, TRACEPARENT};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::Value;

const FILE: &str = r#"
[application]
id = "logs"
trace_sample_ratio = 1.0
commit_interval = "200ms"

[topics.in]

[topics.out]

[nodes.in]
op = "source"
topic = "in"

[nodes.total]
op = "map"
input = "in"
value = "value.qty * value.price"

[nodes.out]
op = "sink"
input = "total"
topic = "out"
"#;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn dead_letter_logs_name_the_trace_span_application_task_and_event_type() {
    let c = cluster();
    let u = unique("logs");
    let app = format!("logs-{u}");
    for t in [format!("in-{u}"), format!("out-{u}"), format!("{app}-dlq")] {
        c.create_topic(&t, 1);
    }
    let dir = std::env::temp_dir().join(&u);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("logs.toml");
    std::fs::write(&file, FILE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--json-logs", "run", "--config", file.to_str().unwrap()])
        .args(["--brokers", &c.bootstrap, "--suffix", &u])
        .env("RUST_LOG", "eddy=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let producer = c.producer();
    let traced = || {
        OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some(CALLER),
        })
    };
    let input = format!("in-{u}");
    for (value, headers) in [
        // Not JSON: refused by the source, before its hop.
        ("not json", Some(traced())),
        // No qty: the expression fails inside the hop.
        (r#"{"type":"order_created","price":3}"#, Some(traced())),
        // No trace context: a new trace.
        (r#"{"type":"order_paid","price":3}"#, None),
        (
            r#"{"type":"order_created","qty":2,"price":3}"#,
            Some(traced()),
        ),
    ] {
        let mut record = BaseRecord::<str, str>::to(&input).key("k").payload(value);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        send_blocking(&producer, record).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let mut dead_letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dead_letters.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("three dead-letter log lines");
        let Ok(json) = serde_json::from_str::<Value>(&line) else {
            panic!("a log line that is not JSON: {line}");
        };
        let fields = &json["fields"];
        if fields["message"]
            .as_str()
            .is_some_and(|m| m.contains("sent to the dead-letter topic"))
        {
            dead_letters.push(fields.clone());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let caller = TraceContext::parse(CALLER.as_bytes()).unwrap();
    let trace = caller.trace_id_hex();
    for f in &dead_letters {
        assert_eq!(f["application"], app.as_str(), "{f}");
        assert_eq!(f["task"], "0_0", "{f}");
        assert_eq!(f["topic"], input.as_str(), "{f}");
    }
    let [undecodable, failed, untraced] = &dead_letters[..] else {
        unreachable!()
    };
    // Refused before its hop: the span that wrote it.
    assert_eq!(undecodable["trace_id"], trace.as_str());
    assert_eq!(undecodable["span_id"], caller.span_id_hex().as_str());
    assert_eq!(undecodable["event_type"], Value::Null);
    // Failed in its hop: the hop's own span, in the caller's trace.
    assert_eq!(failed["trace_id"], trace.as_str());
    let span = failed["span_id"].as_str().unwrap();
    assert!(span.len() == 16 && span != caller.span_id_hex(), "{failed}");
    assert_eq!(failed["event_type"], "order_created");
    // Without context: the new trace its hop started.
    let new_trace = untraced["trace_id"].as_str().unwrap();
    assert!(new_trace.len() == 32 && new_trace != trace, "{untraced}");
    assert_eq!(untraced["event_type"], "order_paid");
    let _ = std::fs::remove_dir_all(&dir);
}
