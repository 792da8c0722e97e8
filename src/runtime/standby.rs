//! Standby replicas (Kafka Streams' standby tasks): warm copies of other
//! workers' task stores, kept by tailing their changelogs, so that a task
//! that fails over to this worker restores only what the copy had not read.
//!
//! Placement is computed by every worker alike from the members topic
//! ([`membership`](super::membership)), so no one has to assign it:
//! the live workers, sorted by process id, minus the one whose claim of the
//! task is newest, form a ring; task `s_p` starts at index
//! `(31 * s + p) mod n` of it, and the next `num_standby_replicas` workers
//! keep its copies. A worker never keeps a standby of a task it runs, and
//! a copy moves only when the membership changes.
//!
//! One thread per worker keeps all its standbys (the stream threads never
//! wait for it): a consumer assigned to their changelog partitions, each
//! record written to its store, a checkpoint every
//! [`CHECKPOINT_INTERVAL`]. A stream thread given a task this worker keeps
//! standby asks for it ([`LocalTasks::claim`]): the copy is checkpointed
//! and closed, and the task's restore starts from that checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::background::Background;
use super::changelog_batch::ChangelogBatch;
use super::lag::fetched_high_watermark;
use super::membership::{LocalTasks, Member, MembersView};
use super::state_dir::StoreProvider;
use super::task_id::TaskId;
use crate::error::Error;
use crate::observability::StandbyMetrics;
use crate::stores::{Checkpoint, Engine, StoreError, StoreSpec};

/// How often standby stores are persisted and checkpointed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// The standbys `me` keeps of `tasks`, given the live members (sorted by
/// process id) and who runs each task.
pub(crate) fn placement(
    me: &str,
    tasks: &[TaskId],
    live: &[Member],
    owner: impl Fn(TaskId) -> Option<String>,
    replicas: usize,
) -> BTreeSet<TaskId> {
    let mut mine = BTreeSet::new();
    if replicas == 0 {
        return mine;
    }
    for &task in tasks {
        let owner = owner(task);
        let ring: Vec<&str> = live
            .iter()
            .map(|m| m.process.as_str())
            .filter(|p| Some(*p) != owner.as_deref())
            .collect();
        if ring.is_empty() {
            continue;
        }
        let start = (31 * task.subtopology as usize + task.partition as usize) % ring.len();
        let chosen = (0..replicas.min(ring.len())).map(|i| ring[(start + i) % ring.len()]);
        if chosen.into_iter().any(|p| p == me) {
            mine.insert(task);
        }
    }
    mine
}

/// A persistent, logged store of a sub-topology, as a standby keeps it.
#[derive(Clone)]
pub(crate) struct StandbyStore {
    pub(crate) spec: StoreSpec,
    pub(crate) changelog: String,
}

/// A read of a standby's store (a stale read, asked for explicitly).
pub(crate) struct StandbyRead {
    pub(crate) task: TaskId,
    pub(crate) store: String,
    pub(crate) key: Vec<u8>,
    /// `None` if this worker keeps no standby of the task; else the value
    /// and the copy's lag behind its changelog.
    pub(crate) reply: mpsc::Sender<Option<(Option<Vec<u8>>, i64)>>,
}

/// What the standby thread needs.
pub(crate) struct StandbySpec {
    pub(crate) process: String,
    pub(crate) replicas: usize,
    /// Every task that has persistent logged stores, with those stores.
    pub(crate) tasks: BTreeMap<TaskId, Vec<StandbyStore>>,
    pub(crate) stores: StoreProvider,
    pub(crate) consumer: ClientConfig,
    pub(crate) local: Arc<LocalTasks>,
    pub(crate) view: Arc<MembersView>,
    pub(crate) metrics: StandbyMetrics,
    /// Stale reads of the standby stores.
    pub(crate) reads: mpsc::Receiver<StandbyRead>,
}

/// The worker's standby thread; dropped, it checkpoints and closes the
/// standbys.
pub(crate) struct Standbys {
    _thread: Background,
}

impl Standbys {
    pub(crate) fn start(spec: StandbySpec) -> Result<Standbys, Error> {
        let consumer: BaseConsumer = spec.consumer.create()?;
        let thread = Background::spawn("eddy-standby", "the standby thread", move |stop| {
            let mut keeper = Keeper {
                spec,
                consumer,
                held: BTreeMap::new(),
                last_checkpoint: Instant::now(),
            };
            if let Err(e) = keeper.run(stop) {
                tracing::error!("standby replicas stopped: {e}");
            }
            keeper.close_all();
        })?;
        Ok(Standbys { _thread: thread })
    }
}

