//! Global tables: a topic replicated in full to every worker, for joins
//! that need no co-partitioning.

use std::sync::Arc;

use super::builder::{KStream, StreamsBuilder};
use super::operator::Operator;
use crate::processor::{Data, Processor, ProcessorContext, Record};
use crate::serde::Serde;
use crate::stores::GlobalStore;

/// A global table of `K` to `V`.
pub struct GlobalKTable<K, V> {
    store: Arc<GlobalStore>,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl StreamsBuilder {
    /// A global table of `topic`: every worker holds all of it, restored
    /// before processing starts; null values delete.
    pub fn global_table<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        store: &str,
    ) -> GlobalKTable<K, V> {
        let global = Arc::new(GlobalStore::new(store));
        self.graph()
            .borrow_mut()
            .globals
            .push((topic.to_owned(), global.clone()));
        GlobalKTable {
            store: global,
            key: Arc::new(key_serde),
            value: Arc::new(value_serde),
        }
    }
}

type GlobalJoiner<V, VG, VR> = Arc<dyn Fn(&V, Option<&VG>) -> VR + Send + Sync>;
type KeyMapper<K, V, KG> = Arc<dyn Fn(&K, &V) -> KG + Send + Sync>;

struct GlobalJoin<K, V, KG, VG, VR> {
    store: Arc<GlobalStore>,
    key: Arc<dyn Serde<KG>>,
    value: Arc<dyn Serde<VG>>,
    mapper: KeyMapper<K, V, KG>,
    joiner: GlobalJoiner<V, VG, VR>,
    left: bool,
}

impl<K: Data, V: Data, KG: 'static, VG: 'static, VR: Data> Processor<K, V, K, VR>
    for GlobalJoin<K, V, KG, VG, VR>
{
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) {
        let mut key = Vec::new();
        if let Err(e) = self
            .key
            .serialize(&(self.mapper)(&r.key, &r.value), &mut key)
        {
            return ctx.fail(format!("global table {}: {e}", self.store.name()));
        }
        let found = match self
            .store
            .get(&key)
            .map(|v| self.value.deserialize(Some(&v)))
            .transpose()
        {
            Ok(found) => found,
            Err(e) => return ctx.fail(format!("global table {}: {e}", self.store.name())),
        };
        if found.is_some() || self.left {
            let v = (self.joiner)(&r.value, found.as_ref());
            ctx.forward(r.with_value(v));
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    fn global_join<KG: 'static, VG: 'static, VR: Data>(
        &self,
        table: &GlobalKTable<KG, VG>,
        mapper: KeyMapper<K, V, KG>,
        joiner: GlobalJoiner<V, VG, VR>,
        left: bool,
    ) -> KStream<K, VR> {
        let (store, key, value) = (table.store.clone(), table.key.clone(), table.value.clone());
        self.add(
            Operator::keeps_key("global-join"),
            vec![self.node],
            move || GlobalJoin {
                store: store.clone(),
                key: key.clone(),
                value: value.clone(),
                mapper: mapper.clone(),
                joiner: joiner.clone(),
                left,
            },
        )
    }

    /// Inner join with a global table: `mapper` picks the table key from
    /// each record (any key: no co-partitioning needed); records with no
    /// table value are dropped.
    pub fn join_global<KG: 'static, VG: 'static, VR: Data, M, F>(
        &self,
        table: &GlobalKTable<KG, VG>,
        mapper: M,
        joiner: F,
    ) -> KStream<K, VR>
    where
        M: Fn(&K, &V) -> KG + Send + Sync + 'static,
        F: Fn(&V, &VG) -> VR + Send + Sync + 'static,
    {
        let joiner: GlobalJoiner<V, VG, VR> =
            Arc::new(move |v, g| joiner(v, g.expect("inner join")));
        self.global_join(table, Arc::new(mapper), joiner, false)
    }

    /// Left join with a global table: every record, with `None` when the
    /// table has no value.
    pub fn left_join_global<KG: 'static, VG: 'static, VR: Data, M, F>(
        &self,
        table: &GlobalKTable<KG, VG>,
        mapper: M,
        joiner: F,
    ) -> KStream<K, VR>
    where
        M: Fn(&K, &V) -> KG + Send + Sync + 'static,
        F: Fn(&V, Option<&VG>) -> VR + Send + Sync + 'static,
    {
        self.global_join(table, Arc::new(mapper), Arc::new(joiner), true)
    }
}
