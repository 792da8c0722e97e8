//! The compiler of the stateful nodes of a topology file: aggregations
//! (windowed or not), gathers, joins and sagas.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::nodes::Compiler;
use super::{duration, fail, json, Fail, Out};
use crate::config::bind::Bind;
use crate::config::gather::{Gather, GatherProcessor};
use crate::config::model::{self, Node};
use crate::config::ops::{Op, Unwindow};
use crate::serde::{CompactValueSerde, StringSerde};
use crate::stores::StoreSpec;
use crate::topology::{
    JoinKind, JoinWindows, Operator, Saga, SagaScope, Step, StreamJoined, TimeWindows,
};

impl<'a> Compiler<'a> {
    /// A stateful node: `join`, `aggregate`, `gather` or `saga` (the
    /// compiler hands no other kind here).
    pub(super) fn stateful(&mut self, name: &str, node: &Node) -> Result<Out, Fail> {
        match node {
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
                self.join(name, spec)
            }
            Node::Aggregate {
                input,
                initial,
                aggregator,
                store,
                window,
            } => self.aggregate(name, input, initial, aggregator, store, window),
            Node::Gather {
                input,
                part,
                parts,
                store,
            } => self.gather(name, input, part, parts, store),
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
                let saga = s
                    .saga(name, saga)
                    .map_err(|e| (format!("nodes.{name}.transitions"), e.to_string()))?;
                Ok(Out::Stream(saga))
            }
            _ => unreachable!("{name} is not a stateful node"),
        }
    }

    /// An `aggregate` node: a table, or with a window the stream of its
    /// windows' values.
    fn aggregate(
        &mut self,
        name: &str,
        input: &str,
        initial: &str,
        aggregator: &str,
        store: &Option<String>,
        window: &Option<model::Window>,
    ) -> Result<Out, Fail> {
        let f = |field: &str| format!("nodes.{name}.{field}");
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
        Ok(match window {
            None => Out::Table(grouped.try_aggregate(move || init.clone(), fold, store, json())),
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
                let table = windowed.try_aggregate(move || init.clone(), fold, store, json());
                let changes = table.to_stream();
                Out::Stream(
                    changes
                        .then::<String, Value, _, _>(Operator::keeps_key("window-values"), || {
                            Unwindow
                        })
                        .named(name),
                )
            }
        })
    }

    /// A `gather` node: the parts of a split record, emitted in order once
    /// all have come.
    fn gather(
        &mut self,
        name: &str,
        input: &str,
        part: &str,
        parts: &str,
        store: &Option<String>,
    ) -> Result<Out, Fail> {
        let f = |field: &str| format!("nodes.{name}.{field}");
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
        Ok(Out::Stream(out))
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
        let pair =
            |l: Option<&Value>, r: Option<&Value>| serde_json::json!({"left": l, "right": r});
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
                    // The buffered records in the compact form (JSON at the edges only).
                    StreamJoined::with(name, StringSerde, CompactValueSerde, CompactValueSerde),
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
