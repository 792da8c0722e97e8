use std::time::Duration;

use super::{millis, Data, PunctuationId, PunctuationType, Record};
use crate::runtime::{forward_all, Child, TaskContext, TaskId};

/// Where the record being processed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSource<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// What a [`Processor`](super::Processor) can do besides computing: forward
/// records to its children, ask for a commit, schedule punctuations, and read
/// the task's clocks and the current record's source.
pub struct ProcessorContext<'a, K, V> {
    pub(crate) children: &'a [Child<K, V>],
    pub(crate) task: &'a mut TaskContext,
    pub(crate) node: usize,
}

impl<K: Data, V: Data> ProcessorContext<'_, K, V> {
    /// Forwards a record to every child, in the order they were attached.
    pub fn forward(&mut self, record: Record<K, V>) {
        forward_all(self.children, record, self.task);
    }

    /// Forwards a record to the child named `child` only. Returns `false`
    /// (and drops the record) if no child has that name.
    pub fn forward_to(&mut self, child: &str, record: Record<K, V>) -> bool {
        match self.children.iter().find(|c| &*c.name == child) {
            Some(c) => {
                c.node.borrow_mut().process(record, self.task);
                true
            }
            None => false,
        }
    }
}

impl<K: Data, V: Data> ProcessorContext<'_, K, V> {
    /// Forwards to the child at `index` (in attachment order).
    pub(crate) fn forward_to_child(&mut self, index: usize, record: Record<K, V>) {
        if let Some(c) = self.children.get(index) {
            c.node.borrow_mut().process(record, self.task);
        }
    }
}

impl<K, V> ProcessorContext<'_, K, V> {
    /// Names of this processor's children, in forwarding order.
    pub fn child_names(&self) -> impl Iterator<Item = &str> {
        self.children.iter().map(|c| &*c.name)
    }

    /// Asks the stream thread to commit as soon as the current batch is done
    /// (flush outputs, then commit offsets), instead of waiting for the
    /// commit interval.
    pub fn commit(&mut self) {
        self.task.commit_requested = true;
    }

    /// Schedules this processor's [`punctuate`](super::Processor::punctuate)
    /// every `interval` of the given clock.
    ///
    /// # Panics
    /// If `interval` is zero.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> PunctuationId {
        let interval = millis(interval);
        assert!(interval > 0, "punctuation interval must be positive");
        let now = self.task.wall_clock;
        self.task
            .punctuations
            .schedule(self.node, interval, kind, now)
    }

    /// Cancels a punctuation scheduled by this processor.
    pub fn cancel(&mut self, id: PunctuationId) {
        self.task.punctuations.cancel(id);
    }

    /// The task's stream time: the largest record timestamp seen so far
    /// (`i64::MIN` before the first record). It never goes backwards.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// The current wall-clock time in epoch milliseconds, as the task sees it.
    pub fn wall_clock_time(&self) -> i64 {
        self.task.wall_clock
    }

    /// Topic, partition and offset of the record being processed; `None`
    /// inside a punctuation.
    pub fn record_source(&self) -> Option<RecordSource<'_>> {
        self.task
            .source
            .map(|(topic, partition, offset)| RecordSource {
                topic: self.task.topics.name(topic),
                partition,
                offset,
            })
    }

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.task.id
    }

    /// The application id (the consumer group).
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }
}
