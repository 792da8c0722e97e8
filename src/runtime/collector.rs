//! The producer side of a stream thread: sends task outputs and commits.
//!
//! At-least-once: a commit first flushes the producer and checks that the
//! broker acknowledged every record sent so far, and only then commits the
//! consumed offsets. Exactly-once: the producer is transactional; the first
//! record after a commit opens a transaction, and a commit sends the
//! consumed offsets into it (with the consumer's group metadata, so that a
//! member of an older generation is refused: KIP-447) and commits it.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::delivery::{DeliveryTracker, Refused, CHANGELOG};
use super::output::OutputBuffer;
use crate::error::Error;
use crate::kafka::send_blocking;
use crate::observability::{lap, CommitPhases};
use crate::processor::FailureKind;
use crate::topology::{TopicRef, TopicTable};

pub(crate) struct Collector {
    /// Shared only with a call to [`send_offsets`] that outlived its
    /// timeout.
    producer: Arc<BaseProducer<DeliveryTracker>>,
    /// What the producer was made from, to replace it once fenced.
    config: ClientConfig,
    topics: Arc<TopicTable>,
    /// The delivery opaque of each topic of `topics`, by index.
    opaque: Vec<usize>,
    flush_timeout: Duration,
    /// Exactly-once: the producer is transactional.
    transactional: bool,
    /// Whether a transaction is open.
    in_transaction: bool,
    /// Why the open transaction cannot commit (a send failed in it): the
    /// next commit aborts it instead.
    doomed: Option<String>,
    /// Records handed to the producer; a flush waits until as many
    /// delivery reports were served.
    sent: Cell<u64>,
    /// Exactly-once: outputs the broker refused for their content in an
    /// aborted transaction. Sent again once the tasks have processed their
    /// inputs again, each goes to the dead-letter topic instead, so that
    /// one record cannot abort every transaction after it.
    poisoned: Vec<Refused>,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Outputs acknowledged and offsets committed.
    Yes,
    /// At-least-once: outputs acknowledged, but the offset commit refused
    /// (during a rebalance): the records are processed again.
    Refused,
    /// Exactly-once: the transaction was aborted (an abortable error, or a
    /// member of an older group generation); the tasks must go back to
    /// their committed state.
    Aborted(String),
    /// Exactly-once: the producer was fenced by a newer one with its
    /// transactional id, or its epoch expired (its transaction outlived the
    /// timeout): it was replaced by a new producer, and the tasks must go
    /// back to their committed state.
    Fenced(String),
}

impl Committed {
    /// Whether the tasks' outputs and offsets are committed.
    pub(crate) fn is_yes(&self) -> bool {
        *self == Committed::Yes
    }
}

/// How long a transactional call may take before it is retried.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

impl Collector {
    /// A producer; deliveries to the `changelogs` topics have their offsets
    /// recorded for checkpoints.
    ///
    /// A producer with a `transactional.id` is transactional: it is
    /// registered with the transaction coordinator here, which fences any
    /// older producer with the same id and aborts what it left open.
    pub(crate) fn new(
        config: &ClientConfig,
        topics: Arc<TopicTable>,
        changelogs: HashSet<String>,
        dead_letter_topic: String,
    ) -> Result<Self, Error> {
        let opaque = (0..topics.len() as u32)
            .map(|t| match changelogs.contains(topics.name(TopicRef(t))) {
                true => CHANGELOG,
                false => 0,
            })
            .collect();
        let transactional = config.get("transactional.id").is_some();
        let tracker = DeliveryTracker {
            changelogs,
            dead_letter_topic,
            ..DeliveryTracker::default()
        };
        let producer = Arc::new(Self::producer(config, tracker)?);
        Ok(Collector {
            producer,
            config: config.clone(),
            topics,
            opaque,
            flush_timeout: Duration::from_secs(60),
            transactional,
            in_transaction: false,
            doomed: None,
            sent: Cell::new(0),
            poisoned: Vec::new(),
        })
    }

