//! Joins: stream-table and table-table, on co-partitioned inputs.
//!
//! Both sides of a join run in one task: the join node uses the other
//! side's store, which puts both inputs in one sub-topology, so partition
//! `p` of each input meets partition `p` of the other.

use std::sync::Arc;

use super::aggregate::StoreAccess;
use super::builder::KStream;
use super::operator::Operator;
use super::table::{Change, KTable, KvSerdes};
use crate::processor::{Data, InitError, Processor, ProcessorContext, Record, OPENED_IN_INIT};
use crate::stores::KeyValueStore;

/// Which rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Only keys present on both sides.
    Inner,
    /// Every left row, with the right value if any.
    Left,
    /// Every key present on either side.
    Outer,
}

fn materialized<K, V>(table: &KTable<K, V>, role: &str) -> StoreAccess<K, V> {
    let (Some(name), Some(KvSerdes { key, value })) = (table.store.clone(), table.kv.clone())
    else {
        panic!(
            "the {role} table of a join must be materialized in a key-value store: \
             join a table made by StreamsBuilder::table or an aggregation"
        )
    };
    StoreAccess { name, key, value }
}

fn open<K: 'static, V: 'static>(
    access: &StoreAccess<K, V>,
    ctx: &ProcessorContext<'_, impl Data, impl Data>,
) -> Result<Option<KeyValueStore<K, V>>, InitError> {
    let store = ctx.key_value_store(&access.name, access.key.clone(), access.value.clone())?;
    Ok(Some(store))
}

type StreamJoiner<V, VT, VR> = Arc<dyn Fn(&V, Option<&VT>) -> VR + Send + Sync>;

struct StreamTableJoin<K, V, VT, VR> {
    table: StoreAccess<K, VT>,
    store: Option<KeyValueStore<K, VT>>,
    joiner: StreamJoiner<V, VT, VR>,
    left: bool,
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

impl<K: Data, V: Data> KStream<K, V> {
    /// Inner stream-table join: each record meets the table's current value
    /// for its key; records whose key is absent from the table are dropped.
    ///
    /// # Panics
    /// If `table` is not materialized (made by `table` or an aggregation).
    pub fn join_table<VT: Data, VR: Data, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, &VT) -> VR + Send + Sync + 'static,
    {
        self.stream_table(
            table,
            Arc::new(move |v, t| joiner(v, t.expect("inner join"))),
            false,
        )
    }

    /// Left stream-table join: every record is emitted, with `None` when
    /// the table has no value for its key.
    ///
    /// # Panics
    /// If `table` is not materialized.
    pub fn left_join_table<VT: Data, VR: Data, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    {
        self.stream_table(table, Arc::new(joiner), true)
    }

    fn stream_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: StreamJoiner<V, VT, VR>,
        left: bool,
    ) -> KStream<K, VR> {
        let access = materialized(table, "right");
        let store = access.name.clone();
        let out = self.add(
            Operator::keeps_key("stream-table-join"),
            vec![self.node],
            move || StreamTableJoin {
                table: access.clone(),
                store: None,
                joiner: joiner.clone(),
                left,
            },
        );
        out.uses_stores([store]);
        out
    }
}

type TableJoiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// One side of a table-table join: on a change of this side, looks the key
/// up on the other side and forwards the change of the joined row.
struct TableTableSide<K, V, VO, VR> {
    other: StoreAccess<K, VO>,
    store: Option<KeyValueStore<K, VO>>,
    /// Joins (this side, other side) values.
    joiner: TableJoiner<V, VO, VR>,
    kind: JoinKind,
    /// Whether this is the left side (for `Left` joins).
    is_left: bool,
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

impl<K: Data, V: Data> KTable<K, V> {
    /// Joins two tables by key: every change on either side updates the
    /// joined row (tombstones delete it). `joiner` sees the left and right
    /// values; which may be absent depends on `kind`.
    ///
    /// # Panics
    /// If either table is not materialized.
    pub fn join_with<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        kind: JoinKind,
        joiner: F,
    ) -> KTable<K, VR>
    where
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let (left_store, right_store) = (materialized(self, "left"), materialized(other, "right"));
        let joiner = Arc::new(joiner);
        let (j1, j2) = (joiner.clone(), joiner);
        let (ls, rs) = (left_store.name.clone(), right_store.name.clone());
        let from_left = self.changes.add(
            Operator::keeps_key("ktable-join-left"),
            vec![self.changes.node],
            move || TableTableSide {
                other: right_store.clone(),
                store: None,
                joiner: {
                    let j = j1.clone();
                    Arc::new(move |l: Option<&V>, r: Option<&VO>| j(l, r)) as TableJoiner<V, VO, VR>
                },
                kind,
                is_left: true,
            },
        );
        from_left.uses_stores([rs]);
        let from_right = other.changes.add(
            Operator::keeps_key("ktable-join-right"),
            vec![other.changes.node],
            move || TableTableSide {
                other: left_store.clone(),
                store: None,
                joiner: {
                    let j = j2.clone();
                    Arc::new(move |r: Option<&VO>, l: Option<&V>| j(l, r)) as TableJoiner<VO, V, VR>
                },
                kind,
                is_left: false,
            },
        );
        from_right.uses_stores([ls]);
        KTable {
            changes: from_left.merge(&from_right),
            store: None,
            kv: None,
        }
    }

    /// Inner table-table join.
    pub fn join<VO: Data, VR: Data, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.join_with(other, JoinKind::Inner, move |l, r| {
            joiner(l.expect("inner join"), r.expect("inner join"))
        })
    }
}
