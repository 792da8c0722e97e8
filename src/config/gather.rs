//! The `gather` operator: the parts of a whole (the answers to a scatter,
//! keyed by their whole) collected per key and emitted together, in part
//! order, once every part has arrived.
//!
//! Parts are kept one store entry each, beside a small progress entry per
//! whole, so a part costs a fixed number of store reads and writes however
//! many parts the whole has: gathering `n` parts is linear in `n`. (An
//! aggregate keeping the growing list as one value rewrites, re-reads and
//! changelogs the whole list for every part: quadratic.)

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bind::Bind;
use super::expr::{Expr, ExprError, Scope};
use crate::processor::{Failure, InitError, Processor, ProcessorContext, Record, OPENED_IN_INIT};
use crate::serde::{CompactValueSerde, StringSerde};
use crate::stores::KeyValueStore;

/// What a `gather` node is: its expressions and store.
pub(crate) struct Gather {
    /// Which part a record is, from 0.
    part: Expr,
    /// How many parts its whole has.
    parts: Expr,
    /// The store of parts and progress.
    store: String,
    vars: Arc<Value>,
}

impl Gather {
    pub(crate) fn new(part: Expr, parts: Expr, store: String, vars: Arc<Value>) -> Self {
        Gather {
            part,
            parts,
            store,
            vars,
        }
    }
}

/// How far the gathering of one whole is, as stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Progress {
    /// Parts of the whole.
    parts: u64,
    /// Distinct parts arrived.
    have: u64,
}

/// The store entry of a whole's progress. For a key `k` of `n` bytes:
/// `"{n}:{k}"`; its parts are `"{n}:{k}#{part:020}"`. The length prefix
/// keeps the entries of different keys apart whatever bytes a key holds,
/// and the zero-padded part number lists a whole's parts in part order in a
/// scan of the store (an interactive query's).
fn progress_key(key: &str) -> String {
    format!("{}:{key}", key.len())
}

/// The prefix of the store entries of a whole's parts.
fn parts_prefix(progress_key: &str) -> String {
    format!("{progress_key}#")
}

fn part_key(prefix: &str, part: u64) -> String {
    format!("{prefix}{part:020}")
}

/// Runs a [`Gather`] in one task.
pub(crate) struct GatherProcessor {
    gather: Arc<Gather>,
    store: Option<KeyValueStore<String, Value>>,
}

impl GatherProcessor {
    pub(crate) fn new(gather: Arc<Gather>) -> Self {
        GatherProcessor {
            gather,
            store: None,
        }
    }

    /// Evaluates the record's part number and its whole's part count.
    fn place(&self, r: &Record<String, Value>) -> Result<(u64, u64), ExprError> {
        let g = &*self.gather;
        let b = [("key", Bind::Str(&r.key)), ("value", Bind::Json(&r.value))];
        let (part, parts) = Scope::with(&g.vars, &b, &[&g.part, &g.parts], |scope| {
            Ok::<_, ExprError>((scope.eval(&g.part, &[])?, scope.eval(&g.parts, &[])?))
        })?;
        let parts = parts.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            ExprError::failed(format!(
                "{:?} gave {parts}, not a part count of at least 1",
                g.parts.source()
            ))
        })?;
        let part = part.as_u64().filter(|p| *p < parts).ok_or_else(|| {
            ExprError::failed(format!(
                "{:?} gave {part}, not a part number from 0 to {} (of {parts} parts)",
                g.part.source(),
                parts - 1
            ))
        })?;
        Ok((part, parts))
    }

    fn step(
        &mut self,
        r: Record<String, Value>,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), Failure> {
        let (part, parts) = self.place(&r)?;
        let store = self.store.as_ref().expect(OPENED_IN_INIT);
        let whole = progress_key(&r.key);
        let prefix = parts_prefix(&whole);
        let mut progress = match store.get(&whole)? {
            Some(v) => serde_json::from_value::<Progress>(v)
                .map_err(|err| format!("gather progress of {:?} unreadable: {err}", r.key))?,
            None => Progress { parts, have: 0 },
        };
        if progress.parts != parts {
            return Err(format!(
                "part {part} of a whole of {parts} parts, but the whole {:?} being gathered has {}",
                r.key, progress.parts
            )
            .into());
        }
        let this = part_key(&prefix, part);
        let known = store.get(&this)?.is_some();
        if !known {
            progress.have += 1;
        }
        if progress.have < parts {
            store.put(&this, &r.value)?;
            let progress = serde_json::to_value(progress).map_err(Failure::processing)?;
            return Ok(store.put(&whole, &progress)?);
        }
        // Each part read by its key, not by a prefix scan: the store is
        // full of the deleted parts of wholes gathered before, and a scan
        // of RocksDB steps over their tombstones (it was a quarter of the
        // order pipeline's CPU).
        let mut values = Vec::with_capacity(parts as usize);
        for p in 0..parts {
            if p == part {
                values.push(Value::Null);
                continue;
            }
            match store.get(&part_key(&prefix, p))? {
                Some(v) => values.push(v),
                None => {
                    return Err(format!(
                        "the whole {:?} counts {parts} parts arrived but part {p} is not stored",
                        r.key
                    )
                    .into())
                }
            }
        }
        // The arriving part completes the whole: it was never stored.
        for p in (0..parts).filter(|p| *p != part) {
            store.delete(&part_key(&prefix, p))?;
        }
        values[part as usize] = r.value;
        store.delete(&whole)?;
        ctx.forward(Record {
            key: r.key,
            value: Value::Array(values),
            timestamp: r.timestamp,
            headers: r.headers,
        });
        Ok(())
    }
}

impl Processor<String, Value, String, Value> for GatherProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Value>) -> Result<(), InitError> {
        self.store = Some(ctx.key_value_store(
            &self.gather.store,
            Arc::new(StringSerde),
            Arc::new(CompactValueSerde),
        )?);
        Ok(())
    }

    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        if let Err(e) = self.step(r, ctx) {
            ctx.fail(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_of_different_wholes_never_meet() {
        // A key that looks like another key's part entry stays apart: its
        // length prefix differs.
        let a = progress_key("o");
        let tricky = format!("o#{:020}", 3);
        assert_eq!(a, "1:o");
        assert_eq!(part_key(&parts_prefix(&a), 3), format!("1:{tricky}"));
        assert_ne!(progress_key(&tricky), part_key(&parts_prefix(&a), 3));
        assert!(!progress_key(&tricky).starts_with(&parts_prefix(&a)));
    }

    #[test]
    fn parts_list_in_part_order() {
        let p = parts_prefix(&progress_key("o"));
        assert!(part_key(&p, 9) < part_key(&p, 10));
        assert!(part_key(&p, 99) < part_key(&p, 100_000));
    }
}
