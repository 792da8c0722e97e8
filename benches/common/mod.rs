//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::runtime::RunningStreams;

/// The timestamp of the first of `n` records 1 ms apart that end now.
///
/// Not a fixed date in the past: the broker deletes segments whose records
/// are older than the topic's retention (seven days by default, counted
/// from the record timestamps), and would do so in the middle of a run.
pub fn first_timestamp(n: usize) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    now - n as i64
}

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
/// final commit (not counting the teardown of its Kafka clients, as the
/// raw consume's time does not count its consumer's).
pub fn time_worker(
    bootstrap: &str,
    app: &str,
    topology: eddy::topology::Topology,
    name: &str,
    n: usize,
) -> Duration {
    time_worker_with(bootstrap, app, topology, name, n, |c| c)
}

/// [`time_worker`] with settings of the run's own (`tweak`).
pub fn time_worker_with(
    bootstrap: &str,
    app: &str,
    topology: eddy::topology::Topology,
    name: &str,
    n: usize,
    tweak: impl FnOnce(eddy::kafka::StreamsConfig) -> eddy::kafka::StreamsConfig,
) -> Duration {
    let state = state_dir(name);
    let mut config = tweak(
        eddy::kafka::StreamsConfig::new(app)
            .bootstrap_servers(bootstrap)
            .state_dir(&state),
    );
    // Client properties to try, as `name=value,...` (e.g.
    // `producer.linger.ms=20`).
    if let Ok(props) = std::env::var("EDDY_BENCH_PROPERTIES") {
        for (name, value) in props.split(',').filter_map(|p| p.split_once('=')) {
            config = config.set(name, value);
        }
    }
    let running = eddy::runtime::KafkaStreams::new(topology, config)
        .start()
        .expect("worker starts");
    let start = wait_for_metric(&running, "eddy_thread_records_processed_total", n);
    let processed = start.elapsed();
    // The final commit is the worker's last: note when the commit count
    // last moved while it closes (every 5 ms: each look gathers the whole
    // registry, on the cores the worker is closing on).
    let metrics = running.metrics().clone();
    let closed = Arc::new(AtomicBool::new(false));
    let watch = {
        let (closed, metrics) = (closed.clone(), metrics.clone());
        std::thread::spawn(move || {
            let mut seen = metrics.total("eddy_thread_commits_total");
            let mut last = Instant::now();
            while !closed.load(Ordering::Acquire) {
                let now = metrics.total("eddy_thread_commits_total");
                if now != seen {
                    (seen, last) = (now, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            last
        })
    };
    running.close().expect("worker closes");
    let all = start.elapsed();
    closed.store(true, Ordering::Release);
    let took = watch.join().expect("watch thread") - start;
    eprintln!(
        "  ({name}: {:.2} s to process, {:.2} s to the end of the final commit, {:.2} s until its clients are closed)",
        processed.as_secs_f64(),
        took.as_secs_f64(),
        all.as_secs_f64()
    );
    for (what, metric) in [
        (
            "records dropped as late",
            "eddy_node_dropped_late_records_total",
        ),
        ("enforced processing", "eddy_task_enforced_processing_total"),
    ] {
        let n = metrics.total(metric);
        if n > 0 {
            eprintln!("  ({name}: {what}: {n})");
        }
    }
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

/// The median of rounds' figures (sorts them).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The stateless pipeline's filter: drops values that start with `#`.
pub fn keep(v: &[u8]) -> bool {
    v.first() != Some(&b'#')
}

/// The stateless pipeline's map: upper-cases the value.
pub fn shout(mut v: Vec<u8>) -> Vec<u8> {
    v.make_ascii_uppercase();
    v
}

/// The yardstick of the stateless pipeline: consume, filter, upper-case
/// into a new buffer, produce; then flush and commit, with the clients
/// `config` makes (its security settings included). `header`: each output
/// also carries a new `traceparent` header, as eddy's do with tracing on
/// (the floor of what carrying trace context costs the client and the
/// broker).
pub fn raw_loop(
    config: &eddy::kafka::StreamsConfig,
    bootstrap: &str,
    input: &str,
    output: &str,
    n: usize,
    header: bool,
) -> Duration {
    use eddy::kafka::send_blocking;
    use eddy::observability::{TraceContext, TRACEPARENT};
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::Message;

    let consumer: BaseConsumer = config
        .consumer_client_config(bootstrap, "raw")
        .set("group.id", eddy::testing::unique("raw"))
        .create()
        .unwrap();
    let producer: BaseProducer = config
        .producer_client_config(bootstrap, "raw")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let mut seen = 0;
    let mut start = None;
    while seen < n {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        start.get_or_insert_with(Instant::now);
        seen += 1;
        let value = m.payload().unwrap_or_default();
        if !keep(value) {
            continue;
        }
        let value = shout(value.to_vec());
        let mut record = BaseRecord::<[u8], [u8]>::to(output).payload(&value);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        let context = header.then(|| TraceContext::root(true).header_value());
        if let Some(context) = &context {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TRACEPARENT,
                value: Some(&context[..]),
            }));
        }
        send_blocking(&producer, record).expect("produce");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    consumer
        .commit(&consumer.position().unwrap(), CommitMode::Sync)
        .unwrap();
    start.unwrap().elapsed()
}
