//! Worker configuration and the Kafka client configurations derived from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;

use super::{ClientSecurity, GroupProtocol, Security, SecurityError};
use crate::error::Error;
use crate::runtime::{ErrorPolicy, TaskIdle};
use crate::security::{HttpAuth, TopicSigning};
use crate::stores::RocksConfig;

/// How a worker runs: identity, cluster, threads, commits, error handling
/// and observability.
///
/// ```
/// use eddy::kafka::StreamsConfig;
/// use std::time::Duration;
/// let config = StreamsConfig::new("clicks-app")
///     .bootstrap_servers("127.0.0.1:9092")
///     .num_stream_threads(2)
///     .commit_interval(Duration::from_secs(1))
///     .set("consumer.fetch.wait.max.ms", "100");
/// assert_eq!(config.dead_letter_topic_name(), "clicks-app-dlq");
/// ```
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Consumer group id, prefix of internal topics.
    pub application_id: String,
    /// Whether a worker with a state directory joins a group of the
    /// classic protocol as a static member (`group.instance.id`: its
    /// process id, kept in the state directory, and the thread's number;
    /// default true): restarted, it takes its partitions back at once,
    /// without a rebalance; stopped, it keeps them until its session times
    /// out, as in Kafka Streams. Not under the consumer protocol: there the
    /// broker refuses an instance id whose holder did not leave
    /// (`UNRELEASED_INSTANCE_ID`, until the session expires), which
    /// librdkafka treats as fatal, so a worker restarted after a crash
    /// would not start; see [`static_members`](Self::static_members).
    pub static_membership: bool,
    /// Kafka bootstrap servers; `None` starts an embedded in-process cluster.
    pub bootstrap_servers: Option<String>,
    /// Stream threads per worker (default 1).
    pub num_stream_threads: usize,
    /// At-least-once (the default) or exactly-once (Kafka transactions).
    pub guarantee: Guarantee,
    /// The consumer group protocol; `None`: KIP-848's incremental
    /// `consumer` on a real cluster, `classic` on the embedded one (see
    /// [`group_protocol_or_default`](Self::group_protocol_or_default)).
    pub group_protocol: Option<GroupProtocol>,
    /// How often offsets are committed; `None`: the guarantee's default, as
    /// in Kafka Streams (30 s at-least-once, 100 ms exactly-once; see
    /// [`commit_interval_or_default`](Self::commit_interval_or_default)).
    pub commit_interval: Option<Duration>,
    /// Longest wait of one poll when no record is ready (default 100 ms).
    pub poll_timeout: Duration,
    /// Most records taken from the consumer per poll batch (default 1000).
    pub max_poll_records: usize,
    /// How long a task whose input partition has no buffered records waits
    /// for it before processing its other partitions (Kafka Streams'
    /// `max.task.idle.ms`; default: wait only while the broker is known to
    /// hold more of it).
    pub max_task_idle: TaskIdle,
    /// Records buffered per input partition; a partition with this many
    /// waiting is paused until half have been processed (default 1000),
    /// once the thread has taken what librdkafka had already fetched when
    /// it filled up (pausing would discard that, to fetch it again): so a
    /// queue holds at most this many plus one fetch of its partition.
    pub buffered_records_per_partition: usize,
    /// How far ahead of the wall clock a record's timestamp may be; records
    /// beyond it are dead-lettered before they can move stream time, so one
    /// bad clock cannot close every window of its partition (default 60 s;
    /// `None` accepts any).
    pub max_future_timestamp: Option<Duration>,
    /// Consumer groups (other applications) that write each input topic,
    /// by topic: event-time timers ([`PunctuationType::Watermark`], the
    /// saga's timeouts) wait until those groups have processed their own
    /// inputs up to the timer's time, so that a task does not time out on
    /// an answer an upstream application that is catching up will still
    /// write (see [`upstream`](Self::upstream)). Watched on a real cluster
    /// only.
    ///
    /// [`PunctuationType::Watermark`]: crate::processor::PunctuationType::Watermark
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// How long an upstream group may make no progress before timers stop
    /// waiting for it (it is down, or stuck); default 30 s.
    pub upstream_stall: Duration,
    /// W3C trace context in record headers: `None` (the default) passes
    /// headers on untouched; `Some(ratio)` makes each record a source reads
    /// a hop of its trace (a new span; a new trace, sampled at `ratio`,
    /// for a record without a valid `traceparent`). See
    /// [`TraceContext`](crate::observability::TraceContext).
    pub trace_sample_ratio: Option<f64>,
    /// An OpenTelemetry collector's OTLP/HTTP endpoint (such as
    /// `http://localhost:4318`; `/v1/traces` is added to a URL without a
    /// path): the spans of sampled hops are exported there. Turns tracing
    /// on at a ratio of 1 (OpenTelemetry's default sampler) unless
    /// [`trace_sample_ratio`](Self::trace_sample_ratio) says otherwise.
    /// Export never slows processing: spans that do not fit its queue are
    /// dropped and counted (`eddy_trace_spans_dropped_total`).
    pub otlp_endpoint: Option<String>,
    /// Per-node and per-store-operation metrics (`eddy_node_*` records and
    /// latency, `eddy_store_operations_total`, `eddy_store_operation_seconds`),
    /// as Kafka Streams' `metrics.recording.level` DEBUG; default on. Their
    /// counts are exact and their latencies sampled (one in
    /// [`SAMPLE_EVERY`](crate::observability::SAMPLE_EVERY)). Thread, task
    /// and store-size metrics are always on.
    pub node_metrics: bool,
    /// Dead-letter topic; default `<application_id>-dlq`.
    pub dead_letter_topic: Option<String>,
    /// What to do with a record that fails to decode or process.
    pub on_error: ErrorPolicy,
    /// Where to serve `/metrics` and `/health`; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
    /// The HTTP address other workers and clients reach this one at, as
    /// published to the application's members topic (Kafka Streams'
    /// `application.server`): where a query for a key this worker holds is
    /// sent. Default: `http://<http_addr>` unless it is an unspecified
    /// address (`0.0.0.0`).
    pub application_server: Option<String>,
    /// Warm copies kept of each task's persistent stores on other workers
    /// (Kafka Streams' `num.standby.replicas`, default 0): a standby tails
    /// the task's changelogs, so that the task resumes on its worker after
    /// a failover with only the changelog's tail to restore.
    pub num_standby_replicas: usize,
    /// How long to wait for the cluster at start (default 10 s).
    pub startup_timeout: Duration,
    /// Partitions of topics created on the embedded cluster (default 4).
    pub embedded_partitions: i32,
    /// Where persistent stores live: `<state_dir>/<application_id>/<task>/<store>`
    /// (default: `eddy-state` in the system's temporary directory).
    pub state_dir: PathBuf,
    /// RocksDB memory budget and options, shared by all stores of a worker.
    pub rocks: RocksConfig,
    /// Bytes of store writes a stream thread buffers (deduped per key)
    /// before it flushes them to the stores and changelogs; they are always
    /// flushed at commit. Default 10 MiB, Kafka Streams' default.
    pub cache_max_bytes: usize,
    /// Extra librdkafka properties: `consumer.<prop>`, `producer.<prop>`,
    /// `admin.<prop>`, or `<prop>` for every client.
    pub properties: BTreeMap<String, String>,
    /// TLS and SASL, secrets read (see [`security`](Self::security)).
    security: Option<ClientSecurity>,
    /// Signatures of records, by topic name: how records written to a
    /// topic are signed and records read from it verified.
    pub signing: BTreeMap<String, TopicSigning>,
    /// Bearer-token authentication of the query routes, and the scope
    /// their tokens must grant; `/metrics`, `/health` and the status page
    /// stay open.
    pub http_auth: Option<(HttpAuth, String)>,
}

