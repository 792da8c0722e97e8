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

/// Where a task's dead letters go, and what its policy is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadLetters {
    pub(crate) topic: crate::topology::TopicRef,
    /// The furthest ahead of the wall clock (ms) a dead letter's timestamp
    /// may be: the topic's limit, and the worker's bound on inputs.
    pub(crate) limit: i64,
    pub(crate) policy: ErrorPolicy,
}

/// A record to dead-letter, as the task still has it: where it came from,
/// its bytes and headers.
pub(crate) struct Letter<'a> {
    /// Topic, partition and offset (none for a record a punctuation made).
    pub(crate) source: Option<(crate::topology::TopicRef, i32, i64)>,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: crate::processor::Headers,
}

impl crate::runtime::TaskContext {
    /// Writes `letter` to the dead-letter topic with headers saying why
    /// (`kind`, `message`) and where it came from, or, under the `Fail`
    /// policy, returns the error that stops the worker.
    pub(crate) fn dead_letter(
        &mut self,
        letter: Letter<'_>,
        kind: FailureKind,
        message: &str,
    ) -> Result<(), RecordError> {
        use crate::observability::{TraceContext, TRACEPARENT};
        let (topic_name, partition, offset) = match letter.source {
            Some((t, p, o)) => (self.topics.name(t).to_owned(), p, o),
            None => (String::new(), -1, -1),
        };
        if self.dead_letters.policy == ErrorPolicy::Fail {
            return Err(RecordError {
                kind,
                message: message.to_owned(),
                topic: topic_name,
                partition,
                offset,
            });
        }
        let mut headers = letter.headers;
        headers
            .add(dlq_headers::EXCEPTION, kind.as_str())
            .add(dlq_headers::MESSAGE, message)
            .add(dlq_headers::TOPIC, topic_name.as_str())
            .add(dlq_headers::PARTITION, partition.to_string())
            .add(dlq_headers::OFFSET, offset.to_string());
        // The hop's trace context, or (the record failed before its hop)
        // the one it came with.
        let trace = || {
            self.trace
                .or_else(|| TraceContext::parse(headers.last(TRACEPARENT)?))
        };
        tracing::debug!(
            application = &*self.application_id,
            task = %self.id,
            topic = topic_name,
            partition,
            offset,
            event_type = letter.value.and_then(event_type),
            trace_id = trace().map(|t| t.trace_id_hex()),
            span_id = trace().map(|t| t.span_id_hex()),
            "{kind} error, record sent to the dead-letter topic: {message}"
        );
        // A timestamp the broker would refuse (Kafka 4 refuses more than an
        // hour ahead by default) must not keep the dead letter from being
        // written: such records keep their place in time by the wall clock.
        let timestamp = if letter.timestamp < 0
            || letter.timestamp.saturating_sub(self.wall_clock) > self.dead_letters.limit
        {
            self.wall_clock
        } else {
            letter.timestamp
        };
        let meta = crate::runtime::OutMeta {
            headers,
            ..crate::runtime::OutMeta::new(self.dead_letters.topic, None, timestamp)
        };
        self.output.push_raw(meta, letter.key, letter.value);
        Ok(())
    }
}

/// The `type` field of a JSON object record, for logs: its event type.
fn event_type(value: &[u8]) -> Option<String> {
    match crate::processor::json_field::field(value, "type") {
        Ok(Some(serde_json::Value::String(t))) => Some(t),
        _ => None,
    }
}
