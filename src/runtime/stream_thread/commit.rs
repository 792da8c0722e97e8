//! The producer and commit side of a stream thread: task outputs handed
//! to the producer, and commits that wait until the broker acknowledged
//! every output before committing the consumed offsets and writing the
//! stores' checkpoints.
//!
//! Under exactly-once a commit is two-phase for the stores: their caches
//! go to the changelogs inside the transaction, and to the engines only
//! once it committed (so an engine holds committed state alone, and a
//! checkpoint is never ahead of a committed transaction). A transaction
//! that aborts, or a producer that was fenced, sends every task back to
//! its committed state: the task is closed without writing its caches,
//! made anew from its stores and checkpoint, and its partitions are read
//! again from their committed offsets (Kafka Streams closes such tasks
//! dirty and revives them).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{now_millis, Inputs, ThreadState};
use crate::error::Error;
use crate::observability::lap;
use crate::runtime::collector::Committed;
use crate::runtime::consumer::StreamConsumerContext;
use crate::runtime::partition_group::PartitionGroup;
use crate::runtime::state_dir::StoreProvider;
use crate::runtime::task::Task;

/// How often the stores of a thread's tasks are checkpointed (at least).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

impl ThreadState {
    pub(super) fn send_outputs(&mut self) -> Result<(), Error> {
        let mut sent = 0;
        for task in self.tasks.values_mut() {
            if !task.ctx.output.is_empty() {
                sent += self.collector.send(&task.ctx.output)?;
                task.ctx.output.clear();
            }
        }
        if sent == 0 {
            self.collector.poll();
        }
        self.metrics.produced.inc_by(sent as u64);
        Ok(())
    }

    /// Commits when the interval has passed, a processor asked, the write
    /// caches are full under exactly-once, or the open transaction is
    /// doomed; after an abort, resets the tasks.
    pub(super) fn maybe_commit(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        let requested = self
            .tasks
            .values_mut()
            .fold(false, |any, t| t.take_commit_request() | any);
        if !self.exactly_once {
            self.collector.poll_pending(consumer)?;
        }
        let due = requested
            || std::mem::take(&mut self.commit_now)
            || self.collector.is_doomed()
            || self.last_commit.elapsed() >= self.commit_interval;
        if due {
            let committed = self.commit(consumer, false)?;
            self.recover(committed, consumer, inputs)?;
        }
        Ok(())
    }

    /// Resets every task to its committed state after an aborted
    /// transaction or a fenced producer; nothing to do otherwise.
    pub(super) fn recover(
        &mut self,
        committed: Committed,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        match committed {
            Committed::Yes | Committed::Refused => Ok(()),
            Committed::Aborted(reason) | Committed::Fenced(reason) => {
                tracing::warn!(thread = %self.name, tasks = self.tasks.len(), "transaction aborted ({reason}); tasks go back to their last commit");
                self.metrics.aborts.inc();
                self.reset_tasks(consumer, inputs)
            }
        }
    }

    /// Sends pending outputs, waits for the broker to acknowledge all of
    /// them, then commits the next offsets of every owned partition (under
    /// exactly-once, in the transaction, and then writes the stores'
    /// caches to their engines). The stores are persisted and their
    /// checkpoints written every [`CHECKPOINT_INTERVAL`], or when `close`
    /// (the tasks are about to close): a checkpoint costs a memtable flush
    /// and an fsync per store, too much for every commit of 100 ms, and an
    /// older one only means a longer (idempotent) replay after a crash.
    /// At-least-once, a commit without a checkpoint does not wait: its
    /// offsets are committed once its outputs are acknowledged
    /// ([`Collector::commit_later`]), while the thread processes on.
    ///
    /// [`Collector::commit_later`]: crate::runtime::collector::Collector::commit_later
    pub(super) fn commit(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        close: bool,
    ) -> Result<Committed, Error> {
        let start = Instant::now();
        let mut clock = start;
        for task in self.tasks.values_mut() {
            if self.exactly_once {
                task.log_stores();
            } else {
                task.flush_stores().map_err(Error::Store)?;
            }
        }
        self.send_outputs()?;
        lap(&self.metrics.commit_phases.stores, &mut clock);
        // A transaction always commits offsets when it has outputs, even
        // if no input moved (the results of calls, punctuations): the
        // offset commit carries the group membership, and the broker
        // refuses it from a member that was fenced out of the group — a
        // zombie's transaction is aborted, not committed beside its
        // successor's.
        let every = self.exactly_once && self.collector.in_transaction();
        let mut offsets = TopicPartitionList::new();
        for task in self.tasks.values() {
            for (topic, partition, next) in task.to_commit(every) {
                offsets.add_partition_offset(
                    self.settings.topics.name(topic),
                    partition,
                    Offset::Offset(next),
                )?;
            }
        }
        let checkpoint = close || self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL;
        let committed = if !self.exactly_once && !checkpoint {
            // Nothing written to disk that must match the offsets: they
            // are committed once this epoch's outputs are acknowledged,
            // while the thread goes on.
            self.collector
                .commit_later(consumer, offsets, &self.metrics.commit_phases)?;
            Committed::Yes
        } else {
            self.collector
                .commit(consumer, &offsets, &self.metrics.commit_phases)?
        };
        let mut clock = Instant::now();
        if let StoreProvider::Rocks { shared, .. } = &self.settings.stores {
            self.metrics.rocksdb_cache.set(shared.cache_usage() as i64);
            self.metrics
                .rocksdb_memtables
                .set(shared.memtable_usage() as i64);
        }
        if committed.is_yes() {
            let acked = checkpoint.then(|| self.collector.changelog_offsets());
            for task in self.tasks.values_mut() {
                if self.exactly_once {
                    task.apply_stores().map_err(Error::Store)?;
                }
                task.mark_committed();
                if let Some(acked) = &acked {
                    task.checkpoint(&self.settings.stores, acked)
                        .map_err(Error::Store)?;
                }
            }
            if checkpoint {
                self.last_checkpoint = Instant::now();
            }
            lap(&self.metrics.commit_phases.apply, &mut clock);
        }
        self.last_commit = Instant::now();
        self.metrics.commits.inc();
        self.metrics
            .commit_latency
            .observe(start.elapsed().as_secs_f64());
        Ok(committed)
    }