impl StreamsConfig {
    /// Defaults for `application_id`.
    pub fn new(application_id: &str) -> Self {
        StreamsConfig {
            application_id: application_id.to_owned(),
            static_membership: true,
            bootstrap_servers: None,
            num_stream_threads: 1,
            guarantee: Guarantee::AtLeastOnce,
            group_protocol: None,
            commit_interval: None,
            poll_timeout: Duration::from_millis(100),
            max_poll_records: 1000,
            max_task_idle: TaskIdle::default(),
            buffered_records_per_partition: 1000,
            max_future_timestamp: Some(Duration::from_secs(60)),
            upstreams: BTreeMap::new(),
            upstream_stall: Duration::from_secs(30),
            trace_sample_ratio: None,
            otlp_endpoint: None,
            node_metrics: true,
            dead_letter_topic: None,
            on_error: ErrorPolicy::DeadLetter,
            http_addr: None,
            application_server: None,
            num_standby_replicas: 0,
            startup_timeout: Duration::from_secs(10),
            embedded_partitions: 4,
            state_dir: std::env::temp_dir().join("eddy-state"),
            rocks: RocksConfig::default(),
            cache_max_bytes: 10 << 20,
            properties: BTreeMap::new(),
            security: None,
            signing: BTreeMap::new(),
            http_auth: None,
        }
    }

