//! W3C trace context through a topology (test driver, no broker): off, the
//! headers pass untouched; on, every hop (a source reading a record) is a
//! new span of the record's trace, and what it writes carries that span.

use eddy::observability::{TraceContext, TRACEPARENT, TRACESTATE};
use eddy::processor::{Headers, Record};
use eddy::serde::StringSerde;
use eddy::testing::{DriverConfig, TestTopic, TopologyTestDriver};
use eddy::topology::StreamsBuilder;

const CALLER: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// in -> upper-case -> by-value repartition -> out.
fn driver(trace_sample_ratio: Option<f64>) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .select_key(|_k: &String, v: &String| v.clone())
        .repartition("by-value", StringSerde, StringSerde)
        .to("out", StringSerde, StringSerde);
    let config = DriverConfig {
        trace_sample_ratio,
        ..DriverConfig::default()
    };
    TopologyTestDriver::with_config(b.build().unwrap(), config)
}

fn input() -> TestTopic<String, String> {
    TestTopic::new("in", StringSerde, StringSerde)
}

fn pipe(d: &mut TopologyTestDriver, headers: &[(&str, &[u8])]) {
    let mut h = Headers::new();
    for (k, v) in headers {
        h.add(*k, *v);
    }
    let mut record = Record::new("k".to_owned(), "v".to_owned(), 1_000);
    record.headers = h;
    d.pipe_record(&input(), record).unwrap();
}

/// The trace context of every record written to `topic`.
fn contexts(d: &mut TopologyTestDriver, topic: &str) -> Vec<TraceContext> {
    d.read_raw(topic)
        .iter()
        .map(|r| {
            let values: Vec<_> = r.headers.iter().filter(|h| h.key == TRACEPARENT).collect();
            assert_eq!(
                values.len(),
                1,
                "one traceparent on {topic}: {:?}",
                r.headers
            );
            TraceContext::parse(values[0].value.as_deref().unwrap()).expect("a valid traceparent")
        })
        .collect()
}

#[test]
fn without_tracing_headers_pass_untouched() {
    let mut d = driver(None);
    pipe(&mut d, &[(TRACEPARENT, CALLER), (TRACESTATE, b"k=v")]);
    pipe(&mut d, &[]);
    let out = d.read_raw("out");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].headers.last(TRACEPARENT), Some(CALLER));
    assert_eq!(out[0].headers.last(TRACESTATE), Some(&b"k=v"[..]));
    assert!(out[1].headers.is_empty());
}

#[test]
fn each_hop_is_a_new_span_of_the_callers_trace() {
    let mut d = driver(Some(0.0));
    pipe(&mut d, &[(TRACEPARENT, CALLER), (TRACESTATE, b"k=v")]);
    let caller = TraceContext::parse(CALLER).unwrap();
    let first = contexts(&mut d, "test-app-by-value-repartition");
    let out = d.read_raw("out");
    assert_eq!((first.len(), out.len()), (1, 1));
    let first = first[0];
    let second = TraceContext::parse(out[0].headers.last(TRACEPARENT).unwrap()).unwrap();
    // The same trace and sampling decision (the caller's, not the ratio's).
    for hop in [first, second] {
        assert_eq!((hop.trace_id, hop.sampled), (caller.trace_id, true));
    }
    // Three spans: the caller's, the hop that read `in`, the hop that read
    // the repartition topic.
    assert_ne!(first.span_id, caller.span_id);
    assert_ne!(second.span_id, first.span_id);
    assert_ne!(second.span_id, caller.span_id);
    // The vendor state goes along with a valid context.
    assert_eq!(out[0].headers.last(TRACESTATE), Some(&b"k=v"[..]));
}

#[test]
fn a_record_without_a_valid_context_starts_a_trace_sampled_at_the_ratio() {
    let mut d = driver(Some(1.0));
    pipe(&mut d, &[]);
    pipe(
        &mut d,
        &[(TRACEPARENT, b"00-zz-not-valid"), (TRACESTATE, b"k=v")],
    );
    pipe(&mut d, &[(TRACEPARENT, b"")]);
    let out = d.read_raw("out");
    let traces = contexts(&mut d, "test-app-by-value-repartition");
    let outs: Vec<TraceContext> = out
        .iter()
        .map(|r| TraceContext::parse(r.headers.last(TRACEPARENT).unwrap()).unwrap())
        .collect();
    assert_eq!((traces.len(), outs.len()), (3, 3));
    for (first, second) in traces.iter().zip(&outs) {
        assert!(first.sampled && second.sampled);
        assert_eq!(
            first.trace_id, second.trace_id,
            "one trace through both hops"
        );
        assert_ne!(first.span_id, second.span_id);
    }
    assert_ne!(
        traces[0].trace_id, traces[1].trace_id,
        "a new trace per record"
    );
    // The malformed context's state is dropped with it.
    assert_eq!(out[1].headers.last(TRACESTATE), None);

    let mut never = driver(Some(0.0));
    pipe(&mut never, &[]);
    assert!(!contexts(&mut never, "out")[0].sampled);
}
