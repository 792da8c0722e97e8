//! The in-memory engine: a `BTreeMap` of byte strings.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{empty_range, Engine, StoreError};

/// A BTreeMap engine for in-memory stores and tests.
///
/// Nothing is persisted: [`Engine::flush`] is a no-op, and the contents are
/// lost when the engine is dropped (in-memory stores restore from their
/// changelog).
#[derive(Debug, Default, Clone)]
pub struct MemoryEngine {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Bytes of keys and values held.
    bytes: u64,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The exact number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the engine holds no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn bounds<'a>(from: Option<&'a [u8]>, to: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        from.map_or(Bound::Unbounded, Bound::Included),
        to.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn write(
        &mut self,
        ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
    ) -> Result<(), StoreError> {
        for (key, value) in ops {
            match value {
                Some(value) => match self.map.get_mut(key) {
                    Some(old) => {
                        self.bytes = self.bytes - old.len() as u64 + value.len() as u64;
                        old.clear();
                        old.extend_from_slice(value);
                    }
                    None => {
                        self.bytes += (key.len() + value.len()) as u64;
                        self.map.insert(key.to_vec(), value.to_vec());
                    }
                },
                None => {
                    if let Some(old) = self.map.remove(key) {
                        self.bytes -= (key.len() + old.len()) as u64;
                    }
                }
            }
        }
        Ok(())
    }

    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        // BTreeMap::range panics on an inverted range.
        if empty_range(from, to) {
            return Ok(());
        }
        for (k, v) in self.map.range::<[u8], _>(bounds(from, to)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn range_rev(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if empty_range(from, to) {
            return Ok(());
        }
        for (k, v) in self.map.range::<[u8], _>(bounds(from, to)).rev() {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        // O(k log n) for k deleted keys (split_off + append would be O(n)).
        let doomed: Vec<Vec<u8>> = self
            .map
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            if let Some(old) = self.map.remove(&key) {
                self.bytes -= (key.len() + old.len()) as u64;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn approximate_len(&self) -> u64 {
        self.map.len() as u64
    }

    fn approximate_bytes(&self) -> u64 {
        self.bytes
    }
}