    /// Sets the bootstrap servers (a real cluster).
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        self.bootstrap_servers = Some(servers.to_owned());
        self
    }

    /// Sets the number of stream threads.
    pub fn num_stream_threads(mut self, n: usize) -> Self {
        self.num_stream_threads = n.max(1);
        self
    }

    /// Sets the commit interval.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = Some(interval);
        self
    }

    /// Sets the delivery guarantee.
    ///
    /// ```
    /// use eddy::kafka::{Guarantee, StreamsConfig};
    /// use std::time::Duration;
    /// let config = StreamsConfig::new("payments").guarantee(Guarantee::ExactlyOnce);
    /// assert_eq!(config.commit_interval_or_default(), Duration::from_millis(100));
    /// ```
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Sets the consumer group protocol.
    pub fn group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.group_protocol = Some(protocol);
        self
    }

    /// The group protocol: the one set, else `consumer` on a real cluster
    /// and `classic` on the embedded one, whose consumer-protocol groups
    /// have a fixed 30 s session and an assignor that is not sticky (it is
    /// not where rebalancing is proven).
    pub fn group_protocol_or_default(&self) -> GroupProtocol {
        self.group_protocol.unwrap_or(match self.bootstrap_servers {
            Some(_) => GroupProtocol::Consumer,
            None => GroupProtocol::Classic,
        })
    }

    /// Whether stream threads join as static members: static membership
    /// is on and the group protocol is the classic one.
    pub fn static_members(&self) -> bool {
        self.static_membership && self.group_protocol_or_default() == GroupProtocol::Classic
    }

    /// Refuses settings the worker could not start with: consumer
    /// properties that the group protocol leaves to the broker.
    pub fn check(&self) -> Result<(), Error> {
        for key in self.properties.keys() {
            let prop = key.strip_prefix("consumer.").unwrap_or(key);
            if let Some(reason) = self.group_protocol_or_default().refused_property(prop) {
                return Err(Error::Config(format!("property {key:?}: {reason}")));
            }
        }
        if self.security.is_some() && self.bootstrap_servers.is_none() {
            return Err(Error::Config(
                "kafka.tls and kafka.sasl need a real cluster (application.brokers): the embedded one speaks plaintext only".into(),
            ));
        }
        Ok(())
    }

    /// The commit interval: the one set, else 30 s at-least-once and
    /// 100 ms exactly-once (Kafka Streams' defaults: under exactly-once a
    /// commit is what makes outputs visible downstream).
    pub fn commit_interval_or_default(&self) -> Duration {
        self.commit_interval.unwrap_or(match self.guarantee {
            Guarantee::AtLeastOnce => Duration::from_secs(30),
            Guarantee::ExactlyOnce => Duration::from_millis(100),
        })
    }

    /// Sets how long a task waits for an empty input partition
    /// (`max.task.idle.ms`).
    pub fn max_task_idle(mut self, idle: TaskIdle) -> Self {
        self.max_task_idle = idle;
        self
    }

    /// Declares consumer group `group` (another application) as a writer of
    /// input topic `topic`: the task's event-time timers wait until the
    /// group has processed its inputs up to their time.
    ///
    /// ```
    /// use eddy::kafka::StreamsConfig;
    /// let config = StreamsConfig::new("sessions").upstream("enriched-clicks", "click-enricher");
    /// assert_eq!(config.upstreams["enriched-clicks"], ["click-enricher"]);
    /// ```
    pub fn upstream(mut self, topic: &str, group: &str) -> Self {
        let groups = self.upstreams.entry(topic.to_owned()).or_default();
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
        self
    }

    /// Sets how far ahead of the wall clock a record timestamp may be
    /// (`None`: any).
    pub fn max_future_timestamp(mut self, bound: Option<Duration>) -> Self {
        self.max_future_timestamp = bound;
        self
    }

    /// Carries W3C trace context through the application's records, new
    /// traces sampled at `ratio` (clamped to 0..=1).
    pub fn trace_sampling(mut self, ratio: f64) -> Self {
        self.trace_sample_ratio = Some(ratio.clamp(0.0, 1.0));
        self
    }

    /// Exports the spans of sampled hops to the OTLP/HTTP collector at
    /// `endpoint` (see [`otlp_endpoint`](Self::otlp_endpoint)).
    pub fn otlp_endpoint(mut self, endpoint: &str) -> Self {
        self.otlp_endpoint = Some(endpoint.to_owned());
        self
    }

    /// Turns per-node and per-store-operation metrics on or off (see
    /// [`node_metrics`](Self::node_metrics)).
    pub fn node_metrics(mut self, on: bool) -> Self {
        self.node_metrics = on;
        self
    }

    /// The ratio new traces are sampled at, if tracing is on.
    pub fn effective_trace_sample_ratio(&self) -> Option<f64> {
        self.trace_sample_ratio
            .or(self.otlp_endpoint.as_ref().map(|_| 1.0))
    }

    /// Sets the HTTP address for `/metrics`.
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.http_addr = Some(addr);
        self
    }

    /// Sets the state directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Sets the dead-letter topic.
    pub fn dead_letter_topic(mut self, topic: &str) -> Self {
        self.dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// Sets the error policy.
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// Sets a librdkafka property (`consumer.`/`producer.` prefix for one
    /// client only).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.properties.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Connects every client with TLS and/or SASL: reads the secrets the
    /// settings name now (so a missing one is refused at start, naming
    /// its setting) and keeps them out of `Debug` output and logs.
    pub fn security(mut self, security: &Security) -> Result<Self, SecurityError> {
        self.security = Some(security.resolve()?);
        Ok(self)
    }

    /// Signs the records written to `topic` and/or verifies those read
    /// from it (see [`TopicSigning`]).
    pub fn signing(mut self, topic: &str, signing: TopicSigning) -> Self {
        self.signing.insert(topic.to_owned(), signing);
        self
    }

    /// The principal the clients authenticate as (`User:<name>`), with SASL.
    pub fn principal(&self) -> Option<String> {
        self.security.as_ref().and_then(|s| s.principal.clone())
    }

    /// The security settings, resolved.
    pub(crate) fn client_security(&self) -> Option<&ClientSecurity> {
        self.security.as_ref()
    }

    /// The dead-letter topic's name.
    pub fn dead_letter_topic_name(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}-dlq", self.application_id))
    }

    /// Unprefixed properties plus those with `prefix` (stripped).
    fn client(&self, servers: &str, prefix: &str) -> ClientConfig {
        const PREFIXES: [&str; 3] = ["consumer.", "producer.", "admin."];
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", servers);
        for (k, v) in self.security.iter().flat_map(|s| &s.properties) {
            c.set(*k, v);
        }
        for (k, v) in &self.properties {
            if let Some(k) = k.strip_prefix(prefix) {
                c.set(k, v);
            } else if !PREFIXES.iter().any(|p| k.starts_with(p)) {
                c.set(k, v);
            }
        }
        c
    }

    /// Consumer settings for stream thread `thread`. Offsets are stored and
    /// committed by eddy only; a range assignor (the broker's under the
    /// consumer protocol, librdkafka's under the classic one) keeps
    /// partition `p` of every input topic on the same member.
    pub fn consumer_client_config(&self, servers: &str, thread: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("group.id", &self.application_id)
            .set("client.id", format!("{}-{thread}", self.application_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("group.protocol", self.group_protocol_or_default().as_str())
            .set("statistics.interval.ms", "5000")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        match self.group_protocol_or_default() {
            GroupProtocol::Consumer => c.set("group.remote.assignor", "range"),
            GroupProtocol::Classic => c.set("partition.assignment.strategy", "range"),
        };
        if self.guarantee == Guarantee::ExactlyOnce {
            c.set("isolation.level", "read_committed");
        }
        if self.bootstrap_servers.is_none() {
            // The embedded mock broker holds a fetch for its whole wait
            // even when data arrives (a real broker answers at once): keep
            // the wait short so each topic hop does not add up to 500 ms.
            // At 10 ms the order demo's six hops took 63 ms at the median
            // (p99 78 ms at 300 orders/s); at 2 ms, 21 ms (p99 30 ms), for
            // about 14 % of a core of idle fetching (docs/benchmarks.md).
            c.set("fetch.wait.max.ms", "2");
        }
        merge(c, self.client(servers, "consumer."))
    }

    /// Producer settings: acknowledged by all in-sync replicas, idempotent,
    /// and partitioned by murmur2 like the Java client. `linger.ms` is 1:
    /// each topic hop of a pipeline waits at most that long for company,
    /// and under load librdkafka still fills batches while earlier requests
    /// are in flight (at 5 ms the order pipeline's median latency was about
    /// twice as high, and the stateless bench no faster: docs/benchmarks.md).
    pub fn producer_client_config(&self, servers: &str, thread: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set(
            "client.id",
            format!("{}-{thread}-producer", self.application_id),
        )
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000");
        merge(c, self.client(servers, "producer."))
    }

    /// The producer settings of a stream thread: under exactly-once
    /// transactional, with `transactional_id` (stable per worker process
    /// and thread, so that a restarted worker fences its former self and
    /// aborts what it left open) and Kafka Streams' 10 s transaction
    /// timeout (how long a crashed worker's open transaction can hold back
    /// read-committed consumers).
    pub fn stream_producer_config(
        &self,
        servers: &str,
        thread: &str,
        transactional_id: &str,
    ) -> ClientConfig {
        let mut c = ClientConfig::new();
        if self.guarantee == Guarantee::ExactlyOnce {
            c.set("transactional.id", transactional_id)
                .set("transaction.timeout.ms", "10000");
        }
        merge(self.producer_client_config(servers, thread), c)
    }

    /// Settings for admin and metadata clients.
    pub fn admin_client_config(&self, servers: &str) -> ClientConfig {
        self.client(servers, "admin.")
    }

    /// A consumer that is only ever assigned partitions (restores,
    /// standbys, the members topic), named `<application_id>-<role>`: it
    /// reads committed records only, and never commits.
    pub fn assigned_consumer_config(&self, servers: &str, role: &str) -> ClientConfig {
        let mut c = self.admin_client_config(servers);
        c.set("client.id", format!("{}-{role}", self.application_id))
            // Never subscribed nor committed: the group is a formality
            // librdkafka's consumer wants.
            .set("group.id", format!("{}-restore", self.application_id))
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "52428800")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            // Writes of aborted or open transactions are never restored;
            // the end of a changelog is then its last stable offset.
            .set("isolation.level", "read_committed");
        c
    }
}

