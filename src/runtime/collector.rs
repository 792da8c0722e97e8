//! The producer side of a stream thread: sends task outputs and commits.
//!
//! At-least-once: a commit first flushes the producer and checks that the
//! broker acknowledged every record sent so far, and only then commits the
//! consumed offsets. Exactly-once will keep this shape with a transactional
//! producer: `commit` becomes send-offsets-to-transaction plus
//! commit-transaction.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use super::output::OutputBuffer;
use crate::error::Error;
use crate::kafka::send_blocking;
use crate::processor::FailureKind;
use crate::topology::{TopicRef, TopicTable};

/// Counts failed deliveries (the first failure's reason is kept) and
/// records the last acknowledged offset of each changelog partition.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    changelogs: HashSet<String>,
    dead_letter_topic: String,
    acked: Mutex<HashMap<(String, i32), i64>>,
    refused: Mutex<Vec<Refused>>,
}

/// An output the broker refused for its own content (its timestamp, its
/// size): it goes to the dead-letter topic, so that one record cannot stop
/// the worker and, once restarted, stop it again.
struct Refused {
    topic: String,
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    reason: String,
}

/// Errors about one record's content, not about the cluster.
fn refuses_content(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e,
        KafkaError::MessageProduction(
            C::InvalidTimestamp
                | C::InvalidRecord
                | C::MessageSizeTooLarge
                | C::MessageBatchTooLarge
                | C::InvalidMessageSize
        )
    )
}

/// Refusals of a record's size: its dead letter goes without the value.
fn too_large(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e,
        KafkaError::MessageProduction(
            C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize
        )
    )
}

impl DeliveryTracker {
    /// Whether a refusal of a record of `topic` is dead-lettered: data
    /// outputs only. A changelog must match its store, and a refused dead
    /// letter has nowhere else to go.
    fn dead_letters(&self, e: &KafkaError, topic: &str) -> bool {
        refuses_content(e) && topic != self.dead_letter_topic && !self.changelogs.contains(topic)
    }

    /// Keeps a refused output for the dead-letter topic (without its value
    /// when the value was what was too large).
    fn refuse(
        &self,
        e: &KafkaError,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) {
        let refused = Refused {
            topic: topic.to_owned(),
            partition,
            key: key.map(<[u8]>::to_vec),
            value: value.filter(|_| !too_large(e)).map(<[u8]>::to_vec),
            headers,
            reason: e.to_string(),
        };
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(refused);
    }
}

impl ClientContext for DeliveryTracker {}

/// The delivery opaque of a record sent to a changelog, whose offset is
/// recorded (other records carry 0, and their acknowledgements cost no
/// more than a match).
const CHANGELOG: usize = 1;

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        use rdkafka::Message;
        match result {
            Ok(msg) => {
                if opaque == CHANGELOG {
                    let mut acked = self.acked.lock().unwrap_or_else(|p| p.into_inner());
                    let offset = acked
                        .entry((msg.topic().to_owned(), msg.partition()))
                        .or_insert(-1);
                    *offset = (*offset).max(msg.offset());
                }
            }
            Err((e, msg)) if self.dead_letters(e, msg.topic()) => {
                use rdkafka::message::Headers as _;
                let headers = msg
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                self.refuse(
                    e,
                    msg.topic(),
                    msg.partition(),
                    msg.key(),
                    msg.payload(),
                    headers,
                );
            }
            Err((e, msg)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| format!("{e} (topic {})", msg.topic()));
            }
        }
    }
}

pub(crate) struct Collector {
    producer: BaseProducer<DeliveryTracker>,
    topics: Arc<TopicTable>,
    /// The delivery opaque of each topic of `topics`, by index.
    opaque: Vec<usize>,
    flush_timeout: Duration,
}

impl Collector {
    /// A producer; deliveries to the `changelogs` topics have their offsets
    /// recorded for checkpoints.
    pub(crate) fn new(
        config: &ClientConfig,
        topics: Arc<TopicTable>,
        changelogs: HashSet<String>,
        dead_letter_topic: String,
    ) -> Result<Self, KafkaError> {
        let opaque = (0..topics.len() as u32)
            .map(|t| match changelogs.contains(topics.name(TopicRef(t))) {
                true => CHANGELOG,
                false => 0,
            })
            .collect();
        let tracker = DeliveryTracker {
            changelogs,
            dead_letter_topic,
            ..DeliveryTracker::default()
        };
        Ok(Collector {
            producer: config.create_with_context(tracker)?,
            topics,
            opaque,
            flush_timeout: Duration::from_secs(60),
        })
    }

