//! The topology file as written: TOML tables deserialized with unknown
//! fields refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `[application]`.
    pub application: Application,
    /// `[vars]`: constants expressions read as `vars.<name>`.
    #[serde(default)]
    pub vars: toml::Table,
    /// `[topics.<name>]`.
    #[serde(default)]
    pub topics: BTreeMap<String, Topic>,
    /// `[nodes.<name>]`.
    #[serde(default)]
    pub nodes: BTreeMap<String, Node>,
    /// `[expressions]`: the cost budget of every expression of the file.
    #[serde(default)]
    pub expressions: Expressions,
    /// `[kafka]`: TLS and SASL to the brokers.
    #[serde(default)]
    pub kafka: Kafka,
    /// `[signing]`: keys of signed topics.
    #[serde(default)]
    pub signing: Signing,
    /// `[http_auth]`: bearer tokens for the query routes.
    pub http_auth: Option<HttpAuthSettings>,
}

/// `[kafka]`: how the worker's clients connect. Secrets are named (an
/// environment variable or a file), never written here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// `[kafka.tls]`: TLS, verifying the brokers.
    pub tls: Option<KafkaTls>,
    /// `[kafka.sasl]`: SASL authentication.
    pub sasl: Option<KafkaSasl>,
}

/// `[kafka.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// CA certificates (PEM) to verify the brokers with (default: the
    /// system's), relative to the file's folder.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The environment variable holding the key's password.
    pub key_password_env: Option<String>,
    /// A file holding the key's password.
    pub key_password_file: Option<PathBuf>,
    /// Whether the broker's name must match its certificate (default true).
    pub verify_hostname: Option<bool>,
}

/// `[kafka.sasl]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN` (over TLS only).
    pub mechanism: crate::kafka::Mechanism,
    /// The user.
    pub username: String,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// Refused: a password is never written in a topology file.
    pub password: Option<toml::Value>,
}

/// `[expressions]`: limits on what evaluating one expression may cost.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expressions {
    /// Deepest nesting of comprehensions over record data accepted at load
    /// (default 2).
    pub max_nesting: Option<usize>,
    /// Comprehension steps one evaluation may take (default 100 000).
    pub max_steps: Option<u64>,
    /// Time one evaluation may take, e.g. `"100ms"` (the default).
    pub timeout: Option<String>,
}

pub use crate::kafka::{GroupProtocol, Guarantee};

/// What to do with a record that fails.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Send it to the dead-letter topic and go on.
    DeadLetter,
    /// Stop the worker.
    Fail,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// `application.id`: consumer group, prefix of internal topics.
    pub id: String,
    /// Bootstrap servers, or `"embedded"` (the default).
    pub brokers: Option<String>,
    /// `at_least_once` (default) or `exactly_once`.
    pub guarantee: Option<Guarantee>,
    /// `consumer` (KIP-848; the default on a real cluster) or `classic`.
    pub group_protocol: Option<GroupProtocol>,
    /// Static membership under the classic protocol (default true).
    pub static_membership: Option<bool>,
    /// Stream threads.
    pub threads: Option<usize>,
    /// Standby replicas of each task's persistent stores (default 0).
    pub standby_replicas: Option<usize>,
    /// The address published for query routing (default
    /// `http://<the HTTP address>`).
    pub application_server: Option<String>,
    /// State directory (relative to the file's folder).
    pub state_dir: Option<PathBuf>,
    /// RocksDB memory budget in MiB.
    pub memory_budget_mb: Option<usize>,
    /// Port of `/metrics`, `/health` and the queries (0: any free port).
    pub http_port: Option<u16>,
    /// Dead-letter topic (default `<id>-dlq`).
    pub dead_letter_topic: Option<String>,
    /// `dead_letter` (default) or `fail`.
    pub on_error: Option<OnError>,
    /// Commit interval, e.g. `"1s"`.
    pub commit_interval: Option<String>,
    /// Partitions of each topic on the embedded cluster.
    pub partitions: Option<i32>,
    /// How long a task waits for an empty input partition before it
    /// processes its others (`max.task.idle.ms`): a duration (`"0s"`, the
    /// default, waits only while the broker holds more of it) or `"never"`.
    pub max_task_idle: Option<String>,
    /// How far ahead of the wall clock a record timestamp may be before the
    /// record is dead-lettered: a duration (default `"60s"`) or `"none"`.
    pub max_future_timestamp: Option<String>,
    /// How long an upstream application (`topics.<name>.upstream`) may make
    /// no progress before timers stop waiting for it (default `"30s"`).
    pub upstream_stall: Option<String>,
    /// W3C trace context through the records (`traceparent` headers, a
    /// new span per hop), new traces sampled at this ratio (0 to 1);
    /// absent: off, headers pass untouched.
    pub trace_sample_ratio: Option<f64>,
    /// An OpenTelemetry collector's OTLP/HTTP endpoint (such as
    /// `"http://localhost:4318"`) the spans of sampled hops are exported
    /// to; tracing is on at a ratio of 1 unless `trace_sample_ratio` is set.
    pub otlp_endpoint: Option<String>,
    /// Per-node and per-store-operation metrics (`eddy_node_*` records and
    /// latency, `eddy_store_operation*`); absent: on.
    pub node_metrics: Option<bool>,
}