/// A store kept standby: its engine and the last changelog offset applied.
struct Copy {
    name: String,
    changelog: String,
    engine: Box<dyn Engine>,
    offset: Option<i64>,
}

struct Keeper {
    spec: StandbySpec,
    consumer: BaseConsumer,
    held: BTreeMap<TaskId, Vec<Copy>>,
    last_checkpoint: Instant,
}

impl Keeper {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), Error> {
        while !stop.load(Ordering::Acquire) {
            for task in self.spec.local.releases() {
                self.close(task);
            }
            let tasks: Vec<TaskId> = self.spec.tasks.keys().copied().collect();
            let view = &self.spec.view;
            let wanted = placement(
                &self.spec.process,
                &tasks,
                &view.live(),
                |t| view.owner(t).map(|m| m.process),
                self.spec.replicas,
            );
            let gone: Vec<TaskId> = self
                .held
                .keys()
                .filter(|t| !wanted.contains(t))
                .copied()
                .collect();
            for task in gone {
                self.close(task);
            }
            for task in wanted {
                if !self.held.contains_key(&task) && self.spec.local.open_standby(task) {
                    if let Err(e) = self.open(task) {
                        // Tried again on the next pass.
                        tracing::warn!(task = %task, "opening a standby: {e}");
                        self.spec.local.close_standby(task);
                    }
                }
            }
            self.spec.metrics.tasks.set(self.held.len() as i64);
            self.apply(Duration::from_millis(100))?;
            if self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                for (&task, copies) in &mut self.held {
                    checkpoint(&self.spec.stores, task, copies).map_err(Error::Store)?;
                }
                self.last_checkpoint = Instant::now();
            }
            self.export_lag();
            while let Ok(read) = self.spec.reads.try_recv() {
                let answer = self.read(&read);
                let _ = read.reply.send(answer);
            }
        }
        Ok(())
    }

    /// Answers a stale read from a standby store.
    fn read(&self, read: &StandbyRead) -> Option<(Option<Vec<u8>>, i64)> {
        let copy = self
            .held
            .get(&read.task)?
            .iter()
            .find(|c| c.name == read.store)?;
        let value = match copy.engine.get(&read.key) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(task = %read.task, store = %read.store, "standby read: {e}");
                return None;
            }
        };
        let end = fetched_high_watermark(&self.consumer, &copy.changelog, read.task.partition);
        let lag = end.map_or(0, |e| (e - copy.offset.map_or(0, |o| o + 1)).max(0));
        Some((value, lag))
    }

    /// Opens a task's stores from their checkpoint (wiped without one) and
    /// starts reading their changelogs after it.
    fn open(&mut self, task: TaskId) -> Result<(), Error> {
        let stores = self.spec.tasks.get(&task).cloned().unwrap_or_default();
        let checkpoint = self
            .spec
            .stores
            .task_dir(task)
            .and_then(|d| Checkpoint::read(&d));
        let mut copies = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for store in stores {
            let offset = checkpoint
                .as_ref()
                .and_then(|c| c.offsets.get(&store.spec.name).copied());
            let engine = match offset {
                Some(_) => self.spec.stores.open(task, &store.spec),
                None => self.spec.stores.wipe(task, &store.spec),
            }
            .map_err(Error::Store)?;
            let start = offset.map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
            tpl.add_partition_offset(&store.changelog, task.partition, start)?;
            copies.push(Copy {
                name: store.spec.name.clone(),
                changelog: store.changelog,
                engine,
                offset,
            });
        }
        self.consumer.incremental_assign(&tpl)?;
        tracing::info!(task = %task, stores = copies.len(), "standby opened");
        self.held.insert(task, copies);
        Ok(())
    }

    /// Checkpoints and closes a standby (kept on disk: a later restore or
    /// standby of the task starts from its checkpoint).
    fn close(&mut self, task: TaskId) {
        if let Some(mut copies) = self.held.remove(&task) {
            if let Err(e) = checkpoint(&self.spec.stores, task, &mut copies) {
                tracing::warn!(task = %task, "checkpointing a standby: {e}");
            }
            let mut tpl = TopicPartitionList::new();
            for c in &copies {
                let _ = self
                    .spec
                    .metrics
                    .lag
                    .remove_label_values(&[&task.to_string(), &c.name]);
                tpl.add_partition(&c.changelog, task.partition);
            }
            if let Err(e) = self.consumer.incremental_unassign(&tpl) {
                tracing::warn!(task = %task, "unassigning a standby's changelogs: {e}");
            }
            drop(copies);
            tracing::info!(task = %task, "standby closed");
        }
        self.spec.local.close_standby(task);
    }

    fn close_all(&mut self) {
        let tasks: Vec<TaskId> = self.held.keys().copied().collect();
        for task in tasks {
            self.close(task);
        }
    }

    /// Reads what the changelogs hold (waiting at most `wait` for the
    /// first record, at most 10 000 records) and writes it to the stores.
    fn apply(&mut self, wait: Duration) -> Result<(), Error> {
        // By changelog partition: its records, how many were read (keyless
        // ones restore nothing) and the last one's offset.
        let mut batches: Vec<((String, i32), ChangelogBatch, u64, i64)> = Vec::new();
        let mut timeout = wait;
        let mut n = 0;
        while n < 10_000 {
            let Some(polled) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let m = match polled {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("standby poll: {e}");
                    continue;
                }
            };
            n += 1;
            let (topic, partition) = (m.topic(), m.partition());
            let i = match batches
                .iter()
                .position(|((t, p), ..)| t == topic && *p == partition)
            {
                Some(i) => i,
                None => {
                    let fresh = ChangelogBatch::default();
                    batches.push(((topic.to_owned(), partition), fresh, 0, -1));
                    batches.len() - 1
                }
            };
            let (_, batch, read, last) = &mut batches[i];
            if let Some(key) = m.key().filter(|k| !k.is_empty()) {
                batch.push(key, m.payload());
            }
            *read += 1;
            *last = m.offset();
        }
        for ((topic, partition), batch, read, last) in batches {
            let copy = self
                .held
                .iter_mut()
                .filter(|(t, _)| t.partition == partition)
                .flat_map(|(_, copies)| copies.iter_mut())
                .find(|c| c.changelog == topic);
            let Some(copy) = copy else {
                // Fetched before its standby closed.
                continue;
            };
            copy.engine
                .write(&mut batch.records())
                .map_err(Error::Store)?;
            copy.offset = Some(last);
            self.spec.metrics.records.inc_by(read);
        }
        Ok(())
    }

    fn export_lag(&self) {
        for (task, copies) in &self.held {
            for c in copies {
                let Some(end) =
                    fetched_high_watermark(&self.consumer, &c.changelog, task.partition)
                else {
                    continue;
                };
                let next = c.offset.map_or(0, |o| o + 1);
                self.spec
                    .metrics
                    .lag
                    .with_label_values(&[&task.to_string(), &c.name])
                    .set((end - next).max(0));
            }
        }
    }
}

