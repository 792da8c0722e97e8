//! A task's input partitions as record queues, drained in event-time order
//! (Kafka Streams' `PartitionGroup`).
//!
//! A task that reads several partitions (a join, a merge, a table beside a
//! stream) must see their records in timestamp order, or stream time runs
//! ahead on one input and the other input's records look late. Records are
//! buffered per partition; the task always takes the buffered head record
//! with the smallest timestamp, and only while every partition either has a
//! record buffered or is known to be caught up: when a partition's queue is
//! empty but the broker holds more of it, the task waits for that data
//! instead of processing ahead.

use std::collections::VecDeque;
use std::time::Duration;

use crate::topology::TopicRef;

/// How long a task with an empty input partition waits before it processes
/// its other partitions anyway (Kafka Streams' `max.task.idle.ms`).
///
/// ```
/// use eddy::runtime::TaskIdle;
/// use std::time::Duration;
/// // Kafka Streams' default: wait only while the broker is known to hold
/// // more records of the empty partition.
/// assert_eq!(TaskIdle::default(), TaskIdle::Wait(Duration::ZERO));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskIdle {
    /// Never wait: process whatever is buffered (`max.task.idle.ms = -1`).
    Never,
    /// Wait while the broker is known to hold more records of an empty
    /// partition, and once it is caught up wait this long more for new
    /// records before processing the others ("enforced processing").
    Wait(Duration),
}

impl Default for TaskIdle {
    fn default() -> Self {
        TaskIdle::Wait(Duration::ZERO)
    }
}

/// The buffered records of one input partition.
pub(crate) struct RecordQueue<T> {
    pub(crate) topic: TopicRef,
    pub(crate) partition: i32,
    /// (ordering timestamp, record), in offset order.
    records: VecDeque<(i64, T)>,
    /// Wall-clock time after which this empty, caught-up partition stops
    /// holding the task back.
    idle_deadline: Option<i64>,
    /// Whether the consumer was asked to stop fetching it (queue full).
    pub(crate) paused: bool,
    /// Set when the queue filled up: the thread's polled-record count at
    /// which it is paused if still full (see `pause_or_resume`).
    pub(crate) pause_at: Option<u64>,
    /// The offset the next record must have at least: one past the last
    /// one admitted, or where the partition was last positioned
    /// (`i64::MIN` while unknown).
    next_offset: i64,
    /// Whether records already admitted are being delivered again.
    redelivering: bool,
}

impl<T> RecordQueue<T> {
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The partition was positioned at `offset`: the next record is that
    /// one.
    pub(crate) fn positioned(&mut self, offset: i64) {
        self.next_offset = offset;
        self.redelivering = false;
    }

    /// Whether the record at `offset` is new to the task, not one the
    /// consumer delivers a second time (librdkafka can fetch a partition
    /// again from an older position, e.g. when a stale offset lookup lands
    /// after a seek). Returns [`Admit::Again`] for the first record of such
    /// a run, so that it is reported once.
    pub(crate) fn admit(&mut self, offset: i64) -> Admit {
        if offset >= self.next_offset {
            self.next_offset = offset + 1;
            self.redelivering = false;
            return Admit::New;
        }
        match std::mem::replace(&mut self.redelivering, true) {
            false => Admit::Again {
                expected: self.next_offset,
            },
            true => Admit::AgainStill,
        }
    }
}

/// What [`RecordQueue::admit`] says of a polled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A record the task has not had yet.
    New,
    /// The first record of a redelivery: the task has had it already and
    /// expects `expected` next.
    Again { expected: i64 },
    /// A further record of the same redelivery.
    AgainStill,
}

/// Whether a task may process its next buffered record now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// Yes; `enforced` when an empty partition is skipped because its idle
    /// time ran out (Kafka Streams' enforced processing).
    Yes { enforced: bool },
    /// No: nothing is buffered, or an empty partition must be waited for.
    No,
}

