//! The thread family, `eddy_thread_*` (labels `application`, `thread`):
//! what a stream thread polls, processes, commits and punctuates, as Kafka
//! Streams' thread-level metrics.

use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::{counters, gauges, histograms, Registry, MICRO, MILLI};

/// The metric vectors of the thread family, registered once per registry.
pub(super) struct ThreadFamilies {
    consumed: IntCounterVec,
    processed: IntCounterVec,
    produced: IntCounterVec,
    dead_lettered: IntCounterVec,
    commits: IntCounterVec,
    aborts: IntCounterVec,
    tasks_created: IntCounterVec,
    tasks_closed: IntCounterVec,
    poll: HistogramVec,
    process: HistogramVec,
    commit: HistogramVec,
    commit_phases: HistogramVec,
    punctuate: HistogramVec,
    assigned: IntGaugeVec,
    paused: IntGaugeVec,
    starting: IntGaugeVec,
    /// `eddy_consumer_lag` (labels `application`, `topic`, `partition`).
    lag: IntGaugeVec,
}

const LABELS: &[&str] = &["application", "thread"];

impl ThreadFamilies {
    pub(super) fn new(r: &Registry) -> Self {
        ThreadFamilies {
            consumed: counters(
                r,
                "eddy_thread_records_consumed_total",
                "Records polled from Kafka.",
                LABELS,
            ),
            processed: counters(
                r,
                "eddy_thread_records_processed_total",
                "Records run through their task (including dead-lettered ones).",
                LABELS,
            ),
            produced: counters(
                r,
                "eddy_thread_records_produced_total",
                "Records handed to the producer (outputs, changelog records and dead letters).",
                LABELS,
            ),
            dead_lettered: counters(
                r,
                "eddy_thread_records_dead_lettered_total",
                "Records sent to the dead-letter topic.",
                LABELS,
            ),
            commits: counters(r, "eddy_thread_commits_total", "Commits.", LABELS),
            aborts: counters(
                r,
                "eddy_thread_transaction_aborts_total",
                "Exactly-once: transactions aborted (tasks sent back to their last commit).",
                LABELS,
            ),
            tasks_created: counters(
                r,
                "eddy_thread_tasks_created_total",
                "Tasks made (and restored) for assigned partitions.",
                LABELS,
            ),
            tasks_closed: counters(
                r,
                "eddy_thread_tasks_closed_total",
                "Tasks closed because one of their partitions was revoked or lost.",
                LABELS,
            ),
            poll: histograms(
                r,
                "eddy_thread_poll_seconds",
                "Time to poll one batch (its count: polls).",
                LABELS,
                MILLI,
            ),
            process: histograms(
                r,
                "eddy_thread_process_seconds",
                "Processing time per record, averaged over each batch (its count: batches processed).",
                LABELS,
                MICRO,
            ),
            commit: histograms(
                r,
                "eddy_thread_commit_seconds",
                "Time to flush outputs and commit offsets.",
                LABELS,
                MILLI,
            ),
            commit_phases: histograms(
                r,
                "eddy_thread_commit_phase_seconds",
                "Time of each phase of a commit: stores (caches to changelogs, outputs handed to the producer), flush (until the broker acknowledged them), offsets (offsets committed, or sent into the transaction), transaction (commit_transaction), apply (caches to the stores' engines under exactly-once, checkpoints).",
                &["application", "thread", "phase"],
                MILLI,
            ),
            punctuate: histograms(
                r,
                "eddy_thread_punctuate_seconds",
                "Time to run the punctuations due after a batch (wall-clock and watermark timers), when any were due.",
                LABELS,
                MICRO,
            ),
            assigned: gauges(
                r,
                "eddy_thread_assigned_partitions",
                "Input partitions a stream thread owns.",
                LABELS,
            ),
            paused: gauges(
                r,
                "eddy_thread_paused_partitions",
                "Input partitions paused because their buffer is full while their task waits for another input.",
                LABELS,
            ),
            starting: gauges(
                r,
                "eddy_thread_starting_tasks",
                "Tasks that do not run yet: their stores are being restored, or they wait for the rest of their input partitions.",
                LABELS,
            ),
            lag: gauges(
                r,
                "eddy_consumer_lag",
                "Log-end offset minus committed offset, per owned input partition.",
                &["application", "topic", "partition"],
            ),
        }
    }

    /// Whether no stream thread has a task that does not run yet.
    pub(super) fn none_starting(&self) -> bool {
        use prometheus::core::Collector;
        self.starting
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .all(|m| m.get_gauge().get_value() == 0.0)
    }

    /// The series of thread `thread` of `application`.
    pub(super) fn resolve(
        &self,
        application: &str,
        thread: &str,
        rocksdb: (IntGauge, IntGauge),
    ) -> ThreadMetrics {
        let l = &[application, thread];
        let phase = |p| {
            self.commit_phases
                .with_label_values(&[application, thread, p])
        };
        ThreadMetrics {
            application: application.into(),
            consumed: self.consumed.with_label_values(l),
            processed: self.processed.with_label_values(l),
            produced: self.produced.with_label_values(l),
            dead_lettered: self.dead_lettered.with_label_values(l),
            commits: self.commits.with_label_values(l),
            aborts: self.aborts.with_label_values(l),
            tasks_created: self.tasks_created.with_label_values(l),
            tasks_closed: self.tasks_closed.with_label_values(l),
            poll_latency: self.poll.with_label_values(l),
            process_latency: self.process.with_label_values(l),
            commit_latency: self.commit.with_label_values(l),
            punctuate_latency: self.punctuate.with_label_values(l),
            commit_phases: CommitPhases {
                stores: phase("stores"),
                flush: phase("flush"),
                offsets: phase("offsets"),
                transaction: phase("transaction"),
                apply: phase("apply"),
            },
            assigned: self.assigned.with_label_values(l),
            paused: self.paused.with_label_values(l),
            starting: self.starting.with_label_values(l),
            lag: self.lag.clone(),
            rocksdb_cache: rocksdb.0,
            rocksdb_memtables: rocksdb.1,
        }
    }
}

/// The phases of a stream thread's commits
/// (`eddy_thread_commit_phase_seconds`).
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
    pub(crate) application: Arc<str>,
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
    pub(crate) punctuate_latency: Histogram,
    pub(crate) commit_phases: CommitPhases,
    pub(crate) assigned: IntGauge,
    pub(crate) paused: IntGauge,
    pub(crate) starting: IntGauge,
    /// Consumer lag by `[application, topic, partition]`.
    pub(crate) lag: IntGaugeVec,
    pub(crate) rocksdb_cache: IntGauge,
    pub(crate) rocksdb_memtables: IntGauge,
}