/// `[topics.<name>]`: a Kafka topic with string keys and JSON values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// The Kafka topic name (default: the table's name).
    pub name: Option<String>,
    /// Key format: only `"string"`.
    pub key: Option<KeyFormat>,
    /// Value format: only `"json"`.
    pub value: Option<ValueFormat>,
    /// JSON Schema file (relative to the file's folder) records read from
    /// this topic must satisfy; the others go to the dead-letter topic.
    pub schema: Option<PathBuf>,
    /// Event time from this field of the value (epoch ms or RFC 3339)
    /// instead of the record timestamp.
    pub timestamp_field: Option<String>,
    /// Application ids (consumer groups) of the other services that write
    /// this topic: event-time timers (the saga's timeouts) wait until they
    /// have processed their own inputs up to the timer's time.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// Records this application writes to the topic are signed with this
    /// key (an id of `[signing.keys]`).
    pub sign: Option<String>,
    /// Records read from the topic must be signed with one of these keys;
    /// the others go to the dead-letter topic.
    #[serde(default)]
    pub verify: Vec<String>,
    /// Headers the signature covers besides the topic, key and value (the
    /// same list wherever the topic is signed or verified).
    #[serde(default)]
    pub signed_headers: Vec<String>,
}

/// `[http_auth]`: the query routes take only bearer JWTs of this issuer
/// and audience, signed with this key, granting `query_scope`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthSettings {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// The environment variable holding an HS256 secret.
    pub hs256_secret_env: Option<String>,
    /// A file holding an HS256 secret.
    pub hs256_secret_file: Option<PathBuf>,
    /// A PEM file with the RSA public key of RS256 tokens.
    pub rs256_public_key_file: Option<PathBuf>,
    /// The scope the query routes need (default `"query"`).
    pub query_scope: Option<String>,
}

/// `[signing]`: the keys records are signed and verified with.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// `[signing.keys.<id>]`: each key's secret, by its id.
    #[serde(default)]
    pub keys: BTreeMap<String, SigningKey>,
}

/// `[signing.keys.<id>]`: where a key's secret is read from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    /// The environment variable holding it.
    pub secret_env: Option<String>,
    /// A file holding it (relative to the file's folder).
    pub secret_file: Option<PathBuf>,
    /// Refused: a secret is never written in a topology file.
    pub secret: Option<toml::Value>,
}

/// Key formats.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// UTF-8.
    String,
}

/// Value formats.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// JSON.
    Json,
}

/// Join kinds.
#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Both sides.
    #[default]
    Inner,
    /// Every left record.
    Left,
    /// Every record of either side.
    Outer,
}

/// A time window of an aggregation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Window size, e.g. `"1m"`.
    pub size: String,
    /// Hop (default: the size, a tumbling window).
    pub advance: Option<String>,
    /// Grace after the window end (default 0).
    pub grace: Option<String>,
    /// Emit only the final result of each window.
    #[serde(default)]
    pub emit_final: bool,
}

/// A saga transition, or a timeout's transition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// State it leaves (transitions only).
    pub from: Option<String>,
    /// Event type that triggers it (transitions only).
    pub on: Option<String>,
    /// State it leaves on a timeout (timeouts only).
    pub state: Option<String>,
    /// How long after entering `state` (timeouts only), e.g. `"30s"`.
    pub after: Option<String>,
    /// State it enters.
    pub to: String,
    /// Reason recorded on the instance.
    pub reason: Option<String>,
    /// Events emitted, as expressions.
    #[serde(default)]
    pub emit: Vec<String>,
}