/// The record queues of one task's input partitions.
pub(crate) struct PartitionGroup<T> {
    queues: Vec<RecordQueue<T>>,
    buffered: usize,
}

impl<T> Default for PartitionGroup<T> {
    fn default() -> Self {
        PartitionGroup {
            queues: Vec::new(),
            buffered: 0,
        }
    }
}

impl<T> PartitionGroup<T> {
    /// Adds an input partition (no-op if present); returns its queue index.
    pub(crate) fn add(&mut self, topic: TopicRef, partition: i32) -> usize {
        if let Some(i) = self.index(topic, partition) {
            return i;
        }
        self.queues.push(RecordQueue {
            topic,
            partition,
            records: VecDeque::new(),
            idle_deadline: None,
            paused: false,
            pause_at: None,
            next_offset: i64::MIN,
            redelivering: false,
        });
        self.queues.len() - 1
    }

    /// The queue index of a partition.
    pub(crate) fn index(&self, topic: TopicRef, partition: i32) -> Option<usize> {
        self.queues
            .iter()
            .position(|q| q.topic == topic && q.partition == partition)
    }

    /// Appends a record to queue `queue`, ordered by `timestamp`.
    pub(crate) fn push(&mut self, queue: usize, timestamp: i64, record: T) {
        self.queues[queue].records.push_back((timestamp, record));
        self.buffered += 1;
    }

