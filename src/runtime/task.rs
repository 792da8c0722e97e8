//! A task: one sub-topology instantiated for one partition number.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::context::{RawRecord, TaskContext};
use super::dead_letter::{DeadLetters, ErrorPolicy, Letter, RecordError};
use super::membership::LocalTasks;
use super::node::{Instance, Lifecycle, RawSource};
use super::state_dir::StoreProvider;
use super::task_id::TaskId;
use super::upstream::Marks;
use crate::observability::{Metrics, NodeInfo, Spans, TaskMetrics, Tracer};
use crate::processor::{Extracted, FailureKind, PunctuationType};
use crate::security::TopicSigning;
use crate::stores::{CacheBudget, Checkpoint, GlobalTables, StoreError, StoreOps, StoreState};
use crate::topology::{NodeKind, TopicRef, TopicTable, Topology};
use crate::Error;

/// How far ahead of its clock Kafka 4 accepts a record timestamp by default
/// (`log.message.timestamp.after.max.ms`).
const BROKER_MAX_FUTURE_MS: i64 = 3_600_000;

/// What happened to one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Processed,
    DeadLettered,
}

#[derive(Debug)]
struct Position {
    topic: TopicRef,
    partition: i32,
    /// Next offset to read; what a commit stores.
    next: i64,
    committed: i64,
    /// Largest timestamp seen on the partition (`i64::MIN` before any).
    time: i64,
}

/// Settings every task of a worker shares.
#[derive(Clone)]
pub(crate) struct TaskSettings {
    pub(crate) application_id: Arc<str>,
    /// Resolved topic names (internal topics prefixed, DLQ and changelogs
    /// added).
    pub(crate) topics: Arc<TopicTable>,
    pub(crate) dead_letter_topic: TopicRef,
    pub(crate) on_error: ErrorPolicy,
    pub(crate) stores: StoreProvider,
    /// Changelog topic of each logged store.
    pub(crate) changelogs: HashMap<String, TopicRef>,
    /// Records whose timestamp is further ahead of the wall clock are
    /// dead-lettered before they can move stream time.
    pub(crate) max_future_timestamp: Option<Duration>,
    /// Trace context through the records, new traces sampled at this
    /// ratio ([`StreamsConfig::trace_sample_ratio`]).
    ///
    /// [`StreamsConfig::trace_sample_ratio`]: crate::kafka::StreamsConfig::trace_sample_ratio
    pub(crate) trace_sample_ratio: Option<f64>,
    /// Where sampled hops' spans are exported, if anywhere.
    pub(crate) spans: Option<Spans>,
    /// Whether outputs the broker would refuse for their timestamp are
    /// kept from it (the test driver's hand-driven clock has no broker).
    pub(crate) refuse_future_outputs: bool,
    /// Upstream groups watched, with the input topics each writes.
    pub(crate) upstreams: Vec<(Vec<TopicRef>, Arc<Marks>)>,
    /// How far ahead of the wall clock each topic (by ref) accepts a
    /// timestamp, in ms: the topic's own `message.timestamp.after.max.ms`
    /// where it was read at start, else Kafka 4's default of an hour.
    pub(crate) future_output_limits: Arc<Vec<i64>>,
    /// The worker's global tables, created from the topology's.
    pub(crate) globals: GlobalTables,
    /// Exactly-once: stores keep a transaction's writes apart until it
    /// commits.
    pub(crate) exactly_once: bool,
    /// The tasks this worker's threads run and keep standby.
    pub(crate) local: Arc<LocalTasks>,
    /// Where tasks report their series (a worker; not the test driver),
    /// and whether node and store-operation metrics are on.
    pub(crate) metrics: Option<(Arc<Metrics>, bool)>,
    /// Signing and verification of each topic (by ref), if any.
    pub(crate) signing: Arc<Vec<Option<TopicSigning>>>,
    /// Where the worker's calls to external services run.
    pub(crate) calls: Arc<crate::calls::CallRuntime>,
}