/// The read model of a saga.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Store that keeps it.
    pub store: String,
    /// Expression computing it.
    pub value: String,
    /// HTTP path prefix serving it: `GET <route>/{key}`.
    pub route: Option<String>,
}

/// A `mask` node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSettings {
    /// Input node.
    pub input: String,
    /// Fields replaced by their keyed HMAC-SHA256 (64 hex digits): equal
    /// values still join and group.
    #[serde(default)]
    pub hash: Vec<String>,
    /// Fields replaced by `"[redacted]"`.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Fields (or list items) removed.
    #[serde(default)]
    pub drop: Vec<String>,
    /// The environment variable holding the hashing key.
    pub key_env: Option<String>,
    /// A file holding the hashing key.
    pub key_file: Option<PathBuf>,
    /// Refused: a key is never written in a topology file.
    pub key: Option<toml::Value>,
}

/// A `call` node: an HTTP call per record, off the stream thread.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallNode {
    /// Input node.
    pub input: String,
    /// `GET`, `POST` (default), `PUT`, `PATCH` or `DELETE`.
    pub method: Option<String>,
    /// The URL, over key and value (an `http://` or `https://` URL).
    pub url: String,
    /// Headers, each value over key and value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON body, over key and value (none: no body).
    pub body: Option<String>,
    /// The idempotency key, over key and value (default: the record's
    /// source position).
    pub idempotency_key: Option<String>,
    /// The header carrying it (default `Idempotency-Key`).
    pub idempotency_header: Option<String>,
    /// The output of a success answer (2xx), over key, value, status and
    /// body (the answer's JSON).
    pub response: String,
    /// The output of a failed call, over key, value, reason, detail,
    /// status and body (null without an answer); none: the dead-letter
    /// topic.
    pub on_failure: Option<String>,
    /// Calls in flight per task (default 64).
    pub concurrency: Option<usize>,
    /// Calls in flight per worker (default 256).
    pub worker_concurrency: Option<usize>,
    /// Records held per task, called or waiting (default 256).
    pub max_pending: Option<usize>,
    /// `key` (default) or `partition`: the order outputs keep.
    pub order: Option<String>,
    /// `wait` (default) or `fail`: what records do while the breaker is
    /// open.
    pub on_open: Option<String>,
    /// How long one try may take (default 5s).
    pub timeout: Option<String>,
    /// Tries in all (default 5).
    pub attempts: Option<u32>,
    /// The first backoff (default 100ms), doubled per retry.
    pub backoff: Option<String>,
    /// The longest backoff (default 10s).
    pub max_backoff: Option<String>,
    /// Failed calls in a row that open the breaker (default 5).
    pub breaker_failures: Option<u32>,
    /// How long the breaker stays open (default 10s).
    pub breaker_open_for: Option<String>,
    /// The largest answer body read (default 1 MiB).
    pub max_answer_bytes: Option<usize>,
    /// `[nodes.<name>.tls]`: TLS of `https://` calls.
    pub tls: Option<CallTls>,
}

/// `[nodes.<name>.tls]` of a `call` node, paths relative to the file's
/// folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallTls {
    /// CA certificates (PEM) to verify the services with (default: the
    /// system's).
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
}

