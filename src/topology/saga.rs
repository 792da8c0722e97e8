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
//!
//! [`PunctuationType::Watermark`]: crate::processor::PunctuationType::Watermark

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::operators::saga::SagaProcessor;

use super::builder::KStream;
use super::graph::TopologyError;
use super::operator::Operator;
use crate::processor::{millis, Failure};
use crate::stores::StoreSpec;

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
    pub(crate) to: String,
    pub(crate) reason: Option<String>,
    pub(crate) emit: Vec<Emitter>,
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
    pub(crate) initial: String,
    pub(crate) finals: BTreeSet<String>,
    /// Transitions by state left, then by event type.
    pub(crate) transitions: HashMap<String, HashMap<String, Step>>,
    pub(crate) timeouts: HashMap<String, (i64, Step)>,
    pub(crate) summary: Option<(String, Emitter)>,
    pub(crate) check_every: Duration,
    /// Kept after an instance's last change (ms of event time); `None`:
    /// the default, from the timeouts.
    pub(crate) retention: Option<i64>,
    /// Taken by an event that cannot be applied.
    pub(crate) rejected: Option<Step>,
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
    pub(crate) fn transition(&self, state: &str, kind: &str) -> Option<&Step> {
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
    /// `eddy_node_expired_state_total`, and a later event for its key starts a
    /// new instance. The summary (read model) is kept. Default: ten times
    /// the longest timeout, and at least an hour.
    pub fn retention(mut self, kept: Duration) -> Self {
        self.retention = Some(millis(kept));
        self
    }

    /// The retention in ms of event time (see [`retention`](Self::retention)).
    pub(crate) fn retention_ms(&self) -> i64 {
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
            SagaProcessor::new(saga.clone(), instances.clone(), deadlines.clone())
        });
        out.uses_stores(stores);
        Ok(out.named(name))
    }
}