impl TaskSettings {
    /// Settings for `topology` under `application_id`: resolves internal
    /// topic names and adds the dead-letter and changelog topics.
    pub(crate) fn new(
        topology: &Topology,
        application_id: &str,
        dead_letter_topic: &str,
        on_error: ErrorPolicy,
        stores: StoreProvider,
    ) -> Self {
        let mut topics = topology.topics.resolve(application_id);
        let dead_letter_topic = topics.intern(dead_letter_topic);
        let changelogs = topology
            .stores
            .iter()
            .filter(|s| s.logged)
            .map(|s| {
                let name = format!("{application_id}-{}", s.changelog_suffix());
                (s.name.clone(), topics.intern(&name))
            })
            .collect();
        let topics_len = topics.len();
        TaskSettings {
            application_id: application_id.into(),
            topics: Arc::new(topics),
            dead_letter_topic,
            on_error,
            stores,
            changelogs,
            max_future_timestamp: None,
            trace_sample_ratio: None,
            spans: None,
            refuse_future_outputs: true,
            upstreams: Vec::new(),
            future_output_limits: Arc::new(vec![BROKER_MAX_FUTURE_MS; topics_len]),
            globals: GlobalTables::new(topology.global_tables()),
            exactly_once: false,
            local: Arc::default(),
            metrics: None,
            signing: Arc::new(vec![None; topics_len]),
            calls: Arc::default(),
        }
    }

    /// Signs and verifies the topics named in `by_name`.
    pub(crate) fn sign(&mut self, by_name: &BTreeMap<String, TopicSigning>) {
        let signing = (0..self.topics.len() as u32)
            .map(|t| by_name.get(self.topics.name(TopicRef(t))).cloned())
            .collect();
        self.signing = Arc::new(signing);
    }
}

/// A processor node's untyped face, shared with its parents.
type NodeLifecycle = Rc<RefCell<dyn Lifecycle>>;

pub(crate) struct Task {
    pub(crate) ctx: TaskContext,
    /// Source per topic ref (sparse).
    sources: Vec<Option<Box<dyn RawSource>>>,
    /// Processor nodes by node index, in topological order.
    processors: Vec<(usize, NodeLifecycle)>,
    /// The nodes among them that complete work off the stream thread,
    /// with their names.
    calls: Vec<(Arc<str>, NodeLifecycle)>,
    positions: Vec<Position>,
    /// Largest lead over the wall clock a record timestamp may have (ms).
    max_future: Option<i64>,
    refuse_future_outputs: bool,
    /// How far the upstream groups of the task's inputs have got, as far as
    /// the task has read their outputs (`i64::MAX` without upstreams).
    upstream_time: i64,
    /// Timestamp lead each topic accepts (ms), by topic ref.
    future_limits: Arc<Vec<i64>>,
}

