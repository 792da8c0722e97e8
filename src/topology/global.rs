//! Global tables: a topic replicated in full to every worker, for joins
//! that need no co-partitioning.

use std::sync::Arc;

use super::builder::{KStream, StreamsBuilder};
use super::operator::Operator;
use crate::operators::join::{GlobalJoin, GlobalJoiner, KeyMapper};
use crate::processor::Data;
use crate::serde::Serde;

/// A global table of `K` to `V`.
pub struct GlobalKTable<K, V> {
    store: String,
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
        self.graph()
            .borrow_mut()
            .globals
            .push((topic.to_owned(), store.to_owned()));
        GlobalKTable {
            store: store.to_owned(),
            key: Arc::new(key_serde),
            value: Arc::new(value_serde),
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
                name: store.clone(),
                store: None,
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
