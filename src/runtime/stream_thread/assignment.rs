//! Task management on assignment changes (Kafka Streams' `TaskManager`
//! and rebalance listener): which task owns each input partition, tasks
//! created and restored for assigned partitions, committed and closed for
//! revoked ones.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use super::{now_millis, Inputs, ThreadState};
use crate::error::Error;
use crate::runtime::consumer::{RebalanceEvent, StreamConsumerContext};
use crate::runtime::lag::assigned_bounds;
use crate::runtime::task::{Task, TaskId};
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
    pub(super) fn rebalance(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        for event in consumer.context().take_events() {
            match event {
                RebalanceEvent::Revoke(tpl) => {
                    let committed = if consumer.assignment_lost() {
                        tracing::warn!(thread = %self.name, "assignment lost; uncommitted records will be re-processed by the new owner");
                        // Under exactly-once the open transaction holds
                        // outputs of lost tasks: it must not commit.
                        self.collector.abandon("assignment lost")?
                    } else {
                        self.commit(consumer, true)?
                    };
                    let mut paused = TopicPartitionList::new();
                    for e in tpl.elements() {
                        let Some(topic) = self.settings.topics.get(e.topic()) else {
                            continue;
                        };
                        let Some(id) = self.route(topic, e.partition()) else {
                            continue;
                        };
                        self.set_route(topic, e.partition(), None);
                        inputs.bounds.remove(&(topic, e.partition()));
                        if let Some(group) = inputs.groups.get_mut(&id) {
                            // Unprocessed records are dropped: the next owner
                            // reads them from the committed offset.
                            if group.remove(topic, e.partition()).is_some_and(|q| q.paused) {
                                paused.add_partition(e.topic(), e.partition());
                            }
                            if group.is_empty() {
                                inputs.groups.remove(&id);
                            }
                        }
                        let task = self.tasks.get_mut(&id).expect("routes point at live tasks");
                        if task.remove_partition(topic, e.partition()) {
                            task.close();
                            self.tasks.remove(&id);
                        }
                    }
                    // librdkafka keeps an application pause across
                    // assignments.
                    if paused.count() > 0 {
                        consumer.resume(&paused)?;
                    }
                    consumer.unassign()?;
                    // Tasks kept (none with the eager protocol) go back to
                    // their last commit if the transaction did not commit.
                    self.recover(committed, consumer, inputs)?;
                    tracing::info!(thread = %self.name, revoked = tpl.count(), "partitions revoked");
                }
                RebalanceEvent::Assign(tpl) => {
                    let now = now_millis();
                    let bounds = assigned_bounds(
                        consumer,
                        &tpl,
                        self.reset_to_latest,
                        Duration::from_secs(30),
                    );
                    for e in tpl.elements() {
                        let Some(topic) = self.settings.topics.get(e.topic()) else {
                            continue;
                        };
                        let Some(&(subtopology, _)) = self.topology.sources.get(&topic) else {
                            continue;
                        };
                        let id = TaskId {
                            subtopology,
                            partition: e.partition(),
                        };
                        if !self.tasks.contains_key(&id) {
                            let mut task =
                                Task::new(&self.topology, id, &self.settings, now, &self.cache)?;
                            self.restore(&mut task)?;
                            self.tasks.insert(id, task);
                        }
                        let task = self.tasks.get_mut(&id).expect("just inserted");
                        task.add_partition(topic, e.partition());
                        inputs
                            .groups
                            .entry(id)
                            .or_default()
                            .add(topic, e.partition());
                        let known = bounds
                            .get(&(e.topic().to_owned(), e.partition()))
                            .copied()
                            .unwrap_or_default();
                        inputs.bounds.insert((topic, e.partition()), known);
                        self.set_route(topic, e.partition(), Some(id));
                    }
                    consumer.assign(&tpl)?;
                    let assigned: Vec<String> = tpl
                        .elements()
                        .iter()
                        .map(|e| format!("{}-{}", e.topic(), e.partition()))
                        .collect();
                    tracing::info!(thread = %self.name, ?assigned, "partitions assigned");
                }
            }
        }
        let owned = self.routes.iter().flatten().filter(|r| r.is_some()).count();
        self.metrics.assigned.set(owned as i64);
        Ok(())
    }
}
