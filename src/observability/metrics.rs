//! Prometheus metrics of a worker.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metrics of one worker, in their own registry.
pub struct Metrics {
    registry: Registry,
    consumed: IntCounterVec,
    processed: IntCounterVec,
    produced: IntCounterVec,
    dead_lettered: IntCounterVec,
    commits: IntCounterVec,
    aborts: IntCounterVec,
    tasks_created: IntCounterVec,
    tasks_closed: IntCounterVec,
    poll_latency: HistogramVec,
    process_latency: HistogramVec,
    commit_latency: HistogramVec,
    commit_phases: HistogramVec,
    assigned: IntGaugeVec,
    lag: IntGaugeVec,
    dropped_late: IntCounterVec,
    expired_state: IntCounterVec,
    skipped_timestamp: IntCounterVec,
    future_timestamp: IntCounterVec,
    enforced_processing: IntCounterVec,
    paused: IntGaugeVec,
    starting: IntGaugeVec,
    restored: IntCounterVec,
    restore_remaining: IntGaugeVec,
    rocksdb_cache: IntGauge,
    rocksdb_memtables: IntGauge,
    standby: StandbyMetrics,
    spans_exported: IntCounter,
    spans_dropped: IntCounterVec,
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

/// The phases of a stream thread's commits (`eddy_commit_phase_seconds`).
#[derive(Clone)]
pub(crate) struct CommitPhases {
    pub(crate) stores: Histogram,
    pub(crate) flush: Histogram,
    pub(crate) offsets: Histogram,
    pub(crate) transaction: Histogram,
    pub(crate) apply: Histogram,
}

/// Times a phase into `h` from `since`, and restarts the clock.
pub(crate) fn lap(h: &Histogram, since: &mut std::time::Instant) {
    let now = std::time::Instant::now();
    h.observe((now - *since).as_secs_f64());
    *since = now;
}

/// The metrics of one stream thread, resolved once so the hot path touches
/// no label maps.
#[derive(Clone)]
pub(crate) struct ThreadMetrics {
    pub(crate) consumed: IntCounter,
    pub(crate) processed: IntCounter,
    pub(crate) produced: IntCounter,
    pub(crate) dead_lettered: IntCounter,
    pub(crate) commits: IntCounter,
    pub(crate) aborts: IntCounter,
    pub(crate) tasks_created: IntCounter,
    pub(crate) tasks_closed: IntCounter,
    pub(crate) poll_latency: Histogram,
    pub(crate) process_latency: Histogram,
    pub(crate) commit_latency: Histogram,
    pub(crate) commit_phases: CommitPhases,
    pub(crate) assigned: IntGauge,
    pub(crate) lag: IntGaugeVec,
    pub(crate) dropped_late: IntCounterVec,
    pub(crate) expired_state: IntCounterVec,
    pub(crate) skipped_timestamp: IntCounter,
    pub(crate) future_timestamp: IntCounter,
    pub(crate) enforced_processing: IntCounter,
    pub(crate) paused: IntGauge,
    pub(crate) starting: IntGauge,
    pub(crate) restored: IntCounterVec,
    pub(crate) restore_remaining: IntGaugeVec,
    pub(crate) rocksdb_cache: IntGauge,
    pub(crate) rocksdb_memtables: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    counter_by(registry, name, help, &["thread"])
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["thread"]).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter_by(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["thread"])
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with eddy's metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let micro = prometheus::exponential_buckets(1e-7, 4.0, 12).expect("valid buckets");
        let milli = prometheus::exponential_buckets(1e-4, 3.0, 12).expect("valid buckets");
        let assigned = gauge(
            &registry,
            "eddy_assigned_partitions",
            "Input partitions a stream thread owns.",
        );
        let lag = IntGaugeVec::new(
            Opts::new(
                "eddy_consumer_lag",
                "Log-end offset minus committed offset, per owned input partition.",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(lag.clone()))
            .expect("unique metric");
        Metrics {
            consumed: counter(
                &registry,
                "eddy_records_consumed_total",
                "Records polled from Kafka.",
            ),
            processed: counter(
                &registry,
                "eddy_records_processed_total",
                "Records run through their task (including dead-lettered ones).",
            ),
            produced: counter(
                &registry,
                "eddy_records_produced_total",
                "Records handed to the producer (outputs and dead letters).",
            ),
            dead_lettered: counter(
                &registry,
                "eddy_records_dead_lettered_total",
                "Records sent to the dead-letter topic.",
            ),
            commits: counter(&registry, "eddy_commits_total", "Offset commits."),
            aborts: counter(
                &registry,
                "eddy_transaction_aborts_total",
                "Exactly-once: transactions aborted (tasks sent back to their last commit).",
            ),
            tasks_created: counter(
                &registry,
                "eddy_tasks_created_total",
                "Tasks made (and restored) for assigned partitions.",
            ),
            tasks_closed: counter(
                &registry,
                "eddy_tasks_closed_total",
                "Tasks closed because one of their partitions was revoked or lost.",
            ),
            poll_latency: histogram(
                &registry,
                "eddy_poll_latency_seconds",
                "Time to poll one batch.",
                milli.clone(),
            ),
            process_latency: histogram(
                &registry,
                "eddy_process_latency_seconds",
                "Processing time per record, averaged over each batch.",
                micro,
            ),
            commit_latency: histogram(
                &registry,
                "eddy_commit_latency_seconds",
                "Time to flush outputs and commit offsets.",
                milli.clone(),
            ),
            commit_phases: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "eddy_commit_phase_seconds",
                        "Time of each phase of a commit: stores (caches to changelogs, outputs handed to the producer), flush (until the broker acknowledged them), offsets (offsets committed, or sent into the transaction), transaction (commit_transaction), apply (caches to the stores' engines under exactly-once, checkpoints).",
                    )
                    .buckets(milli),
                    &["thread", "phase"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(h.clone()))
                    .expect("unique metric");
                h
            },
            assigned,
            lag,
            dropped_late: counter_by(
                &registry,
                "eddy_dropped_late_records_total",
                "Records dropped for arriving after their window closed (end + grace), per operator.",
                &["thread", "operator"],
            ),
            expired_state: counter_by(
                &registry,
                "eddy_expired_state_total",
                "State entries an operator expired once their retention passed in stream time (deferred saga events, a processor's expiring entries), per operator.",
                &["thread", "operator"],
            ),
            skipped_timestamp: counter(
                &registry,
                "eddy_skipped_invalid_timestamp_records_total",
                "Records skipped for an invalid timestamp under the Skip policy.",
            ),
            future_timestamp: counter(
                &registry,
                "eddy_future_timestamp_records_total",
                "Records dead-lettered for a timestamp further ahead of the wall clock than max_future_timestamp.",
            ),
            enforced_processing: counter(
                &registry,
                "eddy_enforced_processing_total",
                "Records processed while an input partition of their task was empty and caught up (its idle time ran out), as Kafka Streams' enforced processing.",
            ),
            paused: gauge(
                &registry,
                "eddy_paused_partitions",
                "Input partitions paused because their buffer is full while their task waits for another input.",
            ),
            starting: gauge(
                &registry,
                "eddy_starting_tasks",
                "Tasks that do not run yet: their stores are being restored, or they wait for the rest of their input partitions.",
            ),
            restored: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "eddy_restored_records_total",
                        "Changelog records restored into stores.",
                    ),
                    &["store"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            restore_remaining: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "eddy_restore_remaining_records",
                        "Changelog records left to restore, per store being restored.",
                    ),
                    &["store"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            rocksdb_cache: {
                let g = IntGauge::new(
                    "eddy_rocksdb_block_cache_usage_bytes",
                    "Bytes used in the block cache shared by the worker's RocksDB stores (memtables are charged to it).",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            rocksdb_memtables: {
                let g = IntGauge::new(
                    "eddy_rocksdb_memtable_bytes",
                    "Bytes of memtables of the worker's RocksDB stores (write-buffer manager).",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            standby: StandbyMetrics {
                tasks: {
                    let g = IntGauge::new(
                        "eddy_standby_tasks",
                        "Tasks whose stores this worker keeps warm as standby replicas.",
                    )
                    .expect("valid metric");
                    registry
                        .register(Box::new(g.clone()))
                        .expect("unique metric");
                    g
                },
                lag: {
                    let g = IntGaugeVec::new(
                        Opts::new(
                            "eddy_standby_lag_records",
                            "Changelog records a standby store has yet to read (its changelog's end less its position).",
                        ),
                        &["task", "store"],
                    )
                    .expect("valid metric");
                    registry
                        .register(Box::new(g.clone()))
                        .expect("unique metric");
                    g
                },
                records: {
                    let c = IntCounter::new(
                        "eddy_standby_records_total",
                        "Changelog records applied to standby stores.",
                    )
                    .expect("valid metric");
                    registry
                        .register(Box::new(c.clone()))
                        .expect("unique metric");
                    c
                },
            },
            spans_exported: {
                let c = IntCounter::new(
                    "eddy_trace_spans_exported_total",
                    "Spans the OTLP collector accepted.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            spans_dropped: counter_by(
                &registry,
                "eddy_trace_spans_dropped_total",
                "Spans not exported: the queue was full (queue_full), or the collector refused or did not answer their batch (export_failed).",
                &["reason"],
            ),
            registry,
        }
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

    pub(crate) fn thread(&self, thread: &str) -> ThreadMetrics {
        let l = &[thread];
        ThreadMetrics {
            consumed: self.consumed.with_label_values(l),
            processed: self.processed.with_label_values(l),
            produced: self.produced.with_label_values(l),
            dead_lettered: self.dead_lettered.with_label_values(l),
            commits: self.commits.with_label_values(l),
            aborts: self.aborts.with_label_values(l),
            tasks_created: self.tasks_created.with_label_values(l),
            tasks_closed: self.tasks_closed.with_label_values(l),
            poll_latency: self.poll_latency.with_label_values(l),
            process_latency: self.process_latency.with_label_values(l),
            commit_latency: self.commit_latency.with_label_values(l),
            commit_phases: CommitPhases {
                stores: self.commit_phases.with_label_values(&[thread, "stores"]),
                flush: self.commit_phases.with_label_values(&[thread, "flush"]),
                offsets: self.commit_phases.with_label_values(&[thread, "offsets"]),
                transaction: self
                    .commit_phases
                    .with_label_values(&[thread, "transaction"]),
                apply: self.commit_phases.with_label_values(&[thread, "apply"]),
            },
            assigned: self.assigned.with_label_values(l),
            lag: self.lag.clone(),
            dropped_late: self.dropped_late.clone(),
            expired_state: self.expired_state.clone(),
            skipped_timestamp: self.skipped_timestamp.with_label_values(l),
            future_timestamp: self.future_timestamp.with_label_values(l),
            enforced_processing: self.enforced_processing.with_label_values(l),
            paused: self.paused.with_label_values(l),
            starting: self.starting.with_label_values(l),
            restored: self.restored.clone(),
            restore_remaining: self.restore_remaining.clone(),
            rocksdb_cache: self.rocksdb_cache.clone(),
            rocksdb_memtables: self.rocksdb_memtables.clone(),
        }
    }

    /// The registry, to add metrics of your own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether no stream thread has a task that does not run yet (being
    /// restored, or waiting for the rest of its input partitions): what
    /// `/ready` answers. A worker that holds no partition is ready.
    pub fn ready(&self) -> bool {
        use prometheus::core::Collector;
        self.starting
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .all(|m| m.get_gauge().get_value() == 0.0)
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
