//! A stream thread: poll a batch, process it task by task, send outputs,
//! punctuate, commit, and apply rebalances between batches.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::collector::Collector;
use super::consumer::{RebalanceEvent, StreamConsumerContext};
use super::context::{RawHeaders, RawRecord};
use super::lag::{assigned_bounds, prefetched, Bounds, LagView};
use super::partition_group::{PartitionGroup, Ready, TaskIdle};
use super::query::{Answer, Query, QueryOp};
use super::state_dir::StoreProvider;
use super::task::{Outcome, Task, TaskId, TaskSettings};
use super::upstream::Marks;
use crate::error::Error;
use crate::kafka::StreamsConfig;
use crate::observability::ThreadMetrics;
use crate::processor::Extracted;
use crate::stores::{CacheBudget, Checkpoint};
use crate::topology::{TopicRef, Topology};

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a stream thread is made from.
pub(crate) struct ThreadSpec {
    pub(crate) name: String,
    pub(crate) topology: Arc<Topology>,
    pub(crate) settings: TaskSettings,
    pub(crate) servers: String,
    pub(crate) metrics: ThreadMetrics,
    /// Set to stop every thread of the worker.
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Counted down by each thread after its final commit.
    pub(crate) committed: Arc<Latch>,
    /// Interactive queries for this thread's stores.
    pub(crate) queries: mpsc::Receiver<Query>,
}

pub(crate) struct StreamThread {
    consumer: BaseConsumer<StreamConsumerContext>,
    state: ThreadState,
    shutdown: Arc<AtomicBool>,
    committed: Arc<Latch>,
}

/// Counts threads down to zero; waiters block until it gets there.
pub(crate) struct Latch {
    remaining: Mutex<usize>,
    zero: Condvar,
}

impl Latch {
    pub(crate) fn new(count: usize) -> Self {
        Latch {
            remaining: Mutex::new(count),
            zero: Condvar::new(),
        }
    }

