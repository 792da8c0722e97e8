//! The RocksDB engine, with memory bounded per worker.
//!
//! All the stores of a worker share one LRU block cache, and their memtables
//! are charged to that cache through one write-buffer manager, as in Kafka
//! Streams' `BoundedMemoryRocksDBConfig`: the cache's capacity is the whole
//! budget, memtables may take up to `write_buffer_ratio` of it, and index and
//! filter blocks live in the cache too. So RocksDB's memory stays close to
//! `memory_budget` however many stores are open; what is left outside is a
//! small per-database overhead (table readers' metadata, pinned L0 index and
//! filter blocks beyond the cache's capacity, iterators, the write path).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::cell::RefCell;

use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, DBRawIterator, Options, ReadOptions, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};

use super::{empty_range, Engine, StoreError};

const MIB: usize = 1 << 20;

/// Memtables per store (the active one plus those waiting to be flushed).
/// Overridable with `max_write_buffer_number` in [`RocksConfig::options`].
const MAX_WRITE_BUFFER_NUMBER: i32 = 3;

/// Memory and tuning shared by every RocksDB store of a worker.
#[derive(Debug, Clone)]
pub struct RocksConfig {
    /// Total bytes for the shared block cache plus memtables (the worker's memory budget). Default 256 MiB.
    ///
    /// This is the block cache's capacity; memtables are charged to it.
    pub memory_budget: usize,
    /// Fraction of the budget memtables may use (charged to the same cache). Default 0.5.
    ///
    /// When the memtables of all stores together reach it, the store being
    /// written flushes its memtable. Clamped to `0.0..=1.0`; 0 disables the
    /// limit (memtables are still charged to the cache).
    pub write_buffer_ratio: f64,
    /// Per-store memtable size: a store flushes when its memtable reaches it.
    /// Default 16 MiB (as Kafka Streams). With many stores the shared limit
    /// (`memory_budget * write_buffer_ratio`) triggers flushes first, so this
    /// only matters for the few busiest stores.
    pub write_buffer_size: usize,
    /// Bloom filter bits per key (0 disables). Default 10 (about 1% false positives).
    pub bloom_bits_per_key: f64,
    /// Block size. Default 16 KiB, rather than RocksDB's 4 KiB: the index
    /// holds one entry per block and is charged to the cache, so larger
    /// blocks leave more of the budget for data (a quarter of the index
    /// memory), and compress better; the cost, reading and searching 16 KiB
    /// instead of 4 KiB per cache miss, is small for point lookups on local
    /// disks.
    pub block_size: usize,
    /// Extra RocksDB options by name (`max_write_buffer_number`,
    /// `max_background_jobs`, `level0_file_num_compaction_trigger`, ... any
    /// database or column-family option RocksDB parses from an options
    /// string), applied on top of the settings above when each store opens.
    /// Unknown names or bad values make [`RocksEngine::open`] fail with
    /// [`StoreError::Rocks`]. Values must not contain `;`. Block-based table
    /// options (`block_based_table_factory=...`) would replace the shared
    /// cache settings and should not be used.
    pub options: BTreeMap<String, String>,
}

impl Default for RocksConfig {
    fn default() -> Self {
        RocksConfig {
            memory_budget: 256 * MIB,
            write_buffer_ratio: 0.5,
            write_buffer_size: 16 * MIB,
            bloom_bits_per_key: 10.0,
            block_size: 16 * 1024,
            options: BTreeMap::new(),
        }
    }
}

struct SharedInner {
    config: RocksConfig,
    cache: Cache,
    write_buffers: WriteBufferManager,
}

/// The shared block cache and write-buffer manager (memtables charged to the cache), so memory is bounded by
/// `memory_budget` however many stores/partitions are open. Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct RocksShared {
    inner: Arc<SharedInner>,
}

impl std::fmt::Debug for RocksShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksShared")
            .field("config", &self.inner.config)
            .field("cache_usage", &self.cache_usage())
            .field("memtable_usage", &self.memtable_usage())
            .finish()
    }
}

impl RocksShared {
    /// Creates the cache (capacity `memory_budget`) and the write-buffer
    /// manager (limit `memory_budget * write_buffer_ratio`, charged to the
    /// cache, not stalling writers).
    pub fn new(config: &RocksConfig) -> Self {
        let cache = Cache::new_lru_cache(config.memory_budget);
        let ratio = if config.write_buffer_ratio.is_nan() {
            0.0
        } else {
            config.write_buffer_ratio.clamp(0.0, 1.0)
        };
        let limit = (config.memory_budget as f64 * ratio) as usize;
        // No stall: when flushes cannot keep up, memory goes over the limit
        // for a while rather than blocking the stream thread.
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(limit, false, cache.clone());
        RocksShared {
            inner: Arc::new(SharedInner {
                config: config.clone(),
                cache,
                write_buffers,
            }),
        }
    }

