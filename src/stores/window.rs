//! The typed window store handle.
//!
//! Keys are laid out time first (`window start ‖ key`), so expiring old
//! windows is one range delete and scanning the windows that closed is one
//! ordered scan.

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

    fn encode(&self, key: &K, start: i64) -> Result<Vec<u8>, StateError> {
        let mut buf = sortable(start).to_vec();
        self.key
            .serialize(key, &mut buf)
            .map_err(|e| self.serde_err(e))?;
        Ok(buf)
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

    /// Every (key, window start, value) with `from <= start < to`, by start
    /// then key.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>, StateError> {
        let (lo, hi) = (sortable(from), sortable(to));
        let mut out = Vec::new();
        let mut failed = None;
        self.state
            .borrow()
            .range(Some(&lo), Some(&hi), false, &mut |k, v| {
                let start = unsortable(k);
                match (
                    self.key.deserialize(Some(&k[8..])),
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

    /// The windows of `key` with `from <= start < to`, as (start, value).
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, StateError>
    where
        K: PartialEq,
    {
        Ok(self
            .fetch_all(from, to)?
            .into_iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, s, v)| (s, v))
            .collect())
    }

    /// Drops every window starting before `start` (retention; not logged:
    /// the changelog's own retention drops them there).
    pub fn expire_before(&self, start: i64) -> Result<(), StateError> {
        self.state
            .borrow_mut()
            .expire(&sortable(i64::MIN), &sortable(start))
            .map_err(|e| self.store_err(e))
    }
}
