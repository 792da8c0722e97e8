//! Catching up: joins over inputs produced before the worker started give
//! exactly the results a live run gives, because each task takes its
//! partitions' records in event-time order and waits for an input the
//! broker holds more of instead of processing ahead of it.
//!
//! On a real broker only: what is measured is how a worker meets a broker's
//! log ends and fetch responses while it is behind, which the embedded
//! cluster (librdkafka's mock) does not model, and 200 000 records take it
//! minutes. The test driver's `pipe_batch` covers the ordering rule there.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{cluster, unique, TestCluster, Worker};
use eddy::kafka::StreamsConfig;
use eddy::runtime::KafkaStreams;
use eddy::serde::StringSerde;
use eddy::topology::StreamsBuilder;

const N: usize = 100_000;
const KEYS: usize = 10_000;

/// A day ago, in epoch milliseconds: old enough for any bound on future
/// timestamps, recent enough for any retention.
fn base_time() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    now.as_millis() as i64 - 86_400_000
}

/// Both sides: record `i` has key `k{i % KEYS}` and timestamp `base + i`,
/// so with a 1 s window each left record joins exactly the right record of
/// the same index (the next one of its key is 10 s away).
fn preload(c: &TestCluster, left: &str, right: &str, range: std::ops::Range<usize>) {
    let base = base_time();
    for (topic, side) in [(left, "L"), (right, "R")] {
        let records: Vec<_> = range
            .clone()
            .map(|i| {
                (
                    format!("k{}", i % KEYS),
                    format!("{side}{i}"),
                    base + i as i64,
                )
            })
            .collect();
        c.produce_at(topic, &records);
    }
}

fn join_worker(
    c: &TestCluster,
    app: &str,
    left: &str,
    right: &str,
    out: &str,
    dir: &str,
) -> Worker {
    let dir = std::path::Path::new(dir);
    Worker::join(
        &c.bootstrap,
        app,
        (left, right, out),
        dir,
        &["--window-ms", "1000"],
    )
}

fn topics(c: &TestCluster) -> (String, String, String) {
    let (left, right, out) = (unique("cl"), unique("cr"), unique("co"));
    for t in [&left, &right, &out] {
        c.create_topic(t, 4);
    }
    (left, right, out)
}

/// Every pair `L{i}+R{i}` exactly once, keyed `k{i % KEYS}`.
fn assert_all_pairs_once(records: &[common::Consumed]) {
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        let value = r.value_str();
        let i: usize = value
            .strip_prefix('L')
            .and_then(|v| v.split_once("+R"))
            .filter(|(l, r)| l == r)
            .and_then(|(l, _)| l.parse().ok())
            .unwrap_or_else(|| panic!("a result no input explains: {value}"));
        assert_eq!(
            String::from_utf8(r.key.clone().unwrap()).unwrap(),
            format!("k{}", i % KEYS)
        );
        *got.entry(value).or_insert(0) += 1;
    }
    let missing = N - got.len();
    assert_eq!(missing, 0, "{missing} of {N} pairs missing");
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(twice.is_empty(), "pairs emitted more than once: {twice:?}");
}

#[test]
fn a_join_over_preloaded_topics_emits_every_pair() {
    let c = cluster();
    if c.is_embedded() {
        return;
    }
    let app = unique("catchup");
    let (left, right, out) = topics(&c);
    preload(&c, &left, &right, 0..N);
    let dir = std::env::temp_dir().join(unique("catchup-state"));
    let mut w = join_worker(&c, &app, &left, &right, &out, dir.to_str().unwrap());
    let records = c.consume_count(&out, N, Duration::from_secs(240), Duration::from_secs(3));
    assert_eq!(w.metric("eddy_node_dropped_late_records_total"), 0);
    assert!(w.terminate().success());
    assert_all_pairs_once(&records);
}

#[test]
fn a_join_stopped_half_way_and_restarted_emits_every_pair_once() {
    let c = cluster();
    if c.is_embedded() {
        return;
    }
    let app = unique("catchup-restart");
    let (left, right, out) = topics(&c);
    preload(&c, &left, &right, 0..N);
    let dir = std::env::temp_dir().join(unique("catchup-state"));
    let dir = dir.to_str().unwrap();
    let mut w = join_worker(&c, &app, &left, &right, &out, dir);
    c.consume_until(&out, Duration::from_secs(240), |r| r.len() >= N / 2);
    // A clean stop commits what was processed; the restarted worker goes on
    // from there with its restored join buffers.
    assert!(w.terminate().success());
    let mut w = join_worker(&c, &app, &left, &right, &out, dir);
    let records = c.consume_count(&out, N, Duration::from_secs(240), Duration::from_secs(3));
    assert_eq!(w.metric("eddy_node_dropped_late_records_total"), 0);
    assert!(w.terminate().success());
    assert_all_pairs_once(&records);
}

/// A table of prices updated every second and a stream of orders between
/// the updates, both produced before the worker starts: each order meets
/// the price its key had at the order's time, not the last one loaded.
#[test]
fn a_stream_table_join_over_preloaded_topics_sees_the_table_as_of_each_record() {
    const PRODUCTS: usize = 200;
    const VERSIONS: usize = 20;
    let c = cluster();
    if c.is_embedded() {
        return;
    }
    let app = unique("catchup-table");
    let (prices, orders, out) = (unique("prices"), unique("orders"), unique("priced"));
    for t in [&prices, &orders, &out] {
        c.create_topic(t, 4);
    }
    let base = base_time();
    let mut updates = Vec::new();
    let mut requests = Vec::new();
    for v in 0..VERSIONS {
        for p in 0..PRODUCTS {
            let t = base + (v * 1000) as i64;
            updates.push((format!("p{p}"), format!("price{v}"), t));
            requests.push((format!("p{p}"), format!("order{v}"), t + 500));
        }
    }
    c.produce_at(&prices, &updates);
    c.produce_at(&orders, &requests);

    let b = StreamsBuilder::new();
    let table = b.table(&prices, StringSerde, StringSerde, "prices");
    b.stream(&orders, StringSerde, StringSerde)
        .join_table(&table, |o: &String, p: &String| format!("{o}@{p}"))
        .to(&out, StringSerde, StringSerde);
    let config = StreamsConfig::new(&app)
        .bootstrap_servers(&c.bootstrap)
        .commit_interval(Duration::from_millis(300))
        .state_dir(std::env::temp_dir().join(unique("catchup-table-state")));
    let running = KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .unwrap();
    check_priced(&c, &out, PRODUCTS * VERSIONS);
    running.close().unwrap();
}

fn check_priced(c: &TestCluster, out: &str, n: usize) {
    let records = c.consume_count(out, n, Duration::from_secs(120), Duration::from_secs(2));
    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        *got.entry((key, r.value_str())).or_insert(0) += 1;
    }
    let wrong: Vec<_> = got
        .keys()
        .filter(|(_, v)| {
            let (o, p) = v.split_once('@').unwrap();
            o.strip_prefix("order") != p.strip_prefix("price")
        })
        .take(3)
        .collect();
    assert!(
        wrong.is_empty(),
        "orders priced as of another time: {wrong:?}"
    );
    assert_eq!(got.len(), n, "every order priced");
    assert!(got.values().all(|&k| k == 1), "an order priced twice");
}