    /// The configuration this was created with.
    pub fn config(&self) -> &RocksConfig {
        &self.inner.config
    }

    /// Block cache usage + pinned, in bytes (for metrics).
    ///
    /// That is everything charged to the cache: data, index and filter
    /// blocks (pinned ones included) and the memtable reservations of the
    /// write-buffer manager (in 256 KiB units). Pinned entries are part of
    /// the usage, not added to it again.
    pub fn cache_usage(&self) -> usize {
        self.inner.cache.get_usage()
    }

    /// The part of [`cache_usage`](Self::cache_usage) in use by readers or
    /// pinned (index and filter blocks of L0 files, iterators), in bytes.
    pub fn cache_pinned_usage(&self) -> usize {
        self.inner.cache.get_pinned_usage()
    }

    /// Memory used by memtables, in bytes (WriteBufferManager usage if exposed; else sum over open DBs if feasible, else omit and say so).
    ///
    /// This is the write-buffer manager's count: memory allocated by the
    /// memtables (active and being flushed) of every store sharing this.
    pub fn memtable_usage(&self) -> usize {
        self.inner.write_buffers.get_usage()
    }

    /// The RocksDB options every [`RocksEngine`] opens with: the shared
    /// cache and write-buffer manager, the tuning of [`RocksConfig`], then
    /// [`RocksConfig::options`]. For tools and benchmarks that open a
    /// `rocksdb::DB` themselves; writes must then disable the WAL as the
    /// engine does.
    pub fn db_options(&self) -> Result<Options, StoreError> {
        let config = &self.inner.config;

        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.inner.cache);
        table.set_block_size(config.block_size.max(1024));
        // Index and filter blocks in the cache (charged to the budget),
        // with high priority, and pinned for L0 files, which every read
        // checks.
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        if config.bloom_bits_per_key > 0.0 {
            table.set_bloom_filter(config.bloom_bits_per_key, false);
        }

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&self.inner.write_buffers);
        opts.set_write_buffer_size(config.write_buffer_size.max(64 * 1024));
        opts.set_max_write_buffer_number(MAX_WRITE_BUFFER_NUMBER);
        opts.set_compression_type(DBCompressionType::Lz4);
        // Keep every table file open: no table-cache lookups on reads; the
        // blocks they read are in the shared cache either way. Bound it
        // with `max_open_files` in `options` if file descriptors run short.
        opts.set_max_open_files(-1);
        // Each store keeps its own info LOG; bound them.
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(8 * MIB);

        if config.options.is_empty() {
            return Ok(opts);
        }
        let mut text = String::new();
        for (name, value) in &config.options {
            if value.contains(';') {
                return Err(StoreError::Rocks(format!(
                    "option {name}: value must not contain ';': {value}"
                )));
            }
            text.push_str(name);
            text.push('=');
            text.push_str(value);
            text.push(';');
        }
        // A copy of `opts` with the string applied. The copy shares (C++
        // shared pointers) the cache, table factory and write-buffer
        // manager; the engine also keeps `self` alive as long as the DB.
        Ok(opts.get_options_from_string(&text)?)
    }
}

/// The iterator kept between range reads (see [`RocksEngine`]).
type CachedIterator<'db> = RefCell<Option<DBRawIterator<'db>>>;

self_cell::self_cell!(
    /// A database and the iterator its range reads reuse.
    struct Database {
        owner: DB,
        #[not_covariant]
        dependent: CachedIterator,
    }
);

