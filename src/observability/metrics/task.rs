//! The task, node and store families, `eddy_task_*`, `eddy_node_*` and
//! `eddy_store_*` (labels `application`, `task`, and `node` or `store`),
//! and the saga's, `eddy_saga_*`: Kafka Streams' task-, processor-node- and
//! state-store-level metrics. A task's series go when it is closed.
//!
//! Counts are exact: the task adds them up in plain integers and hands
//! them to Prometheus once per processed batch. Latencies are sampled: one
//! record in [`SAMPLE_EVERY`] per node (and one operation in as many per
//! store and kind) is timed, so the hot path reads no clock for the rest.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use super::series::{CounterSeries, GaugeSeries, HistogramSeries, Owners};
use super::{counters, gauges, histograms, Registry, E2E, MICRO};

/// One record (or store operation) in this many is timed.
pub const SAMPLE_EVERY: u64 = 32;

/// How often a task reads its stores' sizes and block-cache counters.
const SIZES_EVERY: Duration = Duration::from_secs(1);

/// The metric vectors of the task, node, store and saga families.
pub(super) struct TaskFamilies {
    processed: IntCounterVec,
    dead_lettered: IntCounterVec,
    enforced: IntCounterVec,
    future_timestamp: IntCounterVec,
    dropped: IntCounterVec,
    node_records: IntCounterVec,
    node_latency: HistogramVec,
    node_e2e: HistogramVec,
    node_late: IntCounterVec,
    node_expired: IntCounterVec,
    store_ops: IntCounterVec,
    store_latency: HistogramVec,
    store_keys: IntGaugeVec,
    store_bytes: IntGaugeVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    restored: IntCounterVec,
    restore_remaining: IntGaugeVec,
    saga_instances: IntGaugeVec,
    saga_timeouts: IntCounterVec,
    saga_emitted: IntCounterVec,
    owners: Owners,
}

const TASK: &[&str] = &["application", "task"];
const NODE: &[&str] = &["application", "task", "node"];
const STORE: &[&str] = &["application", "task", "store"];
const STORE_OP: &[&str] = &["application", "task", "store", "op"];
const SAGA: &[&str] = &["application", "task", "saga"];

