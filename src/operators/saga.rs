//! The saga's processor: applies events to the instances in its stores,
//! fires deadlines, defers out-of-order events and expires instances.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::observability::{SagaMetrics, TraceContext, TRACEPARENT};
use crate::processor::{
    Failure, Headers, InitError, Processor, ProcessorContext, PunctuationId, PunctuationType,
    Record, OPENED_IN_INIT,
};
use crate::serde::{compact, BytesSerde, CompactSerde, CompactValueSerde, Serde, StringSerde};
use crate::stores::{sortable, unsortable, KeyValueStore, StateError};
use crate::topology::{Saga, SagaScope, Step};

/// An instance as stored (bincode, its events in binary form: `CompactSerde`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    state: String,
    #[serde(default)]
    deadline: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, with = "compact::map")]
    events: Map<String, Value>,
    #[serde(default, with = "compact::map")]
    history: Map<String, Value>,
    #[serde(default)]
    deferred: Vec<Deferred>,
    /// When the instance is removed unless it changes again.
    #[serde(default)]
    expires: Option<i64>,
    /// The `traceparent` of the event that last changed the instance: a
    /// timeout's outputs carry it, so they stay in the instance's trace.
    #[serde(default)]
    trace: Option<String>,
    /// The state it was stored in when loaded (`None`: new), with saga
    /// metrics on; not stored.
    #[serde(skip)]
    stored: Option<String>,
}

/// An event held until the instance reaches a state that takes it: its
/// kind, itself and its timestamp.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deferred(String, #[serde(with = "compact::value")] Value, i64);

struct Stores {
    instances: KeyValueStore<String, Instance>,
    deadlines: KeyValueStore<Vec<u8>, Vec<u8>>,
    summary: Option<KeyValueStore<String, Value>>,
}

pub(crate) struct SagaProcessor {
    saga: Arc<Saga>,
    /// The instances' store and the deadline index's.
    names: (String, String),
    stores: Option<Stores>,
    /// Events emitted by the current step, with their timestamps.
    outputs: Vec<(Value, i64)>,
    /// Instances by state, timeouts, emitted events (a worker's task).
    metrics: Option<SagaMetrics>,
    /// Whether the stored instances were counted by state (at the first
    /// record or timer, once the store is restored).
    counted: bool,
    /// The timer that counts them if no record comes first.
    count_timer: Option<PunctuationId>,
}

impl SagaProcessor {
    /// A processor of `saga` over the stores named `instances` and
    /// `deadlines` (opened at init).
    pub(crate) fn new(saga: Arc<Saga>, instances: String, deadlines: String) -> Self {
        SagaProcessor {
            saga,
            names: (instances, deadlines),
            stores: None,
            outputs: Vec::new(),
            metrics: None,
            counted: false,
            count_timer: None,
        }
    }
}

/// What a deadline index entry is due for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The timeout of the instance's state.
    Timeout,
    /// The end of the instance's retention.
    Expiry,
}

/// Ends the key of an expiry entry: a byte no UTF-8 key contains.
const EXPIRY: u8 = 0xff;

/// A deadline index key: the deadline (sign bit flipped, big-endian, so
/// byte order is time order), the instance key, and for an expiry a final
/// [`EXPIRY`] byte.
fn deadline_key(deadline: i64, key: &str, due: Due) -> Vec<u8> {
    let mut k = sortable(deadline).to_vec();
    k.extend_from_slice(key.as_bytes());
    if due == Due::Expiry {
        k.push(EXPIRY);
    }
    k
}

fn decode_deadline_key(k: &[u8]) -> Option<(i64, String, Due)> {
    let (t, key) = k.split_at_checked(8)?;
    let t = unsortable(t);
    let (key, due) = match key.split_last() {
        Some((&EXPIRY, rest)) => (rest, Due::Expiry),
        _ => (key, Due::Timeout),
    };
    Some((t, String::from_utf8(key.to_vec()).ok()?, due))
}

