//! Restore throughput: a worker restoring a key-value store from a
//! changelog of `EDDY_BENCH_RECORDS` records (default 5 000 000) into
//! RocksDB, beside a raw librdkafka consume of the same topic in the same
//! run (the yardstick).
//!
//! Runs against the broker in `EDDY_TEST_BOOTSTRAP` (else an embedded one).
//! The restore is timed from the first restored record to the last; the
//! raw consume from its first record to the high watermark.

mod common;

use std::time::{Duration, Instant};

use eddy::kafka::StreamsConfig;
use eddy::runtime::KafkaStreams;
use eddy::serde::{I64Serde, Nullable, StringSerde};
use eddy::testing::{unique, TestCluster};
use eddy::topology::StreamsBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn raw_consume(c: &TestCluster, topic: &str, n: usize) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("group.id", unique("raw-restore"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        // As eddy's consumers: librdkafka's 1 s would idle it.
        .set(
            "fetch.queue.backoff.ms",
            eddy::kafka::FETCH_QUEUE_BACKOFF_MS,
        )
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let (mut seen, mut start, mut bytes) = (0, None, 0usize);
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            start.get_or_insert_with(Instant::now);
            bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    start.unwrap().elapsed()
}

fn eddy_restore(c: &TestCluster, app: &str, input: &str, n: usize) -> Duration {
    let b = StreamsBuilder::new();
    b.stream(input, StringSerde, Nullable(StringSerde))
        .group_by_key(StringSerde, Nullable(StringSerde))
        .count("counts")
        .to_stream()
        .to(input, StringSerde, Nullable(I64Serde));
    let config = StreamsConfig::new(app)
        .bootstrap_servers(&c.bootstrap)
        .state_dir(common::state_dir("restore"));
    let state_dir = config.state_dir.clone();
    let running = KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .unwrap();
    let start = common::wait_for_metric(&running, "eddy_store_restored_records_total", n);
    let took = start.elapsed();
    running.close().unwrap();
    let _ = std::fs::remove_dir_all(state_dir);
    took
}

fn main() {
    let n = common::env_usize("EDDY_BENCH_RECORDS", 5_000_000);
    let c = TestCluster::from_env();
    let app = unique("restore-bench");
    let input = unique("restore-in");
    let changelog = format!("{app}-counts-changelog");
    c.create_topic(&input, 1);
    c.create_topic(&changelog, 1);
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
    }
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500_000) {
        let records: Vec<_> = chunk
            .iter()
            .map(|i| {
                (
                    Some(format!("key-{i:09}").into_bytes()),
                    Some((*i as i64).to_be_bytes().to_vec()),
                )
            })
            .collect();
        c.produce(&changelog, &records);
    }
    eprintln!(
        "produced {n} changelog records in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let raw = raw_consume(&c, &changelog, n);
    let ours = eddy_restore(&c, &app, &input, n);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let cluster = common::cluster_name(&c);
    println!("restore benchmark: {n} changelog records (16-byte keys, 8-byte values), one partition, {cluster}");
    println!(
        "  raw consume     {:>10.0} records/s ({:.2} s)",
        rate(raw),
        raw.as_secs_f64()
    );
    println!(
        "  eddy restore    {:>10.0} records/s ({:.2} s) into RocksDB",
        rate(ours),
        ours.as_secs_f64()
    );
    println!(
        "  ratio           {:>10.2} (eddy / raw)",
        rate(ours) / rate(raw)
    );
}
