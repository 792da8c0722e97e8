//! One builder call per node of a topology file: the compiler of
//! `[nodes.*]`, with the inputs, topics and expressions each node refers
//! to checked as it goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{duration, fail, json, Fail, JsonStream, Out, Topic};
use crate::config::cost::Budget;
use crate::config::expr::{Bind, Expr};
use crate::config::gather::{Gather, GatherProcessor};
use crate::config::model::{self, Node};
use crate::config::ops::{Op, OpProcessor, Unwindow};
use crate::config::registry::Registry;
use crate::processor::{InvalidTimestamp, TimestampExtractor};
use crate::serde::{Nullable, StringSerde};
use crate::stores::StoreSpec;
use crate::topology::{
    JoinKind, JoinWindows, Operator, Saga, SagaScope, Step, StreamJoined, StreamsBuilder,
    TimeWindows, DEFAULT_MAX_OUTPUTS,
};

pub(super) struct Compiler<'a> {
    /// The budget every expression is compiled with.
    pub(super) budget: Budget,
    pub(super) builder: StreamsBuilder,
    pub(super) outputs: HashMap<&'a str, Out>,
    pub(super) topics: BTreeMap<&'a str, Topic>,
    pub(super) vars: Arc<Value>,
    pub(super) registry: &'a Registry,
    /// Topic entry -> the node that reads it.
    pub(super) read_by: HashMap<&'a str, &'a str>,
    pub(super) queryable: Vec<(String, Option<String>)>,
}

impl<'a> Compiler<'a> {
    fn expr(&self, field: &str, source: &str, allowed: &[&str]) -> Result<Expr, Fail> {
        Expr::compile_with(source, allowed, &self.budget)
            .map_err(|e| (field.to_owned(), e.to_string()))
    }

    fn topic(&mut self, node: &'a str, topic: &'a str, read: bool) -> Result<&Topic, Fail> {
        let field = format!("nodes.{node}.topic");
        if !self.topics.contains_key(topic) {
            return fail(
                field,
                format!("topic {topic:?} is not declared under [topics]"),
            );
        }
        if read {
            if let Some(other) = self.read_by.insert(topic, node) {
                return fail(
                    field,
                    format!(
                        "topic {topic:?} is already read by node {other:?}; read it once and use that node"
                    ),
                );
            }
        }
        Ok(&self.topics[topic])
    }

    fn input(&self, node: &str, field: &str, input: &str) -> Result<Out, Fail> {
        self.outputs.get(input).cloned().ok_or_else(|| {
            (
                format!("nodes.{node}.{field}"),
                format!("node {input:?} has no output to read"),
            )
        })
    }

    /// The input stream of a stateful operator, which must be partitioned
    /// by its current key.
    fn keyed(&self, node: &str, field: &str, input: &str) -> Result<Out, Fail> {
        let out = self.input(node, field, input)?;
        if let Out::Stream(s) = &out {
            if s.repartition_required() {
                return fail(
                    format!("nodes.{node}.{field}"),
                    format!(
                        "records from {input:?} were re-keyed upstream (map key, rekey, flat_map key or processor); add a node with op = \"repartition\" before this stateful operator"
                    ),
                );
            }
        }
        Ok(out)
    }

    fn op(&self, name: &str, kind: Operator, input: &JsonStream, op: Op) -> JsonStream {
        let (op, vars) = (Arc::new(op), self.vars.clone());
        input
            .then::<String, Value, _, _>(kind, move || OpProcessor {
                op: op.clone(),
                vars: vars.clone(),
            })
            .named(name)
    }

