//! One builder call per node of a topology file: the compiler of
//! `[nodes.*]`, with the inputs, topics and expressions each node refers
//! to checked as it goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::{fail, json, Fail, JsonStream, Out, Topic};
use crate::config::cost::Budget;
use crate::config::expr::Expr;
use crate::config::model::Node;
use crate::config::ops::{Op, OpProcessor};
use crate::config::registry::Registry;
use crate::processor::{InvalidTimestamp, TimestampExtractor};
use crate::serde::{Nullable, StringSerde};
use crate::topology::{Operator, StreamsBuilder, DEFAULT_MAX_OUTPUTS};

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
    /// Where the secrets the file names are read.
    pub(super) secrets: super::Secrets<'a>,
}

impl<'a> Compiler<'a> {
    pub(super) fn expr(&self, field: &str, source: &str, allowed: &[&str]) -> Result<Expr, Fail> {
        Expr::compile_with(source, allowed, &self.budget)
            .map_err(|e| (field.to_owned(), e.to_string()))
    }

    pub(super) fn topic(
        &mut self,
        node: &'a str,
        topic: &'a str,
        read: bool,
    ) -> Result<&Topic, Fail> {
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

    pub(super) fn input(&self, node: &str, field: &str, input: &str) -> Result<Out, Fail> {
        self.outputs.get(input).cloned().ok_or_else(|| {
            (
                format!("nodes.{node}.{field}"),
                format!("node {input:?} has no output to read"),
            )
        })
    }

    /// The input stream of a stateful operator, which must be partitioned
    /// by its current key.
    pub(super) fn keyed(&self, node: &str, field: &str, input: &str) -> Result<Out, Fail> {
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

    pub(super) fn op(&self, name: &str, kind: Operator, input: &JsonStream, op: Op) -> JsonStream {
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
            Node::Call(c) => self.call(name, c)?,
            Node::Mask(settings) => {
                let masking = super::secrets::masking(name, settings, &self.secrets)?;
                let s = self.input(name, "input", &settings.input)?.stream();
                Out::Stream(s.mask(&masking).named(name))
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
            Node::Join { .. }
            | Node::Aggregate { .. }
            | Node::Gather { .. }
            | Node::Saga { .. } => self.stateful(name, node)?,
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
}
