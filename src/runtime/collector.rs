//! The producer side of a stream thread: sends task outputs and commits.
//!
//! At-least-once: the consumed offsets are committed only once the broker
//! acknowledged every record sent before them. A commit that writes a
//! checkpoint (or ends a task's ownership) flushes the producer and waits;
//! any other one only closes its epoch of sends ([`Collector::commit_later`])
//! and the thread goes on processing: its offsets are committed as soon as
//! the reports of that epoch are all in, so that no commit stops the stream
//! thread for a round trip to the broker. Exactly-once: the producer is transactional; the first
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
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::delivery::{DeliveryTracker, Refused, CHANGELOG, EPOCH};
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
    /// The parity of the current commit epoch (0 or [`EPOCH`]), carried
    /// in each record's delivery opaque.
    epoch: Cell<usize>,
    /// Records sent in each epoch parity since it last began.
    sent_in: [Cell<u64>; 2],
    /// At-least-once: the offsets of a commit waiting for its epoch's
    /// acknowledgements.
    pending: Option<Pending>,
    /// Exactly-once: outputs the broker refused for their content in an
    /// aborted transaction. Sent again once the tasks have processed their
    /// inputs again, each goes to the dead-letter topic instead, so that
    /// one record cannot abort every transaction after it.
    poisoned: Vec<Refused>,
}

/// Offsets to commit once every record of epoch parity `epoch` is
/// acknowledged.
struct Pending {
    offsets: TopicPartitionList,
    epoch: usize,
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
            epoch: Cell::new(0),
            sent_in: Default::default(),
            pending: None,
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

