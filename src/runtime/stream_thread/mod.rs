//! A stream thread: poll a batch, process it task by task, send outputs,
//! punctuate, commit, and apply rebalances between batches.
//!
//! This file holds the poll loop and the processing of polled records in
//! event-time order; its other jobs have a file each: task management on
//! assignment changes (`assignment.rs`), changelog restore
//! (`restore.rs`), outputs and commits (`commit.rs`) and interactive
//! queries (`queries.rs`).

mod assignment;
mod commit;
mod queries;
mod restore;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, TopicPartitionList};

use super::collector::Collector;
use super::consumer::StreamConsumerContext;
use super::context::{RawHeaders, RawRecord};
use super::lag::{prefetched, Bounds, LagView};
use super::partition_group::{Admit, PartitionGroup, Ready, TaskIdle};
use super::query::Query;
use super::task::{Outcome, Task, TaskSettings};
use super::task_id::TaskId;
use super::upstream::Marks;
use crate::error::Error;
use crate::kafka::{Guarantee, StreamsConfig};
use crate::observability::ThreadMetrics;
use crate::processor::Extracted;
use crate::stores::CacheBudget;
use crate::topology::{TopicRef, Topology};

/// The longest poll while calls are pending.
const CALL_POLL: Duration = Duration::from_millis(1);

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
    /// The worker's process id and the thread's number, stable across
    /// restarts when the worker has a state directory: the producer's
    /// transactional id under exactly-once, and the consumer's
    /// `group.instance.id` if `static_member`.
    pub(crate) member_id: String,
    /// Whether the consumer joins as a static member (`member_id` is
    /// stable and static membership is on).
    pub(crate) static_member: bool,
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
    /// Who the clients authenticate as, for authorization errors.
    principal: String,
    topology: Arc<Topology>,
    settings: TaskSettings,
    collector: Collector,
    tasks: BTreeMap<TaskId, Task>,
    /// Task of each owned input partition: `routes[topic][partition]`.
    routes: Vec<Vec<Option<TaskId>>>,
    /// Input partitions held, paused, for tasks that lack some of theirs
    /// (a rebalance moving partitions one at a time).
    waiting: BTreeMap<TaskId, Vec<(TopicRef, i32)>>,
    /// Tasks whose stores are being restored, their partitions held paused.
    restoring: BTreeMap<TaskId, restore::Restoring>,
    metrics: ThreadMetrics,
    /// When the tasks last reported their metrics.
    reported: Instant,
    commit_interval: Duration,
    last_commit: Instant,
    last_checkpoint: Instant,
    /// Exactly-once: a transaction per commit, two-phase store flushes.
    exactly_once: bool,
    /// Commit at the next chance (the write caches filled up under
    /// exactly-once, where they cannot be flushed between commits).
    commit_now: bool,
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
    /// Looks up changelog ends (no group, never assigned), made on first
    /// use, made anew after a failed lookup; each restore reads with a
    /// consumer of its own.
    changelog_lookup: Option<BaseConsumer>,
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
            member_id,
            static_member,
        } = spec;
        let servers = servers.as_str();
        let mut consumer_config = config.consumer_client_config(servers, &name);
        if static_member {
            consumer_config.set("group.instance.id", &member_id);
        }
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
            &config.stream_producer_config(servers, &name, &member_id),
            settings.topics.clone(),
            changelogs,
            settings.topics.name(settings.dead_letter_topic).to_owned(),
        )?;
        let restore = config.assigned_consumer_config(servers, &format!("{name}-restore"));
        let routes = vec![Vec::new(); settings.topics.len()];
        Ok(StreamThread {
            consumer,
            state: ThreadState {
                name,
                principal: crate::kafka::admin::principal(&consumer_config),
                topology,
                settings,
                collector,
                tasks: BTreeMap::new(),
                routes,
                waiting: BTreeMap::new(),
                restoring: BTreeMap::new(),
                metrics,
                reported: Instant::now(),
                commit_interval: config.commit_interval_or_default(),
                last_commit: Instant::now(),
                last_checkpoint: Instant::now(),
                exactly_once: config.guarantee == Guarantee::ExactlyOnce,
                commit_now: false,
                poll_timeout: config.poll_timeout,
                max_poll_records: config.max_poll_records.max(1),
                idle: config.max_task_idle,
                max_buffered: config.buffered_records_per_partition.max(1),
                reset_to_latest,
                cache: CacheBudget::new(config.cache_max_bytes),
                restore_config: restore,
                changelog_lookup: None,
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
            // Under exactly-once an abort here leaves the stores at their
            // last commit, which is where the next owner starts.
            result = self.state.commit(&self.consumer, true).map(drop);
        }
        // Leaving the group rebalances it, and a rebalance makes the broker
        // refuse commits: leave only once every thread has committed.
        self.committed.count_down_and_wait(Duration::from_secs(30));
        for (_, mut task) in std::mem::take(&mut self.state.tasks) {
            task.close();
        }
        for (_, mut r) in std::mem::take(&mut self.state.restoring) {
            r.task.close();
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
            // Restores go on between polls: no waiting while one runs.
            let mut timeout = match state.restoring.is_empty() {
                true => state.poll_timeout,
                false => Duration::ZERO,
            };
            // Calls complete off the thread, which nothing wakes from a
            // poll: while some are pending it looks every millisecond.
            if state.tasks.values().any(|t| t.calls_pending() > 0) {
                timeout = timeout.min(CALL_POLL);
            }
            let mut polled = 0;
            while polled < state.max_poll_records {
                match consumer.poll(timeout) {
                    Some(Ok(m)) => state.enqueue(&mut inputs, m),
                    // The consumer cannot go on (fenced by a static member
                    // of the same instance id, refused by the group...).
                    Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => return Err(e.into()),
                    // The ACLs do not let this application read its input
                    // or use its group: nothing will change that but an
                    // operator.
                    Some(Err(KafkaError::MessageConsumption(code)))
                        if matches!(
                            code,
                            RDKafkaErrorCode::TopicAuthorizationFailed
                                | RDKafkaErrorCode::GroupAuthorizationFailed
                        ) =>
                    {
                        return Err(state.not_authorized(consumer, code));
                    }
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
            state.complete_calls()?;
            state.process(&mut inputs, consumer, shutdown)?;
            state.pause_or_resume(&mut inputs, consumer)?;
            state.rebalance(consumer, &mut inputs)?;
            state.restore_pass(consumer, &mut inputs)?;
            state.punctuate(now_millis(), &inputs.bounds)?;
            state.answer_queries();
            state.maybe_commit(consumer, &mut inputs)?;
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
    /// The error of a consumer the brokers refused (`code`): names the
    /// group, or the first input topic the principal may not see.
    fn not_authorized(
        &self,
        consumer: &BaseConsumer<StreamConsumerContext>,
        code: RDKafkaErrorCode,
    ) -> Error {
        let resource = match code {
            RDKafkaErrorCode::GroupAuthorizationFailed => {
                format!("group {:?}", self.settings.application_id)
            }
            _ => {
                let topics = self.topology.source_topics();
                let timeout = Duration::from_secs(5);
                let denied = topics.iter().find(|t| {
                    consumer.fetch_metadata(Some(t), timeout).is_ok_and(|m| {
                        m.topics().iter().any(|t| {
                            t.error().map(RDKafkaErrorCode::from)
                                == Some(RDKafkaErrorCode::TopicAuthorizationFailed)
                        })
                    })
                });
                match denied {
                    Some(t) => format!("topic {t:?}"),
                    None => format!("one of the topics {topics:?}"),
                }
            }
        };
        Error::NotAuthorized {
            principal: self.principal.clone(),
            operation: "read",
            resource,
        }
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
            // A partition waiting for the rest of its task's, fetched from
            // before it was paused: it is read again once the task runs.
            tracing::debug!(
                "record for a partition without a task: {name}-{}",
                m.partition()
            );
            return;
        };
        let (Some(group), Some(task)) = (inputs.groups.get_mut(&id), self.tasks.get_mut(&id))
        else {
            return;
        };
        let Some(queue) = group.index(topic, m.partition()) else {
            return;
        };
        match group.queues_mut()[queue].admit(m.offset()) {
            Admit::New => {}
            Admit::Again { expected } => {
                tracing::warn!(
                    thread = %self.name,
                    "{name}-{} delivered again from offset {} (the task is at {expected}): skipping what it has had",
                    m.partition(),
                    m.offset()
                );
                return;
            }
            Admit::AgainStill => return,
        }
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
        let (mut processed, mut dead_lettered) = (0u64, 0u64);
        let mut lags = LagView::new(consumer, &self.settings.topics);
        let Inputs { groups, bounds, .. } = inputs;
        'tasks: for (id, group) in groups.iter_mut() {
            if group.buffered() == 0 {
                continue;
            }
            let task = self.tasks.get_mut(id).expect("every queue has its task");
            // Outputs' end-to-end latency and the future-timestamp bound
            // are measured against the time of this batch.
            task.ctx.wall_clock = now;
            while task.accepting() {
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
                if e {
                    if let Some(m) = &mut task.ctx.metrics {
                        m.pending.enforced += 1;
                    }
                }
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
            if self.exactly_once {
                // The caches hold the open transaction's writes: they go
                // to the engines only once it commits.
                self.commit_now = true;
            } else {
                for task in self.tasks.values_mut() {
                    task.flush_stores().map_err(Error::Store)?;
                }
            }
        }
        self.report_task_metrics();
        self.metrics.consumed.inc_by(processed);
        self.metrics.processed.inc_by(processed);
        self.metrics.dead_lettered.inc_by(dead_lettered);
        self.metrics
            .process_latency
            .observe(start.elapsed().as_secs_f64() / processed as f64);
        self.send_outputs()
    }

    /// Emits the outputs of the calls done since the last look, and sends
    /// them.
    fn complete_calls(&mut self) -> Result<(), Error> {
        let mut emitted = 0;
        for task in self.tasks.values_mut() {
            if task.calls_pending() > 0 {
                emitted += task.drain_calls()?;
            }
        }
        if emitted > 0 {
            self.send_outputs()?;
        }
        Ok(())
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

    fn punctuate(
        &mut self,
        now: i64,
        bounds: &HashMap<(TopicRef, i32), Bounds>,
    ) -> Result<(), Error> {
        let start = Instant::now();
        let mut fired = false;
        for task in self.tasks.values_mut() {
            fired |= task.advance_wall_clock(now);
        }
        if !self.settings.upstreams.is_empty() {
            for task in self.tasks.values_mut() {
                let time = upstream_time(task, &self.settings.upstreams, bounds);
                fired |= task.advance_upstream(time);
            }
        }
        if fired {
            self.metrics
                .punctuate_latency
                .observe(start.elapsed().as_secs_f64());
        }
        // Idle tasks report too: timers' counts, and stores' sizes after
        // their last writes reached the engine.
        if fired || self.reported.elapsed() >= Duration::from_secs(1) {
            self.report_task_metrics();
        }
        self.send_outputs()
    }

    fn report_task_metrics(&mut self) {
        let now = Instant::now();
        self.reported = now;
        for task in self.tasks.values_mut() {
            task.report_metrics(now);
        }
    }
}

/// A polled message as the task reads it.
fn raw_record<'m>(topic: TopicRef, m: &'m BorrowedMessage<'m>) -> RawRecord<'m> {
    RawRecord {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or(-1),
        key: m.key(),
        value: m.payload(),
        headers: RawHeaders::Kafka(m),
    }
}
