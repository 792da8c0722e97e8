//! A stream-stream windowed join end to end: two topics of
//! `EDDY_BENCH_RECORDS` records each (default 500 000) over 10 000 keys
//! with increasing timestamps, produced before the worker starts (so it
//! catches up on both), inner-joined within ±1 s (window stores on RocksDB,
//! changelogged), one stream thread; beside a raw consume of the same two
//! inputs in the same run. It also counts the pairs emitted: all n.
//!
//! Runs against the broker in `EDDY_TEST_BOOTSTRAP` (else an embedded one).

mod common;

use std::time::Duration;

use eddy::serde::StringSerde;
use eddy::testing::{unique, TestCluster};
use eddy::topology::{JoinKind, JoinWindows, StreamJoined, StreamsBuilder};
use rdkafka::producer::{BaseRecord, Producer};

fn main() {
    let n = common::env_usize("EDDY_BENCH_RECORDS", 500_000);
    let partitions = 4;
    let c = TestCluster::from_env();
    let app = unique("join-bench");
    let (left, right, output) = (unique("jb-left"), unique("jb-right"), unique("jb-out"));
    for t in [&left, &right, &output] {
        c.create_topic(t, partitions);
    }
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
        for s in ["j-left", "j-right", "j-unmatched"] {
            c.create_topic(&format!("{app}-{s}-changelog"), partitions);
        }
    }
    let producer = c.producer();
    let t0 = common::first_timestamp(n);
    for i in 0..n {
        let key = format!("key-{}", i % 10_000);
        for (topic, side) in [(&left, "l"), (&right, "r")] {
            let record = BaseRecord::<str, str>::to(topic)
                .key(&key)
                .payload(side)
                .timestamp(t0 + i as i64);
            eddy::kafka::send_blocking(&producer, record).unwrap();
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let total = 2 * n;

    let raw = common::raw_consume(&c.bootstrap, &[&left, &right], total);

    let b = StreamsBuilder::new();
    let l = b.stream(&left, StringSerde, StringSerde);
    let r = b.stream(&right, StringSerde, StringSerde);
    l.join_stream(
        &r,
        JoinKind::Inner,
        JoinWindows::of(Duration::from_secs(1), Duration::from_secs(1)),
        |a: Option<&String>, b: Option<&String>| {
            format!("{}{}", a.map_or("", |v| v), b.map_or("", |v| v))
        },
        StreamJoined::with("j", StringSerde, StringSerde, StringSerde),
    )
    .to(&output, StringSerde, StringSerde);
    let ours = common::time_worker(&c.bootstrap, &app, b.build().unwrap(), "join", total);
    // Record i of each side joins exactly record i of the other (the next
    // record of its key is 10 s away): n pairs, however far behind the
    // worker started.
    let pairs = c
        .consume_count(&output, n, Duration::from_secs(120), Duration::from_secs(2))
        .len();

    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let cluster = common::cluster_name(&c);
    println!("join benchmark: 2 x {n} records, 10 000 keys, inner join within 1 s, {partitions} partitions, one thread, {cluster}");
    println!(
        "  raw consume of both   {:>10.0} records/s ({:.2} s)",
        rate(raw),
        raw.as_secs_f64()
    );
    println!(
        "  eddy windowed join    {:>10.0} records/s ({:.2} s, incl. final flush and commit)",
        rate(ours),
        ours.as_secs_f64()
    );
    println!(
        "  ratio                 {:>10.2} (eddy / raw consume)",
        rate(ours) / rate(raw)
    );
    println!("  pairs emitted         {pairs:>10} of {n}");
}
