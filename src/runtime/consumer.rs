//! The consumer context of a stream thread: rebalance events and lag.
//!
//! librdkafka calls the rebalance callback from inside `poll`, where the
//! thread's tasks are out of reach. The callback only queues the event; the
//! thread handles it right after `poll` returns, committing and closing
//! revoked tasks before it calls `unassign`, and creating tasks before it
//! calls `assign`. librdkafka holds the rebalance until then, as it does for
//! applications that take rebalance events from a queue.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::observability::ThreadMetrics;

pub(crate) enum RebalanceEvent {
    Assign(TopicPartitionList),
    Revoke(TopicPartitionList),
}

pub(crate) struct StreamConsumerContext {
    pending: Mutex<Vec<RebalanceEvent>>,
    /// Set while closing: rebalances are then applied at once.
    pub(crate) closing: AtomicBool,
    metrics: ThreadMetrics,
    lag_labels: Mutex<HashSet<(String, String)>>,
}

impl StreamConsumerContext {
    pub(crate) fn new(metrics: ThreadMetrics) -> Self {
        StreamConsumerContext {
            pending: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            metrics,
            lag_labels: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Drops the lag gauges of partitions this thread no longer reports.
    pub(crate) fn clear_lag(&self) {
        let mut labels = self.lag_labels.lock().unwrap_or_else(|p| p.into_inner());
        for (t, p) in labels.drain() {
            let _ = self
                .metrics
                .lag
                .remove_label_values(&[&*self.metrics.application, &t, &p]);
        }
    }
}

impl ClientContext for StreamConsumerContext {
    fn stats(&self, stats: Statistics) {
        let mut labels = self.lag_labels.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashSet::new();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                let key = (topic.clone(), partition.to_string());
                self.metrics
                    .lag
                    .with_label_values(&[&*self.metrics.application, &key.0, &key.1])
                    .set(p.consumer_lag);
                seen.insert(key);
            }
        }
        for (t, p) in labels.difference(&seen) {
            let _ = self
                .metrics
                .lag
                .remove_label_values(&[&*self.metrics.application, t, p]);
        }
        *labels = seen;
    }
}

impl ConsumerContext for StreamConsumerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                RebalanceEvent::Assign(tpl.clone())
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                RebalanceEvent::Revoke(tpl.clone())
            }
            other => {
                tracing::error!("rebalance error: {other:?}");
                let _ = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
                    _ => consumer.unassign(),
                };
                return;
            }
        };
        if self.closing.load(Ordering::Acquire) {
            let incremental = matches!(
                consumer.rebalance_protocol(),
                RebalanceProtocol::Cooperative
            );
            let _ = match (event, incremental) {
                (RebalanceEvent::Assign(_), true) => consumer.incremental_assign(tpl),
                (RebalanceEvent::Assign(_), false) => consumer.assign(tpl),
                (RebalanceEvent::Revoke(_), true) => consumer.incremental_unassign(tpl),
                (RebalanceEvent::Revoke(_), false) => consumer.unassign(),
            };
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}

    /// The answer to an offset commit sent without waiting (at-least-once,
    /// between checkpoints): a refusal only means the records since the
    /// previous commit are processed again after a rebalance.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!("offset commit refused: {e}");
        }
    }
}
