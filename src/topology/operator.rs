//! What an operator is, as a fact of the graph: its name (in descriptions
//! and generated node names) and whether it may change the record key. A
//! grouping or a stateful operator downstream of a key-changing one needs a
//! repartition first (Kafka Streams' `keyChangingOperation` and
//! `repartitionRequired`); the builder method that adds an operator says
//! which it is, so nothing downstream has to guess from names.

/// An operator's identity in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operator {
    name: &'static str,
    changes_key: bool,
}

impl Operator {
    /// An operator that keeps each record's key (filter, map_values, ...).
    pub(crate) const fn keeps_key(name: &'static str) -> Self {
        Operator {
            name,
            changes_key: false,
        }
    }

    /// An operator that may change the key (map, flat_map, select_key, a
    /// custom processor).
    pub(crate) const fn changes_key(name: &'static str) -> Self {
        Operator {
            name,
            changes_key: true,
        }
    }

    /// Its name.
    pub(crate) fn name(self) -> &'static str {
        self.name
    }

    /// Whether it may change the key.
    pub(crate) fn is_key_changing(self) -> bool {
        self.changes_key
    }
}
