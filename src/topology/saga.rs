//! The saga operator: one state machine per key, driven by JSON events,
//! with event-time timeouts and the events each transition emits.
//!
//! Semantics, per key:
//! - An event moves the instance along the transition declared for
//!   (current state, event type) and emits that transition's events.
//! - Each event type is applied at most once per instance: a duplicate
//!   changes nothing and emits nothing.
//! - An event with no transition from the current state is held (deferred)
//!   while the state is not final, and retried after every later
//!   transition, so events arriving out of order reach the same outcome. In
//!   a final state such an event is dropped.
//! - Entering a state with a timeout sets a deadline = event time + timeout.
//!   The deadline fires when stream time reaches it — held back while an
//!   application declared upstream of the saga's inputs has not processed
//!   its own inputs that far ([`PunctuationType::Watermark`]), so that a
//!   service catching up on a backlog is not timed out on answers it will
//!   still give — or first thing when an event of this key carries a
//!   timestamp at or past it; its transition's events carry the deadline
//!   as their timestamp.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::builder::KStream;
use super::graph::TopologyError;
use super::operator::Operator;
use crate::processor::{
    millis, Failure, Headers, InitError, Processor, ProcessorContext, PunctuationId,
    PunctuationType, Record, OPENED_IN_INIT,
};
use crate::serde::{BytesSerde, JsonSerde, Serde, StringSerde};
use crate::stores::{sortable, unsortable, KeyValueStore, StateError, StoreSpec};

/// What an emitter or summary sees of a transition.
pub struct SagaScope<'a> {
    /// The instance's key.
    pub key: &'a str,
    /// The event that caused the transition; `None` for a timeout.
    pub event: Option<&'a Value>,
    /// The events applied so far, by type (including `event`).
    pub events: &'a Map<String, Value>,
    /// The state left.
    pub from: &'a str,
    /// The state entered.
    pub state: &'a str,
    /// The latest reason given by a transition, if any.
    pub reason: Option<&'a str>,
    /// When each state was first entered (event time, epoch ms), by state.
    pub history: &'a Map<String, Value>,
    /// The transition's event time: the event's timestamp, or the deadline.
    pub timestamp: i64,
}

/// Builds an event from a transition; an error sends the triggering record
/// to the dead-letter topic and leaves the instance unchanged.
pub type Emitter = Arc<dyn Fn(&SagaScope<'_>) -> Result<Value, Failure> + Send + Sync>;

/// Why a saga definition is not coherent (see [`Saga::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// The initial state is also final.
    #[error("initial state {0:?} is final")]
    InitialIsFinal(String),
    /// The rejection leads to a state that is not final.
    #[error("the rejection leads to {0:?}, which is not a final state")]
    RejectionNotFinal(String),
    /// A final state has a timeout.
    #[error("final state {0:?} has a timeout")]
    FinalWithTimeout(String),
    /// A timeout is zero or negative.
    #[error("the timeout of state {0:?} is not positive")]
    TimeoutNotPositive(String),
    /// A state no transition leads to from the initial state.
    #[error("state {state:?} cannot be reached from {initial:?}")]
    Unreachable {
        /// The state.
        state: String,
        /// The initial state.
        initial: String,
    },
}

/// Where a transition leads, why, and what it emits.
#[derive(Clone)]
pub struct Step {
    to: String,
    reason: Option<String>,
    emit: Vec<Emitter>,
}

impl Step {
    /// A transition to `state`.
    pub fn to(state: &str) -> Self {
        Step {
            to: state.to_owned(),
            reason: None,
            emit: Vec::new(),
        }
    }

