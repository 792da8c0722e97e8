//! The call operator as a node of a task: it takes records in on the
//! stream thread, hands their calls to the async runtime at the edge, and
//! emits each call's output when the stream thread drains the completions
//! (between batches), in the order the operator promises.
//!
//! Every record taken in is written to the operator's changelogged store
//! (under its sequence number) and deleted once its output is emitted, so
//! offsets are committed as usual: a record is either processed (its output
//! emitted) or stored, and a new owner of the task, after a crash, a
//! rebalance or an aborted transaction, makes the stored calls again with
//! their idempotency keys.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::caller::{CallOutcome, CallRequest, Caller, FailReason};
use super::edge::OperatorShare;
use super::pending::{key_seq, seq_key, Stored};
use super::spec::{Answer, Call, CallFailure, CallOrder, OnOpen};
use crate::processor::{
    Data, Failure, FailureKind, Header, Headers, InitError, ProcessorContext, PunctuationId, Record,
};
use crate::runtime::{
    typed_children, Child, Instance, Letter, Lifecycle, Node, RecordError, TaskContext,
};
use crate::serde::BytesSerde;
use crate::stores::KeyValueStore;
use crate::topology::{NodeFactory, TopicRef};

/// Builds a call node per task.
pub(crate) struct CallFactory<K, V, VO> {
    pub(crate) name: Arc<str>,
    pub(crate) store: String,
    pub(crate) call: Call<K, V, VO>,
}

impl<K: Data, V: Data, VO: Data> NodeFactory for CallFactory<K, V, VO> {
    fn instantiate(&self, index: usize, children: &[(Arc<str>, &Instance)]) -> Instance {
        let (tx, rx) = unbounded_channel();
        let node = std::rc::Rc::new(std::cell::RefCell::new(CallNode {
            index,
            name: self.name.clone(),
            store_name: self.store.clone(),
            call: self.call.clone(),
            children: typed_children(children),
            store: None,
            share: None,
            runtime: None,
            callers: HashMap::new(),
            tx,
            rx,
            next_seq: 0,
            entries: BTreeMap::new(),
            ready: VecDeque::new(),
            keys: HashMap::new(),
            done: Vec::new(),
            in_flight: 0,
            full: false,
            last_source: None,
            repeats: 0,
        }));
        let input: crate::runtime::NodeRef<K, V> = node.clone();
        Instance::Node {
            input: Box::new(input),
            lifecycle: Some(node),
        }
    }
}

/// A record taken in whose output is not emitted yet.
struct Entry<K, V> {
    record: Record<K, V>,
    source: Option<(TopicRef, i32, i64)>,
    /// The key as stored: what per-key order goes by.
    key: Vec<u8>,
    /// The request, until it is handed to the runtime.
    request: Option<CallRequest>,
    /// The outcome, once the call is done.
    outcome: Option<CallOutcome>,
}

pub(crate) struct CallNode<K, V, VO> {
    index: usize,
    name: Arc<str>,
    store_name: String,
    call: Call<K, V, VO>,
    children: Vec<Child<K, VO>>,
    store: Option<KeyValueStore<Vec<u8>, Vec<u8>>>,
    share: Option<Arc<OperatorShare>>,
    runtime: Option<tokio::runtime::Handle>,
    /// The worker's caller of each endpoint (`scheme://host:port`) this
    /// task called, kept so as not to ask the shared map per record.
    callers: HashMap<String, Caller>,
    tx: UnboundedSender<(u64, CallOutcome)>,
    rx: UnboundedReceiver<(u64, CallOutcome)>,
    next_seq: u64,
    entries: BTreeMap<u64, Entry<K, V>>,
    /// Entries that may be called, waiting for a slot.
    ready: VecDeque<u64>,
    /// Per key: the entries waiting behind the key's current one (per-key
    /// order); a key is present while one of its entries is pending.
    keys: HashMap<Vec<u8>, VecDeque<u64>>,
    /// Entries done since the last drain, in completion order.
    done: Vec<u64>,
    in_flight: usize,
    /// Whether the node holds its limit of entries.
    full: bool,
    /// The source position of the last record taken in, and how many
    /// records of it came before (default idempotency keys).
    last_source: Option<(TopicRef, i32, i64)>,
    repeats: u32,
}