    /// Counts down, then waits (at most `timeout`) for the others.
    pub(crate) fn count_down_and_wait(&self, timeout: Duration) {
        let mut n = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.zero.notify_all();
        let _ = self
            .zero
            .wait_timeout_while(n, timeout, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// Everything but the consumer, so a batch can borrow the consumer while
/// the tasks are mutated.
struct ThreadState {
    name: String,
    topology: Arc<Topology>,
    settings: TaskSettings,
    collector: Collector,
    tasks: BTreeMap<TaskId, Task>,
    /// Task of each owned input partition: `routes[topic][partition]`.
    routes: Vec<Vec<Option<TaskId>>>,
    metrics: ThreadMetrics,
    commit_interval: Duration,
    last_commit: Instant,
    poll_timeout: Duration,
    max_poll_records: usize,
    idle: TaskIdle,
    /// Records buffered per partition before it is paused.
    max_buffered: usize,
    /// Where a partition without a committed offset starts.
    reset_to_latest: bool,
    /// Write-cache budget of this thread's stores.
    cache: Rc<CacheBudget>,
    restore_config: ClientConfig,
    /// Reads changelogs (no group), made on first use.
    restore_consumer: Option<BaseConsumer>,
    queries: mpsc::Receiver<Query>,
}

impl StreamThread {
    pub(crate) fn new(spec: ThreadSpec, config: &StreamsConfig) -> Result<Self, Error> {
        let ThreadSpec {
            name,
            topology,
            settings,
            servers,
            metrics,
            shutdown,
            committed,
            queries,
        } = spec;
        let servers = servers.as_str();
        let consumer_config = config.consumer_client_config(servers, &name);
        let reset_to_latest = matches!(
            consumer_config.get("auto.offset.reset"),
            Some("latest" | "largest" | "end")
        );
        let consumer: BaseConsumer<StreamConsumerContext> =
            consumer_config.create_with_context(StreamConsumerContext::new(metrics.clone()))?;
        let changelogs = settings
            .changelogs
            .values()
            .map(|&t| settings.topics.name(t).to_owned())
            .collect();
        let collector = Collector::new(
            &config.producer_client_config(servers, &name),
            settings.topics.clone(),
            changelogs,
            settings.topics.name(settings.dead_letter_topic).to_owned(),
        )?;
        let mut restore = config.admin_client_config(servers);
        restore
            .set(
                "client.id",
                format!("{}-{name}-restore", config.application_id),
            )
            // Only assigned, never subscribed or committed: the group is a
            // formality librdkafka's consumer wants.
            .set("group.id", format!("{}-restore", config.application_id))
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "52428800");
        let routes = vec![Vec::new(); settings.topics.len()];
        Ok(StreamThread {
            consumer,
            state: ThreadState {
                name,
                topology,
                settings,
                collector,
                tasks: BTreeMap::new(),
                routes,
                metrics,
                commit_interval: config.commit_interval,
                last_commit: Instant::now(),
                poll_timeout: config.poll_timeout,
                max_poll_records: config.max_poll_records.max(1),
                idle: config.max_task_idle,
                max_buffered: config.buffered_records_per_partition.max(1),
                reset_to_latest,
                cache: CacheBudget::new(config.cache_max_bytes),
                restore_config: restore,
                restore_consumer: None,
                queries,
            },
            shutdown,
            committed,
        })
    }

    /// Runs until shutdown is requested or an error stops the thread. On a
    /// clean stop everything processed is flushed and committed before the
    /// consumer leaves the group; on an error nothing more is committed.
    pub(crate) fn run(mut self) -> Result<(), Error> {
        let topics: Vec<&str> = self
            .state
            .topology
            .sources
            .keys()
            .map(|&t| self.state.settings.topics.name(t))
            .collect();
        self.consumer.subscribe(&topics)?;
        tracing::info!(thread = %self.state.name, ?topics, "stream thread started");
        let mut result = self.run_loop();
        if result.is_ok() {
            result = self.state.commit(&self.consumer).map(drop);
        }
        // Leaving the group rebalances it, and a rebalance makes the broker
        // refuse commits: leave only once every thread has committed.
        self.committed.count_down_and_wait(Duration::from_secs(30));
        for (_, mut task) in std::mem::take(&mut self.state.tasks) {
            task.close();
        }
        let ctx = self.consumer.context();
        ctx.closing.store(true, Ordering::Release);
        ctx.clear_lag();
        self.state.metrics.assigned.set(0);
        self.consumer.unsubscribe();
        tracing::info!(thread = %self.state.name, ok = result.is_ok(), "stream thread stopped");
        result
    }

    fn run_loop(&mut self) -> Result<(), Error> {
        let consumer = &self.consumer;
        let state = &mut self.state;
        let shutdown = &*self.shutdown;
        let mut inputs = Inputs::default();
        while !shutdown.load(Ordering::Acquire) {
            let poll_start = Instant::now();
            let mut timeout = state.poll_timeout;
            let mut polled = 0;
            while polled < state.max_poll_records {
                match consumer.poll(timeout) {
                    Some(Ok(m)) => state.enqueue(&mut inputs, m),
                    Some(Err(e)) => {
                        tracing::warn!(thread = %state.name, "poll: {e}");
                        break;
                    }
                    None => break,
                }
                polled += 1;
                timeout = Duration::ZERO;
            }
            state
                .metrics
                .poll_latency
                .observe(poll_start.elapsed().as_secs_f64());
            state.process(&mut inputs, consumer, shutdown)?;
            state.pause_or_resume(&mut inputs, consumer)?;
            state.rebalance(consumer, &mut inputs)?;
            state.punctuate(now_millis(), &inputs.bounds)?;
            state.answer_queries();
            state.maybe_commit(consumer)?;
        }
        Ok(())
    }
}

/// How far the upstream groups of `task`'s inputs have got, as far as the
/// task has processed what they wrote (see [`Marks::reached`]).
fn upstream_time(
    task: &Task,
    upstreams: &[(Vec<TopicRef>, Arc<Marks>)],
    bounds: &HashMap<(TopicRef, i32), Bounds>,
) -> i64 {
    let mut time = i64::MAX;
    for (topics, marks) in upstreams {
        if !topics.iter().any(|&t| task.reads(t)) {
            continue;
        }
        let mut processed = |t: TopicRef, p: i32| {
            if !topics.contains(&t) {
                return None;
            }
            let next = task.next_offset(t, p)?;
            // Nothing processed since assignment: it starts where the
            // consumer does.
            Some(match next {
                n if n >= 0 => n,
                _ => bounds.get(&(t, p)).and_then(|b| b.start).unwrap_or(-1),
            })
        };
        time = time.min(marks.reached(&mut processed));
    }
    time
}

/// A polled record waiting in its task's queue, with its event time.
type Buffered<'c> = (BorrowedMessage<'c>, Extracted);

/// Records polled but not yet processed, per task. They borrow the
/// consumer's messages, so buffering copies nothing.
#[derive(Default)]
struct Inputs<'c> {
    groups: BTreeMap<TaskId, PartitionGroup<Buffered<'c>>>,
    /// Offsets known of each owned partition at assignment.
    bounds: HashMap<(TopicRef, i32), Bounds>,
    /// The last topic a record came from, to spare most name lookups.
    last_topic: Option<(String, TopicRef)>,
    /// Records polled so far.
    polled: u64,
}

