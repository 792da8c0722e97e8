//! Task management on assignment changes (Kafka Streams' `TaskManager`
//! and rebalance listener): which task owns each input partition, tasks
//! created and restored once all their partitions are assigned, committed
//! and closed when one is revoked.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, RebalanceProtocol};
use rdkafka::{Offset, TopicPartitionList};

use super::restore::Restoring;
use super::{now_millis, Inputs, ThreadState};
use crate::error::Error;
use crate::runtime::consumer::{RebalanceEvent, StreamConsumerContext};
use crate::runtime::lag::assigned_bounds;
use crate::runtime::task::Task;
use crate::runtime::task_id::TaskId;
use crate::topology::TopicRef;

impl ThreadState {
    pub(super) fn route(&self, topic: TopicRef, partition: i32) -> Option<TaskId> {
        self.routes[topic.0 as usize]
            .get(partition as usize)
            .copied()
            .flatten()
    }

    pub(super) fn set_route(&mut self, topic: TopicRef, partition: i32, task: Option<TaskId>) {
        let row = &mut self.routes[topic.0 as usize];
        if row.len() <= partition as usize {
            row.resize(partition as usize + 1, None);
        }
        row[partition as usize] = task;
    }

    /// Applies the rebalance events queued during `poll`.
    ///
    /// Under the consumer protocol (cooperative) an event names only the
    /// partitions that arrive or leave; under the classic (eager) one a
    /// revocation names every partition and an assignment the whole new
    /// set. Both are handled alike: a task runs only while the thread holds
    /// every input partition it needs (partition `p` of each source topic
    /// of its sub-topology), so that co-partitioning holds while partitions
    /// move one at a time. Partitions of a task that is not complete are
    /// held paused ([`ThreadState::waiting`]); the task is made (and
    /// restored) once the last of them arrives, and closed as soon as one
    /// of them leaves. Other tasks are not touched.
    pub(super) fn rebalance(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        for event in consumer.context().take_events() {
            let incremental = matches!(
                consumer.rebalance_protocol(),
                RebalanceProtocol::Cooperative
            );
            match event {
                RebalanceEvent::Revoke(tpl) => self.revoke(consumer, inputs, &tpl, incremental)?,
                RebalanceEvent::Assign(tpl) => self.assign(consumer, inputs, &tpl, incremental)?,
            }
        }
        let owned = self.routes.iter().flatten().filter(|r| r.is_some()).count();
        self.metrics.assigned.set(owned as i64);
        self.count_starting();
        Ok(())
    }

    /// Exports how many tasks do not run yet (`/ready` waits for none).
    fn count_starting(&self) {
        let n = self.restoring.len() + self.waiting.len();
        self.metrics.starting.set(n as i64);
    }

    /// The task a source partition belongs to.
    fn task_of(&self, topic: &str, partition: i32) -> Option<(TopicRef, TaskId)> {
        let topic = self.settings.topics.get(topic)?;
        let &(subtopology, _) = self.topology.sources.get(&topic)?;
        Some((
            topic,
            TaskId {
                subtopology,
                partition,
            },
        ))
    }

    /// Whether `held` holds every input partition task `id` reads.
    fn complete(&self, id: TaskId, held: &[(TopicRef, i32)]) -> bool {
        self.topology
            .sources
            .iter()
            .filter(|(_, (s, _))| *s == id.subtopology)
            .all(|(t, _)| held.contains(&(*t, id.partition)))
    }

