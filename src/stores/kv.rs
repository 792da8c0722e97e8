//! The typed key-value store handle.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::state::StoreState;
use super::{serde_error, store_error, StateError};
use crate::serde::Serde;

/// A key-value store as a processor sees it: typed by the serdes given
/// when it was looked up. Cloning the handle is cheap; all clones see the
/// same store.
///
/// Range scans are over the encoded keys' byte order (which for
/// [`StringSerde`](crate::serde::StringSerde) keys is string order).
///
/// A processor declares the stores it uses, opens them in `init` and
/// reads and writes them per record; the runtime changelogs the writes
/// and restores the store when its task moves:
///
/// ```
/// use std::sync::Arc;
/// use eddy::processor::{InitError, Processor, ProcessorContext, Record};
/// use eddy::serde::I64Serde;
/// use eddy::stores::{KeyValueStore, StoreSpec};
/// use eddy::testing::TestTopic;
/// use eddy::{StreamsBuilder, StringSerde, TopologyTestDriver};
///
/// /// Forwards each word with the number of times it was seen.
/// struct Tally(Option<KeyValueStore<String, i64>>);
///
/// impl Processor<String, String, String, i64> for Tally {
///     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), InitError> {
///         let store = ctx.key_value_store("tally", Arc::new(StringSerde), Arc::new(I64Serde))?;
///         self.0 = Some(store);
///         Ok(())
///     }
///
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, i64>) {
///         let store = self.0.as_ref().expect("opened in init");
///         let seen = match store.get(&r.value) {
///             Ok(n) => n.unwrap_or(0) + 1,
///             Err(e) => return ctx.fail(e),
///         };
///         if let Err(e) = store.put(&r.value, &seen) {
///             return ctx.fail(e);
///         }
///         ctx.forward(Record::new(r.value, seen, r.timestamp));
///     }
/// }
///
/// let b = StreamsBuilder::new();
/// b.add_state_store(StoreSpec::key_value("tally"));
/// b.stream("words", StringSerde, StringSerde)
///     .process_with_stores(|| Tally(None), &["tally"])
///     .to("tallies", StringSerde, I64Serde);
/// let mut driver = TopologyTestDriver::new(b.build().unwrap());
/// let words = TestTopic::new("words", StringSerde, StringSerde);
/// for (i, w) in ["to", "be", "to"].into_iter().enumerate() {
///     driver.pipe(&words, "line".into(), w.into(), i as i64).unwrap();
/// }
/// let tallies = TestTopic::new("tallies", StringSerde, I64Serde);
/// assert_eq!(
///     driver.read_key_values(&tallies).unwrap(),
///     [("to".into(), 1), ("be".into(), 1), ("to".into(), 2)]
/// );
/// let store = driver.key_value_store("tally", 0, StringSerde, I64Serde).unwrap();
/// assert_eq!(store.get(&"to".into()).unwrap(), Some(2));
/// ```
pub struct KeyValueStore<K, V> {
    pub(crate) state: Rc<RefCell<StoreState>>,
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        KeyValueStore {
            state: self.state.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl<K: 'static, V: 'static> KeyValueStore<K, V> {
    fn encode_key(&self, key: &K) -> Result<Vec<u8>, StateError> {
        let mut buf = Vec::new();
        self.key
            .serialize(key, &mut buf)
            .map_err(|e| serde_error(&self.state, e))?;
        Ok(buf)
    }

    /// The value under `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        let k = self.encode_key(key)?;
        let raw = self
            .state
            .borrow()
            .get(&k)
            .map_err(|e| store_error(&self.state, e))?;
        raw.map(|v| {
            self.value
                .deserialize(Some(&v))
                .map_err(|e| serde_error(&self.state, e))
        })
        .transpose()
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &K, value: &V) -> Result<(), StateError> {
        let k = self.encode_key(key)?;
        let mut v = Vec::new();
        self.value
            .serialize(value, &mut v)
            .map_err(|e| serde_error(&self.state, e))?;
        self.state.borrow_mut().put(k, Some(v));
        Ok(())
    }

    /// Removes `key` (a tombstone in the changelog).
    pub fn delete(&self, key: &K) -> Result<(), StateError> {
        let k = self.encode_key(key)?;
        self.state.borrow_mut().put(k, None);
        Ok(())
    }

    /// Entries with `from <= key < to` (encoded order); `None` is unbounded.
    pub fn range(&self, from: Option<&K>, to: Option<&K>) -> Result<Vec<(K, V)>, StateError> {
        let from = from.map(|k| self.encode_key(k)).transpose()?;
        let to = to.map(|k| self.encode_key(k)).transpose()?;
        self.scan(from.as_deref(), to.as_deref())
    }

    /// Entries whose encoded key starts with `prefix`.
    pub fn prefix_scan(&self, prefix: &[u8]) -> Result<Vec<(K, V)>, StateError> {
        let end = prefix_end(prefix);
        self.scan(Some(prefix), end.as_deref())
    }

    /// Every entry.
    pub fn all(&self) -> Result<Vec<(K, V)>, StateError> {
        self.scan(None, None)
    }

    fn scan(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(K, V)>, StateError> {
        let mut out = Vec::new();
        let mut failed = None;
        self.state
            .borrow()
            .range(from, to, &mut |k, v| {
                match (
                    self.key.deserialize(Some(k)),
                    self.value.deserialize(Some(v)),
                ) {
                    (Ok(k), Ok(v)) => out.push((k, v)),
                    (Err(e), _) | (_, Err(e)) => failed = Some(e),
                }
                failed.is_none()
            })
            .map_err(|e| store_error(&self.state, e))?;
        match failed {
            Some(e) => Err(serde_error(&self.state, e)),
            None => Ok(out),
        }
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix` (`None` if there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