impl<K: Data, V: Data, VO: Data> Node<K, V> for CallNode<K, V, VO> {
    fn process(&mut self, record: Record<K, V>, ctx: &mut TaskContext) {
        // Counted as taken in; the time is the taking in (the call's own
        // is eddy_call_duration_seconds).
        let timed = ctx.tick(self.index).then(std::time::Instant::now);
        if let Err(failure) = self.take_in(record, ctx) {
            ctx.fail(failure);
        }
        if let (Some(start), Some(m)) = (timed, &ctx.metrics) {
            m.timed(self.index, start.elapsed());
        }
    }
}

impl<K: Data, V: Data, VO: Data> CallNode<K, V, VO> {
    /// Stores a record and queues its call.
    fn take_in(&mut self, record: Record<K, V>, ctx: &mut TaskContext) -> Result<(), Failure> {
        let source = ctx.source;
        let idempotency_key = match &self.call.idempotency_key {
            Some(f) => f(&record.key, &record.value),
            None => self.default_key(source, ctx),
        };
        let mut request = (self.call.request)(&record.key, &record.value).map_err(|e| {
            Failure::new(
                FailureKind::Call,
                format!("call {}: bad_request: {e}", self.name),
            )
        })?;
        request.headers.push((
            self.call.settings.idempotency_header.clone(),
            idempotency_key.clone(),
        ));
        let (key, value) = self.encode(&record)?;
        let stored = Stored {
            source: source.map(|(t, p, o)| (ctx.topics.name(t).to_owned(), p, o)),
            timestamp: record.timestamp,
            key: Some(key.clone()),
            value,
            headers: record
                .headers
                .0
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            idempotency_key,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.store()
            .put(&seq_key(seq), &stored.encode())
            .map_err(|e| Failure::new(FailureKind::Call, e.to_string()))?;
        self.admit(
            seq,
            Entry {
                record,
                source,
                key,
                request: Some(request),
                outcome: None,
            },
            ctx,
        );
        Ok(())
    }

    /// `<application>-<topic>-<partition>-<offset>`, with `-<n>` for the
    /// n-th record of one input to get here.
    fn default_key(&mut self, source: Option<(TopicRef, i32, i64)>, ctx: &TaskContext) -> String {
        let Some((topic, partition, offset)) = source else {
            return format!(
                "{}-{}-{}-{}",
                ctx.application_id, ctx.id, self.name, self.next_seq
            );
        };
        if self.last_source == source {
            self.repeats += 1;
        } else {
            (self.last_source, self.repeats) = (source, 0);
        }
        let topic = ctx.topics.name(topic);
        match self.repeats {
            0 => format!("{}-{topic}-{partition}-{offset}", ctx.application_id),
            n => format!("{}-{topic}-{partition}-{offset}-{n}", ctx.application_id),
        }
    }

    fn encode(&self, record: &Record<K, V>) -> Result<(Vec<u8>, Option<Vec<u8>>), Failure> {
        let mut key = Vec::new();
        self.call
            .key_serde
            .serialize(&record.key, &mut key)
            .map_err(|e| Failure::new(FailureKind::Production, format!("key: {e}")))?;
        let value = match self.call.value_serde.is_null(&record.value) {
            true => None,
            false => {
                let mut value = Vec::new();
                self.call
                    .value_serde
                    .serialize(&record.value, &mut value)
                    .map_err(|e| Failure::new(FailureKind::Production, format!("value: {e}")))?;
                Some(value)
            }
        };
        Ok((key, value))
    }

    fn store(&self) -> &KeyValueStore<Vec<u8>, Vec<u8>> {
        self.store.as_ref().expect(crate::processor::OPENED_IN_INIT)
    }

    /// Queues an entry's call: at once, or behind its key's.
    fn admit(&mut self, seq: u64, entry: Entry<K, V>, ctx: &mut TaskContext) {
        match self.call.settings.order {
            CallOrder::PerKey => match self.keys.get_mut(&entry.key) {
                Some(behind) => behind.push_back(seq),
                None => {
                    self.keys.insert(entry.key.clone(), VecDeque::new());
                    self.ready.push_back(seq);
                }
            },
            CallOrder::PerPartition => self.ready.push_back(seq),
        }
        self.entries.insert(seq, entry);
        ctx.calls.pending += 1;
        self.start();
        self.update_full(ctx);
    }

    /// Hands ready calls to the runtime while slots are free.
    fn start(&mut self) {
        while self.in_flight < self.call.settings.concurrency.max(1) {
            let Some(seq) = self.ready.pop_front() else {
                break;
            };
            self.spawn(seq);
        }
    }

    fn spawn(&mut self, seq: u64) {
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        let Some(request) = entry.request.take() else {
            return;
        };
        let Some(origin) = origin(&request.url) else {
            entry.outcome = Some(CallOutcome::Failed {
                reason: FailReason::BadRequest,
                detail: format!("{:?} is not an http:// or https:// URL", request.url),
                tries: 0,
            });
            self.done.push(seq);
            return;
        };
        let share = self.share.as_ref().expect(crate::processor::OPENED_IN_INIT);
        let settings = &self.call.settings;
        let caller = self
            .callers
            .entry(origin)
            .or_insert_with_key(|origin| share.caller(origin))
            .clone();
        let permits = share.permits.clone();
        let metrics = share.metrics.clone();
        let wait = settings.on_open == OnOpen::Wait;
        let tx = self.tx.clone();
        let runtime = self
            .runtime
            .as_ref()
            .expect(crate::processor::OPENED_IN_INIT);
        runtime.spawn(async move {
            let started = std::time::Instant::now();
            if let Some(m) = &metrics {
                m.in_flight.inc();
            }
            let call = async {
                loop {
                    let Ok(_permit) = permits.acquire().await else {
                        return None;
                    };
                    let outcome = caller.call(&request).await;
                    if !wait || !outage(&outcome, caller.breaker()) {
                        return Some(outcome);
                    }
                    drop(_permit);
                    if let CallOutcome::BreakerOpen(wait_for) = outcome {
                        tokio::time::sleep(wait_for).await;
                    }
                }
            };
            // A task that closed (rebalance, shutdown) wants no answer:
            // its stored calls are made again by its next owner.
            let outcome = tokio::select! {
                outcome = call => outcome,
                _ = tx.closed() => None,
            };
            if let Some(m) = &metrics {
                m.in_flight.dec();
                if let Some(o) = &outcome {
                    m.duration.observe(started.elapsed().as_secs_f64());
                    let (counter, tries) = match o {
                        CallOutcome::Answered { status, tries, .. } => match status {
                            200..=299 => (&m.succeeded, *tries),
                            _ => (&m.answered, *tries),
                        },
                        CallOutcome::Failed { tries, .. } => (&m.failed, *tries),
                        CallOutcome::BreakerOpen(_) => (&m.failed, 0),
                    };
                    counter.inc();
                    m.tries.inc_by(u64::from(tries));
                }
            }
            if let Some(outcome) = outcome {
                let _ = tx.send((seq, outcome));
            }
        });
        self.in_flight += 1;
    }

    fn update_full(&mut self, ctx: &mut TaskContext) {
        let settings = &self.call.settings;
        let limit = settings.max_pending.max(settings.concurrency).max(1);
        let full = self.entries.len() >= limit;
        if full != self.full {
            self.full = full;
            match full {
                true => ctx.calls.full += 1,
                false => ctx.calls.full -= 1,
            }
        }
    }

    /// Takes in the calls done and emits what may be emitted.
    fn drain_done(&mut self, ctx: &mut TaskContext) -> Result<usize, RecordError> {
        while let Ok((seq, outcome)) = self.rx.try_recv() {
            if let Some(entry) = self.entries.get_mut(&seq) {
                entry.outcome = Some(outcome);
                self.in_flight -= 1;
                self.done.push(seq);
            }
        }
        let mut emitted = 0;
        match self.call.settings.order {
            CallOrder::PerKey => {
                for seq in std::mem::take(&mut self.done) {
                    self.emit(seq, ctx)?;
                    emitted += 1;
                }
            }
            CallOrder::PerPartition => {
                self.done.clear();
                while let Some((&seq, _)) = self
                    .entries
                    .first_key_value()
                    .filter(|(_, e)| e.outcome.is_some())
                {
                    self.emit(seq, ctx)?;
                    emitted += 1;
                }
            }
        }
        self.start();
        self.update_full(ctx);
        Ok(emitted)
    }

    /// Emits a done entry's output (or failure), deletes it from the store
    /// and lets the next entry of its key go.
    fn emit(&mut self, seq: u64, ctx: &mut TaskContext) -> Result<(), RecordError> {
        let Some(entry) = self.entries.remove(&seq) else {
            return Ok(());
        };
        ctx.calls.pending -= 1;
        if self.call.settings.order == CallOrder::PerKey {
            if let Some(behind) = self.keys.get_mut(&entry.key) {
                match behind.pop_front() {
                    Some(next) => self.ready.push_back(next),
                    None => {
                        self.keys.remove(&entry.key);
                    }
                }
            }
        }
        let deleted = self.store().delete(&seq_key(seq));
        let Entry {
            record,
            source,
            outcome,
            ..
        } = entry;
        let outcome = outcome.expect("only done entries are emitted");
        let output = self.output(&record, outcome);
        let (saved_source, saved_trace) = (ctx.source, ctx.trace);
        ctx.source = source;
        ctx.trace = None;
        let failure = match output {
            Ok(value) => {
                let out = Record {
                    key: record.key.clone(),
                    value,
                    timestamp: record.timestamp,
                    headers: record.headers.clone(),
                };
                let mut pctx = ProcessorContext {
                    children: &self.children,
                    task: ctx,
                    node: self.index,
                };
                pctx.forward(out);
                ctx.failure
                    .take()
                    .map(|f| (f.kind(), f.error().to_string()))
            }
            Err(message) => Some((FailureKind::Call, message)),
        };
        let failure = failure.or_else(|| {
            deleted
                .err()
                .map(|e| (FailureKind::Call, format!("call {}: {e}", self.name)))
        });
        let result = match failure {
            Some((kind, message)) => self.dead_letter(&record, source, kind, &message, ctx),
            None => Ok(()),
        };
        ctx.source = saved_source;
        ctx.trace = saved_trace;
        result
    }

    /// The output of a done call: the response mapping of a success
    /// answer, else the failure mapping (or the reason, for the dead-letter
    /// topic).
    fn output(&self, record: &Record<K, V>, outcome: CallOutcome) -> Result<VO, String> {
        let (k, v) = (&record.key, &record.value);
        let failure = match outcome {
            CallOutcome::Answered { status, body, .. } if (200..300).contains(&status) => {
                match (self.call.response)(
                    k,
                    v,
                    &Answer {
                        status,
                        body: &body,
                    },
                ) {
                    Ok(out) => return Ok(out),
                    Err(e) => CallFailure {
                        reason: FailReason::BadAnswer,
                        detail: format!("answer {status}: {e}"),
                        status: Some(status),
                        body: Some(body),
                    },
                }
            }
            CallOutcome::Answered {
                status,
                body,
                tries,
            } => CallFailure {
                reason: FailReason::Status,
                detail: format!(
                    "answered {status} after {tries} {}: {}",
                    if tries == 1 { "try" } else { "tries" },
                    excerpt(&body)
                ),
                status: Some(status),
                body: Some(body),
            },
            CallOutcome::Failed {
                reason,
                detail,
                tries,
            } => CallFailure {
                reason,
                detail: match tries {
                    0 | 1 => detail,
                    n => format!("{detail} (after {n} tries)"),
                },
                status: None,
                body: None,
            },
            CallOutcome::BreakerOpen(wait) => CallFailure {
                reason: FailReason::CircuitOpen,
                detail: format!(
                    "the endpoint's circuit breaker is open for {} ms more",
                    wait.as_millis()
                ),
                status: None,
                body: None,
            },
        };
        let name = &self.name;
        match &self.call.on_failure {
            Some(f) => f(k, v, &failure).map_err(|e| {
                format!(
                    "call {name} failed ({}: {}) and its failure mapping failed: {e}",
                    failure.reason, failure.detail
                )
            }),
            None => Err(format!(
                "call {name} failed: {}: {}",
                failure.reason, failure.detail
            )),
        }
    }

    fn dead_letter(
        &self,
        record: &Record<K, V>,
        source: Option<(TopicRef, i32, i64)>,
        kind: FailureKind,
        message: &str,
        ctx: &mut TaskContext,
    ) -> Result<(), RecordError> {
        let (key, value) = self.encode(record).unwrap_or_default();
        let letter = Letter {
            source,
            timestamp: record.timestamp,
            key: Some(&key),
            value: value.as_deref(),
            headers: record.headers.clone(),
        };
        ctx.dead_letter(letter, kind, message)
    }

    /// Takes back the records stored before the task last closed, in input
    /// order, and makes their calls again.
    fn resume_stored(&mut self, ctx: &mut TaskContext) -> Result<(), InitError> {
        let stored = self.store().all().map_err(InitError::Store)?;
        for (store_key, bytes) in stored {
            let bad = |reason: String| {
                InitError::Other(
                    format!(
                        "call {}: stored call {store_key:?} is unreadable: {reason}",
                        self.name
                    )
                    .into(),
                )
            };
            let seq = key_seq(&store_key).ok_or_else(|| bad("not a sequence number".into()))?;
            let s = Stored::decode(&bytes).map_err(bad)?;
            let key = self
                .call
                .key_serde
                .deserialize(s.key.as_deref())
                .map_err(|e| bad(format!("key: {e}")))?;
            let value = self
                .call
                .value_serde
                .deserialize(s.value.as_deref())
                .map_err(|e| bad(format!("value: {e}")))?;
            let record = Record {
                key,
                value,
                timestamp: s.timestamp,
                headers: Headers(
                    s.headers
                        .into_iter()
                        .map(|(key, value)| Header { key, value })
                        .collect(),
                ),
            };
            let source = s
                .source
                .and_then(|(t, p, o)| Some((ctx.topics.get(&t)?, p, o)));
            let (request, outcome) = match (self.call.request)(&record.key, &record.value) {
                Ok(mut r) => {
                    r.headers.push((
                        self.call.settings.idempotency_header.clone(),
                        s.idempotency_key,
                    ));
                    (Some(r), None)
                }
                Err(e) => (
                    None,
                    Some(CallOutcome::Failed {
                        reason: FailReason::BadRequest,
                        detail: e.to_string(),
                        tries: 0,
                    }),
                ),
            };
            self.next_seq = self.next_seq.max(seq + 1);
            if outcome.is_some() {
                self.done.push(seq);
            }
            self.admit(
                seq,
                Entry {
                    record,
                    source,
                    key: s.key.unwrap_or_default(),
                    request,
                    outcome,
                },
                ctx,
            );
        }
        if !self.entries.is_empty() {
            tracing::info!(
                task = %ctx.id,
                call = &*self.name,
                calls = self.entries.len(),
                "making the calls stored before the task last closed again"
            );
        }
        Ok(())
    }
}

impl<K: Data, V: Data, VO: Data> Lifecycle for CallNode<K, V, VO> {
    fn init(&mut self, ctx: &mut TaskContext) -> Result<(), InitError> {
        let pctx = ProcessorContext {
            children: &self.children,
            task: ctx,
            node: self.index,
        };
        self.store = Some(pctx.key_value_store(
            &self.store_name,
            Arc::new(BytesSerde),
            Arc::new(BytesSerde),
        )?);
        let edge = ctx.call_runtime.clone();
        self.runtime = Some(edge.handle().map_err(|e| InitError::Other(e.into()))?);
        self.share = Some(edge.operator(&self.name, &self.call.settings));
        Ok(())
    }

