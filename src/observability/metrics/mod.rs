//! Prometheus metrics of a worker, in Kafka Streams' levels: the thread
//! family (`eddy_thread_*`), the task, node and store families
//! (`eddy_task_*`, `eddy_node_*`, `eddy_store_*`) and the saga's
//! (`eddy_saga_*`), besides consumer lag, RocksDB memory, standby replicas
//! and span export. Every stream series carries the `application` label.

mod calls;
mod series;
mod task;
mod thread;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use task::SAMPLE_EVERY;

use crate::topology::Topology;
pub(crate) use calls::CallMetrics;
pub(crate) use task::{NodeInfo, OpStat, SagaMetrics, StoreSizes, TaskMetrics};
pub(crate) use thread::{lap, CommitPhases, ThreadMetrics};

/// Buckets of per-record and per-operation times: 0.1 µs to 0.42 s.
const MICRO: &[f64] = &[
    1e-7,
    4e-7,
    1.6e-6,
    6.4e-6,
    2.56e-5,
    1.024e-4,
    4.096e-4,
    1.6384e-3,
    6.5536e-3,
    2.62144e-2,
    0.104_857_6,
    0.419_430_4,
];
/// Buckets of polls and commits: 0.1 ms to 18 s.
const MILLI: &[f64] = &[
    1e-4, 3e-4, 9e-4, 2.7e-3, 8.1e-3, 2.43e-2, 7.29e-2, 0.2187, 0.6561, 1.9683, 5.9049, 17.7147,
];
/// Buckets of end-to-end latency: 1 ms to 60 s.
const E2E: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The metrics of one worker (or of several sharing a registry), in their
/// own registry.
pub struct Metrics {
    registry: Registry,
    thread: thread::ThreadFamilies,
    task_families: Arc<task::TaskFamilies>,
    rocksdb_cache: IntGauge,
    rocksdb_memtables: IntGauge,
    standby: StandbyMetrics,
    spans_exported: IntCounter,
    spans_dropped: IntCounterVec,
    calls: calls::CallFamilies,
    /// The topologies of the workers reporting here, by application, as
    /// [`Topology::to_json`] gives them (for the status page).
    topologies: Mutex<BTreeMap<String, serde_json::Value>>,
}

/// The metrics of a worker's standby replicas.
#[derive(Clone)]
pub(crate) struct StandbyMetrics {
    /// Tasks kept standby.
    pub(crate) tasks: IntGauge,
    /// Changelog records a standby store has yet to read, by task and store.
    pub(crate) lag: IntGaugeVec,
    /// Changelog records applied to standby stores.
    pub(crate) records: IntCounter,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histograms(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with eddy's metrics.
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            thread: thread::ThreadFamilies::new(&r),
            task_families: Arc::new(task::TaskFamilies::new(&r)),
            rocksdb_cache: gauge(
                &r,
                "eddy_rocksdb_block_cache_usage_bytes",
                "Bytes used in the block cache shared by the worker's RocksDB stores (memtables are charged to it).",
            ),
            rocksdb_memtables: gauge(
                &r,
                "eddy_rocksdb_memtable_bytes",
                "Bytes of memtables of the worker's RocksDB stores (write-buffer manager).",
            ),
            standby: StandbyMetrics {
                tasks: gauge(
                    &r,
                    "eddy_standby_tasks",
                    "Tasks whose stores this worker keeps warm as standby replicas.",
                ),
                lag: gauges(
                    &r,
                    "eddy_standby_lag_records",
                    "Changelog records a standby store has yet to read (its changelog's end less its position).",
                    &["task", "store"],
                ),
                records: counter(
                    &r,
                    "eddy_standby_records_total",
                    "Changelog records applied to standby stores.",
                ),
            },
            spans_exported: counter(
                &r,
                "eddy_trace_spans_exported_total",
                "Spans the OTLP collector accepted.",
            ),
            spans_dropped: counters(
                &r,
                "eddy_trace_spans_dropped_total",
                "Spans not exported: the queue was full (queue_full), or the collector refused or did not answer their batch (export_failed).",
                &["reason"],
            ),
            calls: calls::CallFamilies::new(&r),
            topologies: Mutex::default(),
            registry: r,
        }
    }

    /// Records `topology` as the one `application` runs, for the status
    /// page (workers do it as they start).
    pub fn add_topology(&self, application: &str, topology: &Topology) {
        self.topologies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(application.to_owned(), topology.to_json());
    }

    /// The topologies recorded, by application.
    pub(crate) fn topologies(&self) -> BTreeMap<String, serde_json::Value> {
        self.topologies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Spans exported, dropped for a full queue, and dropped with a failed
    /// export.
    pub(crate) fn span_counters(&self) -> (IntCounter, IntCounter, IntCounter) {
        (
            self.spans_exported.clone(),
            self.spans_dropped.with_label_values(&["queue_full"]),
            self.spans_dropped.with_label_values(&["export_failed"]),
        )
    }

    /// The metrics of the worker's standby replicas.
    pub(crate) fn standby(&self) -> StandbyMetrics {
        self.standby.clone()
    }

    /// The series of stream thread `thread` of `application`.
    pub(crate) fn thread(&self, application: &str, thread: &str) -> ThreadMetrics {
        let rocksdb = (self.rocksdb_cache.clone(), self.rocksdb_memtables.clone());
        self.thread.resolve(application, thread, rocksdb)
    }

    /// The series of call operator `call` of `application`.
    pub(crate) fn call(&self, application: &str, call: &str) -> CallMetrics {
        self.calls.resolve(application, call)
    }

    /// The registry, to add metrics of your own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether no stream thread has a task that does not run yet (being
    /// restored, or waiting for the rest of its input partitions): what
    /// `/ready` answers. A worker that holds no partition is ready.
    pub fn ready(&self) -> bool {
        self.thread.none_starting()
    }

    /// All metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }

    /// Sum over threads of a counter, by metric name (for summaries and
    /// tests).
    pub fn total(&self, name: &str) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value().max(m.get_gauge().get_value()) as u64)
            .sum()
    }
}