    fn producer(
        config: &ClientConfig,
        tracker: DeliveryTracker,
    ) -> Result<BaseProducer<DeliveryTracker>, Error> {
        let producer: BaseProducer<DeliveryTracker> = config.create_with_context(tracker)?;
        if config.get("transactional.id").is_some() {
            producer.init_transactions(TXN_TIMEOUT).map_err(|e| {
                Error::Transaction(format!(
                    "cannot register transactional id {}: {e}",
                    config.get("transactional.id").unwrap_or_default()
                ))
            })?;
        }
        Ok(producer)
    }

    /// Opens a transaction if none is open (exactly-once).
    fn begin(&mut self) -> Result<(), KafkaError> {
        if self.transactional && !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Hands every record of `output` to the producer, waiting for queue
    /// space when librdkafka's buffer is full. Returns how many were sent.
    ///
    /// Under exactly-once a record that cannot be sent dooms the open
    /// transaction: the next commit aborts it (and the thread resets its
    /// tasks) instead of stopping the worker.
    pub(crate) fn send(&mut self, output: &OutputBuffer) -> Result<usize, Error> {
        if output.is_empty() {
            return Ok(0);
        }
        if self.doomed.is_some() {
            return Ok(0);
        }
        if let Err(e) = self.begin() {
            self.doomed = Some(format!("cannot begin a transaction: {e}"));
            return Ok(0);
        }
        for r in output.iter() {
            let topic = self.topics.name(r.meta.topic);
            if !self.poisoned.is_empty() {
                if let Some(i) = self
                    .poisoned
                    .iter()
                    .position(|p| p.is(topic, r.key, r.value))
                {
                    let refused = self.poisoned.swap_remove(i);
                    self.dead_letter_refused(&refused)?;
                    continue;
                }
            }
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
                Ok(()) => self.sent.set(self.sent.get() + 1),
                // librdkafka refuses an oversized record before sending it.
                Err(e) if self.producer.context().dead_letters(&e, topic) => {
                    let headers = r.meta.headers.iter();
                    let headers = headers.map(|h| (h.key.clone(), h.value.clone())).collect();
                    let partition = r.meta.partition.unwrap_or(-1);
                    let tracker = self.producer.context();
                    tracker.refuse(&e, topic, partition, r.key, r.value, headers);
                }
                Err(e) if self.transactional => {
                    self.doomed = Some(format!("{e} (topic {topic})"));
                    return Ok(0);
                }
                Err(e) => return Err(Error::Delivery(format!("{e} (topic {topic})"))),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(output.len())
    }

    /// Whether the open transaction is doomed (it will be aborted at the
    /// next commit, which should come at once).
    pub(crate) fn is_doomed(&self) -> bool {
        self.doomed.is_some()
    }

    /// Serves delivery reports without blocking.
    pub(crate) fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until the broker acknowledged everything sent; fails if any
    /// record was not acknowledged.
    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.wait_for_reports()
            .map_err(|e| Error::Delivery(format!("flush: {e}")))?;
        let tracker = self.producer.context();
        let refused =
            std::mem::take(&mut *tracker.refused.lock().unwrap_or_else(|p| p.into_inner()));
        if !refused.is_empty() {
            for r in &refused {
                self.dead_letter_refused(r)?;
            }
            self.wait_for_reports()
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

    /// Waits until a delivery report was served for every record sent
    /// (acknowledged or failed), checking every millisecond.
    /// rust-rdkafka's `flush` polls in steps of up to 100 ms that each run
    /// to their end whatever arrives, so a commit cost at least 100 ms
    /// whenever a record was in flight.
    fn wait_for_reports(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + self.flush_timeout;
        let reported = &self.producer.context().reported;
        loop {
            self.producer.poll(Duration::ZERO);
            if reported.load(Ordering::Relaxed) >= self.sent.get() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            self.producer.poll(Duration::from_millis(1));
        }
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
        self.sent.set(self.sent.get() + 1);
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

    /// Commits: at-least-once, flushes then commits `offsets` for the
    /// consumer's group; exactly-once, sends `offsets` into the open
    /// transaction and commits it. A refused offset commit at-least-once
    /// (for example during a rebalance) is logged and reported as
    /// [`Committed::Refused`]: the records are re-processed, which
    /// at-least-once allows.
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        phases: &CommitPhases,
    ) -> Result<Committed, Error> {
        if self.transactional {
            return self.commit_transaction(consumer, offsets, phases);
        }
        let mut clock = Instant::now();
        self.flush()?;
        lap(&phases.flush, &mut clock);
        if offsets.count() == 0 {
            return Ok(Committed::Yes);
        }
        let committed = consumer.commit(offsets, CommitMode::Sync);
        lap(&phases.offsets, &mut clock);
        match committed {
            Ok(()) => Ok(Committed::Yes),
            Err(e) => {
                tracing::warn!("offset commit refused: {e}");
                Ok(Committed::Refused)
            }
        }
    }

    fn commit_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        phases: &CommitPhases,
    ) -> Result<Committed, Error> {
        if let Some(reason) = self.doomed.take() {
            return self.abort(reason);
        }
        if !self.in_transaction && offsets.count() == 0 {
            return Ok(Committed::Yes);
        }
        if let Err(e) = self.begin() {
            return self.failed(e);
        }
        let mut clock = Instant::now();
        // Flushed here (commit_transaction would) to time it apart.
        if let Err(e) = self.wait_for_reports() {
            return self.failed(e);
        }
        lap(&phases.flush, &mut clock);
        if offsets.count() > 0 {
            let Some(group) = consumer.group_metadata() else {
                return self.abort("the consumer has no group metadata".into());
            };
            match send_offsets(&self.producer, offsets, group)? {
                Some(Ok(())) => {}
                Some(Err(e)) => return self.failed(e),
                None => {
                    let reason = format!(
                        "sending the consumed offsets into the transaction did not end within {:?} \
                         (librdkafka can wait for ever on a group coordinator that left the \
                         cluster's metadata: librdkafka#5456, #5511)",
                        OFFSETS_DEADLINE
                    );
                    tracing::error!("{reason}; replacing the producer: the new one fences it and its transaction is aborted");
                    self.renew()?;
                    return Ok(Committed::Fenced(reason));
                }
            }
        }
        lap(&phases.offsets, &mut clock);
        if let Err(e) = retry(|| self.producer.commit_transaction(TXN_TIMEOUT)) {
            return self.failed(e);
        }
        lap(&phases.transaction, &mut clock);
        self.in_transaction = false;
        // Refusals were part of the committed transaction only if they
        // were dead-lettered in it; a refusal aborts a transaction, so
        // none is left here.
        self.take_refused();
        Ok(Committed::Yes)
    }

    /// Handles a failed transactional call: a fenced producer is replaced,
    /// an abortable error aborts, anything else is fatal.
    fn failed(&mut self, e: KafkaError) -> Result<Committed, Error> {
        let reason = e.to_string();
        let code = e.rdkafka_error_code();
        let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
        let fenced = matches!(
            code,
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::TransactionCoordinatorFenced
            )
        );
        if fenced {
            tracing::warn!("producer fenced ({reason}): replacing it; its transaction is void");
            self.renew()?;
            return Ok(Committed::Fenced(reason));
        }
        if fatal {
            return Err(Error::Transaction(reason));
        }
        self.abort(reason)
    }

    /// Aborts the open transaction, if any, instead of committing it (its
    /// tasks were lost to another member): at-least-once there is nothing
    /// to abort.
    pub(crate) fn abandon(&mut self, why: &str) -> Result<Committed, Error> {
        self.doomed = None;
        if !self.transactional || !self.in_transaction {
            return Ok(Committed::Yes);
        }
        self.abort(why.to_owned())
    }

    /// Aborts the open transaction: its records are never visible to
    /// read-committed consumers.
    fn abort(&mut self, reason: String) -> Result<Committed, Error> {
        tracing::warn!("aborting the transaction: {reason}");
        if self.in_transaction {
            if let Err(e) = retry(|| self.producer.abort_transaction(TXN_TIMEOUT)) {
                if matches!(&e, KafkaError::Transaction(t) if t.is_fatal()) {
                    self.renew()?;
                    return Ok(Committed::Fenced(format!("{reason}; abort: {e}")));
                }
                return Err(Error::Transaction(format!(
                    "cannot abort the transaction ({reason}): {e}"
                )));
            }
        }
        self.in_transaction = false;
        let tracker = self.producer.context();
        let refused =
            std::mem::take(&mut *tracker.refused.lock().unwrap_or_else(|p| p.into_inner()));
        self.poisoned.extend(refused);
        self.take_refused();
        Ok(Committed::Aborted(reason))
    }

    /// Replaces a fenced producer with a new one of the same transactional
    /// id (which fences nothing live: the newer producer that fenced this
    /// one belongs to a worker that took the id over, and is fenced in
    /// turn only if it is itself a zombie).
    fn renew(&mut self) -> Result<(), Error> {
        let old = self.producer.context();
        let tracker = DeliveryTracker {
            changelogs: old.changelogs.clone(),
            dead_letter_topic: old.dead_letter_topic.clone(),
            ..DeliveryTracker::default()
        };
        self.producer = Arc::new(Self::producer(&self.config, tracker)?);
        self.sent.set(0);
        self.in_transaction = false;
        self.doomed = None;
        Ok(())
    }

    /// Forgets failed and refused deliveries (of an ended transaction).
    fn take_refused(&self) {
        let tracker = self.producer.context();
        tracker
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracker.failed.store(0, Ordering::Relaxed);
        *tracker
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Forgets the acknowledged changelog offsets (their transaction was
    /// aborted, and the tasks go back to their checkpoints).
    pub(crate) fn forget_changelog_offsets(&self) {
        self.producer
            .context()
            .acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// How long [`send_offsets`] waits for librdkafka's answer: its own
/// timeout and a margin.
const OFFSETS_DEADLINE: Duration = Duration::from_secs(TXN_TIMEOUT.as_secs() + 5);

/// Sends `offsets` into the open transaction (retried as [`retry`] does)
/// on a helper thread, which the caller waits for at most
/// [`OFFSETS_DEADLINE`]: `Ok(None)` when it did not answer by then.
/// librdkafka sends the offsets to the group coordinator through a request
/// that never checks its timeout, and waits for ever when the coordinator
/// it cached is a broker that left the metadata while down (seen here when
/// one broker of three was killed and restarted). The caller then replaces
/// the producer; the helper holds the old one until librdkafka answers.
fn send_offsets(
    producer: &Arc<BaseProducer<DeliveryTracker>>,
    offsets: &TopicPartitionList,
    group: ConsumerGroupMetadata,
) -> Result<Option<Result<(), KafkaError>>, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (producer, offsets) = (Arc::clone(producer), offsets.clone());
    std::thread::Builder::new()
        .name("eddy-txn-offsets".into())
        .spawn(move || {
            let sent =
                retry(|| producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT));
            let _ = tx.send(sent);
        })
        .map_err(|source| Error::Spawn {
            what: "a thread to send offsets into the transaction".into(),
            source,
        })?;
    Ok(rx.recv_timeout(OFFSETS_DEADLINE).ok())
}

/// Calls `op` again while it fails with a retriable error (a timeout), at
/// most five times, as librdkafka's transactional API asks.
fn retry(mut op: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut tries = 0;
    loop {
        match op() {
            Err(KafkaError::Transaction(t)) if t.is_retriable() && tries < 5 => {
                tracing::info!("transactional call will be retried: {t}");
                tries += 1;
            }
            other => return other,
        }
    }
}