    fn start(&mut self, ctx: &mut TaskContext) -> Result<(), InitError> {
        self.resume_stored(ctx)
    }

    fn punctuate(&mut self, _: PunctuationId, _: i64, _: &mut TaskContext) {}

    fn close(&mut self) {
        // Calls in flight see the channel close and stop.
        self.rx.close();
    }

    fn is_async(&self) -> bool {
        true
    }

    fn drain(&mut self, ctx: &mut TaskContext) -> Result<usize, RecordError> {
        self.drain_done(ctx)
    }
}

/// Whether a call failed for an outage of its endpoint: refused by the
/// open breaker, or failed while the breaker is no longer closed (the
/// failure opened it, or a probe failed). Under [`OnOpen::Wait`] such a
/// record waits and is called again; a real answer (a success, or a
/// status not worth a retry) is never an outage.
fn outage(outcome: &CallOutcome, breaker: &super::breaker::CircuitBreaker) -> bool {
    let failed = match outcome {
        CallOutcome::BreakerOpen(_) => return true,
        CallOutcome::Failed { reason, .. } => matches!(
            reason,
            FailReason::Timeout | FailReason::Unreachable | FailReason::CircuitOpen
        ),
        CallOutcome::Answered { status, .. } => super::retry::retryable_status(*status),
    };
    failed && breaker.state(std::time::Instant::now()) != super::breaker::BreakerState::Closed
}

/// `scheme://authority` of an `http://` or `https://` URL.
fn origin(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    Some(format!("{scheme}://{}", uri.authority()?))
}

/// The start of an answer body, for a failure's detail.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    match body.len() > MAX {
        true => format!("{text}..."),
        false => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("http://127.0.0.1:8080/charges?x=1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin("https://pay.example.com/x").as_deref(),
            Some("https://pay.example.com")
        );
        assert_eq!(origin("ftp://pay.example.com/x"), None);
        assert_eq!(origin("/charges"), None);
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt(b"short"), "short");
        assert_eq!(excerpt(&[b'x'; 300]).len(), 203);
    }
}
