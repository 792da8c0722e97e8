//! The typed window store handle.
//!
//! Keys are laid out time first (`window start ‖ key`) by default, so
//! expiring old windows is one range delete and scanning the windows that
//! closed is one ordered scan. Stores declared with the key-first layout
//! (`key length ‖ key ‖ window start`, for joins) read one key's windows
//! without touching the others.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::state::StoreState;
use super::{sortable, unsortable, StateError};
use crate::serde::{Serde, SerdeError};

/// A window store: values per (key, window start).
pub struct WindowStore<K, V> {
    pub(crate) state: Rc<RefCell<StoreState>>,
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            state: self.state.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    fn store_name(&self) -> String {
        self.state.borrow().name().to_owned()
    }

    fn serde_err(&self, source: SerdeError) -> StateError {
        StateError::Serde {
            store: self.store_name(),
            source,
        }
    }

    fn store_err(&self, source: super::StoreError) -> StateError {
        StateError::Store {
            store: self.store_name(),
            source,
        }
    }

    fn key_first(&self) -> bool {
        self.state.borrow().spec.key_first
    }

    /// The encoded key: with the key-first layout, length-prefixed.
    fn key_bytes(&self, key: &K, key_first: bool) -> Result<Vec<u8>, StateError> {
        let mut buf = if key_first { vec![0; 4] } else { Vec::new() };
        self.key
            .serialize(key, &mut buf)
            .map_err(|e| self.serde_err(e))?;
        if key_first {
            let len = (buf.len() - 4) as u32;
            buf[..4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(buf)
    }

    fn encode(&self, key: &K, start: i64) -> Result<Vec<u8>, StateError> {
        if self.key_first() {
            let mut buf = self.key_bytes(key, true)?;
            buf.extend_from_slice(&sortable(start));
            return Ok(buf);
        }
        let mut buf = sortable(start).to_vec();
        self.key
            .serialize(key, &mut buf)
            .map_err(|e| self.serde_err(e))?;
        Ok(buf)
    }

    /// An encoded store key's (key bytes, window start).
    fn split(k: &[u8], key_first: bool) -> (&[u8], i64) {
        if key_first {
            let len = u32::from_be_bytes(k[..4].try_into().expect("4 bytes")) as usize;
            (&k[4..4 + len], unsortable(&k[4 + len..]))
        } else {
            (&k[8..], unsortable(k))
        }
    }

    /// Visits the decoded entries of the encoded range `[from, to)` for
    /// which `keep(key bytes, start)` holds.
    fn scan(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        keep: &dyn Fn(&[u8], i64) -> bool,
    ) -> Result<Vec<(K, i64, V)>, StateError> {
        let key_first = self.key_first();
        let mut out = Vec::new();
        let mut failed = None;
        self.state
            .borrow()
            .range(from, to, false, &mut |k, v| {
                let (key, start) = Self::split(k, key_first);
                if !keep(key, start) {
                    return true;
                }
                match (
                    self.key.deserialize(Some(key)),
                    self.value.deserialize(Some(v)),
                ) {
                    (Ok(key), Ok(v)) => out.push((key, start, v)),
                    (Err(e), _) | (_, Err(e)) => failed = Some(e),
                }
                failed.is_none()
            })
            .map_err(|e| self.store_err(e))?;
        match failed {
            Some(e) => Err(self.serde_err(e)),
            None => Ok(out),
        }
    }

    /// The value of `key` in the window starting at `start`.
    pub fn get(&self, key: &K, start: i64) -> Result<Option<V>, StateError> {
        let k = self.encode(key, start)?;
        let raw = self.state.borrow().get(&k).map_err(|e| self.store_err(e))?;
        raw.map(|v| {
            self.value
                .deserialize(Some(&v))
                .map_err(|e| self.serde_err(e))
        })
        .transpose()
    }

    /// Sets (or with `None` removes) the value of `key` in the window
    /// starting at `start`.
    pub fn put(&self, key: &K, start: i64, value: Option<&V>) -> Result<(), StateError> {
        let k = self.encode(key, start)?;
        let v = value
            .map(|v| {
                let mut buf = Vec::new();
                self.value.serialize(v, &mut buf).map(|()| buf)
            })
            .transpose()
            .map_err(|e| self.serde_err(e))?;
        self.state.borrow_mut().put(&k, v.as_deref());
        Ok(())
    }

    /// Every (key, window start, value) with `from <= start < to`: by start
    /// then key (time-first layout), or by key then start (key-first).
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>, StateError> {
        if self.key_first() {
            return self.scan(None, None, &|_, start| from <= start && start < to);
        }
        let (lo, hi) = (sortable(from), sortable(to));
        self.scan(Some(&lo), Some(&hi), &|_, _| true)
    }

    /// The windows of `key` with `from <= start < to`, as (start, value).
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, StateError> {
        let key_first = self.key_first();
        let k = self.key_bytes(key, key_first)?;
        let found = if key_first {
            let (mut lo, mut hi) = (k.clone(), k);
            lo.extend_from_slice(&sortable(from));
            hi.extend_from_slice(&sortable(to));
            self.scan(Some(&lo), Some(&hi), &|_, _| true)?
        } else {
            let (lo, hi) = (sortable(from), sortable(to));
            self.scan(Some(&lo), Some(&hi), &|kb, _| kb == k.as_slice())?
        };
        Ok(found.into_iter().map(|(_, s, v)| (s, v)).collect())
    }

    /// Drops every window starting before `start` (retention; not logged:
    /// the changelog's own retention drops them there).
    pub fn expire_before(&self, start: i64) -> Result<(), StateError> {
        if !self.key_first() {
            return self
                .state
                .borrow_mut()
                .expire(&sortable(i64::MIN), &sortable(start))
                .map_err(|e| self.store_err(e));
        }
        // Key first: find the old windows of every key, then drop each.
        let mut old: Vec<Vec<u8>> = Vec::new();
        self.state
            .borrow()
            .range(None, None, false, &mut |k, _| {
                if Self::split(k, true).1 < start {
                    old.push(k.to_vec());
                }
                true
            })
            .map_err(|e| self.store_err(e))?;
        let mut state = self.state.borrow_mut();
        for k in old {
            let mut end = k.clone();
            end.push(0);
            state.expire(&k, &end).map_err(|e| self.store_err(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::sync::Arc;

    use super::WindowStore;
    use crate::serde::{I64Serde, StringSerde};
    use crate::stores::engine::MemoryEngine;
    use crate::stores::{CacheBudget, StoreSpec, StoreState};

    fn store(spec: StoreSpec) -> WindowStore<String, i64> {
        let state = StoreState::new(
            Arc::new(spec),
            Box::new(MemoryEngine::new()),
            CacheBudget::new(1 << 20),
            None,
            Rc::new(Cell::new(0)),
        );
        WindowStore {
            state: Rc::new(RefCell::new(state)),
            key: Arc::new(StringSerde),
            value: Arc::new(I64Serde),
        }
    }

    #[test]
    fn both_layouts_fetch_one_key_and_expire_by_time() {
        for spec in [
            StoreSpec::window("w", 1000),
            StoreSpec::window("w", 1000).with_key_first_layout(),
        ] {
            let key_first = spec.key_first;
            let s = store(spec);
            // "o1" is a prefix of "o10": the layouts must keep them apart.
            for (k, start, v) in [("o1", 10, 1), ("o10", 10, 2), ("o1", 20, 3), ("o2", 5, 4)] {
                s.put(&k.to_owned(), start, Some(&v)).unwrap();
            }
            assert_eq!(s.fetch(&"o1".into(), 0, 100).unwrap(), [(10, 1), (20, 3)]);
            assert_eq!(s.fetch(&"o1".into(), 11, 100).unwrap(), [(20, 3)]);
            assert_eq!(s.fetch(&"o10".into(), 0, 100).unwrap(), [(10, 2)]);
            assert_eq!(s.get(&"o2".into(), 5).unwrap(), Some(4));
            let mut all = s.fetch_all(6, 20).unwrap();
            all.sort();
            assert_eq!(
                all,
                [("o1".into(), 10, 1), ("o10".into(), 10, 2)],
                "{key_first}"
            );
            s.expire_before(15).unwrap();
            let mut left = s.fetch_all(0, 100).unwrap();
            left.sort();
            assert_eq!(left, [("o1".into(), 20, 3)], "{key_first}");
        }
    }
}
