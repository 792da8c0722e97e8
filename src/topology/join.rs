//! Joins: stream-table and table-table, on co-partitioned inputs.
//!
//! Both sides of a join run in one task: the join node uses the other
//! side's store, which puts both inputs in one sub-topology, so partition
//! `p` of each input meets partition `p` of the other.

use std::sync::Arc;

use super::builder::KStream;
use super::operator::Operator;
use super::table::{KTable, KvSerdes};
use crate::operators::aggregate::StoreAccess;
use crate::operators::join::{StreamJoiner, StreamTableJoin, TableJoiner, TableTableSide};
use crate::processor::Data;

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

impl<K: Data, V: Data> KStream<K, V> {
    /// Inner stream-table join: each record meets the table's current value
    /// for its key; records whose key is absent from the table are dropped.
    ///
    /// ```
    /// use eddy::serde::I64Serde;
    /// use eddy::testing::TestTopic;
    /// use eddy::{StreamsBuilder, StringSerde, TopologyTestDriver};
    ///
    /// let b = StreamsBuilder::new();
    /// let prices = b.table("prices", StringSerde, I64Serde, "prices");
    /// b.stream("orders", StringSerde, I64Serde)
    ///     .join_table(&prices, |qty: &i64, price: &i64| qty * price)
    ///     .to("totals", StringSerde, I64Serde);
    /// let mut driver = TopologyTestDriver::new(b.build().unwrap());
    /// let price = TestTopic::new("prices", StringSerde, I64Serde);
    /// driver.pipe(&price, "pen".into(), 3, 0).unwrap();
    /// let orders = TestTopic::new("orders", StringSerde, I64Serde);
    /// driver.pipe(&orders, "pen".into(), 2, 1).unwrap();
    /// driver.pipe(&orders, "ink".into(), 5, 2).unwrap(); // no price: dropped
    /// let totals = TestTopic::new("totals", StringSerde, I64Serde);
    /// assert_eq!(driver.read_key_values(&totals).unwrap(), [("pen".into(), 6)]);
    /// ```
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
