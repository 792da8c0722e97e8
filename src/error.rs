//! The library's error type.

use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::runtime::RecordError;
use crate::topology::TopologyError;

/// Why a worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology is malformed.
    #[error("invalid topology: {0}")]
    Topology(#[from] TopologyError),
    /// The configuration is malformed.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A thread or runtime the worker needs could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What: `stream thread eddy-app-0`, `the global thread`...
        what: String,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The state directory could not be made or used.
    #[error("state directory {}: {source}", dir.display())]
    StateDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another worker of this machine holds the state directory.
    #[error("state directory {} is locked by another worker; give each worker its own state_dir", dir.display())]
    StateDirLocked {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// No broker answered in time.
    #[error("cannot reach Kafka at {servers} within {timeout:?}: {source}")]
    Unreachable {
        /// The bootstrap servers tried.
        servers: String,
        /// How long eddy waited.
        timeout: Duration,
        /// The client's last error.
        source: KafkaError,
    },
    /// The brokers refused the worker's credentials.
    #[error(
        "authentication to Kafka at {servers} failed as {principal}: check {setting} ({detail})"
    )]
    Authentication {
        /// The bootstrap servers.
        servers: String,
        /// Who the worker said it was.
        principal: String,
        /// The setting to check, as topology files name it.
        setting: String,
        /// librdkafka's reason.
        detail: String,
    },
    /// The TLS handshake with the brokers failed.
    #[error("TLS to Kafka at {servers} failed: check {setting} ({detail})")]
    Tls {
        /// The bootstrap servers.
        servers: String,
        /// The setting to check, as topology files name it.
        setting: String,
        /// librdkafka's reason.
        detail: String,
    },
    /// The brokers' ACLs do not let the worker do what its topology needs.
    #[error("not authorized: {principal} may not {operation} {resource} (grant what `eddy acls` prints for this application)")]
    NotAuthorized {
        /// The worker's principal.
        principal: String,
        /// What it tried: `read`, `write`, `describe`, `create`...
        operation: &'static str,
        /// What on: `topic "orders"`, `group "payment"`...
        resource: String,
    },
    /// A topic the topology reads or writes does not exist.
    #[error("{role} topic {topic:?} does not exist on {servers}; create it first")]
    MissingTopic {
        /// `source` or `sink`.
        role: &'static str,
        /// The topic.
        topic: String,
        /// The cluster asked.
        servers: String,
    },
    /// Topics processed by one task have different partition counts.
    #[error(
        "topics {a:?} ({a_partitions} partitions) and {b:?} ({b_partitions} partitions) are processed together \
         (joined or merged into shared state), so they must have the same number of partitions"
    )]
    CoPartition {
        /// One topic.
        a: String,
        /// Its partitions.
        a_partitions: i32,
        /// The other topic.
        b: String,
        /// Its partitions.
        b_partitions: i32,
    },
    /// A topic eddy needs could not be created.
    #[error("cannot create topic {topic:?}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
    /// A Kafka client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The cluster did not answer for a partition.
    #[error("no answer from Kafka for {topic}-{partition}: {what}")]
    NoAnswer {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What was asked.
        what: &'static str,
    },
    /// A record failed under the `fail` error policy.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The broker did not acknowledge an output record; its input offsets
    /// were not committed.
    #[error("output not acknowledged by the broker: {0}")]
    Delivery(String),
    /// Exactly-once: a transaction failed in a way that cannot be recovered
    /// by aborting it (for example the transactional id is not authorized).
    #[error("exactly-once: transaction failed fatally: {0}")]
    Transaction(String),
    /// The HTTP server could not start.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A processor could not start, so its task did not.
    #[error("task {task}: processor {node} could not start: {source}")]
    ProcessorInit {
        /// The task.
        task: String,
        /// The processor node.
        node: String,
        /// Why.
        source: crate::processor::InitError,
    },
    /// A state store failed.
    #[error("state store: {0}")]
    Store(#[from] crate::stores::StoreError),
    /// An interactive query failed.
    #[error("query: {0}")]
    Query(String),
    /// A stream thread panicked.
    #[error("stream thread {0} panicked")]
    ThreadPanicked(String),
}
