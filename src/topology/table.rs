//! Tables: changelog streams of per-key values.

use std::sync::Arc;

use super::builder::KStream;
use super::operator::Operator;
use crate::operators::stateless::TableFilter;
use crate::processor::Data;
use crate::serde::Serde;

/// One update of a table row: the value before and after (`None` = absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// Value before the update.
    pub old: Option<V>,
    /// Value after the update; `None` is a delete.
    pub new: Option<V>,
}

/// A table: the latest value per key, as a stream of [`Change`]s. Tables
/// made by aggregations or [`StreamsBuilder::table`](super::StreamsBuilder::table)
/// are materialized in a store that can be queried.
///
/// ```
/// use eddy::serde::{I64Serde, Nullable};
/// use eddy::testing::TestTopic;
/// use eddy::{StreamsBuilder, StringSerde, TopologyTestDriver};
///
/// let b = StreamsBuilder::new();
/// b.table("prices", StringSerde, I64Serde, "prices")
///     .filter(|_, price| *price < 100)
///     .to_stream()
///     .to("cheap", StringSerde, Nullable(I64Serde));
/// let mut driver = TopologyTestDriver::new(b.build().unwrap());
/// let prices = TestTopic::new("prices", StringSerde, I64Serde);
/// driver.pipe(&prices, "pen".into(), 3, 0).unwrap();
/// driver.pipe(&prices, "pen".into(), 300, 1).unwrap();
/// // A row that stops passing the filter is deleted downstream.
/// let cheap = TestTopic::new("cheap", StringSerde, Nullable(I64Serde));
/// assert_eq!(
///     driver.read_key_values(&cheap).unwrap(),
///     [("pen".into(), Some(3)), ("pen".into(), None)]
/// );
/// ```
pub struct KTable<K, V> {
    pub(crate) changes: KStream<K, Change<V>>,
    pub(crate) store: Option<String>,
    /// Serdes of the key-value store holding the table, if it is one.
    pub(crate) kv: Option<KvSerdes<K, V>>,
}

/// Key and value serdes of a key-value store.
pub(crate) struct KvSerdes<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for KvSerdes<K, V> {
    fn clone(&self) -> Self {
        KvSerdes {
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl<K: Data, V: Data> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            changes: self.changes.clone(),
            store: self.store.clone(),
            kv: self.kv.clone(),
        }
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// The store holding the table, if materialized.
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// The table's updates as a stream; deletes arrive as `None`.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        self.changes.map_values(|c: Change<V>| c.new)
    }

    /// The stream of changes, old and new values.
    pub fn changes(&self) -> KStream<K, Change<V>> {
        self.changes.clone()
    }

    /// Keeps rows for which `predicate` holds; a row that stops matching is
    /// deleted downstream.
    pub fn filter<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        KTable {
            changes: self.changes.add(
                Operator::keeps_key("ktable-filter"),
                vec![self.changes.node],
                move || TableFilter {
                    predicate: predicate.clone(),
                },
            ),
            store: None,
            kv: None,
        }
    }

    /// Maps each row's value.
    pub fn map_values<V2: Data, F>(&self, mapper: F) -> KTable<K, V2>
    where
        F: Fn(&V) -> V2 + Send + Sync + 'static,
    {
        let mapper = Arc::new(mapper);
        KTable {
            changes: self.changes.map_values(move |c: Change<V>| Change {
                old: c.old.as_ref().map(|v| mapper(v)),
                new: c.new.as_ref().map(|v| mapper(v)),
            }),
            store: None,
            kv: None,
        }
    }
}