/// `[nodes.<name>]`: one operator.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Reads a topic as a stream.
    Source {
        /// The `[topics]` entry.
        topic: String,
    },
    /// Reads a topic as a table (latest value per key).
    Table {
        /// The `[topics]` entry.
        topic: String,
        /// Store name (default: the node's name).
        store: Option<String>,
    },
    /// Keeps records for which `expr` is true.
    Filter {
        /// Input node.
        input: String,
        /// Boolean expression over key, value, timestamp.
        expr: String,
    },
    /// Computes a new value and/or key.
    Map {
        /// Input node.
        input: String,
        /// New value.
        value: Option<String>,
        /// New key (the records then need a repartition before state).
        key: Option<String>,
    },
    /// Re-keys by a field of the value (dotted path).
    Rekey {
        /// Input node.
        input: String,
        /// The field.
        field: String,
    },
    /// One output per element of a list.
    FlatMap {
        /// Input node.
        input: String,
        /// The list.
        items: String,
        /// Each output's value (default: the item), over key, value, item, index.
        value: Option<String>,
        /// Each output's key (default: the input key).
        key: Option<String>,
        /// The most outputs one record may make (default 10 000): a record
        /// whose list is longer goes to the dead-letter topic, and nothing
        /// is emitted for it.
        max_outputs: Option<usize>,
    },
    /// Interleaves several streams.
    Merge {
        /// Input nodes.
        inputs: Vec<String>,
    },
    /// Through an internal topic, partitioned by the current key.
    Repartition {
        /// Input node.
        input: String,
    },
    /// Joins two streams (window required) or a stream with a table.
    Join {
        /// Left input.
        left: String,
        /// Right input: a stream or a table.
        right: String,
        /// `inner` (default), `left` or `outer`.
        #[serde(default)]
        kind: Kind,
        /// Stream-stream: how far apart records may be, e.g. `"30s"`.
        window: Option<String>,
        /// Stream-stream: grace after the window.
        grace: Option<String>,
        /// The joined value, over key, left, right.
        value: String,
    },
    /// Aggregates per key, optionally per time window.
    Aggregate {
        /// Input node.
        input: String,
        /// The first aggregate, over key.
        initial: String,
        /// The next aggregate, over key, value, agg.
        aggregator: String,
        /// Store name (default: the node's name).
        store: Option<String>,
        /// Time window.
        window: Option<Window>,
    },
    /// Gathers the parts of a whole per key (the answers to a scatter):
    /// once every part has arrived, emits their values as one list in part
    /// order, and starts over for that key.
    Gather {
        /// Input node (parts keyed by their whole).
        input: String,
        /// Which part a record is, over key and value: an integer from 0 to
        /// `parts - 1`. A part that arrives again replaces the first.
        part: String,
        /// How many parts the whole has, over key and value: an integer of
        /// at least 1, the same for every part of a whole.
        parts: String,
        /// Store name (default: the node's name).
        store: Option<String>,
    },
    /// A per-key state machine.
    Saga {
        /// Input node (events keyed by instance).
        input: String,
        /// Initial state.
        initial: String,
        /// States where unexpected events are dropped.
        #[serde(default)]
        final_states: Vec<String>,
        /// Transitions.
        #[serde(default)]
        transitions: Vec<Transition>,
        /// Timeouts.
        #[serde(default)]
        timeouts: Vec<Transition>,
        /// Read model.
        summary: Option<Summary>,
        /// Taken by an event the saga cannot apply (an emitter or the
        /// summary fails on it): `to` (a final state) and `emit`, with the
        /// error as `reason` unless one is given.
        rejected: Option<Box<Transition>>,
        /// How often deadlines are checked, in stream time (default 1s).
        check_every: Option<String>,
        /// How long an instance is kept after its last change, in event
        /// time (default: ten times the longest timeout, at least 1h).
        retention: Option<String>,
    },
    /// Masks personal data in each value (JSON): the fields named by paths
    /// (`email`, `address.street`, `items[*].note`, `phones[0]`) are
    /// hashed, redacted or dropped, in that order.
    Mask(MaskSettings),
    /// Calls an HTTP service per record, off the stream thread, and emits
    /// the answer's output.
    Call(Box<CallNode>),
    /// A processor registered from Rust code.
    Processor {
        /// Input node.
        input: String,
        /// Registered name.
        processor: String,
        /// Its parameters.
        #[serde(default)]
        params: toml::Table,
    },
    /// Writes to a topic.
    Sink {
        /// Input node.
        input: String,
        /// The `[topics]` entry.
        topic: String,
    },
}

impl Node {
    /// The nodes this one reads, with the field naming each.
    pub fn inputs(&self) -> Vec<(&'static str, &str)> {
        match self {
            Node::Source { .. } | Node::Table { .. } => Vec::new(),
            Node::Merge { inputs } => inputs.iter().map(|i| ("inputs", i.as_str())).collect(),
            Node::Join { left, right, .. } => vec![("left", left), ("right", right)],
            Node::Filter { input, .. }
            | Node::Map { input, .. }
            | Node::Rekey { input, .. }
            | Node::FlatMap { input, .. }
            | Node::Repartition { input }
            | Node::Aggregate { input, .. }
            | Node::Gather { input, .. }
            | Node::Saga { input, .. }
            | Node::Processor { input, .. }
            | Node::Mask(MaskSettings { input, .. })
            | Node::Sink { input, .. } => vec![("input", input)],
            Node::Call(c) => vec![("input", &c.input)],
        }
    }
}
