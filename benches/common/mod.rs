//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eddy::runtime::RunningStreams;

/// `name` from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Waits until the counter `metric` (summed over threads) first moves, then
/// until it reaches `n`; returns when it first moved, so that start-up and
/// group joins are not timed. Polls every 10 ms.
pub fn wait_for_metric(running: &RunningStreams, metric: &str, n: usize) -> Instant {
    let value = || running.metrics().total(metric) as usize;
    while value() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    while value() < n {
        std::thread::sleep(Duration::from_millis(10));
    }
    start
}

/// Runs `topology` as one worker of application `app` on `bootstrap`, with
/// a fresh state directory (`name`), until `n` records were processed;
/// returns the time from its first processed record to the end of its
/// final commit.
pub fn time_worker(
    bootstrap: &str,
    app: &str,
    topology: eddy::topology::Topology,
    name: &str,
    n: usize,
) -> Duration {
    let state = state_dir(name);
    let config = eddy::kafka::StreamsConfig::new(app)
        .bootstrap_servers(bootstrap)
        .state_dir(&state);
    let running = eddy::runtime::KafkaStreams::new(topology, config)
        .start()
        .expect("worker starts");
    let start = wait_for_metric(&running, "eddy_records_processed_total", n);
    running.close().expect("worker closes");
    let took = start.elapsed();
    let _ = std::fs::remove_dir_all(state);
    took
}

/// A fresh state directory under `~/.cache/eddy/bench-state`.
pub fn state_dir(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/eddy/bench-state")
        .join(eddy::testing::unique(name))
}

/// The yardstick of the end-to-end benchmarks: a raw librdkafka group
/// consumer reading `n` records of `topics`, timed from its first record.
pub fn raw_consume(bootstrap: &str, topics: &[&str], n: usize) -> Duration {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = eddy::kafka::StreamsConfig::new(&eddy::testing::unique("raw"))
        .consumer_client_config(bootstrap, "raw")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let (mut seen, mut start) = (0, None);
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.expect("consume");
            start.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    start.expect("n > 0").elapsed()
}

/// How the reports name the cluster: its address, or the embedded mock.
pub fn cluster_name(c: &eddy::testing::TestCluster) -> String {
    if c.is_embedded() {
        "embedded (mock) cluster".to_owned()
    } else {
        c.bootstrap.clone()
    }
}
