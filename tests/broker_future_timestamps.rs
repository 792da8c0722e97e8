//! Records from the future: a timestamp far ahead of the wall clock is
//! dead-lettered before it can move stream time, and with no bound a record
//! whose output the broker would refuse for its timestamp is dead-lettered
//! instead of stopping the worker (which, restarted, would read it and stop
//! again).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{cluster, unique, TestCluster};
use eddy::kafka::StreamsConfig;
use eddy::processor::{InvalidTimestamp, TimestampExtractor};
use eddy::runtime::{dlq_headers, KafkaStreams, RunningStreams};
use eddy::serde::StringSerde;
use eddy::topology::StreamsBuilder;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn setup(c: &TestCluster, app: &str) -> (String, String) {
    let (input, output) = (unique("fin"), unique("fout"));
    c.create_topic(&input, 2);
    c.create_topic(&output, 2);
    c.create_topic(&format!("{app}-dlq"), 1);
    (input, output)
}

/// Event time comes from the value's `at` field, as the order pipeline's
/// comes from `created_at`: the record timestamps are all "now", which the
/// broker accepts; two values claim to be from the future.
fn records(now: i64) -> Vec<(String, String, i64)> {
    [
        ("a", "before", now - 1_000),
        ("b", "two-hours-ahead", now + 2 * 3_600_000),
        ("c", "thirty-minutes-ahead", now + 30 * 60_000),
        ("a", "after", now),
    ]
    .into_iter()
    .map(|(k, v, at)| (k.into(), format!(r#"{{"v":"{v}","at":{at}}}"#), now))
    .collect()
}

/// Upper-cases `v` and writes it with the event time of `at`.
fn start(
    c: &TestCluster,
    app: &str,
    input: &str,
    output: &str,
    bound: Option<Duration>,
) -> RunningStreams {
    let b = StreamsBuilder::new();
    let at = TimestampExtractor::JsonField {
        field: "at".into(),
        on_invalid: InvalidTimestamp::Fail,
    };
    b.stream_with(input, StringSerde, StringSerde, at)
        .map_values(|v: String| {
            let json: serde_json::Value = serde_json::from_str(&v).unwrap();
            json["v"].as_str().unwrap().to_uppercase()
        })
        .to(output, StringSerde, StringSerde);
    let config = StreamsConfig::new(app)
        .bootstrap_servers(&c.bootstrap)
        .commit_interval(Duration::from_millis(300))
        .max_future_timestamp(bound);
    KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .unwrap()
}

fn values(records: &[common::Consumed]) -> Vec<String> {
    let mut v: Vec<_> = records.iter().map(|r| r.value_str()).collect();
    v.sort();
    v
}

#[test]
fn records_beyond_the_future_bound_are_dead_lettered_and_the_rest_flows() {
    let c = cluster();
    let app = unique("future");
    let (input, output) = setup(&c, &app);
    let w = start(&c, &app, &input, &output, Some(Duration::from_secs(60)));
    c.produce_at(&input, &records(now_ms()));
    let out = c.consume_count(&output, 2, Duration::from_secs(60), Duration::from_secs(2));
    assert_eq!(values(&out), ["AFTER", "BEFORE"]);
    let dead = c.consume_count(
        &format!("{app}-dlq"),
        2,
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    for r in &dead {
        let m = r.header(dlq_headers::MESSAGE).unwrap();
        assert_eq!(
            r.header(dlq_headers::EXCEPTION).as_deref(),
            Some("timestamp")
        );
        assert!(
            m.contains("ahead of the wall clock, beyond the bound of 60000 ms"),
            "{m}"
        );
    }
    let dead: Vec<_> = values(&dead)
        .into_iter()
        .map(|v| {
            serde_json::from_str::<serde_json::Value>(&v).unwrap()["v"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(dead, ["thirty-minutes-ahead", "two-hours-ahead"]);
    assert_eq!(
        w.metrics()
            .total("eddy_task_future_timestamp_records_total"),
        2
    );
    w.close().unwrap();
}

#[test]
fn an_output_the_broker_refuses_for_its_timestamp_is_dead_lettered_and_the_worker_goes_on() {
    let c = cluster();
    if c.is_embedded() {
        // The embedded cluster does not check timestamps.
        return;
    }
    let app = unique("future-refused");
    let (input, output) = setup(&c, &app);
    // No bound: the two-hour record reaches the sink with its event time,
    // which Kafka 4 would refuse (log.message.timestamp.after.max.ms is 1 h).
    let w = start(&c, &app, &input, &output, None);
    c.produce_at(&input, &records(now_ms()));
    let out = c.consume_count(&output, 3, Duration::from_secs(60), Duration::from_secs(2));
    assert_eq!(values(&out), ["AFTER", "BEFORE", "THIRTY-MINUTES-AHEAD"]);
    let dead = c.consume_count(
        &format!("{app}-dlq"),
        1,
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    assert_eq!(dead.len(), 1);
    // The input record is dead-lettered, before its output reaches the
    // broker: the other records of its produce batch are not refused with
    // it.
    let d = &dead[0];
    assert!(
        d.value_str().contains(r#""v":"two-hours-ahead""#),
        "{}",
        d.value_str()
    );
    assert_eq!(
        d.header(dlq_headers::EXCEPTION).as_deref(),
        Some("production")
    );
    assert_eq!(
        d.header(dlq_headers::TOPIC).as_deref(),
        Some(input.as_str())
    );
    let m = d.header(dlq_headers::MESSAGE).unwrap();
    assert!(
        m.contains(&output)
            && m.contains("more than 3600000 ms ahead")
            && m.contains("message.timestamp.after.max.ms"),
        "{m}"
    );
    // Still running and processing.
    let now = now_ms();
    c.produce_at(
        &input,
        &[("z".into(), format!(r#"{{"v":"later","at":{now}}}"#), now)],
    );
    let out = c.consume_count(&output, 4, Duration::from_secs(60), Duration::ZERO);
    assert!(out.iter().any(|r| r.value_str() == "LATER"));
    w.close().unwrap();
}

#[test]
fn the_sink_topics_own_timestamp_limit_is_read_at_start() {
    let c = cluster();
    if c.is_embedded() {
        return;
    }
    let app = unique("future-topic-limit");
    let (input, output) = (unique("fin"), unique("fout"));
    c.create_topic(&input, 2);
    // This topic accepts timestamps at most 10 minutes ahead.
    c.create_topic_with(&output, 2, &[("message.timestamp.after.max.ms", "600000")]);
    c.create_topic(&format!("{app}-dlq"), 1);
    let w = start(&c, &app, &input, &output, None);
    c.produce_at(&input, &records(now_ms()));
    let out = c.consume_count(&output, 2, Duration::from_secs(60), Duration::from_secs(2));
    assert_eq!(values(&out), ["AFTER", "BEFORE"]);
    let dead = c.consume_count(
        &format!("{app}-dlq"),
        2,
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    let mut refused: Vec<_> = dead
        .iter()
        .map(|d| {
            assert_eq!(
                d.header(dlq_headers::EXCEPTION).as_deref(),
                Some("production")
            );
            let m = d.header(dlq_headers::MESSAGE).unwrap();
            assert!(m.contains("more than 600000 ms ahead"), "{m}");
            let v: serde_json::Value = serde_json::from_str(&d.value_str()).unwrap();
            v["v"].as_str().unwrap().to_owned()
        })
        .collect();
    refused.sort();
    assert_eq!(refused, ["thirty-minutes-ahead", "two-hours-ahead"]);
    w.close().unwrap();
}
