//! The processors behind expression operators of topology files: each
//! evaluates CEL over the record and sends the record to the dead-letter
//! topic, with the reason, when evaluation fails.

use std::sync::Arc;

use serde_json::Value;

use super::bind::Bind;
use super::expr::{cap, Expr, ExprError, Scope, MAX_REASON};
use crate::processor::{Failure, FailureKind, Processor, ProcessorContext, Record};
use crate::topology::Windowed;

/// What one expression operator does.
pub(crate) enum Op {
    /// Keeps records for which the expression is true.
    Filter(Expr),
    /// New value and/or key.
    Map {
        key: Option<Expr>,
        value: Option<Expr>,
    },
    /// Key from a field of the value (a dotted path).
    Rekey(Vec<String>),
    /// One record per element of a list, at most `max_outputs` of them.
    FlatMap {
        items: Expr,
        key: Option<Expr>,
        value: Option<Expr>,
        max_outputs: usize,
    },
    /// A joined pair `{"left": .., "right": ..}` into the joined value.
    Joined(Expr),
    /// Values must satisfy a JSON Schema.
    Validate(Arc<jsonschema::Validator>, String),
}

/// Runs an [`Op`] per record.
pub(crate) struct OpProcessor {
    pub(crate) op: Arc<Op>,
    pub(crate) vars: Arc<Value>,
}

fn key_of(v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("a key must be a string or a number, not {other}")),
    }
}

impl OpProcessor {
    fn step(
        &self,
        r: Record<String, Value>,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let vars = &*self.vars;
        fn base(r: &Record<String, Value>) -> [(&'static str, Bind<'_>); 3] {
            [
                ("key", Bind::Str(&r.key)),
                ("value", Bind::Json(&r.value)),
                ("timestamp", Bind::Int(r.timestamp)),
            ]
        }
        match &*self.op {
            Op::Filter(e) => {
                if e.test(vars, &base(&r))? {
                    ctx.forward(r);
                }
            }
            Op::Map { key, value } => {
                let b = base(&r);
                let k = key.as_ref().map(|e| e.eval(vars, &b)).transpose()?;
                let v = value.as_ref().map(|e| e.eval(vars, &b)).transpose()?;
                let key = match k {
                    Some(k) => key_of(k).map_err(ExprError::failed)?,
                    None => r.key,
                };
                ctx.forward(Record {
                    key,
                    value: v.unwrap_or(r.value),
                    timestamp: r.timestamp,
                    headers: r.headers,
                });
            }
            Op::Rekey(path) => {
                let mut field = &r.value;
                for part in path {
                    field = field
                        .get(part)
                        .ok_or_else(|| format!("no field {:?} to re-key by", path.join(".")))?;
                }
                let key = key_of(field.clone())?;
                ctx.forward(Record { key, ..r });
            }
            Op::FlatMap {
                items,
                key,
                value,
                max_outputs,
            } => {
                let b = base(&r);
                let Value::Array(list) = items.eval(vars, &b)? else {
                    return Err(
                        ExprError::failed(format!("{:?} is not a list", items.source())).into(),
                    );
                };
                if list.len() > *max_outputs {
                    return Err(Failure::processing(format!(
                        "{:?} has {} elements, more than the {max_outputs} outputs a flat_map may emit per record (max_outputs)",
                        items.source(),
                        list.len()
                    )));
                }
                // The record is bound once for all its elements; each
                // evaluation adds only the element and its index.
                let exprs: Vec<&Expr> = key.iter().chain(value).collect();
                let out = Scope::with(vars, &b, &exprs, |scope| {
                    let mut out = Vec::with_capacity(list.len());
                    for (i, item) in list.into_iter().enumerate() {
                        let b = [("item", Bind::Json(&item)), ("index", Bind::Int(i as i64))];
                        let k = match key {
                            Some(e) => key_of(scope.eval(e, &b)?).map_err(ExprError::failed)?,
                            None => r.key.clone(),
                        };
                        let v = match value {
                            Some(e) => scope.eval(e, &b)?,
                            None => item,
                        };
                        out.push((k, v));
                    }
                    Ok::<_, ExprError>(out)
                })?;
                for (key, value) in out {
                    ctx.forward(Record {
                        key,
                        value,
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    });
                }
            }
            Op::Joined(e) => {
                let null = Value::Null;
                let left = r.value.get("left").unwrap_or(&null);
                let right = r.value.get("right").unwrap_or(&null);
                let v = e.eval(
                    vars,
                    &[
                        ("key", Bind::Str(&r.key)),
                        ("left", Bind::Json(left)),
                        ("right", Bind::Json(right)),
                        ("timestamp", Bind::Int(r.timestamp)),
                    ],
                )?;
                ctx.forward(Record { value: v, ..r });
            }
            Op::Validate(schema, file) => {
                let errors: Vec<String> = schema
                    .iter_errors(&r.value)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        let at = if at.is_empty() { "/".to_owned() } else { at };
                        // A message quotes the value it is about; one too
                        // long for a dead letter's header says "value".
                        let mut message = e.to_string();
                        if message.len() > MAX_REASON {
                            message = e.masked().to_string();
                        }
                        format!("at {at}: {message}")
                    })
                    .collect();
                if !errors.is_empty() {
                    return Err(Failure::new(
                        FailureKind::Schema,
                        cap(format!("schema {file}: {}", errors.join("; "))),
                    ));
                }
                ctx.forward(r);
            }
        }
        Ok(())
    }
}

impl Processor<String, Value, String, Value> for OpProcessor {
    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        if let Err(e) = self.step(r, ctx) {
            ctx.fail(e);
        }
    }
}

/// A windowed aggregate's update as a plain record: the same key, and
/// `{"start", "end", "value"}`; deletions are dropped.
pub(crate) struct Unwindow;

impl Processor<Windowed<String>, Option<Value>, String, Value> for Unwindow {
    fn process(
        &mut self,
        r: Record<Windowed<String>, Option<Value>>,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) {
        let Some(value) = r.value else { return };
        let w = r.key.window;
        ctx.forward(Record {
            key: r.key.key,
            value: serde_json::json!({"start": w.start, "end": w.end, "value": value}),
            timestamp: r.timestamp,
            headers: r.headers,
        });
    }
}