    /// Records buffered over all partitions.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    pub(crate) fn queues(&self) -> &[RecordQueue<T>] {
        &self.queues
    }

    pub(crate) fn queues_mut(&mut self) -> &mut [RecordQueue<T>] {
        &mut self.queues
    }

    /// Whether the next record may be processed at wall-clock time `now`:
    /// every partition has a record buffered, or each empty one is caught
    /// up and past its idle time. `lag(topic, partition)` tells how many
    /// records the broker holds beyond those fetched (`None`: not known
    /// yet, which waits as a positive lag does).
    pub(crate) fn ready(
        &mut self,
        now: i64,
        idle: TaskIdle,
        lag: &mut dyn FnMut(TopicRef, i32) -> Option<i64>,
    ) -> Ready {
        if self.buffered == 0 {
            return Ready::No;
        }
        if self.queues.len() == 1 {
            return Ready::Yes { enforced: false };
        }
        let idle = match idle {
            TaskIdle::Never => return Ready::Yes { enforced: false },
            TaskIdle::Wait(d) => d.as_millis().min(i64::MAX as u128) as i64,
        };
        let mut enforced = false;
        for q in &mut self.queues {
            if !q.records.is_empty() {
                q.idle_deadline = None;
                continue;
            }
            match lag(q.topic, q.partition) {
                Some(l) if l <= 0 => {
                    let deadline = *q.idle_deadline.get_or_insert(now.saturating_add(idle));
                    if now < deadline {
                        return Ready::No;
                    }
                    enforced = true;
                }
                _ => {
                    q.idle_deadline = None;
                    return Ready::No;
                }
            }
        }
        Ready::Yes { enforced }
    }

    /// Takes the buffered head record with the smallest timestamp (ties:
    /// the partition added first); returns its queue index too.
    pub(crate) fn pop(&mut self) -> Option<(usize, T)> {
        let (i, _) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.records.front().map(|(t, _)| (i, *t)))
            .min_by_key(|&(i, t)| (t, i))?;
        let (_, record) = self.queues[i].records.pop_front()?;
        self.buffered -= 1;
        Some((i, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_delivered_again_are_refused_until_new_ones_come() {
        let mut g = PartitionGroup::<()>::default();
        let q = g.add(A, 0);
        let queue = &mut g.queues_mut()[q];
        // Unknown position: anything goes, then offsets must grow.
        assert_eq!(queue.admit(7), Admit::New);
        assert_eq!(queue.admit(8), Admit::New);
        assert_eq!(queue.admit(3), Admit::Again { expected: 9 });
        assert_eq!(queue.admit(4), Admit::AgainStill);
        assert_eq!(queue.admit(8), Admit::AgainStill);
        assert_eq!(queue.admit(9), Admit::New);
        assert_eq!(queue.admit(5), Admit::Again { expected: 10 });
        // A seek back makes the older offsets wanted again.
        queue.positioned(2);
        assert_eq!(queue.admit(2), Admit::New);
        assert_eq!(queue.admit(1), Admit::Again { expected: 3 });
    }

    const A: TopicRef = TopicRef(0);
    const B: TopicRef = TopicRef(1);

    fn group(records: &[(TopicRef, i64)]) -> PartitionGroup<usize> {
        let mut g = PartitionGroup::default();
        g.add(A, 0);
        g.add(B, 0);
        for (i, &(t, ts)) in records.iter().enumerate() {
            let q = g.index(t, 0).unwrap();
            g.push(q, ts, i);
        }
        g
    }

    fn drain(g: &mut PartitionGroup<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        while g.ready(0, TaskIdle::default(), &mut |_, _| Some(0)) != Ready::No {
            out.push(g.pop().unwrap().1);
        }
        out
    }

    #[test]
    fn merges_partitions_by_head_timestamp_keeping_offset_order() {
        // A: 10, 5 (out of order within A, stays after 10); B: 7, 20.
        let mut g = group(&[(A, 10), (A, 5), (B, 7), (B, 20)]);
        assert_eq!(drain(&mut g), [2, 0, 1, 3]);
        assert_eq!(g.buffered(), 0);
    }

    #[test]
    fn waits_for_an_empty_partition_the_broker_holds_more_of() {
        let mut g = group(&[(A, 1), (A, 2)]);
        let mut lag_b = Some(5);
        let mut lag = |t: TopicRef, _| if t == B { lag_b } else { Some(0) };
        assert_eq!(g.ready(0, TaskIdle::default(), &mut lag), Ready::No);
        lag_b = None; // not known yet: wait too
        let mut lag = |t: TopicRef, _| if t == B { lag_b } else { Some(0) };
        assert_eq!(g.ready(0, TaskIdle::default(), &mut lag), Ready::No);
        // Caught up: processed at once, counted as enforced.
        assert_eq!(
            g.ready(0, TaskIdle::default(), &mut |_, _| Some(0)),
            Ready::Yes { enforced: true }
        );
        // Never waiting ignores lag altogether.
        assert_eq!(
            g.ready(0, TaskIdle::Never, &mut |_, _| None),
            Ready::Yes { enforced: false }
        );
    }

    #[test]
    fn a_positive_idle_time_waits_for_caught_up_partitions_too() {
        let mut g = group(&[(A, 1)]);
        let idle = TaskIdle::Wait(Duration::from_millis(100));
        let caught_up = &mut |_, _| Some(0);
        assert_eq!(g.ready(1_000, idle, caught_up), Ready::No);
        assert_eq!(g.ready(1_099, idle, caught_up), Ready::No);
        assert_eq!(
            g.ready(1_100, idle, caught_up),
            Ready::Yes { enforced: true }
        );
        // A record on B resets B's idle clock.
        let b = g.index(B, 0).unwrap();
        g.push(b, 2, 9);
        assert_eq!(
            g.ready(1_200, idle, caught_up),
            Ready::Yes { enforced: false }
        );
        assert_eq!(g.pop(), Some((0, 0)));
        assert_eq!(g.pop(), Some((1, 9)));
        g.push(0, 3, 10);
        assert_eq!(g.ready(1_300, idle, caught_up), Ready::No);
    }

    #[test]
    fn one_partition_is_ready_whenever_it_has_records() {
        let mut g = PartitionGroup::default();
        let q = g.add(A, 3);
        assert_eq!(g.ready(0, TaskIdle::default(), &mut |_, _| None), Ready::No);
        g.push(q, 5, ());
        assert_eq!(
            g.ready(0, TaskIdle::default(), &mut |_, _| None),
            Ready::Yes { enforced: false }
        );
    }
}