impl TaskFamilies {
    pub(super) fn new(r: &Registry) -> Self {
        TaskFamilies {
            processed: counters(
                r,
                "eddy_task_records_processed_total",
                "Records run through the task (including dead-lettered ones).",
                TASK,
            ),
            dead_lettered: counters(
                r,
                "eddy_task_records_dead_lettered_total",
                "Records of the task sent to the dead-letter topic.",
                TASK,
            ),
            enforced: counters(
                r,
                "eddy_task_enforced_processing_total",
                "Records processed while an input partition of the task was empty and caught up (its idle time ran out), as Kafka Streams' enforced processing.",
                TASK,
            ),
            future_timestamp: counters(
                r,
                "eddy_task_future_timestamp_records_total",
                "Records dead-lettered for a timestamp further ahead of the wall clock than max_future_timestamp.",
                TASK,
            ),
            dropped: counters(
                r,
                "eddy_task_dropped_records_total",
                "Records dropped on purpose: late (after their window closed, end + grace) or invalid_timestamp (under the Skip policy).",
                &["application", "task", "reason"],
            ),
            node_records: counters(
                r,
                "eddy_node_records_total",
                "Records a processor node took in (sources: records decoded; sinks: records written).",
                NODE,
            ),
            node_latency: histograms(
                r,
                "eddy_node_process_seconds",
                "Time a node took for a record, the nodes it forwarded to included (sampled: one record in 32 per node).",
                NODE,
                MICRO,
            ),
            node_e2e: histograms(
                r,
                "eddy_node_e2e_latency_seconds",
                "At sink nodes: wall-clock time of the output less its record's timestamp (sampled: one record in 32 per node).",
                NODE,
                E2E,
            ),
            node_late: counters(
                r,
                "eddy_node_dropped_late_records_total",
                "Records a windowed operator dropped for arriving after their window closed (end + grace).",
                NODE,
            ),
            node_expired: counters(
                r,
                "eddy_node_expired_state_total",
                "State entries an operator expired once their retention passed in stream time (deferred saga events, saga instances, a processor's expiring entries).",
                NODE,
            ),
            store_ops: counters(
                r,
                "eddy_store_operations_total",
                "Store operations by kind: get, put, range (range reads) and flush (write caches to the engine).",
                STORE_OP,
            ),
            store_latency: histograms(
                r,
                "eddy_store_operation_seconds",
                "Time of store operations by kind (sampled: one in 32 per store and kind).",
                STORE_OP,
                MICRO,
            ),
            store_keys: gauges(
                r,
                "eddy_store_estimated_keys",
                "Keys in the store's engine (RocksDB's estimate-num-keys; exact in memory), updated every second.",
                STORE,
            ),
            store_bytes: gauges(
                r,
                "eddy_store_estimated_bytes",
                "Bytes of the store's engine: RocksDB's estimated live data plus memtables (in memory: keys and values), updated every second.",
                STORE,
            ),
            cache_hits: counters(
                r,
                "eddy_store_block_cache_hits_total",
                "RocksDB block-cache hits of the store's reads (the hit ratio: hits / (hits + misses)).",
                STORE,
            ),
            cache_misses: counters(
                r,
                "eddy_store_block_cache_misses_total",
                "RocksDB block-cache misses of the store's reads.",
                STORE,
            ),
            restored: counters(
                r,
                "eddy_store_restored_records_total",
                "Changelog records restored into the store.",
                STORE,
            ),
            restore_remaining: gauges(
                r,
                "eddy_store_restore_remaining_records",
                "Changelog records left to restore into the store (0 once restored).",
                STORE,
            ),
            saga_instances: gauges(
                r,
                "eddy_saga_instances",
                "Saga instances stored, by state.",
                &["application", "task", "saga", "state"],
            ),
            saga_timeouts: counters(
                r,
                "eddy_saga_timeouts_total",
                "Saga timeouts fired.",
                SAGA,
            ),
            saga_emitted: counters(
                r,
                "eddy_saga_emitted_total",
                "Events a saga emitted, by their JSON \"type\" field (compensations among them).",
                &["application", "task", "saga", "type"],
            ),
            owners: Owners::default(),
        }
    }
}

/// A task's series, held by its context while it lives.
pub(crate) struct TaskMetrics {
    families: Arc<TaskFamilies>,
    application: Arc<str>,
    task: String,
    processed: CounterSeries,
    dead_lettered: CounterSeries,
    enforced: CounterSeries,
    future_timestamp: CounterSeries,
    dropped_late: CounterSeries,
    dropped_invalid: CounterSeries,
    /// Counts since the last [`record`](Self::record).
    pub(crate) pending: TaskCounts,
    /// By topology node index; `None` for nodes of other sub-topologies.
    nodes: Vec<Option<NodeMetrics>>,
    /// By the task's store order.
    stores: Vec<StoreMetrics>,
    sizes_at: Option<Instant>,
}

/// What a task counted since its last report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TaskCounts {
    pub(crate) processed: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) enforced: u64,
}

/// A node's series.
struct NodeMetrics {
    name: Arc<str>,
    /// Node metrics on: its count, and its clocks when sampled.
    sampled: Option<NodeSeries>,
    late: Option<CounterSeries>,
    expired: Option<CounterSeries>,
}

struct NodeSeries {
    count: u64,
    reported: u64,
    records: CounterSeries,
    latency: HistogramSeries,
    e2e: Option<HistogramSeries>,
}

/// A store's series.
pub(crate) struct StoreMetrics {
    pub(crate) restored: CounterSeries,
    pub(crate) restore_remaining: GaugeSeries,
    keys: GaugeSeries,
    bytes: GaugeSeries,
    cache_hits: CounterSeries,
    cache_misses: CounterSeries,
    cache_seen: (u64, u64),
}