impl Task {
    /// Instantiates sub-topology `id.subtopology` for partition
    /// `id.partition`, opens its stores, and initializes its processors.
    pub(crate) fn new(
        topology: &Topology,
        id: TaskId,
        settings: &TaskSettings,
        now: i64,
        cache: &Rc<CacheBudget>,
    ) -> Result<Task, Error> {
        let sub = &topology.subtopologies[id.subtopology as usize];
        let mut instances: Vec<Option<Instance>> =
            (0..topology.nodes.len()).map(|_| None).collect();
        for &i in sub.nodes.iter().rev() {
            let def = &topology.nodes[i];
            let children: Vec<_> = def
                .children
                .iter()
                .map(|&c| {
                    let inst = instances[c].as_ref().expect("children are built first");
                    (topology.nodes[c].name.clone(), inst)
                })
                .collect();
            let inst = def.factory.instantiate(i, &children);
            instances[i] = Some(inst);
        }
        let mut sources: Vec<Option<Box<dyn RawSource>>> =
            (0..settings.topics.len()).map(|_| None).collect();
        let mut processors = Vec::new();
        for &i in &sub.nodes {
            match instances[i].take() {
                Some(Instance::Source(s)) => {
                    let crate::topology::NodeKind::Source { topic } = &topology.nodes[i].kind
                    else {
                        unreachable!("only source nodes build sources")
                    };
                    let t = topology
                        .topics
                        .get(topic)
                        .expect("source topics are interned");
                    sources[t.0 as usize] = Some(s);
                }
                Some(Instance::Node {
                    lifecycle: Some(l), ..
                }) => processors.push((i, l)),
                _ => {}
            }
        }
        let mut ctx = TaskContext::new(
            id,
            settings.application_id.clone(),
            settings.topics.clone(),
            now,
        );
        ctx.globals = settings.globals.clone();
        ctx.signing = settings.signing.clone();
        ctx.call_runtime = settings.calls.clone();
        ctx.tracer = settings
            .trace_sample_ratio
            .map(|ratio| Tracer::new(ratio, settings.spans.clone()));
        for spec in topology
            .stores
            .iter()
            .filter(|s| sub.stores.contains(&s.name))
        {
            let engine = settings.stores.open(id, spec).map_err(Error::Store)?;
            let changelog = settings
                .changelogs
                .get(&spec.name)
                .map(|&t| (t, id.partition));
            let state = StoreState::new(
                spec.clone(),
                engine,
                cache.clone(),
                changelog,
                ctx.now.clone(),
            );
            ctx.stores.push(Rc::new(RefCell::new(
                state.transactional(settings.exactly_once),
            )));
        }
        if let Some((metrics, node_metrics)) = &settings.metrics {
            ctx.metrics = Some(task_metrics(
                metrics,
                topology,
                id,
                &ctx.stores,
                &settings.application_id,
                *node_metrics,
            ));
        }
        let watched = settings
            .upstreams
            .iter()
            .flat_map(|(topics, _)| topics)
            .any(|t| sources.get(t.0 as usize).is_some_and(Option::is_some));
        let max_future = settings
            .max_future_timestamp
            .map(|d| d.as_millis().min(i64::MAX as u128) as i64);
        // A timestamp the broker would refuse (Kafka 4 refuses more than an
        // hour ahead by default) must not keep a dead letter from being
        // written: such records keep their place in time by the wall clock.
        let dlq_limit = settings
            .future_output_limits
            .get(settings.dead_letter_topic.0 as usize)
            .copied()
            .unwrap_or(BROKER_MAX_FUTURE_MS);
        ctx.dead_letters = DeadLetters {
            topic: settings.dead_letter_topic,
            limit: max_future.map_or(dlq_limit, |m| m.min(dlq_limit)),
            policy: settings.on_error,
        };
        let calls = processors
            .iter()
            .filter(|(_, p)| p.borrow().is_async())
            .map(|(i, p)| (topology.nodes[*i].name.clone(), p.clone()))
            .collect();
        let mut task = Task {
            calls,
            upstream_time: if watched { i64::MIN } else { i64::MAX },
            future_limits: settings.future_output_limits.clone(),
            ctx,
            sources,
            processors,
            positions: Vec::new(),
            max_future,
            refuse_future_outputs: settings.refuse_future_outputs,
        };
        for (i, p) in &task.processors {
            p.borrow_mut()
                .init(&mut task.ctx)
                .map_err(|source| Error::ProcessorInit {
                    task: id.to_string(),
                    node: topology.nodes[*i].name.to_string(),
                    source,
                })?;
        }
        Ok(task)
    }

    /// Writes every store's cache to its engine and changelog (into the
    /// task's output). Returns how many entries were flushed.
    pub(crate) fn flush_stores(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        for s in &self.ctx.stores {
            n += s.borrow_mut().flush(&mut self.ctx.output)?;
        }
        Ok(n)
    }

