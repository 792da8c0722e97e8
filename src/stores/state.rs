//! One store of one task: its engine, its write cache and its changelog.

use std::cell::Cell;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;

use super::engine::{Engine, MemoryEngine, StoreError};
use super::{unsortable, StoreSpec};
use crate::observability::{OpStat, StoreSizes};
use crate::runtime::{OutMeta, OutputBuffer};
use crate::topology::TopicRef;

/// The byte budget of a stream thread's write caches, shared by its stores.
#[derive(Debug)]
pub(crate) struct CacheBudget {
    used: Cell<usize>,
    limit: usize,
}

impl CacheBudget {
    pub(crate) fn new(limit: usize) -> Rc<Self> {
        Rc::new(CacheBudget {
            used: Cell::new(0),
            limit,
        })
    }

    pub(crate) fn is_full(&self) -> bool {
        self.used.get() > self.limit
    }
}

#[derive(Debug)]
struct Dirty {
    value: Option<Vec<u8>>,
    timestamp: i64,
}

/// A store's state within a task. Reads see the write cache first, then the
/// engine; writes stay in the cache (one entry per key) until `flush`.
pub(crate) struct StoreState {
    pub(crate) spec: Arc<StoreSpec>,
    engine: Box<dyn Engine>,
    dirty: BTreeMap<Vec<u8>, Dirty>,
    dirty_bytes: usize,
    budget: Rc<CacheBudget>,
    /// Changelog topic and partition, if logged.
    pub(crate) changelog: Option<(TopicRef, i32)>,
    /// Last changelog offset the engine holds (restored or acknowledged).
    pub(crate) changelog_offset: Option<i64>,
    /// Timestamp given to writes: the task's current stream time.
    pub(crate) now: Rc<Cell<i64>>,
    /// The last range `expire` dropped: asking again for a range within
    /// it does nothing, so the engine is not handed a range tombstone per
    /// call (each one slows every later read of its memtable).
    expired: Option<(Vec<u8>, Vec<u8>)>,
    /// For key-first window stores: cached entries whose window starts
    /// before this (read from the 8 bytes before the last `.1` bytes of
    /// the key) are past retention, and a flush leaves them out.
    past_retention: Option<(i64, usize)>,
    /// Window stores: the latest window start written to the cache since
    /// the last flush (`i64::MIN`: none), and the latest the engine may
    /// hold (`None`: not known).
    cached_latest: i64,
    engine_latest: Option<i64>,
    /// The cache size at which entries past retention are next dropped.
    purge_at: usize,
    /// Exactly-once: ranges expired since the last flush, dropped from the
    /// engine with the cache once the transaction that expired them has
    /// committed (`None`: dropped at once).
    deferred: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Operation counters and clocks (node metrics on).
    pub(crate) ops: Option<Box<StoreOps>>,
}

/// A store's operation counters, by kind: `get`, `put`, `range` and
/// `flush` (the cache written to the engine).
pub(crate) struct StoreOps {
    pub(crate) get: OpStat,
    pub(crate) put: OpStat,
    pub(crate) range: OpStat,
    pub(crate) flush: OpStat,
}

/// The smallest cache (in entries) that is purged of entries past
/// retention.
const PURGE_MIN: usize = 1024;

impl StoreState {
    pub(crate) fn new(
        spec: Arc<StoreSpec>,
        engine: Box<dyn Engine>,
        budget: Rc<CacheBudget>,
        changelog: Option<(TopicRef, i32)>,
        now: Rc<Cell<i64>>,
    ) -> Self {
        StoreState {
            spec,
            engine,
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            budget,
            changelog,
            changelog_offset: None,
            now,
            expired: None,
            past_retention: None,
            cached_latest: i64::MIN,
            engine_latest: None,
            purge_at: PURGE_MIN,
            deferred: None,
            ops: None,
        }
    }

