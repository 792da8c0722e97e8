//! Spans exported over OTLP/HTTP: a worker whose records take two hops
//! (the input, then a repartition topic) sends one span per hop to a
//! stand-in collector, with the ids its records carry; with the collector
//! unreachable, every record is still processed and every span is counted
//! as dropped.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{cluster, unique, TestCluster};
use eddy::kafka::StreamsConfig;
use eddy::observability::{Metrics, TraceContext, TRACEPARENT};
use eddy::runtime::{KafkaStreams, RunningStreams};
use eddy::serde::StringSerde;
use eddy::testing::{free_addr, CollectedSpan, Consumed, OtlpCollector};
use eddy::topology::StreamsBuilder;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

const RECORDS: usize = 60;
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// in -> upper-case -> by-value repartition -> out, exporting spans to
/// `endpoint`.
fn start(c: &TestCluster, u: &str, endpoint: &str) -> RunningStreams {
    let b = StreamsBuilder::new();
    b.stream(&format!("in-{u}"), StringSerde, StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .select_key(|_k: &String, v: &String| v.clone())
        .repartition("by-value", StringSerde, StringSerde)
        .to(&format!("out-{u}"), StringSerde, StringSerde);
    let mut config = StreamsConfig::new(&format!("spans-{u}"))
        .commit_interval(Duration::from_millis(200))
        .otlp_endpoint(endpoint);
    config.embedded_partitions = 2;
    let streams = match c.embedded() {
        Some(e) => KafkaStreams::new(b.build().unwrap(), config).embedded_cluster(e),
        None => KafkaStreams::new(b.build().unwrap(), config.bootstrap_servers(&c.bootstrap)),
    };
    streams.start().unwrap()
}

/// Produces `RECORDS` records: a third with the caller's context, a third
/// with a malformed one, a third with none.
fn produce(c: &TestCluster, topic: &str) {
    let producer = c.producer();
    for i in 0..RECORDS {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let mut record = BaseRecord::<str, str>::to(topic).key(&key).payload(&value);
        let header = match i % 3 {
            0 => Some(CALLER),
            1 => Some("00-garbage"),
            _ => None,
        };
        if let Some(h) = header {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TRACEPARENT,
                value: Some(h),
            }));
        }
        eddy::kafka::send_blocking(&producer, record).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Runs the worker over `RECORDS` records with spans sent to `endpoint`
/// until every output is read, then closes it (which sends the queued
/// spans): its metrics and the outputs.
fn run(prefix: &str, endpoint: &str) -> (String, Arc<Metrics>, Vec<Consumed>) {
    let c = cluster();
    let u = unique(prefix);
    c.create_topic(&format!("in-{u}"), 2);
    c.create_topic(&format!("out-{u}"), 2);
    let worker = start(&c, &u, endpoint);
    produce(&c, &format!("in-{u}"));
    let out = c.consume_count(
        &format!("out-{u}"),
        RECORDS,
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    assert_eq!(out.len(), RECORDS);
    let metrics = worker.metrics().clone();
    worker.close().unwrap();
    (u, metrics, out)
}

fn context(r: &Consumed) -> TraceContext {
    TraceContext::parse(r.headers.last(TRACEPARENT).expect("a traceparent")).expect("valid")
}

#[test]
fn every_hop_is_a_span_with_the_ids_its_records_carry() {
    let collector = OtlpCollector::start();
    let (u, _, out) = run("spans", &collector.endpoint());
    let spans: HashMap<u64, CollectedSpan> = collector
        .spans()
        .into_iter()
        .map(|s| (s.span_id, s))
        .collect();
    assert_eq!(spans.len(), 2 * RECORDS, "one span per hop: {spans:#?}");
    let caller = TraceContext::parse(CALLER.as_bytes()).unwrap();
    let repartition = format!("spans-{u}-by-value-repartition");
    let mut continued = 0;
    for r in &out {
        // The output carries the second hop's span: it read the
        // repartition topic, a child of the first hop, which read the input.
        let ctx = context(r);
        let second = &spans[&ctx.span_id];
        assert_eq!(second.trace_id, ctx.trace_id);
        assert_eq!(second.name, format!("process {repartition}"));
        assert_eq!(second.attributes["messaging.destination.name"], repartition);
        assert_eq!(second.service, format!("spans-{u}"));
        assert_eq!(second.kind, 5, "a consumer span");
        let first = &spans[&second.parent.expect("the second hop has a parent")];
        assert_eq!(first.trace_id, ctx.trace_id);
        assert_eq!(first.name, format!("process in-{u}"));
        assert!(first.time.0 <= first.time.1 && first.time.1 <= second.time.1);
        assert_eq!(first.attributes["messaging.system"], "kafka");
        let partition: i32 = first.attributes["messaging.destination.partition.id"]
            .parse()
            .unwrap();
        assert!((0..2).contains(&partition));
        assert_eq!(first.attributes["eddy.task"], format!("0_{partition}"));
        if ctx.trace_id == caller.trace_id {
            assert_eq!(first.parent, Some(caller.span_id));
            continued += 1;
        } else {
            assert_eq!(first.parent, None, "a new trace starts at the first hop");
        }
    }
    assert_eq!(continued, RECORDS / 3);
}

#[test]
fn an_unreachable_collector_costs_no_record_and_every_span_is_counted() {
    let nobody = format!("http://{}", free_addr());
    let (_, metrics, _) = run("nospans", &nobody);
    assert_eq!(metrics.total("eddy_trace_spans_exported_total"), 0);
    assert_eq!(
        metrics.total("eddy_trace_spans_dropped_total"),
        2 * RECORDS as u64,
        "{}",
        metrics.encode()
    );
}