/// Persists a standby's stores and writes the checkpoint of what they hold.
fn checkpoint(
    provider: &StoreProvider,
    task: TaskId,
    copies: &mut [Copy],
) -> Result<(), StoreError> {
    let Some(dir) = provider.task_dir(task) else {
        return Ok(());
    };
    let mut checkpoint = Checkpoint::default();
    for c in copies.iter_mut() {
        c.engine.flush()?;
        if let Some(o) = c.offset {
            checkpoint.offsets.insert(c.name.clone(), o);
        }
    }
    if checkpoint.offsets.is_empty() {
        return Ok(());
    }
    checkpoint.write(&dir).map_err(StoreError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|p| Member {
                process: p.to_string(),
                address: None,
                active: Vec::new(),
                standby: Vec::new(),
                at: 0,
            })
            .collect()
    }

    fn tasks(n: i32) -> Vec<TaskId> {
        (0..n)
            .map(|partition| TaskId {
                subtopology: 0,
                partition,
            })
            .collect()
    }

    #[test]
    fn a_standby_is_never_placed_on_the_owner_and_every_task_gets_one() {
        let live = members(&["a", "b", "c"]);
        let owner = |t: TaskId| Some(["a", "b", "c"][t.partition as usize % 3].to_string());
        let all = tasks(6);
        let mut count = BTreeMap::new();
        for m in &live {
            for t in placement(&m.process, &all, &live, owner, 1) {
                assert_ne!(owner(t).as_deref(), Some(m.process.as_str()));
                *count.entry(t).or_insert(0) += 1;
            }
        }
        assert_eq!(count.len(), 6);
        assert!(count.values().all(|&n| n == 1), "{count:?}");
        // Two replicas among three workers: both others keep one.
        for t in &all {
            let n = live
                .iter()
                .filter(|m| placement(&m.process, &[*t], &live, owner, 2).contains(t))
                .count();
            assert_eq!(n, 2);
        }
    }

    #[test]
    fn no_standby_without_replicas_or_another_worker() {
        let live = members(&["a"]);
        let owner = |_| Some("a".to_string());
        assert!(placement("a", &tasks(4), &live, owner, 1).is_empty());
        let live = members(&["a", "b"]);
        assert!(placement("b", &tasks(4), &live, owner, 0).is_empty());
        assert_eq!(placement("b", &tasks(4), &live, owner, 1).len(), 4);
    }
}
