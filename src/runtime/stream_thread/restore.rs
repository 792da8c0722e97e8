//! Changelog restore (Kafka Streams' `StoreChangelogReader`): a new task's
//! logged stores are brought up to the end of their changelogs before it
//! processes anything, a bounded batch at a time between polls of the
//! group consumer, so that a long restore neither stops the thread's other
//! tasks nor outlives `max.poll.interval.ms` (Kafka Streams 3.7+ does it on
//! a state-updater thread).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::ThreadState;
use crate::error::Error;
use crate::runtime::task::Task;
use crate::stores::{Checkpoint, Engine, StoreError, StoreState};
use crate::topology::TopicRef;

/// A task whose stores are being restored, with the input partitions it
/// will read (held paused until then).
pub(super) struct Restoring {
    pub(super) task: Task,
    pub(super) partitions: Vec<(TopicRef, i32)>,
    /// Stores still behind their changelog's end, in order.
    stores: VecDeque<StoreRestore>,
    /// The one being read.
    reading: Option<Reader>,
}

/// A store to bring from `start` to `high` of its changelog partition.
struct StoreRestore {
    store: Rc<RefCell<StoreState>>,
    /// The store's place among its task's stores.
    index: usize,
    name: String,
    topic: String,
    partition: i32,
    start: i64,
    high: i64,
}

use crate::runtime::changelog_batch::ChangelogBatch as Batch;

/// The reading of one store's changelog: this thread fetches and copies
/// batches, a writer thread applies them to the store's engine (lent to it
/// until the store is restored), so that consuming and writing overlap.
struct Reader {
    target: StoreRestore,
    /// A consumer of its own: one assigned and unassigned before waits
    /// about 500 ms for each new assignment.
    consumer: BaseConsumer,
    writer: Option<Writer>,
    position: i64,
    last_offset: Option<i64>,
    restored: u64,
    started: Instant,
    last_log: Instant,
}

struct Writer {
    batches: mpsc::SyncSender<Batch>,
    /// Written batches, emptied, to fill again.
    spent: mpsc::Receiver<Batch>,
    thread: JoinHandle<(Result<(), StoreError>, Box<dyn Engine>)>,
}

impl Writer {
    fn spawn(mut engine: Box<dyn Engine>) -> Result<Writer, Error> {
        let (batches, rx) = mpsc::sync_channel::<Batch>(4);
        let (give_back, spent) = mpsc::channel::<Batch>();
        let thread = std::thread::Builder::new()
            .name("eddy-restore".into())
            .spawn(move || {
                let result = (|| {
                    engine.set_bulk_loading(true)?;
                    for mut batch in rx {
                        engine.write(&mut batch.records())?;
                        batch.clear();
                        let _ = give_back.send(batch);
                    }
                    engine.set_bulk_loading(false)
                })();
                (result, engine)
            })
            .map_err(|source| Error::Spawn {
                what: "a restore writer".into(),
                source,
            })?;
        Ok(Writer {
            batches,
            spent,
            thread,
        })
    }

    /// An empty batch: a written one if any came back.
    fn batch(&self) -> Batch {
        self.spent.try_recv().unwrap_or_default()
    }

    /// Waits for the last batch to be written; the engine back, and how
    /// the writing went.
    fn finish(self) -> (Result<(), StoreError>, Box<dyn Engine>) {
        drop(self.batches);
        self.thread
            .join()
            .expect("the restore writer does not panic")
    }
}

impl Drop for Reader {
    /// A restore given up (its task revoked): the engine is closed here,
    /// before the store can be opened again.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            drop(writer.finish());
        }
    }
}