/// What the task knows of one of its nodes, to make its series.
pub(crate) struct NodeInfo<'a> {
    pub(crate) index: usize,
    pub(crate) name: &'a Arc<str>,
    pub(crate) sink: bool,
}

/// A store's sizes and block-cache counters as read from its engine.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StoreSizes {
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
    /// Block-cache hits and misses so far (RocksDB only).
    pub(crate) cache: Option<(u64, u64)>,
}

impl super::Metrics {
    /// The series of task `task` of `application`: for `nodes` (the
    /// nodes of its sub-topology, among `node_count`) and `stores`; node
    /// and store-operation series only if `node_metrics`.
    pub(crate) fn task(
        &self,
        application: &Arc<str>,
        task: &str,
        nodes: &[NodeInfo<'_>],
        node_count: usize,
        stores: &[&str],
        node_metrics: bool,
    ) -> TaskMetrics {
        let f = self.task_families.clone();
        let o = &f.owners;
        let app: &str = application;
        let t = &[app, task];
        let mut by_index: Vec<Option<NodeMetrics>> = (0..node_count).map(|_| None).collect();
        for n in nodes {
            let l = &[app, task, &**n.name];
            by_index[n.index] = Some(NodeMetrics {
                name: n.name.clone(),
                sampled: node_metrics.then(|| NodeSeries {
                    count: 0,
                    reported: 0,
                    records: o.take("eddy_node_records_total", &f.node_records, l),
                    latency: o.take("eddy_node_process_seconds", &f.node_latency, l),
                    e2e: n
                        .sink
                        .then(|| o.take("eddy_node_e2e_latency_seconds", &f.node_e2e, l)),
                }),
                late: None,
                expired: None,
            });
        }
        let stores = stores
            .iter()
            .map(|s| {
                let l = &[app, task, *s];
                StoreMetrics {
                    restored: o.take("eddy_store_restored_records_total", &f.restored, l),
                    restore_remaining: o.take(
                        "eddy_store_restore_remaining_records",
                        &f.restore_remaining,
                        l,
                    ),
                    keys: o.take("eddy_store_estimated_keys", &f.store_keys, l),
                    bytes: o.take("eddy_store_estimated_bytes", &f.store_bytes, l),
                    cache_hits: o.take("eddy_store_block_cache_hits_total", &f.cache_hits, l),
                    cache_misses: o.take("eddy_store_block_cache_misses_total", &f.cache_misses, l),
                    cache_seen: (0, 0),
                }
            })
            .collect();
        let dropped = |reason| {
            o.take(
                "eddy_task_dropped_records_total",
                &f.dropped,
                &[app, task, reason],
            )
        };
        TaskMetrics {
            processed: o.take("eddy_task_records_processed_total", &f.processed, t),
            dead_lettered: o.take("eddy_task_records_dead_lettered_total", &f.dead_lettered, t),
            enforced: o.take("eddy_task_enforced_processing_total", &f.enforced, t),
            future_timestamp: o.take(
                "eddy_task_future_timestamp_records_total",
                &f.future_timestamp,
                t,
            ),
            dropped_late: dropped("late"),
            dropped_invalid: dropped("invalid_timestamp"),
            pending: TaskCounts::default(),
            nodes: by_index,
            stores,
            sizes_at: None,
            application: application.clone(),
            task: task.to_owned(),
            families: f,
        }
    }
}

impl TaskMetrics {
    /// Counts a record into node `index`; whether to time it (one in
    /// [`SAMPLE_EVERY`]). Never with node metrics off.
    #[inline]
    pub(crate) fn tick(&mut self, index: usize) -> bool {
        match self.nodes.get_mut(index) {
            Some(Some(NodeMetrics {
                sampled: Some(s), ..
            })) => {
                s.count += 1;
                s.count.is_multiple_of(SAMPLE_EVERY)
            }
            _ => false,
        }
    }

