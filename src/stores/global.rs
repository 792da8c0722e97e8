//! The contents of a global table, shared by every stream thread of a
//! worker (the DSL side is `topology::GlobalKTable`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The contents of a global table: every partition of its topic, kept in
/// memory and shared by all stream threads of a worker. It is rebuilt from
/// the topic itself at start (the topic is its own changelog) before any
/// task processes a record, then follows the topic.
#[derive(Debug, Default)]
pub struct GlobalStore {
    name: String,
    data: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl GlobalStore {
    /// An empty table named `name`.
    pub(crate) fn new(name: &str) -> Self {
        GlobalStore {
            name: name.to_owned(),
            data: RwLock::default(),
        }
    }

    /// Applies an upsert, or a delete for a null value.
    pub(crate) fn apply(&self, key: &[u8], value: Option<&[u8]>) {
        let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(v) => {
                data.insert(key.to_vec(), v.to_vec());
            }
            None => {
                data.remove(key);
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.data
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.data.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The global tables of one worker (or test driver): a store per table its
/// topology declares, created empty here and filled from their topics by
/// the runtime, shared by the worker's stream threads. The topology only
/// names them, as Kafka Streams' `GlobalKTable` does beside the state its
/// runtime keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobalTables(Arc<[(String, Arc<GlobalStore>)]>);

impl GlobalTables {
    /// Empty stores for `tables`, as (topic, store name).
    pub(crate) fn new<'a>(tables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        GlobalTables(
            tables
                .into_iter()
                .map(|(topic, store)| (topic.to_owned(), Arc::new(GlobalStore::new(store))))
                .collect(),
        )
    }

    /// The store filled from `topic`.
    pub(crate) fn for_topic(&self, topic: &str) -> Option<&Arc<GlobalStore>> {
        self.0.iter().find(|(t, _)| t == topic).map(|(_, s)| s)
    }

    /// The store named `name`.
    pub(crate) fn named(&self, name: &str) -> Option<&Arc<GlobalStore>> {
        self.0
            .iter()
            .find(|(_, s)| s.name() == name)
            .map(|(_, s)| s)
    }

    /// Every (topic, store).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Arc<GlobalStore>)> {
        self.0.iter().map(|(t, s)| (t.as_str(), s))
    }
}
