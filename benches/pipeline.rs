//! End to end, stateless: one stream thread consuming 100-byte records,
//! filtering and upper-casing them, producing the results, and committing;
//! beside a raw librdkafka consume-then-produce loop doing the same work on
//! the same input in the same run (the yardstick).
//!
//! Runs against the broker in `EDDY_TEST_BOOTSTRAP` (else an embedded one).
//! Each side is timed from its first consumed record to its final
//! acknowledged flush and offset commit, so group joins are not counted.
//! Rounds alternate raw/eddy to spread machine noise over both.
//!
//! The cost of tracing, in the same rounds: eddy with trace context in
//! every record (100 % sampled), and with every hop's span exported to a
//! collector (a stand-in that takes the requests without decoding them).
//! The cost of node metrics: eddy (node metrics on, the default) beside
//! eddy with them off.
//!
//! `EDDY_BENCH_RECORDS` (default 1 000 000), `EDDY_BENCH_ROUNDS` (default 3),
//! `EDDY_BENCH_PARTITIONS` (default 4), `EDDY_BENCH_ONLY=<0..6>` (one
//! variant alone: raw, eddy, traced, spans, raw with a header, spans of
//! 10 % of the traces, node metrics off).

mod common;

use std::time::Duration;

use eddy::kafka::StreamsConfig;
use eddy::serde::{BytesSerde, Nullable};
use eddy::testing::{unique, OtlpCollector, TestCluster};
use eddy::topology::StreamsBuilder;

/// One kind of run.
#[derive(Clone, Copy)]
enum Run {
    /// The raw librdkafka loop, with a `traceparent` on each output or not.
    Raw { header: bool },
    /// eddy, with this much tracing, node metrics on or off.
    Eddy(Tracing, bool),
}

/// What an eddy run carries of trace context.
#[derive(Clone, Copy)]
enum Tracing {
    /// Off (the default): headers pass untouched.
    Off,
    /// Every record a hop of its trace (100 % sampled): a `traceparent`
    /// read, made and written per record, no spans exported.
    Context,
    /// As `Context`, with every hop's span exported to a collector.
    Exported,
    /// New traces sampled at 10 %, their spans exported: a production
    /// setting (nine records in ten carry an unsampled context).
    Sampled,
}

/// The same work as an eddy topology on one stream thread.
fn eddy(
    c: &TestCluster,
    input: &str,
    output: &str,
    n: usize,
    tracing: Tracing,
    node_metrics: bool,
    collector: &str,
) -> Duration {
    let b = StreamsBuilder::new();
    b.stream(input, Nullable(BytesSerde), BytesSerde)
        .filter(|_, v| common::keep(v))
        .map_values(common::shout)
        .to(output, Nullable(BytesSerde), BytesSerde);
    let app = unique("eddy-bench");
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
    }
    common::time_worker_with(
        &c.bootstrap,
        &app,
        b.build().unwrap(),
        "pipeline",
        n,
        |config| {
            let config = config.node_metrics(node_metrics);
            match tracing {
                Tracing::Off => config,
                Tracing::Context => config.trace_sampling(1.0),
                Tracing::Exported => config.trace_sampling(1.0).otlp_endpoint(collector),
                Tracing::Sampled => config.trace_sampling(0.1).otlp_endpoint(collector),
            }
        },
    )
}

fn main() {
    let n = common::env_usize("EDDY_BENCH_RECORDS", 1_000_000);
    let rounds = common::env_usize("EDDY_BENCH_ROUNDS", 3);
    let partitions = common::env_usize("EDDY_BENCH_PARTITIONS", 4) as i32;
    let c = TestCluster::from_env();
    let input = unique("bench-in");
    c.create_topic(&input, partitions);
    let records: Vec<_> = (0..n)
        .map(|i| {
            let mut value = format!("value-{i}-").into_bytes();
            value.resize(100, b'x');
            (Some(format!("key-{i}").into_bytes()), Some(value))
        })
        .collect();
    c.produce(&input, &records);
    drop(records);

    let cluster = common::cluster_name(&c);
    println!("pipeline benchmark: {n} records of 100 bytes, {partitions} partitions, one thread, {cluster}");
    // Spans go to a collector that takes them without decoding them (a
    // real one runs elsewhere).
    let collector = OtlpCollector::discarding();
    let endpoint = collector.endpoint();
    // Each run, and the run its ratio is to (raw, or eddy untraced).
    let variants = [
        ("raw librdkafka", Run::Raw { header: false }, 0),
        ("eddy", Run::Eddy(Tracing::Off, true), 0),
        ("eddy traced", Run::Eddy(Tracing::Context, true), 1),
        ("eddy + spans", Run::Eddy(Tracing::Exported, true), 1),
        ("raw + header", Run::Raw { header: true }, 0),
        ("eddy spans 10 %", Run::Eddy(Tracing::Sampled, true), 1),
        ("eddy no node metrics", Run::Eddy(Tracing::Off, false), 1),
    ];
    // `EDDY_BENCH_ONLY=<i>` runs variant i alone (to profile it).
    let only = std::env::var("EDDY_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let mut rates = vec![Vec::new(); variants.len()];
    for round in 1..=rounds {
        for (i, (name, run, _)) in variants.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let output = unique("bench-out");
            c.create_topic(&output, partitions);
            let d = match *run {
                Run::Raw { header } => common::raw_loop(
                    &StreamsConfig::new("raw"),
                    &c.bootstrap,
                    &input,
                    &output,
                    n,
                    header,
                ),
                Run::Eddy(t, m) => eddy(&c, &input, &output, n, t, m, &endpoint),
            };
            let rate = n as f64 / d.as_secs_f64();
            println!(
                "  round {round}: {name:<20} {rate:>10.0} records/s ({:.2} s)",
                d.as_secs_f64()
            );
            rates[i].push(rate);
        }
    }
    if only.is_some() {
        return;
    }
    let medians: Vec<f64> = rates.iter_mut().map(|v| common::median(v)).collect();
    let (r, e) = (medians[0], medians[1]);
    println!(
        "  median: raw {r:.0} records/s, eddy {e:.0} records/s, ratio {:.2}",
        e / r
    );
    for ((name, _, base), m) in variants.iter().zip(&medians).skip(2) {
        let of = ["raw", "eddy (untraced, node metrics on)"][*base];
        println!(
            "  median: {name} {m:.0} records/s, {:.3} of {of}",
            m / medians[*base]
        );
    }
    let (requests, bytes) = collector.requests();
    println!("  collector: {requests} requests, {bytes} bytes");
}