/// Replaces index entry `old` with `new` (either may be absent).
fn reindex(
    index: &KeyValueStore<Vec<u8>, Vec<u8>>,
    key: &str,
    due: Due,
    old: Option<i64>,
    new: Option<i64>,
) -> Result<(), StateError> {
    if old == new {
        return Ok(());
    }
    if let Some(d) = old {
        index.delete(&deadline_key(d, key, due))?;
    }
    if let Some(d) = new {
        index.put(&deadline_key(d, key, due), &Vec::new())?;
    }
    Ok(())
}

impl SagaProcessor {
    fn open(&self, ctx: &ProcessorContext<'_, String, Value>) -> Result<Stores, StateError> {
        let compact: Arc<dyn Serde<Instance>> = Arc::new(CompactSerde::<Instance>::new());
        let bytes: Arc<dyn Serde<Vec<u8>>> = Arc::new(BytesSerde);
        let string: Arc<dyn Serde<String>> = Arc::new(StringSerde);
        Ok(Stores {
            instances: ctx.key_value_store(&self.names.0, string.clone(), compact)?,
            deadlines: ctx.key_value_store(&self.names.1, bytes.clone(), bytes)?,
            summary: match &self.saga.summary {
                Some((store, _)) => {
                    Some(ctx.key_value_store(store, string, Arc::new(CompactValueSerde))?)
                }
                None => None,
            },
        })
    }

    /// Applies one event (and the deferred events it unblocks); returns
    /// whether the instance changed.
    fn apply(
        &mut self,
        inst: &mut Instance,
        key: &str,
        kind: &str,
        event: Value,
        ts: i64,
    ) -> Result<bool, Failure> {
        let duplicate = inst.events.contains_key(kind) || inst.deferred.iter().any(|d| d.0 == kind);
        if duplicate {
            return Ok(false);
        }
        let mut changed = false;
        if let Some(deadline) = inst.deadline.filter(|d| ts >= *d) {
            changed = self.fire_timeout(inst, key, deadline)?;
        }
        let saga = self.saga.clone();
        match saga.transition(&inst.state, kind) {
            Some(step) => {
                inst.events.insert(kind.to_owned(), event);
                self.take(inst, key, step, Some(kind), ts)?;
                self.retry_deferred(inst, key)?;
                Ok(true)
            }
            None if saga.finals.contains(&inst.state) => Ok(changed),
            None => {
                inst.deferred.push(Deferred(kind.to_owned(), event, ts));
                Ok(true)
            }
        }
    }

    /// Retries deferred events, oldest first, until none moves the instance.
    fn retry_deferred(&mut self, inst: &mut Instance, key: &str) -> Result<(), Failure> {
        let saga = self.saga.clone();
        while let Some(i) = inst
            .deferred
            .iter()
            .position(|d| saga.transition(&inst.state, &d.0).is_some())
        {
            let Deferred(kind, event, ts) = inst.deferred.remove(i);
            self.apply(inst, key, &kind, event, ts)?;
        }
        if saga.finals.contains(&inst.state) {
            inst.deferred.clear();
        }
        Ok(())
    }

    /// Takes the timeout of the current state, if it has one; returns
    /// whether it did.
    fn fire_timeout(
        &mut self,
        inst: &mut Instance,
        key: &str,
        deadline: i64,
    ) -> Result<bool, Failure> {
        let saga = self.saga.clone();
        let Some((_, step)) = saga.timeouts.get(&inst.state) else {
            return Ok(false);
        };
        self.take(inst, key, step, None, deadline)?;
        if let Some(m) = &self.metrics {
            m.timeout();
        }
        Ok(true)
    }

