//! The processors of stream-table, table-table and global-table joins.
//!
//! A stream-table or table-table join node reads the other side's store,
//! which puts both inputs in one sub-topology, so partition `p` of each
//! input meets partition `p` of the other; a global join reads the whole
//! global table, on any key.

use std::sync::Arc;

use super::aggregate::StoreAccess;
use crate::processor::{Data, InitError, Processor, ProcessorContext, Record, OPENED_IN_INIT};
use crate::serde::Serde;
use crate::stores::{GlobalStore, KeyValueStore};
use crate::topology::{Change, JoinKind};

pub(crate) fn open<K: 'static, V: 'static>(
    access: &StoreAccess<K, V>,
    ctx: &ProcessorContext<'_, impl Data, impl Data>,
) -> Result<Option<KeyValueStore<K, V>>, InitError> {
    let store = ctx.key_value_store(&access.name, access.key.clone(), access.value.clone())?;
    Ok(Some(store))
}

pub(crate) type StreamJoiner<V, VT, VR> = Arc<dyn Fn(&V, Option<&VT>) -> VR + Send + Sync>;

pub(crate) struct StreamTableJoin<K, V, VT, VR> {
    pub(crate) table: StoreAccess<K, VT>,
    pub(crate) store: Option<KeyValueStore<K, VT>>,
    pub(crate) joiner: StreamJoiner<V, VT, VR>,
    pub(crate) left: bool,
}

impl<K: Data, V: Data, VT: Data, VR: Data> Processor<K, V, K, VR>
    for StreamTableJoin<K, V, VT, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<(), InitError> {
        self.store = open(&self.table, ctx)?;
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) {
        let store = self.store.as_ref().expect(OPENED_IN_INIT);
        match store.get(&r.key) {
            Ok(Some(t)) => {
                let v = (self.joiner)(&r.value, Some(&t));
                ctx.forward(r.with_value(v));
            }
            Ok(None) if self.left => {
                let v = (self.joiner)(&r.value, None);
                ctx.forward(r.with_value(v));
            }
            Ok(None) => {}
            Err(e) => ctx.fail(e),
        }
    }
}

pub(crate) type TableJoiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// One side of a table-table join: on a change of this side, looks the key
/// up on the other side and forwards the change of the joined row.
pub(crate) struct TableTableSide<K, V, VO, VR> {
    pub(crate) other: StoreAccess<K, VO>,
    pub(crate) store: Option<KeyValueStore<K, VO>>,
    /// Joins (this side, other side) values.
    pub(crate) joiner: TableJoiner<V, VO, VR>,
    pub(crate) kind: JoinKind,
    /// Whether this is the left side (for `Left` joins).
    pub(crate) is_left: bool,
}

impl<K, V, VO, VR> TableTableSide<K, V, VO, VR> {
    fn result(&self, this: Option<&V>, other: Option<&VO>) -> Option<VR> {
        let (left, right) = if self.is_left {
            (this.is_some(), other.is_some())
        } else {
            (other.is_some(), this.is_some())
        };
        let keep = match self.kind {
            JoinKind::Inner => left && right,
            JoinKind::Left => left,
            JoinKind::Outer => left || right,
        };
        keep.then(|| (self.joiner)(this, other))
    }
}

impl<K: Data, V: Data, VO: Data, VR: Data> Processor<K, Change<V>, K, Change<VR>>
    for TableTableSide<K, V, VO, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> Result<(), InitError> {
        self.store = open(&self.other, ctx)?;
        Ok(())
    }

    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<VR>>) {
        let store = self.store.as_ref().expect(OPENED_IN_INIT);
        let other = match store.get(&r.key) {
            Ok(o) => o,
            Err(e) => return ctx.fail(e),
        };
        let change = Change {
            old: self.result(r.value.old.as_ref(), other.as_ref()),
            new: self.result(r.value.new.as_ref(), other.as_ref()),
        };
        if change.old.is_some() || change.new.is_some() {
            ctx.forward(r.with_value(change));
        }
    }
}

pub(crate) type GlobalJoiner<V, VG, VR> = Arc<dyn Fn(&V, Option<&VG>) -> VR + Send + Sync>;
pub(crate) type KeyMapper<K, V, KG> = Arc<dyn Fn(&K, &V) -> KG + Send + Sync>;

pub(crate) struct GlobalJoin<K, V, KG, VG, VR> {
    /// The global table's store, found by name at init.
    pub(crate) name: String,
    pub(crate) store: Option<Arc<GlobalStore>>,
    pub(crate) key: Arc<dyn Serde<KG>>,
    pub(crate) value: Arc<dyn Serde<VG>>,
    pub(crate) mapper: KeyMapper<K, V, KG>,
    pub(crate) joiner: GlobalJoiner<V, VG, VR>,
    pub(crate) left: bool,
}

impl<K: Data, V: Data, KG: 'static, VG: 'static, VR: Data> Processor<K, V, K, VR>
    for GlobalJoin<K, V, KG, VG, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<(), InitError> {
        self.store = Some(ctx.global_store(&self.name)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) {
        let mut key = Vec::new();
        if let Err(e) = self
            .key
            .serialize(&(self.mapper)(&r.key, &r.value), &mut key)
        {
            return ctx.fail(format!("global table {}: {e}", self.name));
        }
        let store = self.store.as_ref().expect(OPENED_IN_INIT);
        let found = match store
            .get(&key)
            .map(|v| self.value.deserialize(Some(&v)))
            .transpose()
        {
            Ok(found) => found,
            Err(e) => return ctx.fail(format!("global table {}: {e}", self.name)),
        };
        if found.is_some() || self.left {
            let v = (self.joiner)(&r.value, found.as_ref());
            ctx.forward(r.with_value(v));
        }
    }
}
