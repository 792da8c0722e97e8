//! Delivery reports of a stream thread's producer: acknowledgements
//! counted, changelog offsets recorded for checkpoints, failures kept, and
//! outputs the broker refused for their content kept for the dead-letter
//! topic.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

/// Counts failed deliveries (the first failure's reason is kept) and
/// records the last acknowledged offset of each changelog partition.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    /// Delivery reports served (acknowledged or failed).
    pub(super) reported: AtomicU64,
    /// The same, by the parity of the commit epoch the record was sent in
    /// (see [`EPOCH`]).
    pub(super) reported_in: [AtomicU64; 2],
    pub(super) failed: AtomicU64,
    pub(super) first_error: Mutex<Option<String>>,
    /// The first topic the broker refused a record for because the
    /// principal may not write it.
    pub(super) denied: Mutex<Option<String>>,
    pub(super) changelogs: HashSet<String>,
    pub(super) dead_letter_topic: String,
    pub(super) acked: Mutex<HashMap<(String, i32), i64>>,
    pub(super) refused: Mutex<Vec<Refused>>,
}

/// An output the broker refused for its own content (its timestamp, its
/// size): it goes to the dead-letter topic, so that one record cannot stop
/// the worker and, once restarted, stop it again.
pub(super) struct Refused {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
    pub(super) reason: String,
}

impl Refused {
    /// Whether an output is this refused one sent again.
    pub(super) fn is(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> bool {
        self.topic == topic
            && self.key.as_deref() == key
            // Without its value when the value was too large.
            && (self.value.is_none() || self.value.as_deref() == value)
    }
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
    pub(super) fn dead_letters(&self, e: &KafkaError, topic: &str) -> bool {
        refuses_content(e) && topic != self.dead_letter_topic && !self.changelogs.contains(topic)
    }

    /// Keeps a refused output for the dead-letter topic (without its value
    /// when the value was what was too large).
    pub(super) fn refuse(
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

/// The delivery opaque's bit of a record sent to a changelog, whose offset
/// is recorded (other records' acknowledgements cost no more than a test).
pub(super) const CHANGELOG: usize = 1;

/// The delivery opaque's bit holding the parity of the commit epoch a
/// record was sent in: an at-least-once commit waits for the reports of
/// its own epoch only, while later records are already being sent.
pub(super) const EPOCH: usize = 2;

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        use rdkafka::Message;
        self.reported.fetch_add(1, Ordering::Relaxed);
        self.reported_in[usize::from(opaque & EPOCH != 0)].fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(msg) => {
                if opaque & CHANGELOG != 0 {
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
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
                    let mut denied = self.denied.lock().unwrap_or_else(|p| p.into_inner());
                    denied.get_or_insert_with(|| msg.topic().to_owned());
                }
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| format!("{e} (topic {})", msg.topic()));
            }
        }
    }
}