    /// Moves `inst` along `step` at `ts` (caused by its applied event of
    /// type `kind`, or by a timeout) and collects what it emits.
    fn take(
        &mut self,
        inst: &mut Instance,
        key: &str,
        step: &Step,
        kind: Option<&str>,
        ts: i64,
    ) -> Result<(), Failure> {
        let from = std::mem::replace(&mut inst.state, step.to.clone());
        if step.reason.is_some() {
            inst.reason = step.reason.clone();
        }
        inst.history
            .entry(step.to.clone())
            .or_insert_with(|| Value::from(ts));
        inst.deadline = self
            .saga
            .timeouts
            .get(&step.to)
            .map(|(after, _)| ts.saturating_add(*after));
        let scope = SagaScope {
            key,
            event: kind.and_then(|k| inst.events.get(k)),
            events: &inst.events,
            from: &from,
            state: &inst.state,
            reason: inst.reason.as_deref(),
            history: &inst.history,
            timestamp: ts,
        };
        for emit in &step.emit {
            self.outputs.push((emit(&scope)?, ts));
        }
        Ok(())
    }

    /// Stores `inst` (and its deadline and summary) and forwards the
    /// collected outputs.
    fn commit(
        &mut self,
        key: String,
        inst: &Instance,
        (old_deadline, old_expires): (Option<i64>, Option<i64>),
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let stores = self.stores.as_ref().expect(OPENED_IN_INIT);
        let summary = match &self.saga.summary {
            Some((_, f)) => Some(f(&SagaScope {
                key: &key,
                event: None,
                events: &inst.events,
                from: &inst.state,
                state: &inst.state,
                reason: inst.reason.as_deref(),
                history: &inst.history,
                timestamp: ctx.stream_time(),
            })?),
            None => None,
        };
        let index = &stores.deadlines;
        reindex(index, &key, Due::Timeout, old_deadline, inst.deadline)?;
        reindex(index, &key, Due::Expiry, old_expires, inst.expires)?;
        stores.instances.put(&key, inst)?;
        if let (Some(store), Some(summary)) = (&stores.summary, summary) {
            store.put(&key, &summary)?;
        }
        if let Some(m) = &mut self.metrics {
            m.moved(inst.stored.as_deref(), Some(&inst.state));
            for (value, _) in &self.outputs {
                if let Some(Value::String(kind)) = value.get("type") {
                    m.emitted(kind);
                }
            }
        }
        for (value, timestamp) in self.outputs.drain(..) {
            ctx.forward(Record {
                key: key.clone(),
                value,
                timestamp,
                headers: headers.clone(),
            });
        }
        Ok(())
    }

    fn load(&self, key: &str) -> Result<Instance, Failure> {
        let stores = self.stores.as_ref().expect(OPENED_IN_INIT);
        let found = stores
            .instances
            .get(&key.to_owned())
            .map_err(Failure::from)?;
        if let Some(mut inst) = found {
            if self.metrics.is_some() {
                inst.stored = Some(inst.state.clone());
            }
            return Ok(inst);
        }
        Ok(Instance {
            state: self.saga.initial.clone(),
            deadline: None,
            reason: None,
            events: Map::new(),
            history: Map::new(),
            deferred: Vec::new(),
            expires: None,
            trace: None,
            stored: None,
        })
    }

    /// Keeps `inst` for the retention after a change at `ts`.
    fn keep_from(&self, inst: &mut Instance, ts: i64) {
        let until = ts.saturating_add(self.saga.retention_ms());
        inst.expires = Some(inst.expires.map_or(until, |e| e.max(until)));
    }

