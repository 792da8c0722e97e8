//! The processors behind the stateless DSL operators.

use std::sync::Arc;

use crate::processor::{Data, Processor, ProcessorContext, Record};
use crate::topology::Change;

pub(crate) struct Filter<F> {
    pub(crate) predicate: Arc<F>,
    pub(crate) keep: bool,
}

impl<K: Data, V: Data, F> Processor<K, V, K, V> for Filter<F>
where
    F: Fn(&K, &V) -> bool + Send + Sync + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) {
        if (self.predicate)(&r.key, &r.value) == self.keep {
            ctx.forward(r);
        }
    }
}

pub(crate) struct Map<F>(pub(crate) Arc<F>);

impl<K: Data, V: Data, K2: Data, V2: Data, F> Processor<K, V, K2, V2> for Map<F>
where
    F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) {
        let (k, v) = (self.0)(r.key, r.value);
        ctx.forward(Record {
            key: k,
            value: v,
            timestamp: r.timestamp,
            headers: r.headers,
        });
    }
}

pub(crate) struct MapValues<F>(pub(crate) Arc<F>);

impl<K: Data, V: Data, V2: Data, F> Processor<K, V, K, V2> for MapValues<F>
where
    F: Fn(V) -> V2 + Send + Sync + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>) {
        let v = (self.0)(r.value);
        ctx.forward(Record {
            key: r.key,
            value: v,
            timestamp: r.timestamp,
            headers: r.headers,
        });
    }
}

/// The most records a flat_map emits for one input record unless told
/// otherwise: 10 000.
///
/// All the outputs of one record are made, and sent on, before the stream
/// thread looks again at a stop request, a commit or a rebalance, and they
/// are held in memory together; an unbounded fan-out lets one hostile record
/// stall a worker and queue every record behind it. Ten thousand small
/// records take a few milliseconds to make, yet cover any reasonable
/// scatter (the order pipeline's items, whose schema allows as many).
pub const DEFAULT_MAX_OUTPUTS: usize = 10_000;

/// Collects the outputs of one record, at most `max` of them: more is an
/// error saying so, and nothing of that record is emitted.
fn bounded<T>(outputs: impl IntoIterator<Item = T>, max: usize) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for o in outputs {
        if out.len() == max {
            return Err(format!(
                "flat_map made more than the {max} outputs it may emit per record (max_outputs)"
            ));
        }
        out.push(o);
    }
    Ok(out)
}

pub(crate) struct FlatMap<F> {
    pub(crate) mapper: Arc<F>,
    pub(crate) max_outputs: usize,
}

impl<K: Data, V: Data, K2: Data, V2: Data, I, F> Processor<K, V, K2, V2> for FlatMap<F>
where
    F: Fn(K, V) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = (K2, V2)>,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) {
        let out = match bounded((self.mapper)(r.key, r.value), self.max_outputs) {
            Ok(out) => out,
            Err(e) => return ctx.fail(e),
        };
        for (k, v) in out {
            ctx.forward(Record {
                key: k,
                value: v,
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            });
        }
    }
}

pub(crate) struct FlatMapValues<F> {
    pub(crate) mapper: Arc<F>,
    pub(crate) max_outputs: usize,
}

impl<K: Data, V: Data, V2: Data, I, F> Processor<K, V, K, V2> for FlatMapValues<F>
where
    F: Fn(V) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = V2>,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>) {
        let out = match bounded((self.mapper)(r.value), self.max_outputs) {
            Ok(out) => out,
            Err(e) => return ctx.fail(e),
        };
        for v in out {
            ctx.forward(Record {
                key: r.key.clone(),
                value: v,
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            });
        }
    }
}

pub(crate) struct SelectKey<F>(pub(crate) Arc<F>);

impl<K: Data, V: Data, K2: Data, F> Processor<K, V, K2, V> for SelectKey<F>
where
    F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V>) {
        let k = (self.0)(&r.key, &r.value);
        ctx.forward(r.with_key(k));
    }
}

/// Calls an action for each record; forwards it unless `terminal`.
pub(crate) struct Peek<F> {
    pub(crate) action: Arc<F>,
    pub(crate) terminal: bool,
}

impl<K: Data, V: Data, F> Processor<K, V, K, V> for Peek<F>
where
    F: Fn(&K, &V) + Send + Sync + 'static,
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) {
        (self.action)(&r.key, &r.value);
        if !self.terminal {
            ctx.forward(r);
        }
    }
}

/// Forwards unchanged (merge points and branch outlets).
pub(crate) struct PassThrough;

impl<K: Data, V: Data> Processor<K, V, K, V> for PassThrough {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) {
        ctx.forward(r);
    }
}

pub(crate) type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Sends each record to the first branch whose predicate holds, else to the
/// default branch if there is one, else drops it. The split's children are
/// its branch outlets in order (then the default one), so branches are
/// addressed by position and renaming an outlet changes nothing.
pub(crate) struct Split<K, V> {
    pub(crate) predicates: Arc<Vec<Predicate<K, V>>>,
    pub(crate) has_default: bool,
}

impl<K: Data, V: Data> Processor<K, V, K, V> for Split<K, V> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>) {
        let n = self.predicates.len();
        let target = self
            .predicates
            .iter()
            .position(|p| p(&r.key, &r.value))
            .or(self.has_default.then_some(n));
        if let Some(child) = target {
            ctx.forward_to_child(child, r);
        }
    }
}

/// Filters a table's changes: a value that fails the predicate reads as
/// absent, so a row that stops passing is deleted downstream.
pub(crate) struct TableFilter<F> {
    pub(crate) predicate: Arc<F>,
}

impl<K: Data, V: Data, F> Processor<K, Change<V>, K, Change<V>> for TableFilter<F>
where
    F: Fn(&K, &V) -> bool + Send + Sync + 'static,
{
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) {
        let keep = |v: Option<V>| v.filter(|v| (self.predicate)(&r.key, v));
        let change = Change {
            old: keep(r.value.old.clone()),
            new: keep(r.value.new.clone()),
        };
        if change.old.is_some() || change.new.is_some() {
            ctx.forward(r.with_value(change));
        }
    }
}

/// Masks each JSON value ([`Masking`](crate::security::Masking)).
pub(crate) struct Mask(pub(crate) crate::security::Masking);

impl<K: Data> Processor<K, serde_json::Value, K, serde_json::Value> for Mask {
    fn process(
        &mut self,
        mut r: Record<K, serde_json::Value>,
        ctx: &mut ProcessorContext<'_, K, serde_json::Value>,
    ) {
        self.0.apply(&mut r.value);
        ctx.forward(r);
    }
}
