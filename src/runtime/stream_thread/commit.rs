//! The producer and commit side of a stream thread: task outputs handed
//! to the producer, and commits that wait until the broker acknowledged
//! every output before committing the consumed offsets and writing the
//! stores' checkpoints.

use std::time::Instant;

use rdkafka::consumer::BaseConsumer;
use rdkafka::{Offset, TopicPartitionList};

use super::ThreadState;
use crate::error::Error;
use crate::runtime::consumer::StreamConsumerContext;
use crate::runtime::state_dir::StoreProvider;

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

    pub(super) fn maybe_commit(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
    ) -> Result<(), Error> {
        let requested = self
            .tasks
            .values_mut()
            .fold(false, |any, t| t.take_commit_request() | any);
        if requested || self.last_commit.elapsed() >= self.commit_interval {
            self.commit(consumer)?;
        }
        Ok(())
    }

    /// Sends pending outputs, waits for the broker to acknowledge all of
    /// them, then commits the next offsets of every owned partition.
    pub(super) fn commit(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
    ) -> Result<bool, Error> {
        for task in self.tasks.values_mut() {
            task.flush_stores().map_err(Error::Store)?;
        }
        self.send_outputs()?;
        let start = Instant::now();
        let mut offsets = TopicPartitionList::new();
        for task in self.tasks.values() {
            for (topic, partition, next) in task.uncommitted() {
                offsets.add_partition_offset(
                    self.settings.topics.name(topic),
                    partition,
                    Offset::Offset(next),
                )?;
            }
        }
        let committed = self.collector.commit(consumer, &offsets)?;
        if let StoreProvider::Rocks { shared, .. } = &self.settings.stores {
            self.metrics.rocksdb_cache.set(shared.cache_usage() as i64);
            self.metrics
                .rocksdb_memtables
                .set(shared.memtable_usage() as i64);
        }
        if committed {
            let acked = self.collector.changelog_offsets();
            for task in self.tasks.values_mut() {
                task.mark_committed();
                task.checkpoint(&self.settings.stores, &acked)
                    .map_err(Error::Store)?;
            }
        }
        self.last_commit = Instant::now();
        self.metrics.commits.inc();
        self.metrics
            .commit_latency
            .observe(start.elapsed().as_secs_f64());
        Ok(committed)
    }
}