    fn step(
        &mut self,
        r: Record<String, Value>,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let kind = match r.value.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err("saga event has no string field \"type\"".into()),
        };
        let mut inst = self.load(&r.key)?;
        let old = (inst.deadline, inst.expires);
        let applied = self
            .apply(&mut inst, &r.key, &kind, r.value, r.timestamp)
            .and_then(|changed| {
                if !changed {
                    return Ok(());
                }
                self.keep_from(&mut inst, r.timestamp);
                // The hop's context (tracing on), else the record's own.
                let hop = ctx.task.trace.map(|t| t.header_value());
                inst.trace = hop
                    .as_ref()
                    .map(|v| &v[..])
                    .or_else(|| r.headers.last(TRACEPARENT))
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_owned);
                self.commit(r.key.clone(), &inst, old, &r.headers, ctx)
            });
        let Err(error) = applied else {
            return Ok(());
        };
        self.outputs.clear();
        let Some(step) = self.saga.rejected.clone() else {
            return Err(error);
        };
        self.reject(r.key, &kind, &step, &error, r.timestamp, &r.headers, ctx)
            .map_err(|e| {
                Failure::new(
                    error.kind(),
                    format!(
                        "{}; rejecting the instance failed too: {}",
                        error.error(),
                        e.error()
                    ),
                )
            })
    }

    /// Moves the instance of `key` along the rejection `step` (see
    /// [`Saga::on_error`]), from its state as stored.
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        key: String,
        kind: &str,
        step: &Step,
        error: &Failure,
        ts: i64,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let mut inst = self.load(&key)?;
        if self.saga.finals.contains(&inst.state) {
            return Err(format!("the instance is {} already", inst.state).into());
        }
        let old = (inst.deadline, inst.expires);
        let trace = ctx
            .task
            .trace
            .or_else(|| headers.last(TRACEPARENT).and_then(TraceContext::parse));
        tracing::debug!(
            application = &*ctx.task.application_id,
            task = %ctx.task.id,
            %key,
            state = %inst.state,
            event_type = kind,
            trace_id = trace.map(|t| t.trace_id_hex()),
            span_id = trace.map(|t| t.span_id_hex()),
            "saga event rejected: {error}"
        );
        inst.reason = Some(error.error().to_string());
        inst.deferred.clear();
        self.take(&mut inst, &key, step, None, ts)?;
        self.keep_from(&mut inst, ts);
        let committed = self.commit(key, &inst, old, headers, ctx);
        if committed.is_err() {
            self.outputs.clear();
        }
        committed
    }

    fn expire(
        &mut self,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let stores = self.stores.as_ref().expect(OPENED_IN_INIT);
        let due = stores
            .deadlines
            .range(
                None,
                Some(&deadline_key(now.saturating_add(1), "", Due::Timeout)),
            )
            .map_err(Failure::from)?;
        for (index_key, _) in due {
            let Some((deadline, key, due)) = decode_deadline_key(&index_key) else {
                continue;
            };
            let done = match due {
                Due::Timeout => self.expire_one(&key, deadline, ctx),
                Due::Expiry => self.remove(&key, deadline, ctx),
            };
            // One timeout that cannot be applied (an emitter failing) must
            // not hold back the others: it is logged and dropped.
            if let Err(e) = done {
                self.outputs.clear();
                tracing::error!(%key, deadline, "saga timeout dropped: {e}");
                let stores = self.stores.as_ref().expect(OPENED_IN_INIT);
                stores.deadlines.delete(&index_key).map_err(Failure::from)?;
            }
        }
        Ok(())
    }

    fn expire_one(
        &mut self,
        key: &str,
        deadline: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let mut inst = self.load(key)?;
        if inst.deadline != Some(deadline) {
            // A leftover index entry: nothing is due.
            let stores = self.stores.as_ref().expect(OPENED_IN_INIT);
            return stores
                .deadlines
                .delete(&deadline_key(deadline, key, Due::Timeout))
                .map_err(Failure::from);
        }
        let old = (inst.deadline, inst.expires);
        self.fire_timeout(&mut inst, key, deadline)?;
        self.retry_deferred(&mut inst, key)?;
        self.keep_from(&mut inst, deadline);
        // The timeout is a span of its own, a child of the event that last
        // changed the instance; with tracing off, its context passes on.
        let mut headers = Headers::new();
        let timer = match (&ctx.task.tracer, &inst.trace) {
            (Some(tracer), Some(trace)) => tracer.timer(trace.as_bytes(), &mut headers),
            (None, Some(trace)) => {
                headers.add(TRACEPARENT, trace.as_bytes());
                None
            }
            (_, None) => None,
        };
        let committed = self.commit(key.to_owned(), &inst, old, &headers, ctx);
        if let (Some(timer), Some(tracer)) = (timer, &ctx.task.tracer) {
            tracer.finish_timer(timer, "saga timeout", || {
                vec![
                    ("eddy.saga.key", key.to_owned()),
                    ("eddy.saga.state", inst.state.to_string()),
                    ("eddy.task", ctx.task.id.to_string()),
                ]
            });
        }
        committed
    }

    /// Removes an instance whose retention ended at `at`, if it has not
    /// changed since.
    fn remove(
        &mut self,
        key: &str,
        at: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let inst = self.load(key)?;
        let stores = self.stores.as_ref().expect(OPENED_IN_INIT);
        stores
            .deadlines
            .delete(&deadline_key(at, key, Due::Expiry))?;
        if inst.expires != Some(at) {
            return Ok(());
        }
        if let Some(d) = inst.deadline {
            stores
                .deadlines
                .delete(&deadline_key(d, key, Due::Timeout))?;
        }
        stores.instances.delete(&key.to_owned())?;
        if let Some(m) = &mut self.metrics {
            m.moved(Some(&inst.state), None);
        }
        tracing::debug!(%key, state = %inst.state, held = inst.deferred.len(), "saga instance expired");
        ctx.record_expired(1);
        Ok(())
    }
}