    /// Closes every task without writing its caches, makes it anew from
    /// its stores (which hold committed state alone) and checkpoint, drops
    /// its buffered records, and moves its partitions back to their
    /// committed offsets.
    pub(super) fn reset_tasks(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        self.collector.forget_changelog_offsets();
        let now = now_millis();
        let mut rewind = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        let ids: Vec<_> = self.tasks.keys().copied().collect();
        for id in ids {
            let mut old = self.tasks.remove(&id).expect("listed");
            let partitions: Vec<_> = old.partitions().collect();
            old.ctx.output.clear();
            old.close();
            // The engines must be closed before they are opened again.
            drop(old);
            let task = Task::new(&self.topology, id, &self.settings, now, &self.cache)?;
            let mut task = self.restore_now(task)?;
            let mut group = PartitionGroup::default();
            let old_group = inputs.groups.remove(&id);
            for &(topic, partition) in &partitions {
                task.add_partition(topic, partition);
                group.add(topic, partition);
                let name = self.settings.topics.name(topic);
                let paused = old_group
                    .as_ref()
                    .and_then(|g| g.index(topic, partition).map(|q| g.queues()[q].paused));
                if paused == Some(true) {
                    resume.add_partition(name, partition);
                }
                rewind.add_partition(name, partition);
            }
            inputs.groups.insert(id, group);
            self.tasks.insert(id, task);
        }
        if resume.count() > 0 {
            consumer.resume(&resume)?;
        }
        self.rewind(consumer, &rewind, inputs)
    }

    /// Seeks `partitions` to their committed offsets (where consumption
    /// started, if none); their queues then take records from there.
    pub(super) fn rewind(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        partitions: &TopicPartitionList,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        if partitions.count() == 0 {
            return Ok(());
        }
        let committed = super::restore::retrying("looking up committed offsets", || {
            consumer.committed_offsets(partitions.clone(), Duration::from_secs(10))
        })?;
        for e in committed.elements() {
            let start = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                // Never committed: where consumption started.
                _ => self
                    .settings
                    .topics
                    .get(e.topic())
                    .and_then(|t| inputs.bounds.get(&(t, e.partition())))
                    .and_then(|b| b.start)
                    .map_or(Offset::Beginning, Offset::Offset),
            };
            consumer.seek(e.topic(), e.partition(), start, Duration::from_secs(30))?;
            let Offset::Offset(start) = start else {
                continue;
            };
            let Some(topic) = self.settings.topics.get(e.topic()) else {
                continue;
            };
            let Some(id) = self.route(topic, e.partition()) else {
                continue;
            };
            if let Some(task) = self.tasks.get_mut(&id) {
                task.positioned(topic, e.partition(), start);
            }
            let queue = inputs.groups.get_mut(&id).and_then(|group| {
                let i = group.index(topic, e.partition())?;
                Some(&mut group.queues_mut()[i])
            });
            if let Some(queue) = queue {
                queue.positioned(start);
            }
        }
        Ok(())
    }
}
