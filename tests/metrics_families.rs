//! The thread, task, node, store and saga metric families of a running
//! worker: exact counts per task, node and store operation, latency
//! histograms sampled one record in `SAMPLE_EVERY` per node, store sizes,
//! saga instances by state; and a closed worker's task series gone.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{cluster, unique};
use eddy::kafka::StreamsConfig;
use eddy::observability::{Metrics, SAMPLE_EVERY};
use eddy::runtime::KafkaStreams;
use eddy::serde::{JsonSerde, StringSerde};
use eddy::testing::{wait_for, TestCluster};
use eddy::topology::{Saga, Step, StreamsBuilder};
use serde_json::{json, Value};

/// One exported series: its labels and its value (a histogram's count).
#[derive(Debug)]
struct Series {
    labels: HashMap<String, String>,
    value: f64,
}

fn series(metrics: &Metrics, name: &str) -> Vec<Series> {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| Series {
            labels: m
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect(),
            value: m.get_counter().get_value()
                + m.get_gauge().get_value()
                + m.get_histogram().get_sample_count() as f64,
        })
        .collect()
}

/// The sum of `name`'s series whose labels include `filter`.
fn sum(metrics: &Metrics, name: &str, filter: &[(&str, &str)]) -> u64 {
    series(metrics, name)
        .iter()
        .filter(|s| filter.iter().all(|(k, v)| s.labels[*k] == *v))
        .map(|s| s.value as u64)
        .sum()
}

/// `name`'s values by task, for series whose labels include `filter`.
fn by_task(metrics: &Metrics, name: &str, filter: &[(&str, &str)]) -> BTreeMap<String, u64> {
    series(metrics, name)
        .iter()
        .filter(|s| filter.iter().all(|(k, v)| s.labels[*k] == *v))
        .map(|s| (s.labels["task"].clone(), s.value as u64))
        .collect()
}

fn start(
    c: &TestCluster,
    b: StreamsBuilder,
    config: StreamsConfig,
) -> eddy::runtime::RunningStreams {
    let streams = match c.embedded() {
        Some(e) => KafkaStreams::new(b.build().unwrap(), config).embedded_cluster(e),
        None => KafkaStreams::new(b.build().unwrap(), config.bootstrap_servers(&c.bootstrap)),
    };
    streams.start().unwrap()
}

#[test]
fn tasks_nodes_and_stores_count_exactly_and_go_with_their_tasks() {
    let c = cluster();
    let u = unique("families");
    let (input, output) = (format!("in-{u}"), format!("out-{u}"));
    c.create_topic(&input, 2);
    c.create_topic(&output, 2);
    let b = StreamsBuilder::new();
    let kept = b
        .stream(&input, StringSerde, StringSerde)
        .filter(|_k: &String, v: &String| v != "skip")
        .named("keep");
    kept.to(&output, StringSerde, StringSerde);
    kept.group_by_key(StringSerde, StringSerde).count("counts");
    let app = format!("families-{u}");
    let mut config = StreamsConfig::new(&app).commit_interval(Duration::from_millis(100));
    config.embedded_partitions = 2;
    let worker = start(&c, b, config);
    let records: Vec<_> = (0..100)
        .map(|i| {
            let v = if i % 5 == 0 { "skip" } else { "v" };
            (
                Some(format!("k{}", i % 10).into_bytes()),
                Some(v.as_bytes().to_vec()),
            )
        })
        .collect();
    c.produce(&input, &records);
    let out = c.consume_count(
        &output,
        80,
        Duration::from_secs(60),
        Duration::from_millis(300),
    );
    assert_eq!(out.len(), 80);
    let m = worker.metrics().clone();
    let a = ("application", app.as_str());
    // The counts of the last batch are reported when it ends; the stores'
    // sizes once a second, after a commit wrote their caches.
    wait_for("the stores' sizes", Duration::from_secs(20), || {
        sum(&m, "eddy_store_estimated_keys", &[a, ("store", "counts")]) >= 8
    });

    assert_eq!(sum(&m, "eddy_thread_records_processed_total", &[a]), 100);
    let processed = by_task(&m, "eddy_task_records_processed_total", &[a]);
    assert_eq!(processed.keys().collect::<Vec<_>>(), ["0_0", "0_1"]);
    assert_eq!(processed.values().sum::<u64>(), 100);
    assert_eq!(sum(&m, "eddy_task_records_dead_lettered_total", &[a]), 0);

    // Every node counts each record it takes in, in its task.
    let keep = by_task(&m, "eddy_node_records_total", &[a, ("node", "keep")]);
    assert_eq!(keep, processed, "the filter sees every record");
    let sinks: Vec<String> = series(&m, "eddy_node_e2e_latency_seconds")
        .into_iter()
        .map(|s| s.labels["node"].clone())
        .collect();
    let sink = sinks
        .first()
        .expect("the sink's end-to-end latency")
        .clone();
    assert!(sinks.iter().all(|s| *s == sink), "one sink: {sinks:?}");
    let written = by_task(&m, "eddy_node_records_total", &[a, ("node", &sink)]);
    assert_eq!(written.values().sum::<u64>(), 80);
    // One record in SAMPLE_EVERY per node and task is timed.
    for (node, counts) in [("keep", &keep), (sink.as_str(), &written)] {
        let timed = by_task(&m, "eddy_node_process_seconds", &[a, ("node", node)]);
        let expected: BTreeMap<String, u64> = counts
            .iter()
            .map(|(t, n)| (t.clone(), n / SAMPLE_EVERY))
            .collect();
        assert_eq!(timed, expected, "samples of {node}");
    }
    let e2e = by_task(&m, "eddy_node_e2e_latency_seconds", &[a, ("node", &sink)]);
    let expected: BTreeMap<String, u64> = written
        .iter()
        .map(|(t, n)| (t.clone(), n / SAMPLE_EVERY))
        .collect();
    assert_eq!(e2e, expected);

    // The count reads and writes its store once per record it takes in.
    let store = [a, ("store", "counts")];
    let op = |op| {
        let mut f = store.to_vec();
        f.push(("op", op));
        sum(&m, "eddy_store_operations_total", &f)
    };
    assert_eq!((op("get"), op("put")), (80, 80));
    assert!(op("flush") > 0, "caches written to the engine at commits");
    // Keys k0 and k5 only ever had skipped values: 8 keys, which
    // RocksDB's estimate may count more than once until compactions.
    let keys = sum(&m, "eddy_store_estimated_keys", &store);
    assert!((8..=80).contains(&keys), "estimated keys {keys}");
    assert!(sum(&m, "eddy_store_estimated_bytes", &store) > 0);
    assert!(m
        .encode()
        .contains("eddy_thread_poll_seconds_count{application="));

    worker.close().unwrap();
    let left: Vec<String> = m
        .encode()
        .lines()
        .filter(|l| l.contains("task=\""))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "series of closed tasks: {left:#?}");
}