    /// Records `reason` on the instance (shown to emitters and the summary).
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// Emits the event `emitter` builds, after those added before.
    pub fn emit<F>(mut self, emitter: F) -> Self
    where
        F: Fn(&SagaScope<'_>) -> Result<Value, Failure> + Send + Sync + 'static,
    {
        self.emit.push(Arc::new(emitter));
        self
    }
}

/// A saga definition: states, transitions, timeouts and the read model.
///
/// ```
/// use std::time::Duration;
/// use eddy::serde::{JsonSerde, StringSerde};
/// use eddy::topology::{Saga, Step, StreamsBuilder};
/// use serde_json::{json, Value};
///
/// let saga = Saga::new("new")
///     .on("new", "signup_started", Step::to("waiting"))
///     .on("waiting", "email_confirmed", Step::to("done").emit(|s| {
///         Ok(json!({"type": "signup_completed", "account": s.key}))
///     }))
///     .timeout("waiting", Duration::from_secs(30), Step::to("cancelled").emit(|s| {
///         Ok(json!({"type": "signup_expired", "account": s.key}))
///     }))
///     .final_states(["done", "cancelled"]);
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("events", StringSerde, JsonSerde::<Value>::new())
///     .saga("signups", saga)
///     .unwrap()
///     .to("outcomes", StringSerde, JsonSerde::<Value>::new());
/// assert!(builder.build().is_ok());
/// ```
#[derive(Clone)]
pub struct Saga {
    initial: String,
    finals: BTreeSet<String>,
    /// Transitions by state left, then by event type.
    transitions: HashMap<String, HashMap<String, Step>>,
    timeouts: HashMap<String, (i64, Step)>,
    summary: Option<(String, Emitter)>,
    check_every: Duration,
    /// Kept after an instance's last change (ms of event time); `None`:
    /// the default, from the timeouts.
    retention: Option<i64>,
    /// Taken by an event that cannot be applied.
    rejected: Option<Step>,
}

impl Saga {
    /// A saga whose instances start in `initial`.
    pub fn new(initial: &str) -> Self {
        Saga {
            initial: initial.to_owned(),
            finals: BTreeSet::new(),
            transitions: HashMap::new(),
            timeouts: HashMap::new(),
            summary: None,
            check_every: Duration::from_secs(1),
            retention: None,
            rejected: None,
        }
    }

    /// In state `from`, an event whose `type` field is `event` takes `step`.
    pub fn on(mut self, from: &str, event: &str, step: Step) -> Self {
        self.transitions
            .entry(from.to_owned())
            .or_default()
            .insert(event.to_owned(), step);
        self
    }

    /// The transition from `state` on an event of type `kind`.
    fn transition(&self, state: &str, kind: &str) -> Option<&Step> {
        self.transitions.get(state)?.get(kind)
    }

    /// Every (state left, step) of transitions and timeouts.
    fn edges(&self) -> impl Iterator<Item = (&str, &Step)> {
        let transitions = self
            .transitions
            .iter()
            .flat_map(|(from, by_kind)| by_kind.values().map(move |step| (from.as_str(), step)));
        let timeouts = self
            .timeouts
            .iter()
            .map(|(state, (_, step))| (state.as_str(), step));
        // A rejection can leave any state; the initial one stands for all.
        let rejected = self
            .rejected
            .iter()
            .map(|step| (self.initial.as_str(), step));
        transitions.chain(timeouts).chain(rejected)
    }

    /// An event the saga cannot apply — an emitter or the summary fails on
    /// it — takes `step` instead of going to the dead-letter topic, with
    /// the error as the instance's reason (unless `step` gives one), so
    /// that what was accepted still gets an outcome. `step` must lead to a
    /// final state. Events that fail in a final state, and events for which
    /// `step` fails too, go to the dead-letter topic.
    pub fn on_error(mut self, step: Step) -> Self {
        self.rejected = Some(step);
        self
    }

    /// An instance still in `state` `after` it entered it takes `step`.
    pub fn timeout(mut self, state: &str, after: Duration, step: Step) -> Self {
        self.timeouts
            .insert(state.to_owned(), (millis(after), step));
        self
    }

    /// States where unexpected events are dropped rather than deferred.
    pub fn final_states<'a>(mut self, states: impl IntoIterator<Item = &'a str>) -> Self {
        self.finals.extend(states.into_iter().map(str::to_owned));
        self
    }