impl ThreadState {
    fn route(&self, topic: TopicRef, partition: i32) -> Option<TaskId> {
        self.routes[topic.0 as usize]
            .get(partition as usize)
            .copied()
            .flatten()
    }

    fn set_route(&mut self, topic: TopicRef, partition: i32, task: Option<TaskId>) {
        let row = &mut self.routes[topic.0 as usize];
        if row.len() <= partition as usize {
            row.resize(partition as usize + 1, None);
        }
        row[partition as usize] = task;
    }

    /// Puts a polled record in its task's queue, stamped with its event
    /// time.
    fn enqueue<'c>(&mut self, inputs: &mut Inputs<'c>, m: BorrowedMessage<'c>) {
        inputs.polled += 1;
        let name = m.topic();
        let topic = match &mut inputs.last_topic {
            Some((last, t)) if last == name => Some(*t),
            cached => self.settings.topics.get(name).inspect(|&t| match cached {
                Some((last, r)) => {
                    last.clear();
                    last.push_str(name);
                    *r = t;
                }
                None => *cached = Some((name.to_owned(), t)),
            }),
        };
        let Some((topic, id)) = topic.and_then(|t| Some((t, self.route(t, m.partition())?))) else {
            tracing::warn!("record for unowned partition {name}-{}", m.partition());
            return;
        };
        let (Some(group), Some(task)) = (inputs.groups.get_mut(&id), self.tasks.get_mut(&id))
        else {
            return;
        };
        let Some(queue) = group.index(topic, m.partition()) else {
            return;
        };
        let stamp = task.stamp(&raw_record(topic, &m));
        let order = match stamp {
            Extracted::At(t) => t,
            // Records that will be skipped or dead-lettered do not move
            // stream time: they go as soon as they reach the head.
            _ => i64::MIN,
        };
        group.push(queue, order, (m, stamp));
    }

    /// Processes buffered records, each task in event-time order across its
    /// partitions, for as long as the task is ready (see
    /// [`PartitionGroup::ready`]).
    fn process(
        &mut self,
        inputs: &mut Inputs<'_>,
        consumer: &BaseConsumer<StreamConsumerContext>,
        shutdown: &AtomicBool,
    ) -> Result<(), Error> {
        let start = Instant::now();
        let now = now_millis();
        let (mut processed, mut dead_lettered, mut enforced) = (0u64, 0u64, 0u64);
        let mut lags = LagView::new(consumer, &self.settings.topics);
        let Inputs { groups, bounds, .. } = inputs;
        'tasks: for (id, group) in groups.iter_mut() {
            if group.buffered() == 0 {
                continue;
            }
            let task = self.tasks.get_mut(id).expect("every queue has its task");
            loop {
                let mut lag = |t: TopicRef, p: i32| {
                    lags.lag(t, p, bounds.get(&(t, p)).copied().unwrap_or_default())
                };
                let Ready::Yes { enforced: e } = group.ready(now, self.idle, &mut lag) else {
                    break;
                };
                let Some((q, (m, stamp))) = group.pop() else {
                    break;
                };
                let topic = group.queues()[q].topic;
                if task.process(&raw_record(topic, &m), stamp)? == Outcome::DeadLettered {
                    dead_lettered += 1;
                }
                enforced += u64::from(e);
                processed += 1;
                // A stop request is honoured between records, whatever is
                // still buffered (one relaxed load per record).
                if shutdown.load(Ordering::Relaxed) {
                    break 'tasks;
                }
            }
        }
        if processed == 0 {
            return Ok(());
        }
        if self.cache.is_full() {
            for task in self.tasks.values_mut() {
                task.flush_stores().map_err(Error::Store)?;
            }
        }
        self.count_drops();
        self.metrics.consumed.inc_by(processed);
        self.metrics.processed.inc_by(processed);
        self.metrics.dead_lettered.inc_by(dead_lettered);
        self.metrics.enforced_processing.inc_by(enforced);
        self.metrics
            .process_latency
            .observe(start.elapsed().as_secs_f64() / processed as f64);
        self.send_outputs()
    }

    /// Pauses partitions whose queue stayed full after processing (their
    /// task waits for another input) and resumes paused ones once half
    /// drained, so memory stays bounded while one input is behind.
    ///
    /// Pausing makes librdkafka drop what it has already fetched of the
    /// partition, to fetch it again on resume, and it delivers a fetch
    /// response partition by partition, tens of thousands of records each:
    /// the records a waiting task needs are often already fetched, behind
    /// other partitions' records. So a full queue is paused only once the
    /// thread has polled everything librdkafka held when it filled up:
    /// then what its task waits for was not fetched yet. Beyond
    /// `max_buffered`, a queue holds at most what librdkafka had prefetched.
    fn pause_or_resume(
        &mut self,
        inputs: &mut Inputs<'_>,
        consumer: &BaseConsumer<StreamConsumerContext>,
    ) -> Result<(), Error> {
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        let mut paused = 0;
        let mut held = None;
        let polled = inputs.polled;
        for group in inputs.groups.values_mut() {
            for q in group.queues_mut() {
                paused += usize::from(q.paused);
                let name = self.settings.topics.name(q.topic);
                if q.len() < self.max_buffered {
                    q.pause_at = None;
                }
                if !q.paused && q.len() >= self.max_buffered {
                    let held = *held.get_or_insert_with(|| prefetched(consumer) as u64);
                    if polled < *q.pause_at.get_or_insert(polled + held) {
                        continue;
                    }
                    q.pause_at = None;
                    q.paused = true;
                    paused += 1;
                    pause.add_partition(name, q.partition);
                } else if q.paused && q.len() <= self.max_buffered / 2 {
                    q.paused = false;
                    paused -= 1;
                    resume.add_partition(name, q.partition);
                }
            }
        }
        if pause.count() > 0 {
            consumer.pause(&pause)?;
        }
        if resume.count() > 0 {
            consumer.resume(&resume)?;
        }
        self.metrics.paused.set(paused as i64);
        Ok(())
    }

    fn send_outputs(&mut self) -> Result<(), Error> {
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

    fn punctuate(
        &mut self,
        now: i64,
        bounds: &HashMap<(TopicRef, i32), Bounds>,
    ) -> Result<(), Error> {
        for task in self.tasks.values_mut() {
            task.advance_wall_clock(now);
        }
        if !self.settings.upstreams.is_empty() {
            for task in self.tasks.values_mut() {
                let time = upstream_time(task, &self.settings.upstreams, bounds);
                task.advance_upstream(time);
            }
        }
        self.count_drops();
        self.send_outputs()
    }

    /// Answers pending interactive queries from this thread's tasks.
    fn answer_queries(&mut self) {
        while let Ok(q) = self.queries.try_recv() {
            let mut answer = Answer::default();
            for task in self.tasks.values() {
                let Some(store) = task.ctx.store(&q.store) else {
                    continue;
                };
                answer.held.push(task.ctx.id.partition);
                let store = store.borrow();
                let found = match &q.op {
                    QueryOp::Get(k) => store.get(k).map(|v| {
                        if let Some(v) = v {
                            answer.entries.push((k.clone(), v));
                        }
                    }),
                    QueryOp::Range(from, to) => {
                        store.range(from.as_deref(), to.as_deref(), false, &mut |k, v| {
                            answer.entries.push((k.to_vec(), v.to_vec()));
                            true
                        })
                    }
                };
                if let Err(e) = found {
                    tracing::warn!(store = %q.store, "query failed: {e}");
                }
            }
            let _ = q.reply.send(answer);
        }
    }

    fn count_drops(&mut self) {
        for task in self.tasks.values_mut() {
            let dropped = std::mem::take(&mut task.ctx.dropped);
            for (node, count) in dropped.late {
                let operator: &str = &self.topology.nodes[node].name;
                self.metrics
                    .dropped_late
                    .with_label_values(&[self.name.as_str(), operator])
                    .inc_by(count);
            }
            for (node, count) in dropped.expired {
                let operator: &str = &self.topology.nodes[node].name;
                self.metrics
                    .expired_state
                    .with_label_values(&[self.name.as_str(), operator])
                    .inc_by(count);
            }
            self.metrics
                .skipped_timestamp
                .inc_by(dropped.invalid_timestamp);
            self.metrics
                .future_timestamp
                .inc_by(dropped.future_timestamp);
        }
    }

    fn maybe_commit(
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
    fn commit(&mut self, consumer: &BaseConsumer<StreamConsumerContext>) -> Result<bool, Error> {
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

    /// Brings a new task's logged stores up to the end of their changelogs
    /// before it processes anything: from the checkpointed offset if the
    /// checkpoint is valid, else from the start into a wiped store.
    fn restore(&mut self, task: &mut Task) -> Result<(), Error> {
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
        if self.restore_consumer.is_none() {
            self.restore_consumer = Some(self.restore_config.create()?);
        }
        let consumer = self.restore_consumer.as_ref().expect("just made");
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
            let (low, high) =
                consumer.fetch_watermarks(&topic, partition, Duration::from_secs(30))?;
            let start = checkpointed.map_or(low, |o| (o + 1).max(low));
            let started = Instant::now();
            let mut restored = 0u64;
            let remaining = self.metrics.restore_remaining.with_label_values(&[&name]);
            remaining.set(high - start);
            if start < high {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(start))?;
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
                        let mut timeout = Duration::from_millis(500);
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
                consumer.unassign()?;
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

    /// Applies the rebalance events queued during `poll`.
    fn rebalance(
        &mut self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        inputs: &mut Inputs<'_>,
    ) -> Result<(), Error> {
        for event in consumer.context().take_events() {
            match event {
                RebalanceEvent::Revoke(tpl) => {
                    if consumer.assignment_lost() {
                        tracing::warn!(thread = %self.name, "assignment lost; uncommitted records will be re-processed by the new owner");
                    } else {
                        self.commit(consumer)?;
                    }
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

/// A polled message as the task reads it.
fn raw_record<'m>(topic: TopicRef, m: &'m BorrowedMessage<'_>) -> RawRecord<'m> {
    RawRecord {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or(-1),
        key: m.key(),
        value: m.payload(),
        headers: RawHeaders::Kafka(m.headers()),
    }
}