    /// Writes every store's cache to its changelog (into the task's
    /// output), keeping the caches: the first half of a commit under
    /// exactly-once. Returns how many entries were written.
    pub(crate) fn log_stores(&mut self) -> usize {
        let mut n = 0;
        for s in &self.ctx.stores {
            n += s.borrow_mut().log(&mut self.ctx.output);
        }
        n
    }

    /// Writes every store's cache to its engine: the second half of a
    /// commit under exactly-once, once the transaction committed.
    pub(crate) fn apply_stores(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        for s in &self.ctx.stores {
            n += s.borrow_mut().apply()?;
        }
        Ok(n)
    }

    /// The task's input partitions.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = (TopicRef, i32)> + '_ {
        self.positions.iter().map(|p| (p.topic, p.partition))
    }

    /// The task's stores.
    pub(crate) fn stores(&self) -> &[Rc<RefCell<StoreState>>] {
        &self.ctx.stores
    }

    /// Persists the stores and writes the checkpoint of their changelog
    /// offsets (`acked` holds the last acknowledged offset per changelog
    /// topic name and partition).
    pub(crate) fn checkpoint(
        &mut self,
        provider: &StoreProvider,
        acked: &HashMap<(String, i32), i64>,
    ) -> Result<(), StoreError> {
        let Some(dir) = provider.task_dir(self.ctx.id) else {
            return Ok(());
        };
        let mut checkpoint = Checkpoint::default();
        for s in &self.ctx.stores {
            let mut s = s.borrow_mut();
            if let Some((topic, partition)) = s.changelog {
                if let Some(&o) = acked.get(&(self.ctx.topics.name(topic).to_owned(), partition)) {
                    s.changelog_offset = Some(s.changelog_offset.map_or(o, |c| c.max(o)));
                }
                s.persist()?;
                if let Some(o) = s.changelog_offset {
                    checkpoint.offsets.insert(s.name().to_owned(), o);
                }
            }
        }
        if checkpoint.offsets.is_empty() {
            return Ok(());
        }
        checkpoint.write(&dir).map_err(StoreError::Io)
    }

    /// Adds an input partition (after an assignment).
    pub(crate) fn add_partition(&mut self, topic: TopicRef, partition: i32) {
        if !self
            .positions
            .iter()
            .any(|p| p.topic == topic && p.partition == partition)
        {
            self.positions.push(Position {
                topic,
                partition,
                next: -1,
                committed: -1,
                time: i64::MIN,
            });
        }
    }

    /// The event time of a record of one of the task's partitions, taken
    /// when the record is buffered (its place in the task's event-time
    /// order): the source's extractor, then the bound on how far ahead of
    /// the wall clock a timestamp may be. Updates the partition's time.
    pub(crate) fn stamp(&mut self, raw: &RawRecord<'_>) -> Extracted {
        let Some(source) = self.sources[raw.topic.0 as usize].as_ref() else {
            return Extracted::Invalid("no source reads this topic".into());
        };
        let position = self
            .positions
            .iter_mut()
            .find(|p| p.topic == raw.topic && p.partition == raw.partition);
        let partition_time = position.as_ref().map(|p| p.time).filter(|t| *t != i64::MIN);
        let extracted = source.extractor().extract(
            raw.timestamp,
            raw.value,
            self.ctx.wall_clock,
            partition_time,
        );
        match extracted {
            Extracted::At(t) => {
                if let Some(max) = self.max_future {
                    let ahead = t.saturating_sub(self.ctx.wall_clock);
                    if ahead > max {
                        self.ctx.dropped.future_timestamp += 1;
                        return Extracted::Invalid(format!(
                            "timestamp {t} is {ahead} ms ahead of the wall clock, beyond the bound of {max} ms (max_future_timestamp)"
                        ));
                    }
                }
                if let Some(p) = position {
                    p.time = p.time.max(t);
                }
                Extracted::At(t)
            }
            other => other,
        }
    }

    /// Runs one record through the task, with the event time [`Task::stamp`]
    /// gave it.
    pub(crate) fn process(
        &mut self,
        raw: &RawRecord<'_>,
        stamp: Extracted,
    ) -> Result<Outcome, RecordError> {
        self.ctx.source = Some((raw.topic, raw.partition, raw.offset));
        self.ctx.trace = None;
        let source = self.sources[raw.topic.0 as usize]
            .as_mut()
            .expect("records are routed to the task that reads their topic");
        let mark = self.ctx.output.len();
        // A record of a verified topic reaches no operator unless its
        // signature holds.
        let forged = self
            .ctx
            .signing
            .get(raw.topic.0 as usize)
            .and_then(Option::as_ref)
            .filter(|s| !s.verify.is_empty())
            .and_then(|s| {
                let topic = self.ctx.topics.name(raw.topic);
                raw.headers
                    .lookup(|header| s.verify(topic, raw.key, raw.value, header))
                    .err()
            });
        let failure = match stamp {
            _ if forged.is_some() => forged.map(|reason| (FailureKind::Signature, reason)),
            Extracted::At(timestamp) => {
                let raw = RawRecord { timestamp, ..*raw };
                match source.process(&raw, &mut self.ctx) {
                    Err(e) => Some((FailureKind::Deserialization, e.to_string())),
                    Ok(()) => self
                        .ctx
                        .failure
                        .take()
                        .map(|f| (f.kind(), f.error().to_string()))
                        .or_else(|| {
                            self.refuse_future_outputs
                                .then(|| self.drop_future_outputs(mark))
                                .flatten()
                        }),
                }
            }
            Extracted::Skip => {
                self.ctx.dropped.invalid_timestamp += 1;
                None
            }
            Extracted::Invalid(reason) => Some((FailureKind::Timestamp, reason)),
        };
        self.ctx.source = None;
        let outcome = match failure {
            None => Outcome::Processed,
            Some((kind, message)) => {
                self.dead_letter(raw, kind, &message)?;
                Outcome::DeadLettered
            }
        };
        if let Some(m) = &mut self.ctx.metrics {
            m.pending.processed += 1;
            m.pending.dead_lettered += u64::from(outcome == Outcome::DeadLettered);
        }
        if let Some(p) = self
            .positions
            .iter_mut()
            .find(|p| p.topic == raw.topic && p.partition == raw.partition)
        {
            p.next = raw.offset + 1;
        }
        if self
            .ctx
            .punctuations
            .any_due(PunctuationType::StreamTime, self.ctx.stream_time)
        {
            self.punctuate(PunctuationType::StreamTime, self.ctx.stream_time);
        }
        self.punctuate_watermark();
        Ok(outcome)
    }

    /// Stream time held back to the upstream groups' progress.
    fn watermark(&self) -> i64 {
        self.ctx.stream_time.min(self.upstream_time)
    }

    /// Fires the watermark punctuations due; whether any was.
    fn punctuate_watermark(&mut self) -> bool {
        let w = self.watermark();
        let due = self.ctx.punctuations.any_due(PunctuationType::Watermark, w);
        if due {
            self.punctuate(PunctuationType::Watermark, w);
        }
        due
    }

    /// Takes in how far the task's upstream groups have got (see
    /// [`Marks::reached`]) and fires the watermark punctuations now due.
    /// Whether any punctuation fired.
    pub(crate) fn advance_upstream(&mut self, time: i64) -> bool {
        self.upstream_time = time;
        self.punctuate_watermark()
    }

    /// Whether the task reads `topic`.
    pub(crate) fn reads(&self, topic: TopicRef) -> bool {
        self.sources
            .get(topic.0 as usize)
            .is_some_and(Option::is_some)
    }

    /// The next offset to process of an owned partition (`-1` before the
    /// first record since assignment); `None` for a partition not owned.
    pub(crate) fn next_offset(&self, topic: TopicRef, partition: i32) -> Option<i64> {
        self.positions
            .iter()
            .find(|p| p.topic == topic && p.partition == partition)
            .map(|p| p.next)
    }

    /// Drops outputs of the current record (from index `mark`) whose
    /// timestamp their topic would refuse — further ahead of the wall clock
    /// than its `message.timestamp.after.max.ms`, read at start (Kafka 4's
    /// default of an hour where unknown) — so that they neither stop the
    /// worker nor take the other records of their produce batch down with
    /// them; the record is dead-lettered.
    fn drop_future_outputs(&mut self, mark: usize) -> Option<(FailureKind, String)> {
        let (now, limits) = (self.ctx.wall_clock, &self.future_limits);
        let limit_of = |t: TopicRef| {
            limits
                .get(t.0 as usize)
                .copied()
                .unwrap_or(BROKER_MAX_FUTURE_MS)
        };
        let mut first = None;
        let removed = self.ctx.output.remove_from(mark, |meta| {
            let refused = meta.timestamp.saturating_sub(now) > limit_of(meta.topic);
            if refused && first.is_none() {
                first = Some((meta.topic, meta.timestamp));
            }
            refused
        });
        let (topic, timestamp) = first?;
        Some((
            FailureKind::Production,
            format!(
                "{removed} output(s) to {} would carry timestamp {timestamp}, more than {} ms ahead of the wall clock, which the topic refuses (message.timestamp.after.max.ms)",
                self.ctx.topics.name(topic),
                limit_of(topic)
            ),
        ))
    }

    fn dead_letter(
        &mut self,
        raw: &RawRecord<'_>,
        kind: FailureKind,
        message: &str,
    ) -> Result<(), RecordError> {
        let letter = Letter {
            source: Some((raw.topic, raw.partition, raw.offset)),
            timestamp: raw.timestamp,
            key: raw.key,
            value: raw.value,
            headers: raw.headers.to_headers(),
        };
        self.ctx.dead_letter(letter, kind, message)
    }

    /// Advances the wall clock and fires due wall-clock punctuations;
    /// whether any was due.
    pub(crate) fn advance_wall_clock(&mut self, now: i64) -> bool {
        self.ctx.wall_clock = now;
        let due = self
            .ctx
            .punctuations
            .any_due(PunctuationType::WallClockTime, now);
        if due {
            self.punctuate(PunctuationType::WallClockTime, now);
        }
        due
    }

    fn punctuate(&mut self, kind: PunctuationType, now: i64) {
        // Timers write no hop's context: they add their own, if any.
        self.ctx.trace = None;
        for (id, node) in self.ctx.punctuations.due(kind, now) {
            // A punctuation may cancel another that was due at the same time.
            if !self.ctx.punctuations.contains(id) {
                continue;
            }
            if let Some((_, p)) = self.processors.iter().find(|(i, _)| *i == node) {
                p.borrow_mut().punctuate(id, now, &mut self.ctx);
            }
            if let Some(failure) = self.ctx.failure.take() {
                tracing::error!(task = %self.ctx.id, "punctuation output dropped: {failure}");
            }
        }
    }

    /// Hands what the task counted since the last call to Prometheus (and
    /// the stores' sizes, every second), and its hops' spans to the span
    /// exporter.
    pub(crate) fn report_metrics(&mut self, now: Instant) {
        if let Some(tracer) = &mut self.ctx.tracer {
            tracer.flush();
        }
        let dropped = std::mem::take(&mut self.ctx.dropped);
        let Some(m) = &mut self.ctx.metrics else {
            return;
        };
        m.record(
            &dropped.late,
            &dropped.expired,
            dropped.invalid_timestamp,
            dropped.future_timestamp,
        );
        let sizes = m.sizes_due(now);
        for (i, store) in self.ctx.stores.iter().enumerate() {
            let store = store.borrow();
            store.report_ops();
            if sizes {
                m.store_sizes(i, store.sizes());
            }
        }
    }

    /// Input positions to commit: `(topic, partition, next offset)` of
    /// those that moved since the last commit, or with `all` every one
    /// the task knows. Under exactly-once a transaction with outputs but
    /// no moved input (a call's result, a punctuation's output) commits
    /// them all: the offset commit carries the consumer's group
    /// membership, which is what fences a zombie's transaction.
    pub(crate) fn to_commit(&self, all: bool) -> impl Iterator<Item = (TopicRef, i32, i64)> + '_ {
        self.positions
            .iter()
            .filter(move |p| p.next > p.committed || (all && p.next >= 0))
            .map(|p| (p.topic, p.partition, p.next))
    }

    /// Sets a partition's position to its committed offset, where it
    /// starts reading, if the task has read nothing from it yet.
    pub(crate) fn positioned(&mut self, topic: TopicRef, partition: i32, offset: i64) {
        let position = self
            .positions
            .iter_mut()
            .find(|p| p.topic == topic && p.partition == partition && p.next < 0);
        if let Some(p) = position {
            p.next = offset;
            p.committed = offset;
        }
    }

    /// Records that everything returned by `to_commit` is committed.
    pub(crate) fn mark_committed(&mut self) {
        for p in &mut self.positions {
            p.committed = p.next;
        }
    }

    /// Whether a processor asked for a commit; clears the request.
    pub(crate) fn take_commit_request(&mut self) -> bool {
        std::mem::take(&mut self.ctx.commit_requested)
    }

    /// Whether the task takes input: not while one of its call nodes holds
    /// its limit of records.
    pub(crate) fn accepting(&self) -> bool {
        self.ctx.calls.full == 0
    }

    /// Records taken in by call nodes whose outputs are not yet emitted.
    pub(crate) fn calls_pending(&self) -> usize {
        self.ctx.calls.pending
    }

    /// Emits the outputs of the calls done since the last drain (failures
    /// to the dead-letter topic); how many records. An error under the
    /// `Fail` policy.
    pub(crate) fn drain_calls(&mut self) -> Result<usize, RecordError> {
        let mut emitted = 0;
        for (_, node) in &self.calls {
            emitted += node.borrow_mut().drain(&mut self.ctx)?;
        }
        Ok(emitted)
    }

    /// Lets the nodes take up the work their stores hold, once the stores
    /// are restored and before the task processes a record.
    pub(crate) fn start(&mut self) -> Result<(), Error> {
        for (name, node) in &self.calls {
            node.borrow_mut()
                .start(&mut self.ctx)
                .map_err(|source| Error::ProcessorInit {
                    task: self.ctx.id.to_string(),
                    node: name.to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Closes the processors. Outputs must have been drained before.
    pub(crate) fn close(&mut self) {
        for (_, p) in &self.processors {
            p.borrow_mut().close();
        }
    }
}

/// The series of task `id`, and its stores' operation counters when node
/// metrics are on.
fn task_metrics(
    metrics: &Metrics,
    topology: &Topology,
    id: TaskId,
    stores: &[Rc<RefCell<StoreState>>],
    application: &Arc<str>,
    node_metrics: bool,
) -> TaskMetrics {
    let sub = &topology.subtopologies[id.subtopology as usize];
    let nodes: Vec<NodeInfo<'_>> = sub
        .nodes
        .iter()
        .map(|&i| NodeInfo {
            index: i,
            name: &topology.nodes[i].name,
            sink: matches!(topology.nodes[i].kind, NodeKind::Sink { .. }),
        })
        .collect();
    let names: Vec<String> = stores
        .iter()
        .map(|s| s.borrow().name().to_owned())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let m = metrics.task(
        application,
        &id.to_string(),
        &nodes,
        topology.nodes.len(),
        &names,
        node_metrics,
    );
    if node_metrics {
        for (store, name) in stores.iter().zip(&names) {
            store.borrow_mut().ops = Some(Box::new(StoreOps {
                get: m.store_op(name, "get"),
                put: m.store_op(name, "put"),
                range: m.store_op(name, "range"),
                flush: m.store_op(name, "flush"),
            }));
        }
    }
    m
}