    fn revoke(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
        tpl: &TopicPartitionList,
        incremental: bool,
    ) -> Result<(), Error> {
        let committed = if consumer.assignment_lost() {
            tracing::warn!(thread = %self.name, "assignment lost; uncommitted records will be re-processed by the new owner");
            // Under exactly-once the open transaction holds outputs of
            // lost tasks: it must not commit.
            self.collector.abandon("assignment lost")?
        } else {
            self.commit(consumer, true)?
        };
        // librdkafka keeps an application pause across assignments.
        let mut resume = TopicPartitionList::new();
        let mut closing = Vec::new();
        for e in tpl.elements() {
            let Some((topic, id)) = self.task_of(e.topic(), e.partition()) else {
                continue;
            };
            inputs.bounds.remove(&(topic, e.partition()));
            if let Some(mut r) = self.restoring.remove(&id) {
                // Not running yet: its partitions wait, paused, like those
                // of a task that lacks one.
                r.task.close();
                let partitions = std::mem::take(&mut r.partitions);
                drop(r);
                self.settings.local.unclaim(id);
                self.waiting.insert(id, partitions);
            }
            if let Some(held) = self.waiting.get_mut(&id) {
                held.retain(|&p| p != (topic, e.partition()));
                resume.add_partition(e.topic(), e.partition());
                if held.is_empty() {
                    self.waiting.remove(&id);
                }
            } else if self.tasks.contains_key(&id) && !closing.contains(&id) {
                closing.push(id);
            }
        }
        let gone: Vec<(TopicRef, i32)> = tpl
            .elements()
            .iter()
            .filter_map(|e| Some((self.settings.topics.get(e.topic())?, e.partition())))
            .collect();
        let mut pause = TopicPartitionList::new();
        let mut kept = Vec::new();
        for id in closing {
            let mut task = self.tasks.remove(&id).expect("listed");
            let group = inputs.groups.remove(&id);
            for (topic, partition) in task.partitions().collect::<Vec<_>>() {
                self.set_route(topic, partition, None);
                let name = self.settings.topics.name(topic);
                let paused = group
                    .as_ref()
                    .and_then(|g| g.index(topic, partition).map(|q| g.queues()[q].paused))
                    .unwrap_or(false);
                if gone.contains(&(topic, partition)) {
                    // Unprocessed records are dropped: the next owner
                    // reads them from the committed offset.
                    if paused {
                        resume.add_partition(name, partition);
                    }
                } else {
                    // Still held, but its task is gone: it waits, paused,
                    // for the partitions that left to come back.
                    kept.push((topic, partition));
                    if !paused {
                        pause.add_partition(name, partition);
                    }
                }
            }
            task.close();
            // Its stores are closed: a standby may open them.
            drop(task);
            self.settings.local.unclaim(id);
            self.metrics.tasks_closed.inc();
            if !kept.is_empty() {
                self.waiting.insert(id, std::mem::take(&mut kept));
            }
        }
        if resume.count() > 0 {
            consumer.resume(&resume)?;
        }
        if pause.count() > 0 {
            consumer.pause(&pause)?;
        }
        if incremental {
            consumer.incremental_unassign(tpl)?;
        } else {
            consumer.unassign()?;
        }
        // Tasks kept (none with the eager protocol) go back to their last
        // commit if the transaction did not commit.
        self.recover(committed, consumer, inputs)?;
        tracing::info!(thread = %self.name, revoked = tpl.count(), tasks = self.tasks.len(), "partitions revoked");
        Ok(())
    }

