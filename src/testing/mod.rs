//! A test driver that runs a topology without a broker.
//!
//! [`TopologyTestDriver`] pipes records into input topics and collects what
//! the topology writes, synchronously, through the same tasks, nodes and
//! dead-letter handling as the real runtime. Unlike Kafka's own driver it
//! models several partitions per topic (keys are placed by Kafka's murmur2
//! partitioner, one task per partition), and records written to a topic the
//! topology also reads are fed back in, as a broker would.

#[cfg(feature = "test-util")]
mod cluster;
#[cfg(feature = "test-util")]
mod collector;

#[cfg(feature = "test-util")]
pub use cluster::{
    free_addr, unique, wait_for, Consumed, KeyValue, Reader, TestCluster, SECURED_ADMIN,
};
#[cfg(feature = "test-util")]
pub use collector::{CollectedSpan, OtlpCollector};

mod records;

pub use records::{BatchRecord, RawTestRecord, TestRecord, TestTopic};

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::kafka::partitioner::partition_for_key;
use crate::processor::{millis, Headers, Record};
use crate::runtime::{
    ErrorPolicy, RawHeaders, RawRecord, RecordError, StoreProvider, Task, TaskId, TaskSettings,
};
use crate::runtime::{PartitionGroup, Ready, TaskIdle};
use crate::security::TopicSigning;
use crate::serde::{Serde, SerdeError};
use crate::stores::{
    CacheBudget, GlobalTables, KeyValueStore, SessionStore, StoreState, WindowStore,
};
use crate::topology::{TopicRef, TopicTable, Topology};

/// How the driver models the application and its topics.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Application id seen by processors. Default `test-app`.
    pub application_id: String,
    /// Partitions per topic; topics not listed have one.
    pub partitions: HashMap<String, i32>,
    /// Dead-letter topic. Default `<application_id>-dlq`.
    pub dead_letter_topic: Option<String>,
    /// What to do with records that fail to decode or process.
    pub on_error: ErrorPolicy,
    /// Initial wall-clock time, epoch milliseconds. Default 0.
    pub wall_clock: i64,
    /// How far ahead of the driver's wall clock a record timestamp may be
    /// before it is dead-lettered. Default `None` (any): the driver's clock
    /// is moved by hand, so tests opt in, setting `wall_clock` too.
    pub max_future_timestamp: Option<Duration>,
    /// W3C trace context through the records, as
    /// [`StreamsConfig::trace_sample_ratio`]. Default `None` (off).
    ///
    /// [`StreamsConfig::trace_sample_ratio`]: crate::kafka::StreamsConfig::trace_sample_ratio
    pub trace_sample_ratio: Option<f64>,
    /// Signatures of records by topic name, as
    /// [`StreamsConfig::signing`](crate::kafka::StreamsConfig::signing).
    pub signing: BTreeMap<String, TopicSigning>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            application_id: "test-app".into(),
            partitions: HashMap::new(),
            dead_letter_topic: None,
            on_error: ErrorPolicy::DeadLetter,
            wall_clock: 0,
            max_future_timestamp: None,
            trace_sample_ratio: None,
            signing: BTreeMap::new(),
        }
    }
}

impl DriverConfig {
    /// Sets the partition count of `topic`.
    pub fn partitions(mut self, topic: &str, count: i32) -> Self {
        self.partitions.insert(topic.to_owned(), count.max(1));
        self
    }
}

