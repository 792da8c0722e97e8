//! What becomes of a record a task cannot decode or process: the policy,
//! the headers a dead letter carries (Kafka Streams' KIP-1034), and the
//! error that stops the worker under the `Fail` policy.

use crate::processor::FailureKind;

/// What to do with a record that cannot be decoded or processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Write it to the dead-letter topic with headers saying why, and go on.
    #[default]
    DeadLetter,
    /// Stop the worker with an error.
    Fail,
}

/// Header names on dead-lettered records (those of Kafka Streams' KIP-1034).
pub mod dlq_headers {
    /// The kind of failure ([`FailureKind::as_str`]).
    ///
    /// [`FailureKind::as_str`]: crate::processor::FailureKind::as_str
    pub const EXCEPTION: &str = "__streams.errors.exception";
    /// The error message.
    pub const MESSAGE: &str = "__streams.errors.message";
    /// Source topic.
    pub const TOPIC: &str = "__streams.errors.topic";
    /// Source partition, in decimal.
    pub const PARTITION: &str = "__streams.errors.partition";
    /// Source offset, in decimal.
    pub const OFFSET: &str = "__streams.errors.offset";
}

/// A record the task could not handle under the `Fail` policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} error on {topic}-{partition}@{offset}: {message}")]
pub struct RecordError {
    /// The kind of failure.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}
