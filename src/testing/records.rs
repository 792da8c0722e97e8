//! The records of the test driver: typed topics to pipe into and read
//! from, and records as the driver stores, takes and returns them.

use std::sync::Arc;

use crate::processor::Headers;
use crate::serde::Serde;

/// A topic with the serdes used to write or read it in a test.
pub struct TestTopic<K: 'static, V: 'static> {
    pub(super) name: String,
    pub(super) key: Arc<dyn Serde<K>>,
    pub(super) value: Arc<dyn Serde<V>>,
}

impl<K: 'static, V: 'static> TestTopic<K, V> {
    /// `name`, read and written with the given serdes.
    pub fn new(name: &str, key: impl Serde<K>, value: impl Serde<V>) -> Self {
        TestTopic {
            name: name.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

/// A record as the driver stored it in a topic, undecoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTestRecord {
    /// Partition it landed on.
    pub partition: i32,
    /// Key bytes (`None` is null).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None` is null).
    pub value: Option<Vec<u8>>,
    /// Timestamp, epoch milliseconds.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

/// A raw record for [`TopologyTestDriver::pipe_batch`](super::TopologyTestDriver::pipe_batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// Topic.
    pub topic: String,
    /// Partition; `None` places it by key.
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp.
    pub timestamp: i64,
}

/// A decoded output record and the partition it landed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord<K, V> {
    /// Partition.
    pub partition: i32,
    /// Key.
    pub key: K,
    /// Value.
    pub value: V,
    /// Timestamp, epoch milliseconds.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}