#[test]
fn a_saga_counts_its_instances_by_state_its_timeouts_and_what_it_emits() {
    let c = cluster();
    let u = unique("saga-metrics");
    let (input, output) = (format!("events-{u}"), format!("outcomes-{u}"));
    c.create_topic(&input, 1);
    c.create_topic(&output, 1);
    let build = || {
        let saga = Saga::new("new")
            .on("new", "started", Step::to("waiting"))
            .on(
                "waiting",
                "finished",
                Step::to("done").emit(|s| Ok(json!({"type": "completed", "id": s.key}))),
            )
            .timeout(
                "waiting",
                Duration::from_secs(1),
                Step::to("cancelled").emit(|s| Ok(json!({"type": "refunded", "id": s.key}))),
            )
            .final_states(["done", "cancelled"]);
        let b = StreamsBuilder::new();
        b.stream(&input, StringSerde, JsonSerde::<Value>::new())
            .saga("orders", saga)
            .unwrap()
            .to(&output, StringSerde, JsonSerde::<Value>::new());
        b
    };
    let app = format!("saga-metrics-{u}");
    let mut config = StreamsConfig::new(&app).commit_interval(Duration::from_millis(100));
    config.embedded_partitions = 1;
    let worker = start(&c, build(), config.clone());
    let event = |id: &str, kind: &str, at: i64| {
        (
            id.to_owned(),
            json!({ "type": kind }).to_string(),
            1_700_000_000_000 + at,
        )
    };
    // o1 finishes, o2 times out once stream time passes 1 s after its
    // start (o3's event), o3 and o4 wait.
    c.produce_at(
        &input,
        &[
            event("o1", "started", 0),
            event("o2", "started", 0),
            event("o1", "finished", 100),
            event("o3", "started", 4_500),
            event("o4", "started", 5_000),
        ],
    );
    let out = c.consume_count(
        &output,
        2,
        Duration::from_secs(60),
        Duration::from_millis(300),
    );
    assert_eq!(out.len(), 2);
    let m = worker.metrics().clone();
    let a = ("application", app.as_str());
    let saga = ("saga", "orders");
    let state = |s| sum(&m, "eddy_saga_instances", &[a, saga, ("state", s)]);
    assert_eq!(
        [state("waiting"), state("done"), state("cancelled")],
        [2, 1, 1]
    );
    assert_eq!(state("new"), 0);
    assert_eq!(sum(&m, "eddy_saga_timeouts_total", &[a, saga]), 1);
    let emitted = |t| sum(&m, "eddy_saga_emitted_total", &[a, saga, ("type", t)]);
    assert_eq!((emitted("completed"), emitted("refunded")), (1, 1));
    worker.close().unwrap();

    // A worker that takes the task over counts the restored instances,
    // with no new event (on a broker: the embedded cluster takes its
    // session timeout to hand the partition over).
    if c.is_embedded() {
        return;
    }
    let worker = start(&c, build(), config);
    let m = worker.metrics().clone();
    let state = |s| sum(&m, "eddy_saga_instances", &[a, saga, ("state", s)]);
    wait_for(
        "the restored instances counted",
        Duration::from_secs(30),
        || [state("waiting"), state("done"), state("cancelled")] == [2, 1, 1],
    );
    worker.close().unwrap();
}
