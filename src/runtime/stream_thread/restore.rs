//! Changelog restore (Kafka Streams' `StoreChangelogReader`): a new task's
//! logged stores are brought up to the end of their changelogs before it
//! processes anything.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::ThreadState;
use crate::error::Error;
use crate::runtime::task::Task;
use crate::stores::Checkpoint;

impl ThreadState {
    /// Brings a new task's logged stores up to the end of their changelogs
    /// before it processes anything: from the checkpointed offset if the
    /// checkpoint is valid, else from the start into a wiped store.
    pub(super) fn restore(&mut self, task: &mut Task) -> Result<(), Error> {
        let stores: Vec<_> = task
            .stores()
            .iter()
            .filter(|s| s.borrow().changelog.is_some())
            .cloned()
            .collect();
        if stores.is_empty() {
            return Ok(());
        }
        let id = task.ctx.id;
        let checkpoint = self
            .settings
            .stores
            .task_dir(id)
            .and_then(|d| Checkpoint::read(&d));
        for store in stores {
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
            let started = Instant::now();
            let mut restored = 0u64;
            let remaining = self.metrics.restore_remaining.with_label_values(&[&name]);
            remaining.set(high - start);
            if start < high {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(start))?;
                // A reader of its own, for the same reason.
                let consumer: BaseConsumer = self.restore_config.create()?;
                consumer.assign(&tpl)?;
                // Consuming and writing overlap: this thread fetches and
                // copies batches, a scoped thread writes them to the engine.
                let mut engine = state.take_engine();
                let metrics = &self.metrics;
                let (written, engine_back) = std::thread::scope(|scope| {
                    let (tx, rx) = mpsc::sync_channel::<Vec<(Vec<u8>, Option<Vec<u8>>)>>(4);
                    let writer = scope.spawn(move || {
                        let result = (|| {
                            engine.set_bulk_loading(true)?;
                            for batch in rx {
                                engine.write(
                                    &mut batch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                                )?;
                            }
                            engine.set_bulk_loading(false)
                        })();
                        (result, engine)
                    });
                    let mut position = start;
                    let mut last_offset = None;
                    let mut last_log = Instant::now();
                    while position < high {
                        let mut batch = Vec::with_capacity(10_000);
                        // Short waits: the end of a changelog written in
                        // transactions is a marker, never handed out, so
                        // an empty poll is followed by a look at the
                        // position (which steps over markers).
                        let mut timeout = Duration::from_millis(10);
                        while batch.len() < 10_000 {
                            match consumer.poll(timeout) {
                                Some(Ok(m)) => {
                                    position = m.offset() + 1;
                                    last_offset = Some(m.offset());
                                    if let Some(k) = m.key() {
                                        batch.push((k.to_vec(), m.payload().map(<[u8]>::to_vec)));
                                    }
                                }
                                Some(Err(e)) => {
                                    tracing::warn!(store = %name, "restore poll: {e}");
                                    break;
                                }
                                None => break,
                            }
                            timeout = Duration::ZERO;
                        }
                        if batch.is_empty() {
                            position =
                                position.max(consumer_position(&consumer, &topic, partition));
                        }
                        let n = batch.len() as u64;
                        if n > 0 && tx.send(batch).is_err() {
                            break; // the writer failed; its error is reported below
                        }
                        restored += n;
                        metrics.restored.with_label_values(&[&name]).inc_by(n);
                        remaining.set((high - position).max(0));
                        if last_log.elapsed() > Duration::from_secs(5) {
                            tracing::info!(task = %id, store = %name, restored, remaining = high - position, "restoring");
                            last_log = Instant::now();
                        }
                    }
                    drop(tx);
                    let (result, engine) =
                        writer.join().expect("the restore writer does not panic");
                    (result.map(|()| last_offset), engine)
                });
                state.put_engine(engine_back);
                if let Some(o) = written.map_err(Error::Store)? {
                    state.changelog_offset = Some(o);
                }
            }
            remaining.set(0);
            tracing::info!(
                task = %id,
                store = %name,
                restored,
                from = start,
                to = high,
                secs = started.elapsed().as_secs_f64(),
                "store restored"
            );
        }
        Ok(())
    }
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