/// Runs a topology in-process, one record at a time. See the
/// [module docs](self).
///
/// ```
/// use eddy::serde::{I64Serde, StringSerde};
/// use eddy::testing::{DriverConfig, TestTopic, TopologyTestDriver};
/// use eddy::topology::StreamsBuilder;
///
/// let b = StreamsBuilder::new();
/// b.stream("words", StringSerde, StringSerde)
///     .map_values(|w: String| w.len() as i64)
///     .to("lengths", StringSerde, I64Serde);
/// let mut driver = TopologyTestDriver::with_config(
///     b.build().unwrap(),
///     DriverConfig::default().partitions("words", 4).partitions("lengths", 4),
/// );
/// let words = TestTopic::new("words", StringSerde, StringSerde);
/// let lengths = TestTopic::new("lengths", StringSerde, I64Serde);
/// driver.pipe(&words, "a".into(), "four".into(), 10).unwrap();
/// let out = driver.read(&lengths).unwrap();
/// assert_eq!((out[0].key.as_str(), out[0].value, out[0].timestamp), ("a", 4, 10));
/// assert_eq!(driver.task_ids().len(), 4);
/// ```
pub struct TopologyTestDriver {
    topology: Arc<Topology>,
    topics: Arc<TopicTable>,
    config: DriverConfig,
    tasks: BTreeMap<TaskId, Task>,
    /// Records written to each topic and not yet read, per topic ref.
    logs: Vec<Vec<RawTestRecord>>,
    /// Next offset per (topic, partition).
    offsets: HashMap<(TopicRef, i32), i64>,
    /// Round-robin counters for null keys, per topic.
    round_robin: HashMap<TopicRef, i32>,
    /// Write-cache budget shared by the tasks' stores.
    cache: Rc<CacheBudget>,
    /// The global tables, filled by piping to their topics.
    globals: GlobalTables,
}

impl TopologyTestDriver {
    /// A driver with the default configuration (one partition per topic).
    pub fn new(topology: Topology) -> Self {
        Self::with_config(topology, DriverConfig::default())
    }

