//! A windowed count end to end: `EDDY_BENCH_RECORDS` records (default
//! 1 000 000) over 10 000 keys with increasing timestamps, counted in
//! 10-second tumbling windows on RocksDB with changelogging, one stream
//! thread; beside a raw consume of the same input in the same run.
//!
//! Runs against the broker in `EDDY_TEST_BOOTSTRAP` (else an embedded one).

mod common;

use std::time::Duration;

use eddy::serde::{I64Serde, Nullable, StringSerde};
use eddy::testing::{unique, TestCluster};
use eddy::topology::{StreamsBuilder, TimeWindows, WindowedSerde};
use rdkafka::producer::{BaseRecord, Producer};

fn main() {
    let n = common::env_usize("EDDY_BENCH_RECORDS", 1_000_000);
    let partitions = 4;
    let c = TestCluster::from_env();
    let app = unique("windowed-bench");
    let (input, output) = (unique("win-in"), unique("win-out"));
    c.create_topic(&input, partitions);
    c.create_topic(&output, partitions);
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
        c.create_topic(&format!("{app}-window-counts-changelog"), partitions);
    }
    let producer = c.producer();
    let t0 = common::first_timestamp(n);
    for i in 0..n {
        let key = format!("key-{}", i % 10_000);
        let record = BaseRecord::<str, str>::to(&input)
            .key(&key)
            .payload("x")
            .timestamp(t0 + i as i64);
        eddy::kafka::send_blocking(&producer, record).unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    // Yardstick: consume the same input as fast as possible.
    let raw = common::raw_consume(&c.bootstrap, &[&input], n);

    let b = StreamsBuilder::new();
    b.stream(&input, StringSerde, StringSerde)
        .group_by_key(StringSerde, StringSerde)
        .windowed_by(TimeWindows::tumbling(
            Duration::from_secs(10),
            Duration::from_secs(1),
        ))
        .count("window-counts")
        .to_stream()
        .to(&output, WindowedSerde(StringSerde), Nullable(I64Serde));
    let ours = common::time_worker(&c.bootstrap, &app, b.build().unwrap(), "windowed", n);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let cluster = common::cluster_name(&c);
    println!("windowed count benchmark: {n} records, 10 000 keys, 10 s tumbling windows, {partitions} partitions, one thread, {cluster}");
    println!(
        "  raw consume           {:>10.0} records/s ({:.2} s)",
        rate(raw),
        raw.as_secs_f64()
    );
    println!(
        "  eddy windowed count   {:>10.0} records/s ({:.2} s, incl. final flush and commit)",
        rate(ours),
        ours.as_secs_f64()
    );
    println!(
        "  ratio                 {:>10.2} (eddy / raw consume)",
        rate(ours) / rate(raw)
    );
}