    fn assign(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
        tpl: &TopicPartitionList,
        incremental: bool,
    ) -> Result<(), Error> {
        let bounds = assigned_bounds(consumer, tpl, self.reset_to_latest, Duration::from_secs(30));
        let mut arrived: Vec<(TaskId, Vec<(TopicRef, i32)>)> = Vec::new();
        // Each new partition is assigned at the offset just looked up (its
        // committed offset, else where `auto.offset.reset` points), not a
        // logical one: librdkafka would look that up itself, and a reply to
        // its lookup that lands after the seek of `restore_pass` restarts
        // the lookup (an outdated reply does, `rd_kafka_toppar_handle_Offset`
        // in librdkafka 2.x), which then fetches the partition again from
        // its start.
        let mut positioned = TopicPartitionList::new();
        for e in tpl.elements() {
            positioned.add_partition_offset(e.topic(), e.partition(), e.offset())?;
            let Some((topic, id)) = self.task_of(e.topic(), e.partition()) else {
                continue;
            };
            let held = |r: &Restoring| r.partitions.contains(&(topic, e.partition()));
            if self.route(topic, e.partition()).is_some()
                || self.restoring.get(&id).is_some_and(held)
            {
                // Already held (assigned again after a lost assignment, or
                // twice): pausing it would stall its running task.
                tracing::warn!(thread = %self.name, partition = %format!("{}-{}", e.topic(), e.partition()), "assigned a partition already held; left as it is");
                continue;
            }
            let known = bounds
                .get(&(e.topic().to_owned(), e.partition()))
                .copied()
                .unwrap_or_default();
            inputs.bounds.insert((topic, e.partition()), known);
            if let Some(start) = known.start {
                positioned.set_partition_offset(e.topic(), e.partition(), Offset::Offset(start))?;
            }
            match arrived.iter_mut().find(|(i, _)| *i == id) {
                Some((_, parts)) => parts.push((topic, e.partition())),
                None => arrived.push((id, vec![(topic, e.partition())])),
            }
        }
        if incremental {
            consumer.incremental_assign(&positioned)?;
        } else {
            consumer.assign(&positioned)?;
        }
        // Not ready from before any restore shows as remaining (the count
        // is made exact once the assignment is handled).
        let starting = self.restoring.len() + self.waiting.len() + arrived.len();
        self.metrics.starting.set(starting as i64);
        let now = now_millis();
        let mut pause = TopicPartitionList::new();
        for (id, parts) in arrived {
            // Held paused until the task runs (the partitions that waited
            // already are).
            for &(t, p) in &parts {
                pause.add_partition(self.settings.topics.name(t), p);
            }
            let waited = self.waiting.remove(&id).unwrap_or_default();
            let held: Vec<_> = waited.iter().chain(&parts).copied().collect();
            if !self.complete(id, &held) {
                tracing::info!(thread = %self.name, task = %id, "task waits for the rest of its input partitions");
                self.waiting.insert(id, held);
                continue;
            }
            // A standby of the task on this worker hands its stores over.
            self.settings.local.claim(id);
            let task = Task::new(&self.topology, id, &self.settings, now, &self.cache)?;
            let restoring = self.begin_restore(task, held)?;
            self.restoring.insert(id, restoring);
        }
        if pause.count() > 0 {
            consumer.pause(&pause)?;
        }
        let assigned: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| format!("{}-{}", e.topic(), e.partition()))
            .collect();
        tracing::info!(thread = %self.name, ?assigned, tasks = self.tasks.len(), "partitions assigned");
        Ok(())
    }

    /// Restores the tasks being restored for at most [`RESTORE_SLICE`],
    /// then lets each one that is done run: its partitions resume from
    /// their committed offsets (anything fetched before they were paused
    /// was dropped).
    pub(super) fn restore_pass(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        if self.restoring.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + RESTORE_SLICE;
        let mut ready = TopicPartitionList::new();
        let ids: Vec<TaskId> = self.restoring.keys().copied().collect();
        for id in ids {
            let mut r = self.restoring.remove(&id).expect("listed");
            // Past the deadline a task still gets a batch: each one moves.
            if !self.restore_step(&mut r, deadline)? {
                self.restoring.insert(id, r);
                continue;
            }
            let mut task = r.task;
            task.start()?;
            let group = inputs.groups.entry(id).or_default();
            for &(topic, partition) in &r.partitions {
                task.add_partition(topic, partition);
                group.add(topic, partition);
                self.set_route(topic, partition, Some(id));
                ready.add_partition(self.settings.topics.name(topic), partition);
            }
            self.tasks.insert(id, task);
            self.metrics.tasks_created.inc();
        }
        if ready.count() > 0 {
            consumer.resume(&ready)?;
            self.rewind(consumer, &ready, inputs)?;
            let owned = self.routes.iter().flatten().filter(|r| r.is_some()).count();
            self.metrics.assigned.set(owned as i64);
            self.count_starting();
        }
        Ok(())
    }
}

/// How long one pass of the poll loop spends restoring: the thread's
/// running tasks wait at most this long, and the group consumer is polled
/// between passes.
const RESTORE_SLICE: Duration = Duration::from_millis(100);