    /// A driver with the given configuration.
    pub fn with_config(topology: Topology, config: DriverConfig) -> Self {
        let dlq_name = config
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}-dlq", config.application_id));
        let mut settings = TaskSettings::new(
            &topology,
            &config.application_id,
            &dlq_name,
            config.on_error,
            StoreProvider::Memory,
        );
        settings.max_future_timestamp = config.max_future_timestamp;
        settings.trace_sample_ratio = config.trace_sample_ratio;
        settings.sign(&config.signing);
        settings.refuse_future_outputs = false;
        let topics = settings.topics.clone();
        let mut driver = TopologyTestDriver {
            topology: Arc::new(topology),
            logs: vec![Vec::new(); topics.len()],
            topics,
            config,
            tasks: BTreeMap::new(),
            offsets: HashMap::new(),
            round_robin: HashMap::new(),
            cache: CacheBudget::new(10 << 20),
            globals: settings.globals.clone(),
        };
        for sub in driver.topology.subtopologies() {
            for topic in &sub.source_topics {
                let t = driver.topology.topics.get(topic).expect("interned");
                for partition in 0..driver.partition_count(t) {
                    let id = TaskId {
                        subtopology: sub.id,
                        partition,
                    };
                    let task = driver.tasks.entry(id).or_insert_with(|| {
                        let mut task = Task::new(
                            &driver.topology,
                            id,
                            &settings,
                            driver.config.wall_clock,
                            &driver.cache,
                        )
                        .unwrap_or_else(|e| panic!("{e}"));
                        task.start().unwrap_or_else(|e| panic!("{e}"));
                        task
                    });
                    task.add_partition(t, partition);
                }
            }
        }
        driver
    }

    /// Configured partitions; an unconfigured repartition topic gets as
    /// many as the most of its writers' inputs, as in Kafka Streams.
    fn partition_count(&self, topic: TopicRef) -> i32 {
        let known = |t: TopicRef| self.config.partitions.get(self.topics.name(t)).copied();
        self.topology.partitions(topic, &known)
    }

    fn store_state(&self, name: &str, partition: i32) -> Option<Rc<RefCell<StoreState>>> {
        let sub = self.topology.store_subtopology(name)?;
        let task = self.tasks.get(&TaskId {
            subtopology: sub.id,
            partition,
        })?;
        task.stores()
            .iter()
            .find(|s| s.borrow().name() == name)
            .cloned()
    }

    /// The key-value store `name` of the task for `partition`, to inspect
    /// in assertions.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
        partition: i32,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Option<KeyValueStore<K, V>> {
        Some(KeyValueStore {
            state: self.store_state(name, partition)?,
            key: Arc::new(key_serde),
            value: Arc::new(value_serde),
        })
    }

    /// The window store `name` of the task for `partition`.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
        partition: i32,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Option<WindowStore<K, V>> {
        Some(WindowStore {
            state: self.store_state(name, partition)?,
            key: Arc::new(key_serde),
            value: Arc::new(value_serde),
        })
    }

    /// The session store `name` of the task for `partition`.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
        partition: i32,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Option<SessionStore<K, V>> {
        Some(SessionStore {
            state: self.store_state(name, partition)?,
            key: Arc::new(key_serde),
            value: Arc::new(value_serde),
        })
    }

    /// The tasks the topology runs as.
    pub fn task_ids(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().collect()
    }

    /// Encodes and pipes one record into `topic`.
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        topic: &TestTopic<K, V>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<(), RecordError> {
        self.pipe_record(topic, Record::new(key, value, timestamp))
    }

    /// Encodes and pipes one record (with its headers) into `topic`.
    ///
    /// # Panics
    /// If the record cannot be encoded: that is a bug in the test.
    pub fn pipe_record<K: 'static, V: 'static>(
        &mut self,
        topic: &TestTopic<K, V>,
        record: Record<K, V>,
    ) -> Result<(), RecordError> {
        let encode = |null: bool, f: &dyn Fn(&mut Vec<u8>) -> Result<(), SerdeError>| {
            (!null).then(|| {
                let mut buf = Vec::new();
                f(&mut buf).expect("test input must encode");
                buf
            })
        };
        let key = encode(topic.key.is_null(&record.key), &|b| {
            topic.key.serialize(&record.key, b)
        });
        let value = encode(topic.value.is_null(&record.value), &|b| {
            topic.value.serialize(&record.value, b)
        });
        self.pipe_raw(
            &topic.name,
            None,
            key.as_deref(),
            value.as_deref(),
            record.timestamp,
            record.headers,
        )
    }

    /// Pipes raw bytes into `topic`, on `partition` or where the key hashes
    /// to. Use it for records no serde would produce (poison records).
    ///
    /// # Panics
    /// If `partition` is beyond the topic's partition count.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<(), RecordError> {
        let topic = self.topic_ref(topic);
        let partition = partition.unwrap_or_else(|| self.place(topic, key));
        let count = self.partition_count(topic);
        assert!(
            (0..count).contains(&partition),
            "partition {partition} is out of range: {} has {count}",
            self.topics.name(topic)
        );
        let mut queue = VecDeque::new();
        // The test's own input is processed in place, not copied: only what
        // the topology writes is kept for reading.
        let raw = RawRecord {
            topic,
            partition,
            offset: self.next_offset(topic, partition),
            timestamp,
            key,
            value,
            headers: RawHeaders::Owned(&headers),
        };
        self.process(&raw, &mut queue)?;
        self.deliver(queue)
    }

    /// Writes queued outputs to their topics, processing those the topology
    /// reads (which may queue more).
    fn deliver(
        &mut self,
        mut queue: VecDeque<(TopicRef, RawTestRecord)>,
    ) -> Result<(), RecordError> {
        while let Some((topic, record)) = queue.pop_front() {
            let raw = RawRecord {
                topic,
                partition: record.partition,
                offset: self.next_offset(topic, record.partition),
                timestamp: record.timestamp,
                key: record.key.as_deref(),
                value: record.value.as_deref(),
                headers: RawHeaders::Owned(&record.headers),
            };
            let result = self.process(&raw, &mut queue);
            self.logs[topic.0 as usize].push(record);
            result?;
        }
        Ok(())
    }

    /// Pipes raw records as one poll batch: each task takes them in
    /// timestamp order across its input partitions (each partition keeping
    /// its own order), as a stream thread does when several of a task's
    /// partitions have data. Records of one partition stay in the given
    /// order.
    pub fn pipe_batch(&mut self, records: &[BatchRecord]) -> Result<(), RecordError> {
        let placed: Vec<(TopicRef, i32)> = records
            .iter()
            .map(|r| {
                let t = self.topic_ref(&r.topic);
                (
                    t,
                    r.partition
                        .unwrap_or_else(|| self.place(t, r.key.as_deref())),
                )
            })
            .collect();
        // Every record of the batch is known, so a task whose queue of one
        // partition is empty is caught up on it: the stream thread's rule
        // then processes its other partitions at once.
        let mut groups: BTreeMap<u32, PartitionGroup<usize>> = BTreeMap::new();
        for (i, (&(t, p), r)) in placed.iter().zip(records).enumerate() {
            let task = self
                .topology
                .sources
                .get(&t)
                .map_or(u32::MAX, |&(sub, _)| sub);
            let group = groups.entry((task << 16) ^ p as u32).or_default();
            let q = group.add(t, p);
            group.push(q, r.timestamp, i);
        }
        for group in groups.values_mut() {
            while group.ready(self.config.wall_clock, TaskIdle::default(), &mut |_, _| {
                Some(0)
            }) != Ready::No
            {
                let (_, i) = group.pop().expect("ready means a record is buffered");
                let (topic, partition) = placed[i];
                let r = &records[i];
                let mut queue = VecDeque::new();
                let raw = RawRecord {
                    topic,
                    partition,
                    offset: self.next_offset(topic, partition),
                    timestamp: r.timestamp,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    headers: RawHeaders::Owned(&Headers::new()),
                };
                self.process(&raw, &mut queue)?;
                self.deliver(queue)?;
            }
        }
        Ok(())
    }

    fn topic_ref(&mut self, name: &str) -> TopicRef {
        match self.topics.get(name) {
            Some(t) => t,
            None => {
                // A topic the topology does not know: record it anyway so
                // tests can write and read it.
                let t = Arc::make_mut(&mut self.topics).intern(name);
                self.logs.push(Vec::new());
                t
            }
        }
    }

    fn place(&mut self, topic: TopicRef, key: Option<&[u8]>) -> i32 {
        let n = self.partition_count(topic);
        match key {
            Some(k) => partition_for_key(k, n),
            None => {
                let next = self.round_robin.entry(topic).or_insert(0);
                let p = next.rem_euclid(n);
                *next = next.wrapping_add(1);
                p
            }
        }
    }

    /// The offset the next record of a partition takes.
    fn next_offset(&mut self, topic: TopicRef, partition: i32) -> i64 {
        let offset = self.offsets.entry((topic, partition)).or_insert(0);
        *offset += 1;
        *offset - 1
    }

    /// Processes a record (at its offset) if the topology reads its topic;
    /// its outputs are queued for delivery.
    fn process(
        &mut self,
        raw: &RawRecord<'_>,
        queue: &mut VecDeque<(TopicRef, RawTestRecord)>,
    ) -> Result<(), RecordError> {
        let (topic, partition, key, value) = (raw.topic, raw.partition, raw.key, raw.value);
        let name = self.topics.name(topic);
        if let Some(store) = self.globals.for_topic(name) {
            if let Some(key) = key {
                store.apply(key, value);
            }
            return Ok(());
        }
        let Some(&(subtopology, _)) = self.topology.sources.get(&topic) else {
            return Ok(());
        };
        let id = TaskId {
            subtopology,
            partition,
        };
        let task = self
            .tasks
            .get_mut(&id)
            .expect("a task per source partition");
        let stamp = task.stamp(raw);
        let result = task.process(raw, stamp);
        if let Err(e) = result {
            // As in the runtime, nothing a failed record produced is written.
            task.ctx.output.clear();
            return Err(e);
        }
        self.complete_calls(id)?;
        self.drain(id, queue);
        Ok(())
    }

    /// Waits for the calls a task's call nodes made and emits their
    /// outputs: piping a record gives its outputs, calls included.
    fn complete_calls(&mut self, id: TaskId) -> Result<(), RecordError> {
        let task = self.tasks.get_mut(&id).expect("task exists");
        while task.calls_pending() > 0 {
            if task.drain_calls()? == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Moves a task's outputs into the delivery queue, placing each on a
    /// partition.
    fn drain(&mut self, id: TaskId, queue: &mut VecDeque<(TopicRef, RawTestRecord)>) {
        let task = self.tasks.get_mut(&id).expect("task exists");
        // The driver commits after every record and punctuation, like
        // Kafka's: store caches go to the stores and their changelogs.
        task.flush_stores().expect("in-memory stores flush");
        let outputs: Vec<_> = task
            .ctx
            .output
            .iter()
            .map(|r| {
                (
                    r.meta.topic,
                    r.meta.partition,
                    RawTestRecord {
                        partition: 0,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                        timestamp: r.meta.timestamp,
                        headers: r.meta.written_headers(),
                    },
                )
            })
            .collect();
        task.ctx.output.clear();
        for (topic, partition, mut record) in outputs {
            record.partition =
                partition.unwrap_or_else(|| self.place(topic, record.key.as_deref()));
            queue.push_back((topic, record));
        }
    }

    /// Advances the wall clock of every task by `by` and fires due
    /// wall-clock punctuations.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), RecordError> {
        self.config.wall_clock += millis(by);
        let now = self.config.wall_clock;
        let ids = self.task_ids();
        for id in ids {
            let mut queue = VecDeque::new();
            self.tasks
                .get_mut(&id)
                .expect("task exists")
                .advance_wall_clock(now);
            self.complete_calls(id)?;
            self.drain(id, &mut queue);
            self.deliver(queue)?;
        }
        Ok(())
    }

    /// Records dropped so far for arriving after their window closed.
    pub fn late_drops(&self) -> u64 {
        self.tasks
            .values()
            .flat_map(|t| t.ctx.dropped.late.iter().map(|(_, n)| n))
            .sum()
    }

    /// State entries operators expired (retention passed in stream time)
    /// since the driver started.
    pub fn expired_state(&self) -> u64 {
        self.tasks
            .values()
            .flat_map(|t| t.ctx.dropped.expired.iter().map(|(_, n)| n))
            .sum()
    }

    /// The current wall-clock time of the driver.
    pub fn wall_clock(&self) -> i64 {
        self.config.wall_clock
    }

    /// Records the topology wrote to `topic` since the last read, undecoded,
    /// in write order (across partitions). Records piped in by the test are
    /// not kept.
    pub fn read_raw(&mut self, topic: &str) -> Vec<RawTestRecord> {
        let t = self.topic_ref(topic);
        std::mem::take(&mut self.logs[t.0 as usize])
    }

    /// Records written to `topic` since the last read, decoded.
    pub fn read<K: 'static, V: 'static>(
        &mut self,
        topic: &TestTopic<K, V>,
    ) -> Result<Vec<TestRecord<K, V>>, SerdeError> {
        self.read_raw(&topic.name)
            .into_iter()
            .map(|r| {
                Ok(TestRecord {
                    partition: r.partition,
                    key: topic.key.deserialize(r.key.as_deref())?,
                    value: topic.value.deserialize(r.value.as_deref())?,
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            })
            .collect()
    }

    /// Decoded key-value pairs written to `topic` since the last read.
    pub fn read_key_values<K: 'static, V: 'static>(
        &mut self,
        topic: &TestTopic<K, V>,
    ) -> Result<Vec<(K, V)>, SerdeError> {
        Ok(self
            .read(topic)?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        for task in self.tasks.values_mut() {
            task.close();
        }
    }
}