impl SagaProcessor {
    /// Counts the stored instances by state into the metrics, once.
    fn count_states(&mut self, ctx: &ProcessorContext<'_, String, Value>) {
        let Some(m) = self.metrics.as_mut().filter(|_| !self.counted) else {
            return;
        };
        self.counted = true;
        let Some(store) = ctx.task.store(&self.names.0) else {
            return;
        };
        let mut states: HashMap<String, i64> = HashMap::new();
        let read = store.borrow().range(None, None, &mut |_, v| {
            if let Some(state) = stored_state(v) {
                *states.entry(state).or_default() += 1;
            }
            true
        });
        if let Err(e) = read {
            tracing::warn!(store = %self.names.0, "counting saga instances: {e}");
        }
        for (state, n) in states {
            m.found(&state, n);
        }
    }
}

/// The state of a stored instance, read without the rest of it (bincode
/// puts the state first; JSON text is what an earlier eddy stored).
fn stored_state(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct State {
        state: String,
    }
    match bytes.split_first()? {
        (0, binary) => bincode::serde::decode_from_slice(binary, bincode::config::standard())
            .ok()
            .map(|(state, _)| state),
        _ => serde_json::from_slice::<State>(bytes).ok().map(|s| s.state),
    }
}

impl Processor<String, Value, String, Value> for SagaProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Value>) -> Result<(), InitError> {
        self.stores = Some(self.open(ctx)?);
        self.metrics = ctx.saga_metrics();
        if self.metrics.is_some() {
            // Fires once the task runs: its stores are restored by then.
            let timer = ctx.schedule(Duration::from_millis(1), PunctuationType::WallClockTime);
            self.count_timer = Some(timer);
        }
        ctx.schedule(self.saga.check_every, PunctuationType::Watermark);
        Ok(())
    }

    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        self.count_states(ctx);
        if let Err(e) = self.step(r, ctx) {
            self.outputs.clear();
            ctx.fail(Failure::new(e.kind(), format!("saga: {}", e.error())));
        }
    }

    fn punctuate(
        &mut self,
        id: PunctuationId,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) {
        self.count_states(ctx);
        if self.count_timer == Some(id) {
            ctx.cancel(id);
            self.count_timer = None;
            return;
        }
        if let Err(e) = self.expire(now, ctx) {
            self.outputs.clear();
            tracing::error!("saga timeouts at stream time {now}: {e}");
        }
    }
}
