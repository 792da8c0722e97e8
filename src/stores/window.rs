//! The typed window store handle.
//!
//! Keys are laid out time first (`window start ‖ key`) by default, so
//! expiring old windows is one range delete and scanning the windows that
//! closed is one ordered scan. Stores declared with the key-first layout
//! (for joins) split time into segments of half the retention (at least
//! 60 s) and lay keys
//! out `segment ‖ key length ‖ key ‖ window start`, as Kafka Streams'
//! segmented stores do: reading one key's windows is one seek per segment,
//! and expiry drops whole segments.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::state::StoreState;
use super::{
    length_prefixed, serde_error, sortable, store_error, unsortable, StateError, StoreSpec,
};
use crate::serde::{Serde, SerdeError};

/// A window store: values per (key, window start).
pub struct WindowStore<K, V> {
    pub(crate) state: Rc<RefCell<StoreState>>,
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

/// The bytes after the window start in the keys of a store that keeps
/// duplicates: the sequence of [`WindowStore::put_duplicate`].
const SEQUENCE_LEN: usize = 16;

/// The shortest segment of the key-first layout (Kafka Streams uses the
/// same floor for its segmented stores): half the retention, at least 60 s.
const SEGMENT_MIN: i64 = 60_000;

/// A visitor of decoded entries: `(key bytes, window start, value bytes)`.
type Visit<'a> = dyn FnMut(&[u8], i64, &[u8]) -> Result<(), SerdeError> + 'a;

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            state: self.state.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl StoreSpec {
    /// A window store's segment length in the key-first layout, or `None`
    /// for the time-first one.
    pub(crate) fn segment(&self) -> Option<i64> {
        self.key_first
            .then(|| (self.retention / 2).max(SEGMENT_MIN))
    }
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    /// The segment length of the key-first layout, or `None` for the
    /// time-first one.
    fn segments(&self) -> Option<i64> {
        self.state.borrow().spec.segment()
    }

    fn encode(&self, key: &K, start: i64) -> Result<Vec<u8>, StateError> {
        if let Some(segment) = self.segments() {
            // Room for a short key and a sequence: one allocation.
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(&sortable(start.div_euclid(segment) * segment));
            length_prefixed(&*self.key, key, &mut buf).map_err(|e| serde_error(&self.state, e))?;
            buf.extend_from_slice(&sortable(start));
            return Ok(buf);
        }
        let mut buf = sortable(start).to_vec();
        self.key
            .serialize(key, &mut buf)
            .map_err(|e| serde_error(&self.state, e))?;
        Ok(buf)
    }

    /// An encoded store key's (key bytes, window start), or `None` if it
    /// is not laid out as `suffix` (the sequence length after the start, or
    /// `None` for the time-first layout) says: such entries (of another
    /// layout, written by an older version) are skipped.
    fn split(k: &[u8], suffix: Option<usize>) -> Option<(&[u8], i64)> {
        let Some(suffix) = suffix else {
            return (k.len() >= 8).then(|| (&k[8..], unsortable(k)));
        };
        let len = u32::from_be_bytes(k.get(8..12)?.try_into().ok()?) as usize;
        let key = k.get(12..12 + len)?;
        let start = &k[12 + len..];
        (start.len() == 8 + suffix).then(|| (key, unsortable(start)))
    }

    /// The layout [`split`](Self::split) expects.
    fn suffix(&self) -> Option<usize> {
        let spec = &self.state.borrow().spec;
        spec.key_first
            .then_some(if spec.duplicates { SEQUENCE_LEN } else { 0 })
    }

    /// Calls `visit(key bytes, start, value bytes)` for the entries of the
    /// encoded range `[from, to)` (of the write cache alone unless
    /// `engine`), stopping at its first error.
    fn each(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        engine: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), StateError> {
        let suffix = self.suffix();
        let mut failed = None;
        let state = self.state.borrow();
        let read = if engine {
            StoreState::range
        } else {
            StoreState::cached_range
        };
        read(&state, from, to, &mut |k, v| {
            let Some((key, start)) = Self::split(k, suffix) else {
                return true;
            };
            match visit(key, start, v) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .map_err(|e| store_error(&self.state, e))?;
        match failed {
            Some(e) => Err(serde_error(&self.state, e)),
            None => Ok(()),
        }
    }

    /// The decoded entries of the encoded range `[from, to)` for which
    /// `keep(key bytes, start)` holds.
    fn scan(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        engine: bool,
        keep: &dyn Fn(&[u8], i64) -> bool,
    ) -> Result<Vec<(K, i64, V)>, StateError> {
        let mut out = Vec::new();
        self.each(from, to, engine, &mut |key, start, v| {
            if keep(key, start) {
                let key = self.key.deserialize(Some(key))?;
                out.push((key, start, self.value.deserialize(Some(v))?));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The value of `key` in the window starting at `start`.
    pub fn get(&self, key: &K, start: i64) -> Result<Option<V>, StateError> {
        let k = self.encode(key, start)?;
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

    /// Sets (or with `None` removes) the value of `key` in the window
    /// starting at `start`.
    pub fn put(&self, key: &K, start: i64, value: Option<&V>) -> Result<(), StateError> {
        let k = self.encode(key, start)?;
        self.write(k, start, value)
    }

    /// Adds `value` to the window of `key` starting at `start`, beside the
    /// values already there, without reading them: in a store declared
    /// [`with_duplicates`](crate::stores::StoreSpec::with_duplicates),
    /// [`fetch`](Self::fetch) returns every value so added, ordered by
    /// `sequence`; writing again with the same sequence replaces that value.
    /// In a store without duplicates this is [`put`](Self::put). [`get`](Self::get)
    /// does not see duplicates.
    pub fn put_duplicate(
        &self,
        key: &K,
        start: i64,
        sequence: u128,
        value: &V,
    ) -> Result<(), StateError> {
        let mut k = self.encode(key, start)?;
        if self.state.borrow().spec.duplicates {
            k.extend_from_slice(&sequence.to_be_bytes());
        }
        self.write(k, start, Some(value))
    }

    fn write(&self, k: Vec<u8>, start: i64, value: Option<&V>) -> Result<(), StateError> {
        let v = value
            .map(|v| {
                let mut buf = Vec::new();
                self.value.serialize(v, &mut buf).map(|()| buf)
            })
            .transpose()
            .map_err(|e| serde_error(&self.state, e))?;
        let mut state = self.state.borrow_mut();
        state.note_window(start);
        state.put(k, v);
        Ok(())
    }

    /// Every (key, window start, value) with `from <= start < to`: by start
    /// then key (time-first layout), or by segment, key, start (key-first).
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>, StateError> {
        let (lo, hi) = match self.segments() {
            Some(segment) => (
                sortable(from.div_euclid(segment) * segment),
                sortable(
                    to.div_euclid(segment)
                        .saturating_add(1)
                        .saturating_mul(segment),
                ),
            ),
            None => (sortable(from), sortable(to)),
        };
        let engine = from <= self.engine_latest_start()?;
        self.scan(Some(&lo), Some(&hi), engine, &|_, start| {
            from <= start && start < to
        })
    }

    /// The latest window start the engine may hold (see
    /// [`StoreState::engine_latest_start`]).
    fn engine_latest_start(&self) -> Result<i64, StateError> {
        let latest = self.state.borrow_mut().engine_latest_start();
        latest.map_err(|e| store_error(&self.state, e))
    }

    /// The windows of `key` with `from <= start < to`, as (start, value).
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, StateError> {
        let latest = self.engine_latest_start()?;
        let Some(segment) = self.segments() else {
            let mut k = Vec::new();
            self.key
                .serialize(key, &mut k)
                .map_err(|e| serde_error(&self.state, e))?;
            let (lo, hi) = (sortable(from), sortable(to));
            let found = self.scan(Some(&lo), Some(&hi), from <= latest, &|kb, _| {
                kb == k.as_slice()
            })?;
            return Ok(found.into_iter().map(|(_, s, v)| (s, v)).collect());
        };
        // One seek per segment the range overlaps (none where the engine
        // holds no window that late). The bounds are `segment ‖ key ‖
        // start`, both in one buffer, rewritten per segment.
        let mut bounds = Vec::with_capacity(96);
        bounds.extend_from_slice(&[0; 8]);
        length_prefixed(&*self.key, key, &mut bounds).map_err(|e| serde_error(&self.state, e))?;
        bounds.extend_from_slice(&[0; 8]);
        let len = bounds.len();
        bounds.extend_from_within(..);
        let mut out = Vec::new();
        let mut seg = from.div_euclid(segment) * segment;
        while seg < to {
            let first = from.max(seg);
            let (lo, hi) = bounds.split_at_mut(len);
            for (bound, t) in [(&mut *lo, first), (hi, to.min(seg.saturating_add(segment)))] {
                bound[..8].copy_from_slice(&sortable(seg));
                bound[len - 8..].copy_from_slice(&sortable(t));
            }
            let (lo, hi) = bounds.split_at(len);
            self.each(Some(lo), Some(hi), first <= latest, &mut |_, start, v| {
                out.push((start, self.value.deserialize(Some(v))?));
                Ok(())
            })?;
            seg = seg.saturating_add(segment);
        }
        Ok(out)
    }

    /// Drops every window starting before `start` (retention; not logged:
    /// the changelog's own retention drops them there).
    ///
    /// The key-first layout drops whole segments only, those that end by
    /// `start`; in a store that keeps duplicates, its other windows
    /// starting before `start` that are still in the write cache are left
    /// out when it is flushed (neither written nor logged).
    pub fn expire_before(&self, start: i64) -> Result<(), StateError> {
        let bound = match self.segments() {
            Some(segment) => start.div_euclid(segment) * segment,
            None => start,
        };
        let suffix = self.suffix();
        let mut state = self.state.borrow_mut();
        // Only where no write replaces another: elsewhere an older value
        // already in the engine would be read in place of the one left out.
        if let (true, Some(suffix)) = (state.spec.duplicates, suffix) {
            state.forget_before(start, suffix);
        }
        state
            .expire(&sortable(i64::MIN), &sortable(bound))
            .map_err(|e| store_error(&self.state, e))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::WindowStore;
    use crate::serde::{I64Serde, StringSerde};
    use crate::stores::engine::{Engine, MemoryEngine, StoreError};
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
    fn duplicates_are_kept_apart_by_sequence() {
        let s = store(StoreSpec::window("w", 1000).with_duplicates());
        for (k, start, seq, v) in [
            ("o1", 10, 2, 20),
            ("o1", 10, 1, 10),
            ("o1", 11, 1, 30),
            ("o10", 10, 1, 40),
            ("o1", 10, 2, 21),
        ] {
            s.put_duplicate(&k.to_owned(), start, seq, &v).unwrap();
        }
        // Ordered by start, then sequence; the same sequence replaced.
        assert_eq!(
            s.fetch(&"o1".into(), 0, 100).unwrap(),
            [(10, 10), (10, 21), (11, 30)]
        );
        assert_eq!(s.fetch(&"o1".into(), 11, 12).unwrap(), [(11, 30)]);
        assert_eq!(s.fetch(&"o10".into(), 0, 100).unwrap(), [(10, 40)]);
        // An entry of the layout without sequences (an older version's) is
        // skipped, not misread.
        s.put(&"o1".to_owned(), 12, Some(&50)).unwrap();
        assert_eq!(s.fetch(&"o1".into(), 12, 13).unwrap(), []);
        s.expire_before(130_000).unwrap();
        assert!(s.fetch(&"o1".into(), 0, 100).unwrap().is_empty());
    }

    #[test]
    fn a_flush_leaves_out_cached_windows_past_retention() {
        let s = store(StoreSpec::window("w", 1000).with_duplicates());
        for start in [10, 20, 30] {
            s.put_duplicate(&"o1".to_owned(), start, 1, &start).unwrap();
        }
        // Within the first segment: nothing is dropped yet, but the two
        // windows before 25 are not flushed.
        s.expire_before(25).unwrap();
        let flushed = s
            .state
            .borrow_mut()
            .flush(&mut crate::runtime::OutputBuffer::default())
            .unwrap();
        assert_eq!(flushed, 1);
        assert_eq!(s.fetch(&"o1".into(), 0, 100).unwrap(), [(30, 30)]);
    }

    #[test]
    fn a_join_cache_drops_windows_past_retention_once_it_has_doubled() {
        let s = store(StoreSpec::window("w", 1000).with_duplicates());
        let o1 = "o1".to_owned();
        for start in 0..1023 {
            s.put_duplicate(&o1, start, 1, &start).unwrap();
        }
        // Below the first purge's size: past retention, but still cached.
        s.expire_before(1000).unwrap();
        assert_eq!(s.fetch(&o1, 0, 2000).unwrap().len(), 1023);
        s.put_duplicate(&o1, 1023, 1, &1023).unwrap();
        s.expire_before(1000).unwrap();
        let kept: Vec<_> = (1000..1024).map(|t| (t, t)).collect();
        assert_eq!(s.fetch(&o1, 0, 2000).unwrap(), kept);
        // The next purge waits until the cache has doubled (and holds at
        // least 1 024 entries again).
        for start in 1024..1047 {
            s.put_duplicate(&o1, start, 1, &start).unwrap();
        }
        s.expire_before(1040).unwrap();
        assert_eq!(s.fetch(&o1, 0, 2000).unwrap().len(), 47);
    }

    /// A memory engine that counts its range reads.
    struct Counting(MemoryEngine, Arc<AtomicUsize>);

    impl Engine for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(key)
        }
        fn write(
            &mut self,
            ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
        ) -> Result<(), StoreError> {
            self.0.write(ops)
        }
        fn range(
            &self,
            from: Option<&[u8]>,
            to: Option<&[u8]>,
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.range(from, to, visit)
        }
        fn range_rev(
            &self,
            from: Option<&[u8]>,
            to: Option<&[u8]>,
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            self.0.range_rev(from, to, visit)
        }
        fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
            self.0.delete_range(from, to)
        }
        fn flush(&mut self) -> Result<(), StoreError> {
            self.0.flush()
        }
        fn approximate_len(&self) -> u64 {
            self.0.approximate_len()
        }
    }

    #[test]
    fn reads_of_windows_later_than_the_engine_holds_skip_it() {
        for spec in [
            StoreSpec::window("w", 1000),
            StoreSpec::window("w", 1000).with_key_first_layout(),
        ] {
            let key_first = spec.key_first;
            let s = store(spec);
            let reads = Arc::new(AtomicUsize::new(0));
            s.state
                .borrow_mut()
                .put_engine(Box::new(Counting(MemoryEngine::new(), reads.clone())));
            let o1 = "o1".to_owned();
            for start in [10, 70_000] {
                s.put(&o1, start, Some(&start)).unwrap();
            }
            let flush = || {
                let mut out = crate::runtime::OutputBuffer::default();
                s.state.borrow_mut().flush(&mut out).unwrap();
            };
            flush();
            s.put(&o1, 80_000, Some(&80_000)).unwrap();
            let read = |from, to| {
                let before = reads.load(Ordering::Relaxed);
                let found = s.fetch(&o1, from, to).unwrap();
                (found, reads.load(Ordering::Relaxed) - before)
            };
            // Later than anything flushed: the cache alone.
            assert_eq!(read(70_001, 90_000), (vec![(80_000, 80_000)], 0));
            // Reaching back to a flushed window: the engine too (one seek
            // per segment in the key-first layout).
            let both = vec![(70_000, 70_000), (80_000, 80_000)];
            assert_eq!(read(70_000, 90_000), (both, 1), "{key_first}");
            let segments = if key_first { 2 } else { 1 };
            let all = vec![(10, 10), (70_000, 70_000), (80_000, 80_000)];
            assert_eq!(read(0, 90_000), (all, segments), "{key_first}");
            // A flush moves the bound; a restored engine is read for it.
            flush();
            assert_eq!(read(75_000, 90_000).1, 1, "{key_first}");
            let engine = s.state.borrow_mut().take_engine();
            s.state.borrow_mut().put_engine(engine);
            assert_eq!(read(80_001, 90_000), (vec![], usize::from(key_first)));
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
            let puts = [
                ("o1", 10, 1),
                ("o10", 10, 2),
                ("o1", 20, 3),
                ("o2", 5, 4),
                ("o1", 70_000, 5),
            ];
            for (k, start, v) in puts {
                s.put(&k.to_owned(), start, Some(&v)).unwrap();
            }
            // Across segments (of 60 s in the key-first layout).
            assert_eq!(
                s.fetch(&"o1".into(), 0, 100_000).unwrap(),
                [(10, 1), (20, 3), (70_000, 5)]
            );
            assert_eq!(s.fetch(&"o1".into(), 11, 70_000).unwrap(), [(20, 3)]);
            assert_eq!(s.fetch(&"o10".into(), 0, 100).unwrap(), [(10, 2)]);
            assert_eq!(s.get(&"o2".into(), 5).unwrap(), Some(4));
            let mut all = s.fetch_all(6, 20).unwrap();
            all.sort();
            assert_eq!(
                all,
                [("o1".into(), 10, 1), ("o10".into(), 10, 2)],
                "{key_first}"
            );
            s.expire_before(65_000).unwrap();
            assert_eq!(
                s.fetch_all(0, 100_000).unwrap(),
                [("o1".into(), 70_000, 5)],
                "{key_first}"
            );
            // Expiring again below the same bound does nothing: a window
            // written there since stays until the bound moves on.
            s.put(&"o2".to_owned(), 5, Some(&6)).unwrap();
            s.expire_before(65_000).unwrap();
            assert_eq!(s.get(&"o2".into(), 5).unwrap(), Some(6), "{key_first}");
            s.expire_before(130_000).unwrap();
            assert!(s.fetch_all(0, 200_000).unwrap().is_empty(), "{key_first}");
        }
    }
}