    /// Hands every record of `output` to the producer, waiting for queue
    /// space when librdkafka's buffer is full. Returns how many were sent.
    pub(crate) fn send(&self, output: &OutputBuffer) -> Result<usize, Error> {
        for r in output.iter() {
            let topic = self.topics.name(r.meta.topic);
            let headers = (!r.meta.headers.is_empty()).then(|| {
                r.meta.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(r.meta.headers.0.len()),
                    |h, x| {
                        h.insert(Header {
                            key: &x.key,
                            value: x.value.as_deref(),
                        })
                    },
                )
            });
            let opaque = self.opaque[r.meta.topic.0 as usize];
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, opaque)
                .timestamp(r.meta.timestamp);
            if let Some(k) = r.key {
                record = record.key(k);
            }
            if let Some(v) = r.value {
                record = record.payload(v);
            }
            if let Some(p) = r.meta.partition {
                record = record.partition(p);
            }
            if let Some(h) = headers {
                record = record.headers(h);
            }
            match send_blocking(&self.producer, record) {
                Ok(()) => {}
                // librdkafka refuses an oversized record before sending it.
                Err(e) if self.producer.context().dead_letters(&e, topic) => {
                    let headers = r.meta.headers.iter();
                    let headers = headers.map(|h| (h.key.clone(), h.value.clone())).collect();
                    let partition = r.meta.partition.unwrap_or(-1);
                    let tracker = self.producer.context();
                    tracker.refuse(&e, topic, partition, r.key, r.value, headers);
                }
                Err(e) => return Err(Error::Delivery(format!("{e} (topic {topic})"))),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(output.len())
    }

    /// Serves delivery reports without blocking.
    pub(crate) fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until the broker acknowledged everything sent; fails if any
    /// record was not acknowledged.
    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.producer
            .flush(self.flush_timeout)
            .map_err(|e| Error::Delivery(format!("flush: {e}")))?;
        let tracker = self.producer.context();
        let refused =
            std::mem::take(&mut *tracker.refused.lock().unwrap_or_else(|p| p.into_inner()));
        if !refused.is_empty() {
            for r in &refused {
                self.dead_letter_refused(r)?;
            }
            self.producer
                .flush(self.flush_timeout)
                .map_err(|e| Error::Delivery(format!("flush: {e}")))?;
        }
        if tracker.failed.load(Ordering::Relaxed) > 0 {
            let first = tracker
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(Error::Delivery(first.unwrap_or_default()));
        }
        Ok(())
    }

    /// Writes an output the broker refused to the dead-letter topic: its
    /// key, headers saying why and where it was going, and its value unless
    /// the value was what was too large.
    fn dead_letter_refused(&self, r: &Refused) -> Result<(), Error> {
        use super::dlq_headers as h;
        tracing::warn!(topic = %r.topic, "output refused by the broker, sent to the dead-letter topic: {}", r.reason);
        let partition = r.partition.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 4);
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        for (k, v) in [
            (h::EXCEPTION, FailureKind::Production.as_str()),
            (h::MESSAGE, r.reason.as_str()),
            (h::TOPIC, r.topic.as_str()),
            (h::PARTITION, partition.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let topic = &self.producer.context().dead_letter_topic;
        let mut record = BaseRecord::with_opaque_to(topic, 0).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        // No timestamp: its own may be what was refused, so the producer
        // stamps it now.
        send_blocking(&self.producer, record).map_err(|e| {
            Error::Delivery(format!(
                "{e} (dead letter of an output refused by {}: {})",
                r.topic, r.reason
            ))
        })
    }

    /// The last acknowledged offset of each changelog partition written.
    pub(crate) fn changelog_offsets(&self) -> HashMap<(String, i32), i64> {
        self.producer
            .context()
            .acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Flushes, then commits `offsets` for the consumer's group. A refused
    /// commit (for example during a rebalance) is logged and reported as
    /// `Ok(false)`: the records are re-processed, which at-least-once allows.
    pub(crate) fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<bool, Error> {
        self.flush()?;
        if offsets.count() == 0 {
            return Ok(true);
        }
        match consumer.commit(offsets, CommitMode::Sync) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!("offset commit refused: {e}");
                Ok(false)
            }
        }
    }
}