    /// Whether a transaction is open (exactly-once: outputs were sent
    /// since the last commit).
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction
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
            let headers = (r.meta.header_count() > 0).then(|| {
                let mut out = Some(OwnedHeaders::new_with_capacity(r.meta.header_count()));
                r.meta.each_header(|key, value| {
                    out = out.take().map(|h| h.insert(Header { key, value }));
                });
                out.unwrap_or_default()
            });
            let opaque = self.opaque[r.meta.topic.0 as usize] | self.epoch.get();
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
                Ok(()) => self.count_sent(),
                // librdkafka refuses an oversized record before sending it.
                Err(e) if self.producer.context().dead_letters(&e, topic) => {
                    let headers = r.meta.written_headers().0.into_iter();
                    let headers = headers.map(|h| (h.key, h.value)).collect();
                    let partition = r.meta.partition.unwrap_or(-1);
                    let tracker = self.producer.context();
                    tracker.refuse(&e, topic, partition, r.key, r.value, headers);
                }
                Err(e) if self.transactional => {
                    self.doomed = Some(format!("{e} (topic {topic})"));
                    return Ok(0);
                }
                Err(e)
                    if e.rdkafka_error_code()
                        == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
                {
                    return Err(self.not_authorized(topic))
                }
                Err(e) => return Err(Error::Delivery(format!("{e} (topic {topic})"))),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(output.len())
    }

    fn count_sent(&self) {
        self.sent.set(self.sent.get() + 1);
        let i = usize::from(self.epoch.get() != 0);
        self.sent_in[i].set(self.sent_in[i].get() + 1);
    }

    /// Whether every record sent in epoch parity `epoch` was reported.
    fn epoch_reported(&self, epoch: usize) -> bool {
        let i = usize::from(epoch != 0);
        self.producer.context().reported_in[i].load(Ordering::Relaxed) >= self.sent_in[i].get()
    }

    /// At-least-once: commits `offsets` once every record sent so far is
    /// acknowledged, without waiting for it. The records sent from now on
    /// belong to the next epoch; a commit still waiting from before is
    /// completed first (its epoch had a whole commit interval to be
    /// acknowledged). Call [`Collector::poll_pending`] between batches.
    pub(crate) fn commit_later<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: TopicPartitionList,
        phases: &CommitPhases,
    ) -> Result<(), Error> {
        debug_assert!(!self.transactional);
        let mut clock = Instant::now();
        if let Some(p) = self.pending.take() {
            self.wait_for_epoch(p.epoch)?;
            self.finish(consumer, p)?;
        }
        lap(&phases.flush, &mut clock);
        let epoch = self.epoch.get();
        let next = epoch ^ EPOCH;
        // Every record of the next parity's previous epoch was reported
        // (that epoch's commit completed above, or a flush waited for all).
        self.sent_in[usize::from(next != 0)].set(0);
        self.producer.context().reported_in[usize::from(next != 0)].store(0, Ordering::Relaxed);
        self.epoch.set(next);
        self.pending = Some(Pending { offsets, epoch });
        self.poll_pending(consumer)
    }

    /// Commits the waiting offsets if their epoch is acknowledged.
    pub(crate) fn poll_pending<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), Error> {
        match &self.pending {
            Some(p) if self.epoch_reported(p.epoch) => {
                let p = self.pending.take().expect("matched");
                self.finish(consumer, p)
            }
            _ => Ok(()),
        }
    }

    /// Waits until every record of epoch parity `epoch` was reported.
    fn wait_for_epoch(&self, epoch: usize) -> Result<(), Error> {
        self.wait_until(|| self.epoch_reported(epoch))
            .map_err(|e| Error::Delivery(format!("flush: {e}")))
    }

    /// Sends the offsets of a commit whose epoch is reported. A failed
    /// delivery stops the thread as a flush would; refused outputs go to
    /// the dead-letter topic first (through a flush, which waits for them).
    fn finish<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        p: Pending,
    ) -> Result<(), Error> {
        let tracker = self.producer.context();
        let refused = !tracker
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if refused || tracker.failed.load(Ordering::Relaxed) > 0 {
            self.flush()?;
        }
        if p.offsets.count() > 0 {
            if let Err(e) = consumer.commit(&p.offsets, CommitMode::Async) {
                tracing::warn!("offset commit refused: {e}");
            }
        }
        Ok(())
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

    /// The error of a record refused because the producer's principal may
    /// not write `topic`.
    fn not_authorized(&self, topic: &str) -> Error {
        Error::NotAuthorized {
            principal: crate::kafka::admin::principal(&self.config),
            operation: "write",
            resource: format!("topic {topic:?}"),
        }
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
            let denied = tracker
                .denied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(topic) = denied {
                return Err(self.not_authorized(&topic));
            }
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
        let reported = &self.producer.context().reported;
        self.wait_until(|| reported.load(Ordering::Relaxed) >= self.sent.get())
    }

    /// Serves delivery reports until `done`, checking every millisecond,
    /// for at most the flush timeout.
    fn wait_until(&self, done: impl Fn() -> bool) -> Result<(), KafkaError> {
        let deadline = Instant::now() + self.flush_timeout;
        loop {
            self.producer.poll(Duration::ZERO);
            if done() {
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
        let mut record = BaseRecord::with_opaque_to(topic, self.epoch.get()).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        // No timestamp: its own may be what was refused, so the producer
        // stamps it now.
        self.count_sent();
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
        // A commit still waiting: its offsets go with these (which are
        // newer where both have a partition).
        let mut offsets = offsets.clone();
        if let Some(p) = self.pending.take() {
            for e in p.offsets.elements() {
                if offsets.find_partition(e.topic(), e.partition()).is_none() {
                    offsets.add_partition_offset(e.topic(), e.partition(), e.offset())?;
                }
            }
        }
        if offsets.count() == 0 {
            return Ok(Committed::Yes);
        }
        let committed = consumer.commit(&offsets, CommitMode::Sync);
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
            // librdkafka's abort waits until every outstanding record has
            // had its delivery report served, which it cannot do itself
            // for a client reading reports as events: without this, an
            // abort with records outstanding (timed out during a stall,
            // say) waited its whole timeout, twice, holding the thread.
            self.producer.purge(PurgeConfig::default().queue());
            if self
                .wait_until(|| self.producer.in_flight_count() == 0)
                .is_err()
            {
                tracing::warn!(
                    outstanding = self.producer.in_flight_count(),
                    "records still outstanding before the abort"
                );
            }
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
        self.sent_in = Default::default();
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
        *tracker.denied.lock().unwrap_or_else(|p| p.into_inner()) = None;
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

#[cfg(test)]
mod tests;
