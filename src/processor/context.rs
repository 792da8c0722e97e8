use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{millis, Data, Failure, PunctuationId, PunctuationType, Record};
use crate::runtime::{forward_all, Child, TaskContext, TaskId};
use crate::serde::Serde;
use crate::stores::{
    GlobalStore, KeyValueStore, SessionStore, StateError, StoreKind, StoreState, WindowStore,
};

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

    /// The series of the saga this node runs (a worker's task).
    pub(crate) fn saga_metrics(&self) -> Option<crate::observability::SagaMetrics> {
        self.task.metrics.as_ref()?.saga(self.node)
    }

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.task.id
    }

    /// The application id (the consumer group).
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }

    /// Marks the current record as failed: once processing returns it goes
    /// to the dead-letter topic with the failure's kind and error as its
    /// reason (or stops the worker under the `Fail` policy). A message or a
    /// boxed error is a [`FailureKind::Processing`](crate::processor::FailureKind::Processing) failure (see
    /// [`Failure`]). Outputs already forwarded stay; the first failure of a
    /// record is kept.
    pub fn fail(&mut self, failure: impl Into<Failure>) {
        self.task.fail(failure.into());
    }

    /// Counts the current record as dropped for arriving after its window
    /// closed (window end + grace).
    pub fn record_late_drop(&mut self) {
        let node = self.node;
        match self.task.dropped.late.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1,
            None => self.task.dropped.late.push((node, 1)),
        }
    }

    /// Counts `n` state entries this operator expired because their
    /// retention passed in stream time (deferred events, expiring entries).
    pub fn record_expired(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        let node = self.node;
        match self
            .task
            .dropped
            .expired
            .iter_mut()
            .find(|(k, _)| *k == node)
        {
            Some((_, count)) => *count += n,
            None => self.task.dropped.expired.push((node, n)),
        }
    }

    fn store_state(
        &self,
        name: &str,
        kind: StoreKind,
    ) -> Result<Rc<RefCell<StoreState>>, StateError> {
        match self.task.store(name) {
            Some(s) if s.borrow().spec.kind == kind => Ok(s.clone()),
            _ => Err(StateError::Unknown {
                store: name.to_owned(),
                kind,
            }),
        }
    }

    /// The global table's store `name`.
    pub(crate) fn global_store(&self, name: &str) -> Result<Arc<GlobalStore>, StateError> {
        self.task
            .globals
            .named(name)
            .cloned()
            .ok_or_else(|| StateError::UnknownGlobal {
                store: name.to_owned(),
            })
    }

    /// The key-value store `name`, typed by the given serdes.
    pub fn key_value_store<SK, SV>(
        &self,
        name: &str,
        key_serde: Arc<dyn Serde<SK>>,
        value_serde: Arc<dyn Serde<SV>>,
    ) -> Result<KeyValueStore<SK, SV>, StateError> {
        Ok(KeyValueStore {
            state: self.store_state(name, StoreKind::KeyValue)?,
            key: key_serde,
            value: value_serde,
        })
    }

    /// The window store `name`, typed by the given serdes.
    pub fn window_store<SK, SV>(
        &self,
        name: &str,
        key_serde: Arc<dyn Serde<SK>>,
        value_serde: Arc<dyn Serde<SV>>,
    ) -> Result<WindowStore<SK, SV>, StateError> {
        Ok(WindowStore {
            state: self.store_state(name, StoreKind::Window)?,
            key: key_serde,
            value: value_serde,
        })
    }

    /// The session store `name`, typed by the given serdes.
    pub fn session_store<SK, SV>(
        &self,
        name: &str,
        key_serde: Arc<dyn Serde<SK>>,
        value_serde: Arc<dyn Serde<SV>>,
    ) -> Result<SessionStore<SK, SV>, StateError> {
        Ok(SessionStore {
            state: self.store_state(name, StoreKind::Session)?,
            key: key_serde,
            value: value_serde,
        })
    }
}