    /// A sampled record's time in node `index`.
    pub(crate) fn timed(&self, index: usize, took: Duration) {
        if let Some(Some(NodeMetrics {
            sampled: Some(s), ..
        })) = self.nodes.get(index)
        {
            s.latency.observe(took.as_secs_f64());
        }
    }

    /// A sampled output of sink `index`: written at `now` (epoch ms), its
    /// record's timestamp `timestamp`.
    pub(crate) fn reached_sink(&self, index: usize, now: i64, timestamp: i64) {
        if let Some(Some(NodeMetrics {
            sampled: Some(NodeSeries { e2e: Some(h), .. }),
            ..
        })) = self.nodes.get(index)
        {
            h.observe(now.saturating_sub(timestamp).max(0) as f64 / 1000.0);
        }
    }

    /// The series of store `i` (in the task's store order).
    pub(crate) fn store(&self, i: usize) -> Option<&StoreMetrics> {
        self.stores.get(i)
    }

    /// Hands the counts since the last call to Prometheus: the task's, its
    /// nodes', and the drops and expiries its operators counted
    /// (`late` and `expired` by node index).
    pub(crate) fn record(
        &mut self,
        late: &[(usize, u64)],
        expired: &[(usize, u64)],
        invalid_timestamp: u64,
        future_timestamp: u64,
    ) {
        let c = std::mem::take(&mut self.pending);
        self.processed.inc_by(c.processed);
        self.dead_lettered.inc_by(c.dead_lettered);
        self.enforced.inc_by(c.enforced);
        self.dropped_invalid.inc_by(invalid_timestamp);
        self.future_timestamp.inc_by(future_timestamp);
        for node in self.nodes.iter_mut().flatten() {
            if let Some(s) = &mut node.sampled {
                s.records.inc_by(s.count - s.reported);
                s.reported = s.count;
            }
        }
        let TaskMetrics {
            families: f,
            application,
            task,
            nodes,
            dropped_late,
            ..
        } = self;
        // A node's series of drops and expiries are made at its first.
        let mut count = |counts: &[(usize, u64)], late: bool| {
            for &(i, n) in counts {
                let Some(Some(node)) = nodes.get_mut(i) else {
                    continue;
                };
                let l = [&**application, task.as_str(), &*node.name];
                let series = match late {
                    true => node.late.get_or_insert_with(|| {
                        f.owners
                            .take("eddy_node_dropped_late_records_total", &f.node_late, &l)
                    }),
                    false => node.expired.get_or_insert_with(|| {
                        f.owners
                            .take("eddy_node_expired_state_total", &f.node_expired, &l)
                    }),
                };
                series.inc_by(n);
            }
        };
        count(late, true);
        count(expired, false);
        dropped_late.inc_by(late.iter().map(|(_, n)| n).sum());
    }

    /// Whether the stores' sizes are due to be read again (every
    /// second); if so, the clock restarts.
    pub(crate) fn sizes_due(&mut self, now: Instant) -> bool {
        match self.sizes_at {
            Some(at) if now.duration_since(at) < SIZES_EVERY => false,
            _ => {
                self.sizes_at = Some(now);
                true
            }
        }
    }

    /// Store `i`'s sizes and block-cache counters, as just read.
    pub(crate) fn store_sizes(&mut self, i: usize, sizes: StoreSizes) {
        let Some(s) = self.stores.get_mut(i) else {
            return;
        };
        s.keys.set(sizes.keys.min(i64::MAX as u64) as i64);
        s.bytes.set(sizes.bytes.min(i64::MAX as u64) as i64);
        if let Some((hits, misses)) = sizes.cache {
            s.cache_hits.inc_by(hits.saturating_sub(s.cache_seen.0));
            s.cache_misses.inc_by(misses.saturating_sub(s.cache_seen.1));
            s.cache_seen = (hits, misses);
        }
    }