/// How long librdkafka waits before fetching a partition again once its
/// local queue is over `queued.min.messages` (100 000) or
/// `queued.max.messages.kbytes`. librdkafka's default, 1 000 ms, left a
/// consumer reading a backlog idle for most of each second after it had
/// drained its queue (a stateless worker made 117 000 records/s, with
/// about a fifth of a core); with 10 ms it makes about a million
/// (docs/benchmarks.md). A partition is only held back with that much
/// already queued, so the short wait costs nothing when it is not.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Delivery guarantee (Kafka Streams' `processing.guarantee`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs acknowledged before the offsets are committed: after a
    /// crash, records processed since the last commit are processed again.
    #[default]
    AtLeastOnce,
    /// Kafka Streams' exactly-once v2: a transactional producer per stream
    /// thread writes outputs, changelogs and dead letters and commits the
    /// consumed offsets in one transaction; consumers read committed; a
    /// store holds a transaction's writes only once it committed.
    ExactlyOnce,
}

impl Guarantee {
    /// The name topology files and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once",
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Guarantee {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "at_least_once" => Ok(Guarantee::AtLeastOnce),
            "exactly_once" | "exactly_once_v2" => Ok(Guarantee::ExactlyOnce),
            _ => Err(format!(
                "unknown guarantee {s:?}: expected at_least_once or exactly_once"
            )),
        }
    }
}