/// A RocksDB database in its own directory.
///
/// Writes skip the write-ahead log. What was written is persisted by
/// [`Engine::flush`], and also when the engine is dropped (RocksDB flushes
/// unpersisted memtables on close); after a crash, writes since the last
/// flush are lost and restored from the changelog.
///
/// Range reads share one iterator, created at the first read after a
/// write and dropped at the next write: a store is written only when its
/// cache is flushed, so between flushes the database does not change and
/// the iterator's view is current. Creating a RocksDB iterator (a merging
/// iterator over memtables and files, range-tombstone fragments, bounds)
/// cost more than the seek itself on the join path, where every record
/// reads a range.
pub struct RocksEngine {
    // Dropped first: closing the database needs the cache and write-buffer
    // manager of `_shared`.
    db: Database,
    read_opts: ReadOptions,
    write_opts: WriteOptions,
    path: PathBuf,
    /// The options it was opened with: their statistics count its reads.
    options: Options,
    _shared: RocksShared,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksEngine {
    /// Opens (creating if missing) the database at `path` with the shared memory settings.
    pub fn open(path: &Path, shared: &RocksShared) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)?;
        let mut opts = shared.db_options()?;
        // Tickers only (block-cache hits and misses): no histograms or
        // timers on the read path.
        opts.enable_statistics();
        opts.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
        let db = Database::new(DB::open(&opts, path)?, |_| RefCell::new(None));
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        Ok(RocksEngine {
            db,
            read_opts: ReadOptions::default(),
            write_opts,
            path: path.to_path_buf(),
            options: opts,
            _shared: shared.clone(),
        })
    }

    /// The database's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An integer RocksDB property of this database (e.g.
    /// `rocksdb.cur-size-all-mem-tables`, `rocksdb.live-sst-files-size`),
    /// or `None` if unknown.
    pub fn int_property(&self, name: &str) -> Option<u64> {
        self.db().property_int_value(name).ok().flatten()
    }

    fn db(&self) -> &DB {
        self.db.borrow_owner()
    }

    /// Drops the shared iterator: the database is about to change.
    fn forget_iterator(&self) {
        self.db.with_dependent(|_, it| it.borrow_mut().take());
    }

    /// Runs `read` with the shared iterator (created if there is none), or
    /// with a fresh one if a read is already using it (a range read from
    /// within another's visit).
    fn with_iterator<R>(&self, read: impl FnOnce(&mut DBRawIterator<'_>) -> R) -> R {
        self.db
            .with_dependent(|db, cached| match cached.try_borrow_mut() {
                Ok(mut slot) => {
                    read(slot.get_or_insert_with(|| db.raw_iterator_opt(ReadOptions::default())))
                }
                Err(_) => read(&mut db.raw_iterator_opt(ReadOptions::default())),
            })
    }
}

// SAFETY: the only part of a `RocksEngine` that is not `Send` is the cached
// `DBRawIterator` (a pointer to a RocksDB iterator). RocksDB iterators may be
// used from any thread as long as one thread uses them at a time, which
// `&mut`/`RefCell` (the engine is not `Sync`) guarantee.
unsafe impl Send for RocksEngine {}

impl Engine for RocksEngine {
    fn set_bulk_loading(&mut self, on: bool) -> Result<(), StoreError> {
        let value = if on { "true" } else { "false" };
        self.db()
            .set_options(&[("disable_auto_compactions", value)])?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db()
            .get_pinned_opt(key, &self.read_opts)?
            .map(|value| value.to_vec()))
    }

    fn write(
        &mut self,
        ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (key, value) in ops {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.forget_iterator();
        Ok(self.db().write_opt(batch, &self.write_opts)?)
    }

    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if empty_range(from, to) {
            return Ok(());
        }
        // No upper bound: the shared iterator serves every range; the
        // loop stops at `to`.
        self.with_iterator(|it| {
            match from {
                Some(from) => it.seek(from),
                None => it.seek_to_first(),
            }
            while let Some((key, value)) = it.item() {
                if to.is_some_and(|to| key >= to) || !visit(key, value) {
                    return Ok(());
                }
                it.next();
            }
            Ok(it.status()?)
        })
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
        self.with_iterator(|it| {
            match to {
                Some(to) => {
                    // The last key <= to, then step back over `to` itself.
                    it.seek_for_prev(to);
                    if it.key() == Some(to) {
                        it.prev();
                    }
                }
                None => it.seek_to_last(),
            }
            while let Some((key, value)) = it.item() {
                if from.is_some_and(|from| key < from) || !visit(key, value) {
                    return Ok(());
                }
                it.prev();
            }
            Ok(it.status()?)
        })
    }

    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.delete_range(from, to);
        self.forget_iterator();
        Ok(self.db().write_opt(batch, &self.write_opts)?)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        // Also lets go of the memtables and files the iterator pinned.
        self.forget_iterator();
        Ok(self.db().flush()?)
    }

    fn approximate_len(&self) -> u64 {
        self.int_property("rocksdb.estimate-num-keys").unwrap_or(0)
    }

    fn approximate_bytes(&self) -> u64 {
        let live = self
            .int_property("rocksdb.estimate-live-data-size")
            .unwrap_or(0);
        let memtables = self
            .int_property("rocksdb.cur-size-all-mem-tables")
            .unwrap_or(0);
        live + memtables
    }

    fn block_cache_counts(&self) -> Option<(u64, u64)> {
        Some((
            self.options.get_ticker_count(Ticker::BlockCacheHit),
            self.options.get_ticker_count(Ticker::BlockCacheMiss),
        ))
    }
}

#[cfg(test)]
mod tests;