    /// Exactly-once: the engine is written only by [`apply`](Self::apply),
    /// after the transaction that covers the writes committed, so it holds
    /// committed state only (retention drops wait for it too).
    pub(crate) fn transactional(mut self, yes: bool) -> Self {
        self.deferred = yes.then(Vec::new);
        self
    }

    /// A read of committed state alone (the engine; see
    /// [`transactional`](Self::transactional)), for interactive queries
    /// under exactly-once.
    pub(crate) fn committed_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get(key)
    }

    /// Like [`committed_get`](Self::committed_get), of a range.
    pub(crate) fn committed_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.engine.range(from, to, visit)
    }

    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.ops {
            Some(ops) => ops.get.time(|| self.read(key)),
            None => self.read(key),
        }
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.dirty.get(key) {
            Some(d) => Ok(d.value.clone()),
            None => self.engine.get(key),
        }
    }

    /// Writes (or deletes, with `None`) through the cache.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.ops.take() {
            Some(ops) => {
                ops.put.time(|| self.write(key, value));
                self.ops = Some(ops);
            }
            None => self.write(key, value),
        }
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let added = key.len() + value.as_ref().map_or(0, Vec::len);
        let entry = Dirty {
            value,
            timestamp: self.now.get(),
        };
        let removed = match self.dirty.entry(key) {
            Entry::Occupied(mut old) => {
                let size = old.key().len() + old.get().value.as_ref().map_or(0, Vec::len);
                old.insert(entry);
                size
            }
            Entry::Vacant(slot) => {
                slot.insert(entry);
                0
            }
        };
        self.dirty_bytes = self.dirty_bytes + added - removed;
        self.budget
            .used
            .set(self.budget.used.get() + added - removed);
    }

    /// Visits entries with `from <= key < to` of cache and engine merged,
    /// ascending, skipping deletions; stops when `visit` returns false.
    pub(crate) fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        match &self.ops {
            Some(ops) => ops.range.time(|| self.merged_range(from, to, true, visit)),
            None => self.merged_range(from, to, true, visit),
        }
    }

    /// Like [`range`](Self::range), of the cache alone: for a caller that
    /// knows the engine holds nothing in the range (see
    /// [`engine_latest_start`](Self::engine_latest_start)).
    pub(crate) fn cached_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        match &self.ops {
            Some(ops) => ops.range.time(|| self.merged_range(from, to, false, visit)),
            None => self.merged_range(from, to, false, visit),
        }
    }

    fn merged_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        engine: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let bounds = (
            from.map_or(Bound::Unbounded, Bound::Included),
            to.map_or(Bound::Unbounded, Bound::Excluded),
        );
        let mut dirty = self.dirty.range::<[u8], _>(bounds);
        let mut pending = dirty.next();
        let mut stopped = false;
        let mut on_engine = |k: &[u8], v: &[u8]| -> bool {
            while let Some((dk, d)) = pending {
                if dk.as_slice() < k {
                    if let Some(dv) = &d.value {
                        if !visit(dk, dv) {
                            stopped = true;
                            return false;
                        }
                    }
                    pending = dirty.next();
                } else {
                    break;
                }
            }
            if let Some((dk, d)) = pending {
                if dk.as_slice() == k {
                    pending = dirty.next();
                    return match &d.value {
                        Some(dv) => {
                            stopped = !visit(dk, dv);
                            !stopped
                        }
                        None => true,
                    };
                }
            }
            stopped = !visit(k, v);
            !stopped
        };
        if engine {
            self.engine.range(from, to, &mut on_engine)?;
        }
        while let (false, Some((dk, d))) = (stopped, pending) {
            if let Some(dv) = &d.value {
                stopped = !visit(dk, dv);
            }
            pending = dirty.next();
        }
        Ok(())
    }

    /// Notes that a window starting at `start` was written to the cache
    /// (window stores: see [`engine_latest_start`](Self::engine_latest_start)).
    pub(crate) fn note_window(&mut self, start: i64) {
        self.cached_latest = self.cached_latest.max(start);
    }

    /// The latest window start the engine may hold, for a window store
    /// (whose keys begin with the window start or with its segment): known
    /// from the flushes since the engine was opened or restored, else read
    /// from its last key (`i64::MIN` if it is empty). A read of windows
    /// starting later need not look at the engine: most of a join's lookups
    /// are of windows newer than the last flush, and skip a RocksDB seek.
    pub(crate) fn engine_latest_start(&mut self) -> Result<i64, StoreError> {
        if let Some(latest) = self.engine_latest {
            return Ok(latest);
        }
        let mut last = None;
        self.engine.range_rev(None, None, &mut |k, _| {
            last = (k.len() >= 8).then(|| unsortable(&k[..8]));
            false
        })?;
        let latest = match (last, self.spec.segment()) {
            (None, _) => i64::MIN,
            (Some(start), None) => start,
            (Some(seg), Some(len)) => seg.saturating_add(len - 1),
        };
        self.engine_latest = Some(latest);
        Ok(latest)
    }

    /// Drops `[from, to)` from cache and engine without logging (retention).
    /// A range within the one dropped last is not dropped again: what was
    /// written into it since stays until a wider range is expired.
    pub(crate) fn expire(&mut self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        if let Some((f, t)) = &self.expired {
            if f.as_slice() <= from && to <= t.as_slice() {
                return Ok(());
            }
        }
        // Cut `[from, to)` out of the cache whole (a few tree walks), not
        // key by key.
        let mut dropped = self.dirty.split_off(from);
        let mut after = dropped.split_off(to);
        self.dirty.append(&mut after);
        let size: usize = dropped
            .iter()
            .map(|(k, d)| k.len() + d.value.as_ref().map_or(0, Vec::len))
            .sum();
        self.dirty_bytes -= size;
        self.budget.used.set(self.budget.used.get() - size);
        match &mut self.deferred {
            Some(ranges) => ranges.push((from.to_vec(), to.to_vec())),
            None => self.engine.delete_range(from, to)?,
        }
        self.expired = Some((from.to_vec(), to.to_vec()));
        Ok(())
    }

    /// Marks the cached entries of windows starting before `start` as past
    /// retention, for a key-first window store whose keys end with the
    /// window start and `suffix` more bytes: [`flush`](Self::flush) leaves
    /// them out, and once the cache has doubled since it was last purged
    /// they are dropped from it (so that a join's cache holds about what
    /// it can still match, not every window since the last flush).
    pub(crate) fn forget_before(&mut self, start: i64, suffix: usize) {
        self.past_retention = Some((start, suffix));
        if self.dirty.len() >= self.purge_at {
            self.drop_forgotten();
            self.purge_at = (2 * self.dirty.len()).max(PURGE_MIN);
        }
    }

    /// Drops the cached entries past retention (see
    /// [`forget_before`](Self::forget_before)).
    fn drop_forgotten(&mut self) {
        let Some(past) = self.past_retention else {
            return;
        };
        let mut freed = 0;
        self.dirty.retain(|k, d| {
            let keep = !Self::forgotten(past, k);
            if !keep {
                freed += k.len() + d.value.as_ref().map_or(0, Vec::len);
            }
            keep
        });
        self.dirty_bytes -= freed;
        self.budget.used.set(self.budget.used.get() - freed);
    }

    /// Whether a cached entry is past retention (see
    /// [`forget_before`](Self::forget_before)).
    fn forgotten((start, suffix): (i64, usize), key: &[u8]) -> bool {
        let end = key.len().saturating_sub(suffix);
        end >= 8 && unsortable(&key[end - 8..end]) < start
    }

    /// Writes the cache to the engine in one batch and its entries to the
    /// changelog (through `out`), then empties it; entries past retention
    /// are left out of both. Returns how many entries were flushed.
    pub(crate) fn flush(&mut self, out: &mut OutputBuffer) -> Result<usize, StoreError> {
        self.log(out);
        self.apply()
    }

    /// Writes the cache's entries to the changelog (through `out`),
    /// leaving the cache as it is: the first half of a flush under
    /// exactly-once, whose changelog records go into the transaction.
    /// Returns how many were written.
    pub(crate) fn log(&mut self, out: &mut OutputBuffer) -> usize {
        self.drop_forgotten();
        let Some((topic, partition)) = self.changelog else {
            return 0;
        };
        for (k, d) in &self.dirty {
            // Written before the task had a stream time (a store written
            // when a task takes up work its stores held, before any
            // record): 0 lets the producer stamp it now, where the unknown
            // stream time would be a timestamp the broker refuses.
            let meta = OutMeta::new(topic, Some(partition), d.timestamp.max(0));
            out.push_raw(meta, Some(k), d.value.as_deref());
        }
        self.dirty.len()
    }

    /// Writes the cache to the engine in one batch (after the deferred
    /// retention drops) and empties it: the second half of a flush, under
    /// exactly-once once the transaction has committed. Returns how many
    /// entries were written.
    pub(crate) fn apply(&mut self) -> Result<usize, StoreError> {
        match self.ops.take() {
            Some(ops) => {
                let applied = ops.flush.time(|| self.write_engine());
                self.ops = Some(ops);
                applied
            }
            None => self.write_engine(),
        }
    }

    fn write_engine(&mut self) -> Result<usize, StoreError> {
        if let Some(ranges) = self.deferred.as_mut().filter(|r| !r.is_empty()) {
            for (from, to) in std::mem::take(ranges) {
                self.engine.delete_range(&from, &to)?;
            }
        }
        if self.dirty.is_empty() {
            return Ok(0);
        }
        if self.cached_latest > i64::MIN {
            // Known before the write, exact after it.
            self.engine_latest_start()?;
        }
        self.drop_forgotten();
        let dirty = std::mem::take(&mut self.dirty);
        self.purge_at = PURGE_MIN;
        self.engine.write(
            &mut dirty
                .iter()
                .map(|(k, d)| (k.as_slice(), d.value.as_deref())),
        )?;
        if let Some(latest) = &mut self.engine_latest {
            *latest = (*latest).max(self.cached_latest);
        }
        self.cached_latest = i64::MIN;
        self.budget
            .used
            .set(self.budget.used.get() - self.dirty_bytes);
        self.dirty_bytes = 0;
        Ok(dirty.len())
    }

    /// Lends the engine out (to a restore writer thread), leaving an empty
    /// in-memory one until [`put_engine`](Self::put_engine).
    pub(crate) fn take_engine(&mut self) -> Box<dyn Engine> {
        self.engine_latest = None;
        std::mem::replace(&mut self.engine, Box::new(MemoryEngine::new()))
    }

    /// Returns a lent engine.
    pub(crate) fn put_engine(&mut self, engine: Box<dyn Engine>) {
        self.engine = engine;
        self.expired = None;
        self.engine_latest = None;
    }

    /// The engine's sizes and block-cache counters.
    pub(crate) fn sizes(&self) -> StoreSizes {
        StoreSizes {
            keys: self.engine.approximate_len(),
            bytes: self.engine.approximate_bytes(),
            cache: self.engine.block_cache_counts(),
        }
    }

    /// Hands the operation counts since the last call to Prometheus.
    pub(crate) fn report_ops(&self) {
        if let Some(ops) = &self.ops {
            for op in [&ops.get, &ops.put, &ops.range, &ops.flush] {
                op.report();
            }
        }
    }

    /// Persists the engine (before a checkpoint is written).
    pub(crate) fn persist(&mut self) -> Result<(), StoreError> {
        self.engine.flush()
    }

    /// Replaces the engine (after wiping its files).
    pub(crate) fn replace_engine(&mut self, engine: Box<dyn Engine>) {
        self.engine = engine;
        self.changelog_offset = None;
        self.expired = None;
        self.engine_latest = None;
    }
}

impl Drop for StoreState {
    fn drop(&mut self) {
        self.budget
            .used
            .set(self.budget.used.get() - self.dirty_bytes);
    }
}
