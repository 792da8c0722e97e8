//! The typed session store handle.
//!
//! Keys are laid out `len(key) ‖ key ‖ end ‖ start`, so a key's sessions
//! ending after some time are one ordered scan.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::kv::prefix_end;
use super::state::StoreState;
use super::{length_prefixed, serde_error, sortable, store_error, unsortable, StateError};
use crate::serde::Serde;
use crate::topology::Window;

/// A session store: values per (key, session window).
pub struct SessionStore<K, V> {
    pub(crate) state: Rc<RefCell<StoreState>>,
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for SessionStore<K, V> {
    fn clone(&self) -> Self {
        SessionStore {
            state: self.state.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl<K: 'static, V: 'static> SessionStore<K, V> {
    fn key_prefix(&self, key: &K) -> Result<Vec<u8>, StateError> {
        let mut buf = Vec::new();
        length_prefixed(&*self.key, key, &mut buf).map_err(|e| serde_error(&self.state, e))?;
        Ok(buf)
    }

    /// Stores (or with `None` removes) the session `window` of `key`.
    pub fn put(&self, key: &K, window: Window, value: Option<&V>) -> Result<(), StateError> {
        let mut k = self.key_prefix(key)?;
        k.extend_from_slice(&sortable(window.end));
        k.extend_from_slice(&sortable(window.start));
        let v = value
            .map(|v| {
                let mut buf = Vec::new();
                self.value.serialize(v, &mut buf).map(|()| buf)
            })
            .transpose()
            .map_err(|e| serde_error(&self.state, e))?;
        self.state.borrow_mut().put(k, v);
        Ok(())
    }

    /// Sessions of `key` that end at or after `earliest_end` and start at
    /// or before `latest_start`, by end time.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(Window, V)>, StateError> {
        let prefix = self.key_prefix(key)?;
        let mut from = prefix.clone();
        from.extend_from_slice(&sortable(earliest_end));
        let to = prefix_end(&prefix);
        let n = prefix.len();
        let mut out = Vec::new();
        let mut failed = None;
        self.state
            .borrow()
            .range(Some(&from), to.as_deref(), &mut |k, v| {
                let window = Window {
                    end: unsortable(&k[n..]),
                    start: unsortable(&k[n + 8..]),
                };
                if window.start <= latest_start {
                    match self.value.deserialize(Some(v)) {
                        Ok(v) => out.push((window, v)),
                        Err(e) => failed = Some(e),
                    }
                }
                failed.is_none()
            })
            .map_err(|e| store_error(&self.state, e))?;
        match failed {
            Some(e) => Err(serde_error(&self.state, e)),
            None => Ok(out),
        }
    }

    /// Every session of `key`.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Window, V)>, StateError> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }
}