fn merge(mut base: ClientConfig, over: ClientConfig) -> ClientConfig {
    // `config_map` hides secrets' values: they are read with `get`.
    for k in over.config_map().keys() {
        if let Some(v) = over.get(k) {
            base.set(*k, v);
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_protocol_refuses_what_the_broker_decides() {
        let c = StreamsConfig::new("app")
            .bootstrap_servers("b:1")
            .set("consumer.session.timeout.ms", "6000");
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("\"consumer.session.timeout.ms\""), "{err}");
        assert!(err.contains("group.consumer.session.timeout.ms"), "{err}");
        let consumer = c.consumer_client_config("b:1", "t0");
        assert_eq!(consumer.get("group.remote.assignor"), Some("range"));
        assert_eq!(consumer.get("partition.assignment.strategy"), None);
        let classic = c.group_protocol(GroupProtocol::Classic);
        classic.check().unwrap();
        let consumer = classic.consumer_client_config("b:1", "t0");
        assert_eq!(consumer.get("partition.assignment.strategy"), Some("range"));
        assert_eq!(consumer.get("group.remote.assignor"), None);
    }

    #[test]
    fn prefixed_properties_reach_one_client_only() {
        let c = StreamsConfig::new("app")
            .group_protocol(GroupProtocol::Classic)
            .set("consumer.session.timeout.ms", "6000")
            .set("producer.linger.ms", "20")
            .set("socket.timeout.ms", "7000");
        let consumer = c.consumer_client_config("b:1", "t0");
        let producer = c.stream_producer_config("b:1", "t0", "app-p-t0");
        assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
        assert_eq!(producer.get("session.timeout.ms"), None);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(consumer.get("socket.timeout.ms"), Some("7000"));
        assert_eq!(producer.get("socket.timeout.ms"), Some("7000"));
        assert_eq!(consumer.get("group.id"), Some("app"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(producer.get("transactional.id"), None);
        assert_eq!(c.commit_interval_or_default(), Duration::from_secs(30));
    }

    #[test]
    fn exactly_once_is_transactional_and_reads_committed() {
        let c = StreamsConfig::new("app").guarantee(Guarantee::ExactlyOnce);
        let consumer = c.consumer_client_config("b:1", "t0");
        let producer = c.stream_producer_config("b:1", "t0", "app-p-t0");
        assert_eq!(producer.get("transactional.id"), Some("app-p-t0"));
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.commit_interval_or_default(), Duration::from_millis(100));
        let set = c.commit_interval(Duration::from_secs(2));
        assert_eq!(set.commit_interval_or_default(), Duration::from_secs(2));
        assert_eq!("exactly_once".parse(), Ok(Guarantee::ExactlyOnce));
        assert!("twice".parse::<Guarantee>().is_err());
    }
}