    pub(super) fn node(&mut self, name: &'a str, node: &'a Node) -> Result<Option<Out>, Fail> {
        let f = |field: &str| format!("nodes.{name}.{field}");
        const RECORD: &[&str] = &["key", "value", "timestamp"];
        Ok(Some(match node {
            Node::Source { topic } => {
                let t = self.topic(name, topic, true)?;
                let extractor = match &t.timestamp_field {
                    Some(field) => TimestampExtractor::JsonField {
                        field: field.clone(),
                        on_invalid: InvalidTimestamp::Fail,
                    },
                    None => TimestampExtractor::default(),
                };
                let schema = t.schema.clone();
                let kafka = t.name.clone();
                let source = self
                    .builder
                    .stream_with(&kafka, StringSerde, json(), extractor);
                Out::Stream(match schema {
                    Some((v, file)) => {
                        let source = source.named(&format!("{name}-source"));
                        self.op(
                            name,
                            Operator::keeps_key("validate"),
                            &source,
                            Op::Validate(v, file),
                        )
                    }
                    None => source.named(name),
                })
            }
            Node::Table { topic, store } => {
                let kafka = self.topic(name, topic, true)?.name.clone();
                let store = store.as_deref().unwrap_or(name);
                Out::Table(self.builder.table(&kafka, StringSerde, json(), store))
            }
            Node::Filter { input, expr: e } => {
                let e = self.expr(&f("expr"), e, RECORD)?;
                let s = self.input(name, "input", input)?.stream();
                Out::Stream(self.op(name, Operator::keeps_key("filter"), &s, Op::Filter(e)))
            }
            Node::Map { input, value, key } => {
                if value.is_none() && key.is_none() {
                    return fail(f("value"), "a map needs a value or a key expression");
                }
                let value = value
                    .as_deref()
                    .map(|v| self.expr(&f("value"), v, RECORD))
                    .transpose()?;
                let kind = if key.is_some() {
                    Operator::changes_key("map")
                } else {
                    Operator::keeps_key("map-values")
                };
                let key = key
                    .as_deref()
                    .map(|k| self.expr(&f("key"), k, RECORD))
                    .transpose()?;
                let s = self.input(name, "input", input)?.stream();
                Out::Stream(self.op(name, kind, &s, Op::Map { key, value }))
            }
            Node::Rekey { input, field } => {
                if field.is_empty() {
                    return fail(f("field"), "must name a field of the value");
                }
                let path = field.split('.').map(str::to_owned).collect();
                let s = self.input(name, "input", input)?.stream();
                Out::Stream(self.op(
                    name,
                    Operator::changes_key("key-select"),
                    &s,
                    Op::Rekey(path),
                ))
            }
            Node::FlatMap {
                input,
                items,
                value,
                key,
                max_outputs,
            } => {
                const ITEM: &[&str] = &["key", "value", "timestamp", "item", "index"];
                let items = self.expr(&f("items"), items, RECORD)?;
                let value = value
                    .as_deref()
                    .map(|v| self.expr(&f("value"), v, ITEM))
                    .transpose()?;
                let kind = if key.is_some() {
                    Operator::changes_key("flatmap")
                } else {
                    Operator::keeps_key("flatmap-values")
                };
                let key = key
                    .as_deref()
                    .map(|k| self.expr(&f("key"), k, ITEM))
                    .transpose()?;
                let max_outputs = match max_outputs {
                    Some(0) => return fail(f("max_outputs"), "must be at least 1"),
                    Some(n) => *n,
                    None => DEFAULT_MAX_OUTPUTS,
                };
                let s = self.input(name, "input", input)?.stream();
                let op = Op::FlatMap {
                    items,
                    key,
                    value,
                    max_outputs,
                };
                Out::Stream(self.op(name, kind, &s, op))
            }
            Node::Merge { inputs } => {
                let Some((first, rest)) = inputs.split_first() else {
                    return fail(f("inputs"), "a merge needs at least one input");
                };
                let mut s = self.input(name, "inputs", first)?.stream();
                for i in rest {
                    s = s.merge(&self.input(name, "inputs", i)?.stream());
                }
                Out::Stream(s.named(name))
            }
            Node::Repartition { input } => {
                let s = self.input(name, "input", input)?.stream();
                Out::Stream(s.repartition(name, StringSerde, json()))
            }
            Node::Join {
                left,
                right,
                kind,
                window,
                grace,
                value,
            } => {
                let spec = JoinSpec {
                    left,
                    right,
                    kind: *kind,
                    window,
                    grace,
                    value,
                };
                self.join(name, spec)?
            }
            Node::Aggregate {
                input,
                initial,
                aggregator,
                store,
                window,
            } => {
                let init = self
                    .expr(&f("initial"), initial, &[])?
                    .eval(&self.vars, &[])
                    .map_err(|e| (f("initial"), e.to_string()))?;
                let agg = self.expr(&f("aggregator"), aggregator, &["key", "value", "agg"])?;
                let store = store.as_deref().unwrap_or(name);
                let s = self.input(name, "input", input)?.stream();
                let grouped = s.group_by_key(StringSerde, json());
                let vars = self.vars.clone();
                let fold = move |k: &String, v: Value, a: Value| {
                    Ok(agg.eval(
                        &vars,
                        &[
                            ("key", Bind::Str(k)),
                            ("value", Bind::Json(&v)),
                            ("agg", Bind::Json(&a)),
                        ],
                    )?)
                };
                match window {
                    None => {
                        Out::Table(grouped.try_aggregate(move || init.clone(), fold, store, json()))
                    }
                    Some(w) => {
                        let size = duration(&f("window.size"), &w.size)?;
                        if size.is_zero() {
                            return fail(f("window.size"), "must be more than 0");
                        }
                        let grace = match &w.grace {
                            Some(g) => duration(&f("window.grace"), g)?,
                            None => Duration::ZERO,
                        };
                        let windows = match &w.advance {
                            Some(a) => {
                                let advance = duration(&f("window.advance"), a)?;
                                if advance.is_zero() || advance > size {
                                    return fail(
                                        f("window.advance"),
                                        "must be more than 0 and at most the window size",
                                    );
                                }
                                TimeWindows::hopping(size, advance, grace)
                            }
                            None => TimeWindows::tumbling(size, grace),
                        };
                        let mut windowed = grouped.windowed_by(windows);
                        if w.emit_final {
                            windowed = windowed.emit_final();
                        }
                        let table =
                            windowed.try_aggregate(move || init.clone(), fold, store, json());
                        let changes = table.to_stream();
                        Out::Stream(
                            changes
                                .then::<String, Value, _, _>(
                                    Operator::keeps_key("window-values"),
                                    || Unwindow,
                                )
                                .named(name),
                        )
                    }
                }
            }
            Node::Gather {
                input,
                part,
                parts,
                store,
            } => {
                let part = self.expr(&f("part"), part, &["key", "value"])?;
                let parts = self.expr(&f("parts"), parts, &["key", "value"])?;
                let store = store.as_deref().unwrap_or(name).to_owned();
                let s = self.keyed(name, "input", input)?.stream();
                self.builder.add_state_store(StoreSpec::key_value(&store));
                let gather = Arc::new(Gather::new(part, parts, store.clone(), self.vars.clone()));
                let out = s
                    .then::<String, Value, _, _>(Operator::keeps_key("gather"), move || {
                        GatherProcessor::new(gather.clone())
                    })
                    .named(name);
                out.uses_stores([store]);
                Out::Stream(out)
            }
            Node::Saga {
                input,
                initial,
                final_states,
                transitions,
                timeouts,
                summary,
                rejected,
                check_every,
                retention,
            } => {
                let spec = SagaSpec {
                    initial,
                    final_states,
                    transitions,
                    timeouts,
                    rejected: rejected.as_deref(),
                    summary,
                    check_every,
                    retention,
                };
                let saga = self.saga(name, spec)?;
                let s = self.keyed(name, "input", input)?.stream();
                Out::Stream(
                    s.saga(name, saga)
                        .map_err(|e| (f("transitions"), e.to_string()))?,
                )
            }
            Node::Processor {
                input,
                processor,
                params,
            } => {
                let Some(factory) = self.registry.get(processor) else {
                    let known: Vec<&str> = self.registry.names().collect();
                    return fail(
                        f("processor"),
                        format!(
                            "unknown processor {processor:?} (registered: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                };
                let custom = factory(params).map_err(|e| (f("params"), e.to_string()))?;
                let s = self.keyed(name, "input", input)?.stream();
                let stores: Vec<String> = custom.stores.iter().map(|s| s.name.clone()).collect();
                for spec in custom.stores {
                    self.builder.add_state_store(spec);
                }
                let refs: Vec<&str> = stores.iter().map(String::as_str).collect();
                let supplier = custom.supplier;
                Out::Stream(
                    s.process_with_stores::<String, Value, _, _>(move || supplier(), &refs)
                        .named(name),
                )
            }
            Node::Sink { input, topic } => {
                let t = self.topic(name, topic, false)?;
                let (kafka, schema) = (t.name.clone(), t.schema.clone());
                match (self.input(name, "input", input)?, schema) {
                    // Outputs must meet the topic's contract too: a record
                    // that produced an invalid one is dead-lettered.
                    (out, Some((v, file))) => {
                        let checked = self.op(
                            name,
                            Operator::keeps_key("validate"),
                            &out.stream(),
                            Op::Validate(v, file),
                        );
                        checked.to(&kafka, StringSerde, json());
                    }
                    (Out::Stream(s), None) => s.to(&kafka, StringSerde, json()),
                    (Out::Table(t), None) => {
                        t.to_stream().to(&kafka, StringSerde, Nullable(json()))
                    }
                }
                return Ok(None);
            }
        }))
    }

    fn join(&self, name: &str, spec: JoinSpec<'_>) -> Result<Out, Fail> {
        let JoinSpec {
            left,
            right,
            kind,
            window,
            grace,
            value,
        } = spec;
        let f = |field: &str| format!("nodes.{name}.{field}");
        let value = self.expr(&f("value"), value, &["key", "left", "right", "timestamp"])?;
        let l = match self.keyed(name, "left", left)? {
            Out::Stream(s) => s,
            Out::Table(_) => {
                return fail(
                    f("left"),
                    format!("the left input of a join must be a stream; {left:?} is a table"),
                )
            }
        };
        let pair = |l: Option<&Value>, r: Option<&Value>| json!({"left": l, "right": r});
        let joined = match self.keyed(name, "right", right)? {
            Out::Stream(r) => {
                let Some(window) = window else {
                    return fail(
                        f("window"),
                        "a stream-stream join needs a window (for example window = \"30s\")",
                    );
                };
                let window = duration(&f("window"), window)?;
                let grace = match grace {
                    Some(g) => duration(&f("grace"), g)?,
                    None => Duration::ZERO,
                };
                let kind = match kind {
                    model::Kind::Inner => JoinKind::Inner,
                    model::Kind::Left => JoinKind::Left,
                    model::Kind::Outer => JoinKind::Outer,
                };
                l.join_stream(
                    &r,
                    kind,
                    JoinWindows::of(window, grace),
                    pair,
                    StreamJoined::with(name, StringSerde, json(), json()),
                )
            }
            Out::Table(t) => {
                if window.is_some() || grace.is_some() {
                    return fail(
                        f("window"),
                        format!("{right:?} is a table: a stream-table join takes no window"),
                    );
                }
                match kind {
                    model::Kind::Inner => l.join_table(&t, move |v, r| pair(Some(v), Some(r))),
                    model::Kind::Left => l.left_join_table(&t, move |v, r| pair(Some(v), r)),
                    model::Kind::Outer => {
                        return fail(f("kind"), "a stream-table join is inner or left, not outer")
                    }
                }
            }
        };
        Ok(Out::Stream(self.op(
            name,
            Operator::keeps_key("join-value"),
            &joined,
            Op::Joined(value),
        )))
    }

    fn saga(&mut self, name: &str, spec: SagaSpec<'_>) -> Result<Saga, Fail> {
        let SagaSpec {
            initial,
            final_states,
            transitions,
            timeouts,
            rejected,
            summary,
            check_every,
            retention,
        } = spec;
        const SCOPE: &[&str] = &[
            "key",
            "event",
            "events",
            "state",
            "from",
            "reason",
            "history",
            "timestamp",
        ];
        let mut saga = Saga::new(initial).final_states(final_states.iter().map(String::as_str));
        let step = |field: &str, t: &model::Transition| -> Result<Step, Fail> {
            let mut step = Step::to(&t.to);
            if let Some(r) = &t.reason {
                step = step.reason(r);
            }
            for (i, e) in t.emit.iter().enumerate() {
                let e = self.expr(&format!("{field}.emit[{i}]"), e, SCOPE)?;
                let vars = self.vars.clone();
                step = step.emit(move |s: &SagaScope<'_>| Ok(e.eval(&vars, &scope(s))?));
            }
            Ok(step)
        };
        for (i, t) in transitions.iter().enumerate() {
            let field = format!("nodes.{name}.transitions[{i}]");
            let (Some(from), Some(on)) = (&t.from, &t.on) else {
                return fail(field, "a transition needs `from` and `on`");
            };
            if t.state.is_some() || t.after.is_some() {
                return fail(
                    field,
                    "`state` and `after` belong to timeouts, not transitions",
                );
            }
            saga = saga.on(from, on, step(&field, t)?);
        }
        for (i, t) in timeouts.iter().enumerate() {
            let field = format!("nodes.{name}.timeouts[{i}]");
            let (Some(state), Some(after)) = (&t.state, &t.after) else {
                return fail(field, "a timeout needs `state` and `after`");
            };
            if t.from.is_some() || t.on.is_some() {
                return fail(field, "`from` and `on` belong to transitions, not timeouts");
            }
            let after = duration(&format!("{field}.after"), after)?;
            saga = saga.timeout(state, after, step(&field, t)?);
        }
        if let Some(t) = rejected {
            let field = format!("nodes.{name}.rejected");
            if t.from.is_some() || t.on.is_some() || t.state.is_some() || t.after.is_some() {
                return fail(
                    field,
                    "a rejection takes `to`, `reason` and `emit` only: it leaves whatever state the instance is in",
                );
            }
            saga = saga.on_error(step(&field, t)?);
        }
        if let Some(s) = summary {
            let e = self.expr(&format!("nodes.{name}.summary.value"), &s.value, SCOPE)?;
            let vars = self.vars.clone();
            saga = saga.summary(&s.store, move |sc: &SagaScope<'_>| {
                Ok(e.eval(&vars, &scope(sc))?)
            });
            if let Some(route) = &s.route {
                if !route.starts_with('/') {
                    return fail(
                        format!("nodes.{name}.summary.route"),
                        format!("{route:?} must start with /"),
                    );
                }
            }
            self.queryable.push((s.store.clone(), s.route.clone()));
        }
        if let Some(c) = check_every {
            let field = format!("nodes.{name}.check_every");
            let every = duration(&field, c)?;
            if every.is_zero() {
                return fail(field, "must be more than 0");
            }
            saga = saga.check_every(every);
        }
        if let Some(r) = retention {
            let field = format!("nodes.{name}.retention");
            let kept = duration(&field, r)?;
            if kept.is_zero() {
                return fail(field, "must be more than 0");
            }
            saga = saga.retention(kept);
        }
        saga.validate()
            .map_err(|e| (format!("nodes.{name}"), e.to_string()))?;
        Ok(saga)
    }
}

/// A saga scope as CEL bindings.
fn scope<'a>(s: &'a SagaScope<'_>) -> [(&'static str, Bind<'a>); 8] {
    [
        ("key", Bind::Str(s.key)),
        ("event", s.event.map_or(Bind::Null, Bind::Json)),
        ("events", Bind::Object(s.events)),
        ("state", Bind::Str(s.state)),
        ("from", Bind::Str(s.from)),
        ("reason", s.reason.map_or(Bind::Null, Bind::Str)),
        ("history", Bind::Object(s.history)),
        ("timestamp", Bind::Int(s.timestamp)),
    ]
}

/// The fields of a `join` node, as the compiler reads them.
struct JoinSpec<'a> {
    left: &'a str,
    right: &'a str,
    kind: model::Kind,
    window: &'a Option<String>,
    grace: &'a Option<String>,
    value: &'a str,
}

/// The fields of a `saga` node, as the compiler reads them.
struct SagaSpec<'a> {
    initial: &'a str,
    final_states: &'a [String],
    transitions: &'a [model::Transition],
    timeouts: &'a [model::Transition],
    rejected: Option<&'a model::Transition>,
    summary: &'a Option<model::Summary>,
    check_every: &'a Option<String>,
    retention: &'a Option<String>,
}