impl ThreadState {
    /// Plans the restore of a new task's logged stores: from the
    /// checkpointed offset if the checkpoint is valid, else from the start
    /// into a wiped store. Stores already at their changelog's end need
    /// nothing more.
    pub(super) fn begin_restore(
        &mut self,
        task: Task,
        partitions: Vec<(TopicRef, i32)>,
    ) -> Result<Restoring, Error> {
        let id = task.ctx.id;
        let checkpoint = self
            .settings
            .stores
            .task_dir(id)
            .and_then(|d| Checkpoint::read(&d));
        let logged: Vec<_> = task
            .stores()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.borrow().changelog.is_some())
            .map(|(i, s)| (i, s.clone()))
            .collect();
        let mut stores = VecDeque::new();
        for (index, store) in logged {
            let mut state = store.borrow_mut();
            let (topic, partition) = state.changelog.expect("filtered on changelog");
            let topic = self.settings.topics.name(topic).to_owned();
            let name = state.name().to_owned();
            let checkpointed = checkpoint
                .as_ref()
                .and_then(|c| c.offsets.get(&name).copied())
                .filter(|_| !state.spec.in_memory);
            if checkpointed.is_none() {
                // No valid checkpoint: whatever is on disk may be stale.
                state.replace_engine(Box::new(crate::stores::MemoryEngine::new()));
                let engine = self
                    .settings
                    .stores
                    .wipe(id, &state.spec)
                    .map_err(Error::Store)?;
                state.replace_engine(engine);
            }
            state.changelog_offset = checkpointed;
            let (low, high) = self.changelog_bounds(&topic, partition)?;
            let start = checkpointed.map_or(low, |o| (o + 1).max(low));
            drop(state);
            if start < high {
                if let Some(m) = task.ctx.metrics.as_ref().and_then(|m| m.store(index)) {
                    m.restore_remaining.set(high - start);
                }
                stores.push_back(StoreRestore {
                    store,
                    index,
                    name,
                    topic,
                    partition,
                    start,
                    high,
                });
            } else {
                tracing::info!(task = %id, store = %name, restored = 0, from = start, to = high, "store restored");
            }
        }
        Ok(Restoring {
            task,
            partitions,
            stores,
            reading: None,
        })
    }

    /// Restores `r` until it is done (true) or `deadline` passes (false),
    /// a batch of up to 10 000 changelog records at a time.
    pub(super) fn restore_step(
        &mut self,
        r: &mut Restoring,
        deadline: Instant,
    ) -> Result<bool, Error> {
        loop {
            let reader = match &mut r.reading {
                Some(reader) => reader,
                None => {
                    let Some(target) = r.stores.pop_front() else {
                        return Ok(true);
                    };
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(
                        &target.topic,
                        target.partition,
                        Offset::Offset(target.start),
                    )?;
                    let consumer: BaseConsumer = self.restore_config.create()?;
                    consumer.assign(&tpl)?;
                    let writer = Writer::spawn(target.store.borrow_mut().take_engine())?;
                    r.reading.insert(Reader {
                        position: target.start,
                        target,
                        consumer,
                        writer: Some(writer),
                        last_offset: None,
                        restored: 0,
                        started: Instant::now(),
                        last_log: Instant::now(),
                    })
                }
            };
            let batch = reader
                .writer
                .as_ref()
                .expect("a writer while reading")
                .batch();
            let batch = read_batch(reader, batch);
            let n = batch.len() as u64;
            if n > 0 {
                let writer = reader.writer.as_ref().expect("a writer while reading");
                if writer.batches.send(batch).is_err() {
                    // The writer stopped on an error: finishing reports it.
                    let (result, engine) = reader.writer.take().expect("checked").finish();
                    reader.target.store.borrow_mut().put_engine(engine);
                    result.map_err(Error::Store)?;
                }
            } else {
                let (t, p) = (&reader.target.topic, reader.target.partition);
                reader.position = reader
                    .position
                    .max(consumer_position(&reader.consumer, t, p));
            }
            reader.restored += n;
            let left = (reader.target.high - reader.position).max(0);
            if let Some(m) = r.task.ctx.metrics.as_ref() {
                if let Some(m) = m.store(reader.target.index) {
                    m.restored.inc_by(n);
                    m.restore_remaining.set(left);
                }
            }
            if left == 0 {
                let mut reader = r.reading.take().expect("reading");
                let writer = reader.writer.take().expect("a writer while reading");
                let (result, engine) = writer.finish();
                let mut state = reader.target.store.borrow_mut();
                state.put_engine(engine);
                result.map_err(Error::Store)?;
                if let Some(o) = reader.last_offset {
                    state.changelog_offset = Some(o);
                }
                tracing::info!(
                    task = %r.task.ctx.id,
                    store = %reader.target.name,
                    restored = reader.restored,
                    from = reader.target.start,
                    to = reader.target.high,
                    secs = reader.started.elapsed().as_secs_f64(),
                    "store restored"
                );
                continue;
            }
            if reader.last_log.elapsed() > Duration::from_secs(5) {
                tracing::info!(task = %r.task.ctx.id, store = %reader.target.name, restored = reader.restored, remaining = left, "restoring");
                reader.last_log = Instant::now();
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Restores a task's stores completely, at once (a task made again
    /// after an aborted transaction).
    pub(super) fn restore_now(&mut self, task: Task) -> Result<Task, Error> {
        let mut r = self.begin_restore(task, Vec::new())?;
        let forever = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        while !self.restore_step(&mut r, forever)? {}
        let mut task = r.task;
        task.start()?;
        Ok(task)
    }
}

/// Up to 10 000 records of the reader's changelog added to `batch` (a
/// record without a key restores nothing). Short waits: the end of a
/// changelog written in transactions is a marker, never handed out, so an
/// empty batch is followed by a look at the position (which steps over
/// markers).
fn read_batch(reader: &mut Reader, mut batch: Batch) -> Batch {
    let mut timeout = Duration::from_millis(10);
    while batch.len() < 10_000 {
        match reader.consumer.poll(timeout) {
            Some(Ok(m)) => {
                reader.position = m.offset() + 1;
                reader.last_offset = Some(m.offset());
                if let Some(k) = m.key() {
                    batch.push(k, m.payload());
                }
            }
            Some(Err(e)) => {
                tracing::warn!(store = %reader.target.name, "restore poll: {e}");
                break;
            }
            None => break,
        }
        timeout = Duration::ZERO;
    }
    batch
}

/// The consumer's position in a partition (`-1` if unknown).
fn consumer_position(consumer: &BaseConsumer, topic: &str, partition: i32) -> i64 {
    let Ok(positions) = consumer.position() else {
        return -1;
    };
    positions
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .unwrap_or(-1)
}

/// How long a changelog's bounds may stay out of reach (its leader moving
/// after a broker failure) before the thread gives up: Kafka Streams'
/// `task.timeout.ms` default.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(300);

impl ThreadState {
    /// A changelog partition's low watermark and end (its last stable
    /// offset, read committed), asked of a consumer that is never
    /// assigned: it answers at once (a consumer assigned and unassigned
    /// before waits about 500 ms for each new lookup or assignment).
    /// While the cluster cannot answer (a partition's leader moving after
    /// a broker failure) the lookup is tried again each second, by a new
    /// consumer, until [`LOOKUP_DEADLINE`]: a consumer that asked during
    /// the failure was seen to answer `UnknownPartition` for minutes after
    /// the broker was back.
    fn changelog_bounds(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), Error> {
        let deadline = Instant::now() + LOOKUP_DEADLINE;
        loop {
            let lookup = match self.changelog_lookup.take() {
                Some(c) => c,
                None => self.restore_config.create()?,
            };
            match lookup.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok(bounds) => {
                    self.changelog_lookup = Some(lookup);
                    return Ok(bounds);
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(
                        topic,
                        partition,
                        "looking up a changelog's end: {e}; trying again"
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Calls `op` again (each second) while it fails, until
/// [`LOOKUP_DEADLINE`]: a request the cluster cannot answer while a
/// partition's leader moves.
pub(super) fn retrying<T>(
    what: &str,
    mut op: impl FnMut() -> Result<T, rdkafka::error::KafkaError>,
) -> Result<T, Error> {
    let deadline = Instant::now() + LOOKUP_DEADLINE;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!("{what}: {e}; trying again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