    /// The series of one store operation kind (`get`, `put`, `range`,
    /// `flush`) of store `store`.
    pub(crate) fn store_op(&self, store: &str, op: &str) -> OpStat {
        let f = &self.families;
        let l = &[&*self.application, &*self.task, store, op];
        OpStat {
            count: Cell::new(0),
            reported: Cell::new(0),
            total: f
                .owners
                .take("eddy_store_operations_total", &f.store_ops, l),
            latency: f
                .owners
                .take("eddy_store_operation_seconds", &f.store_latency, l),
        }
    }

    /// The series of the saga at node `index`.
    pub(crate) fn saga(&self, index: usize) -> Option<SagaMetrics> {
        let Some(Some(node)) = self.nodes.get(index) else {
            return None;
        };
        let f = &self.families;
        let l = &[&*self.application, &*self.task, &*node.name];
        Some(SagaMetrics {
            timeouts: f
                .owners
                .take("eddy_saga_timeouts_total", &f.saga_timeouts, l),
            families: f.clone(),
            labels: [
                self.application.to_string(),
                self.task.clone(),
                node.name.to_string(),
            ],
            instances: HashMap::new(),
            emitted: HashMap::new(),
        })
    }
}

/// Counts and samples one kind of operation of one store.
pub(crate) struct OpStat {
    count: Cell<u64>,
    reported: Cell<u64>,
    total: CounterSeries,
    latency: HistogramSeries,
}

impl OpStat {
    /// Runs `op`, counted, and timed if sampled.
    #[inline]
    pub(crate) fn time<T>(&self, op: impl FnOnce() -> T) -> T {
        let n = self.count.get() + 1;
        self.count.set(n);
        if !n.is_multiple_of(SAMPLE_EVERY) {
            return op();
        }
        let start = Instant::now();
        let out = op();
        self.latency.observe(start.elapsed().as_secs_f64());
        out
    }

    /// Hands the count since the last call to Prometheus.
    pub(crate) fn report(&self) {
        let n = self.count.get();
        self.total.inc_by(n - self.reported.get());
        self.reported.set(n);
    }
}

/// A saga's series: instances by state, timeouts fired, events emitted by
/// type.
pub(crate) struct SagaMetrics {
    families: Arc<TaskFamilies>,
    labels: [String; 3],
    timeouts: CounterSeries,
    instances: HashMap<String, GaugeSeries>,
    emitted: HashMap<String, CounterSeries>,
}

impl SagaMetrics {
    /// An instance moved from state `from` (`None`: it was new) to `to`
    /// (`None`: it was removed).
    pub(crate) fn moved(&mut self, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        if let Some(s) = from {
            self.instances(s).dec();
        }
        if let Some(s) = to {
            self.instances(s).inc();
        }
    }

    /// `n` instances are in `state` (counted at start).
    pub(crate) fn found(&mut self, state: &str, n: i64) {
        self.instances(state).add(n);
    }

    fn instances(&mut self, state: &str) -> &GaugeSeries {
        if !self.instances.contains_key(state) {
            let [a, t, s] = &self.labels;
            let f = &self.families;
            let g = f
                .owners
                .take("eddy_saga_instances", &f.saga_instances, &[a, t, s, state]);
            self.instances.insert(state.to_owned(), g);
        }
        &self.instances[state]
    }

    /// A timeout fired.
    pub(crate) fn timeout(&self) {
        self.timeouts.inc();
    }

    /// An event of type `kind` was emitted.
    pub(crate) fn emitted(&mut self, kind: &str) {
        if !self.emitted.contains_key(kind) {
            let [a, t, s] = &self.labels;
            let f = &self.families;
            let c = f
                .owners
                .take("eddy_saga_emitted_total", &f.saga_emitted, &[a, t, s, kind]);
            self.emitted.insert(kind.to_owned(), c);
        }
        self.emitted[kind].inc();
    }
}