    /// Keeps `summary(scope)` of each instance after each transition in the
    /// key-value store `store` (a queryable read model).
    pub fn summary<F>(mut self, store: &str, summary: F) -> Self
    where
        F: Fn(&SagaScope<'_>) -> Result<Value, Failure> + Send + Sync + 'static,
    {
        self.summary = Some((store.to_owned(), Arc::new(summary)));
        self
    }

    /// How often (in stream time) deadlines are checked; 1 s by default.
    pub fn check_every(mut self, interval: Duration) -> Self {
        self.check_every = interval;
        self
    }

    /// How long an instance is kept after its last change, in event time:
    /// past it the instance (with any events it holds back, for example
    /// those of an instance that never began) is removed and counted in
    /// `eddy_expired_state_total`, and a later event for its key starts a
    /// new instance. The summary (read model) is kept. Default: ten times
    /// the longest timeout, and at least an hour.
    pub fn retention(mut self, kept: Duration) -> Self {
        self.retention = Some(millis(kept));
        self
    }

    /// The retention in ms of event time (see [`retention`](Self::retention)).
    fn retention_ms(&self) -> i64 {
        self.retention.unwrap_or_else(|| {
            let longest = self.timeouts.values().map(|(after, _)| *after).max();
            longest.unwrap_or(0).saturating_mul(10).max(3_600_000)
        })
    }

    /// Every state a transition or timeout names.
    pub fn states(&self) -> BTreeSet<&str> {
        let mut states: BTreeSet<&str> = self.finals.iter().map(String::as_str).collect();
        states.insert(&self.initial);
        for (from, step) in self.edges() {
            states.insert(from);
            states.insert(&step.to);
        }
        states
    }

    /// Checks that the definition is coherent: the initial state is not
    /// final, final states have no timeout, timeouts are positive, and
    /// every state can be reached from the initial one.
    pub fn validate(&self) -> Result<(), SagaError> {
        if self.finals.contains(&self.initial) {
            return Err(SagaError::InitialIsFinal(self.initial.clone()));
        }
        if let Some(step) = &self.rejected {
            if !self.finals.contains(&step.to) {
                return Err(SagaError::RejectionNotFinal(step.to.clone()));
            }
        }
        for (state, (after, _)) in &self.timeouts {
            if self.finals.contains(state) {
                return Err(SagaError::FinalWithTimeout(state.clone()));
            }
            if *after <= 0 {
                return Err(SagaError::TimeoutNotPositive(state.clone()));
            }
        }
        let mut reached = BTreeSet::from([self.initial.as_str()]);
        loop {
            let before = reached.len();
            for (from, step) in self.edges() {
                if reached.contains(from) {
                    reached.insert(&step.to);
                }
            }
            if reached.len() == before {
                break;
            }
        }
        match self.states().into_iter().find(|s| !reached.contains(s)) {
            Some(s) => Err(SagaError::Unreachable {
                state: s.to_owned(),
                initial: self.initial.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl KStream<String, Value> {
    /// Runs `saga` over this stream of JSON events keyed by instance (the
    /// event type is the value's `type` field) and returns the events its
    /// transitions emit. Instances live in the changelogged store `name`,
    /// pending deadlines in `<name>-deadlines`, and the summary (if any) in
    /// its own store. Records must be partitioned by key.
    pub fn saga(&self, name: &str, saga: Saga) -> Result<KStream<String, Value>, TopologyError> {
        saga.validate()
            .map_err(|e| TopologyError::InvalidOperator {
                node: name.to_owned(),
                reason: e.to_string(),
            })?;
        let deadlines = format!("{name}-deadlines");
        let mut stores = vec![name.to_owned(), deadlines.clone()];
        if let Some((store, _)) = &saga.summary {
            stores.push(store.clone());
        }
        {
            let mut g = self.graph.borrow_mut();
            for store in &stores {
                g.stores.push(Arc::new(StoreSpec::key_value(store)));
            }
        }
        let saga = Arc::new(saga);
        let instances = name.to_owned();
        let out = self.add(Operator::keeps_key("saga"), vec![self.node], move || {
            SagaProcessor {
                saga: saga.clone(),
                names: (instances.clone(), deadlines.clone()),
                stores: None,
                outputs: Vec::new(),
            }
        });
        out.uses_stores(stores);
        Ok(out.named(name))
    }
}

/// An instance as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    state: String,
    #[serde(default)]
    deadline: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    events: Map<String, Value>,
    #[serde(default)]
    history: Map<String, Value>,
    #[serde(default)]
    deferred: Vec<(String, Value, i64)>,
    /// When the instance is removed unless it changes again.
    #[serde(default)]
    expires: Option<i64>,
}

struct Stores {
    instances: KeyValueStore<String, Instance>,
    deadlines: KeyValueStore<Vec<u8>, Vec<u8>>,
    summary: Option<KeyValueStore<String, Value>>,
}

struct SagaProcessor {
    saga: Arc<Saga>,
    names: (String, String),
    stores: Option<Stores>,
    /// Events emitted by the current step, with their timestamps.
    outputs: Vec<(Value, i64)>,
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
        let json: Arc<dyn Serde<Instance>> = Arc::new(JsonSerde::<Instance>::new());
        let bytes: Arc<dyn Serde<Vec<u8>>> = Arc::new(BytesSerde);
        let string: Arc<dyn Serde<String>> = Arc::new(StringSerde);
        Ok(Stores {
            instances: ctx.key_value_store(&self.names.0, string.clone(), json)?,
            deadlines: ctx.key_value_store(&self.names.1, bytes.clone(), bytes)?,
            summary: match &self.saga.summary {
                Some((store, _)) => {
                    Some(ctx.key_value_store(store, string, Arc::new(JsonSerde::<Value>::new()))?)
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
        let duplicate =
            inst.events.contains_key(kind) || inst.deferred.iter().any(|(k, _, _)| k == kind);
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
                inst.deferred.push((kind.to_owned(), event, ts));
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
            .position(|(k, _, _)| saga.transition(&inst.state, k).is_some())
        {
            let (kind, event, ts) = inst.deferred.remove(i);
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
        Ok(found.unwrap_or_else(|| Instance {
            state: self.saga.initial.clone(),
            deadline: None,
            reason: None,
            events: Map::new(),
            history: Map::new(),
            deferred: Vec::new(),
            expires: None,
        }))
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
                self.commit(r.key.clone(), &inst, old, &r.headers, ctx)
            });
        let Err(error) = applied else {
            return Ok(());
        };
        self.outputs.clear();
        let Some(step) = self.saga.rejected.clone() else {
            return Err(error);
        };
        self.reject(r.key, &step, &error, r.timestamp, &r.headers, ctx)
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
    fn reject(
        &mut self,
        key: String,
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
        tracing::debug!(%key, state = %inst.state, "saga event rejected: {error}");
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
        self.commit(key.to_owned(), &inst, old, &Headers::default(), ctx)
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
        tracing::debug!(%key, state = %inst.state, held = inst.deferred.len(), "saga instance expired");
        ctx.record_expired(1);
        Ok(())
    }
}

impl Processor<String, Value, String, Value> for SagaProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Value>) -> Result<(), InitError> {
        self.stores = Some(self.open(ctx)?);
        ctx.schedule(self.saga.check_every, PunctuationType::Watermark);
        Ok(())
    }

    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        if let Err(e) = self.step(r, ctx) {
            self.outputs.clear();
            ctx.fail(Failure::new(e.kind(), format!("saga: {}", e.error())));
        }
    }

    fn punctuate(
        &mut self,
        _id: PunctuationId,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) {
        if let Err(e) = self.expire(now, ctx) {
            self.outputs.clear();
            tracing::error!("saga timeouts at stream time {now}: {e}");
        }
    }
}
