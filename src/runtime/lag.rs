//! How far a partition's log extends beyond what the consumer has fetched:
//! what a task needs to know to wait for an empty input partition instead of
//! processing ahead of it.
//!
//! The consumer's position is the offset after the last record (or
//! transaction marker) handed to the thread; before any, it is the start
//! offset looked up at assignment (the committed offset, else where
//! `auto.offset.reset` points). The log end is the larger of the end offset
//! looked up at assignment and the high watermark of the latest fetch
//! response, which librdkafka caches; both are lower bounds, so a positive
//! lag always means records exist.

use std::collections::HashMap;
use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_get_watermark_offsets, rd_kafka_queue_destroy, rd_kafka_queue_get_consumer,
    rd_kafka_queue_length,
};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::topology::{TopicRef, TopicTable};

/// What was known of a partition when it was assigned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// The offset consumption starts from.
    pub(crate) start: Option<i64>,
    /// The log end offset.
    pub(crate) end: Option<i64>,
}

/// Looks up start and end offsets of newly assigned partitions, in one
/// request per kind. A failed lookup leaves the bound unknown (tasks then
/// wait for the first fetch response instead).
pub(crate) fn assigned_bounds<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assigned: &TopicPartitionList,
    reset_to_latest: bool,
    timeout: Duration,
) -> HashMap<(String, i32), Bounds> {
    let mut bounds: HashMap<(String, i32), Bounds> = assigned
        .elements()
        .iter()
        .map(|e| ((e.topic().to_owned(), e.partition()), Bounds::default()))
        .collect();
    let list_offsets = |at: Offset| -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in bounds.keys() {
            tpl.add_partition_offset(topic, *partition, at)?;
        }
        consumer.offsets_for_times(tpl, timeout)
    };
    let offsets = |tpl: Result<TopicPartitionList, KafkaError>, what: &str| {
        let tpl = tpl
            .map_err(|e| tracing::warn!("looking up {what} offsets of assigned partitions: {e}"))
            .ok()?;
        Some(
            tpl.elements()
                .iter()
                .filter_map(|e| match (e.error(), e.offset()) {
                    (Ok(()), Offset::Offset(o)) => Some(((e.topic().to_owned(), e.partition()), o)),
                    _ => None,
                })
                .collect::<HashMap<_, _>>(),
        )
    };
    let ends = offsets(list_offsets(Offset::End), "end").unwrap_or_default();
    let committed = offsets(
        consumer.committed_offsets(assigned.clone(), timeout),
        "committed",
    )
    .unwrap_or_default();
    let needs_reset = bounds.keys().any(|k| !committed.contains_key(k));
    let beginnings = if needs_reset && !reset_to_latest {
        offsets(list_offsets(Offset::Beginning), "beginning").unwrap_or_default()
    } else {
        HashMap::new()
    };
    for (k, b) in &mut bounds {
        b.end = ends.get(k).copied();
        b.start = match committed.get(k) {
            Some(&c) => Some(c),
            None if reset_to_latest => b.end,
            None => beginnings.get(k).copied(),
        };
    }
    bounds
}

/// The high watermark of the latest fetch response for a partition, as
/// librdkafka cached it (no request to the broker).
pub(crate) fn fetched_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the handle is valid while `consumer` lives; librdkafka reads
    // the NUL-terminated topic name and writes the two offsets, under its
    // own lock.
    let err = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// Messages librdkafka has fetched but not yet handed to the thread, over
/// all partitions (its consumer queue; no request to the broker).
pub(crate) fn prefetched<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> usize {
    // SAFETY: the handle is valid while `consumer` lives; the queue
    // reference librdkafka returns is released before returning.
    unsafe {
        let queue = rd_kafka_queue_get_consumer(consumer.client().native_ptr());
        if queue.is_null() {
            return 0;
        }
        let n = rd_kafka_queue_length(queue);
        rd_kafka_queue_destroy(queue);
        n
    }
}

/// Lag of partitions at one moment: positions are read once, on first use,
/// and each partition's lag is looked up once. Nothing is polled while a
/// view lives, so what it answered stays true for it; a task with an idle
/// input asks for that input's lag before every record.
pub(crate) struct LagView<'a, C: ConsumerContext + 'static> {
    consumer: &'a BaseConsumer<C>,
    topics: &'a TopicTable,
    positions: Option<HashMap<(TopicRef, i32), i64>>,
    known: Vec<((TopicRef, i32), Option<i64>)>,
}

impl<'a, C: ConsumerContext + 'static> LagView<'a, C> {
    pub(crate) fn new(consumer: &'a BaseConsumer<C>, topics: &'a TopicTable) -> Self {
        LagView {
            consumer,
            topics,
            positions: None,
            known: Vec::new(),
        }
    }

    /// Records the broker holds beyond the consumer's position; `None`
    /// when neither is known yet.
    pub(crate) fn lag(&mut self, topic: TopicRef, partition: i32, bounds: Bounds) -> Option<i64> {
        if let Some((_, lag)) = self.known.iter().find(|(k, _)| *k == (topic, partition)) {
            return *lag;
        }
        let lag = self.look_up(topic, partition, bounds);
        self.known.push(((topic, partition), lag));
        lag
    }

    fn look_up(&mut self, topic: TopicRef, partition: i32, bounds: Bounds) -> Option<i64> {
        let (consumer, topics) = (self.consumer, self.topics);
        let positions = self.positions.get_or_insert_with(|| {
            consumer
                .position()
                .map(|tpl| {
                    tpl.elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) => Some(((topics.get(e.topic())?, e.partition()), o)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        });
        let position = positions
            .get(&(topic, partition))
            .copied()
            .or(bounds.start)?;
        let fetched = fetched_high_watermark(consumer, topics.name(topic), partition);
        let end = match (bounds.end, fetched) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        Some(end - position)
    }
}
