//! Storage engines: ordered byte key-value maps that state stores are built on.
//!
//! Every store of every task owns one [`Engine`]: a [`RocksEngine`] (a RocksDB
//! database in its own directory, with memory shared through a
//! [`RocksShared`]) for persistent stores, or a [`MemoryEngine`] (a `BTreeMap`)
//! for in-memory stores and tests. Keys are compared as raw bytes
//! (lexicographically, shorter prefix first), in both engines.
//!
//! Engines do not keep a write-ahead log: the changelog topic is the source of
//! truth, and a store restores from it after a crash. [`Engine::flush`]
//! persists what has been written so far; it is called before a checkpoint
//! (the changelog offset the store's files reflect) is written.

mod memory;
mod rocks;

pub use memory::MemoryEngine;
pub use rocks::{RocksConfig, RocksEngine, RocksShared};

/// Errors of the storage engines.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An error reported by RocksDB (its message), including invalid
    /// [`RocksConfig::options`].
    #[error("rocksdb: {0}")]
    Rocks(String),
    /// An I/O error outside RocksDB (e.g. creating a store's directory).
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Rocks(e.into_string())
    }
}

/// An ordered byte key-value engine: one per store per task. Writes skip the
/// write-ahead log (the changelog topic is the source of truth); `flush`
/// persists everything written so far (called before writing a checkpoint).
///
/// Keys are ordered as byte strings. Ranges are half-open: `from` is
/// included, `to` excluded, and `None` means unbounded on that side; a range
/// whose `from` is not below its `to` is empty.
pub trait Engine: Send {
    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies puts (Some) and deletes (None) atomically, in order (one RocksDB WriteBatch).
    fn write(
        &mut self,
        ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
    ) -> Result<(), StoreError>;
    /// Calls `visit` for each entry with `from <= key < to` (None = unbounded) in ascending key order,
    /// stopping early when `visit` returns false.
    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Same, in descending key order (from the largest key < to down to from).
    fn range_rev(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Deletes every key in [from, to) (RocksDB delete_range). Does nothing if `from >= to`.
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StoreError>;
    /// Persists all writes (RocksDB: flush memtables; memory: no-op).
    fn flush(&mut self) -> Result<(), StoreError>;
    /// Estimated number of keys (RocksDB "rocksdb.estimate-num-keys"; exact for memory).
    fn approximate_len(&self) -> u64;
    /// Estimated bytes held (RocksDB: estimated live data plus memtables;
    /// memory: keys and values). Default: 0.
    fn approximate_bytes(&self) -> u64 {
        0
    }
    /// Block-cache hits and misses of this engine's reads so far, if it
    /// has a block cache (RocksDB). Default: none.
    fn block_cache_counts(&self) -> Option<(u64, u64)> {
        None
    }
    /// Switches bulk loading (restore) on or off: RocksDB defers
    /// compactions while it is on. Default: nothing.
    fn set_bulk_loading(&mut self, _on: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Whether the range `[from, to)` is empty because `from >= to`.
fn empty_range(from: Option<&[u8]>, to: Option<&[u8]>) -> bool {
    matches!((from, to), (Some(f), Some(t)) if f >= t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let dir = std::env::temp_dir().join(format!(
                "eddy-engine-{tag}-{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn put(engine: &mut dyn Engine, key: &[u8], value: &[u8]) {
        engine
            .write(&mut std::iter::once((key, Some(value))))
            .unwrap();
    }

    fn delete(engine: &mut dyn Engine, key: &[u8]) {
        engine.write(&mut std::iter::once((key, None))).unwrap();
    }

    fn collect(engine: &dyn Engine, from: Option<&[u8]>, to: Option<&[u8]>, rev: bool) -> Entries {
        let mut out = Vec::new();
        let mut visit = |k: &[u8], v: &[u8]| {
            out.push((k.to_vec(), v.to_vec()));
            true
        };
        if rev {
            engine.range_rev(from, to, &mut visit).unwrap();
        } else {
            engine.range(from, to, &mut visit).unwrap();
        }
        out
    }

    fn keys(entries: &Entries) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// The behaviour every engine must have. Leaves the engine empty.
    pub(crate) fn suite(engine: &mut dyn Engine) {
        // Empty engine.
        assert_eq!(engine.get(b"a").unwrap(), None);
        assert!(collect(engine, None, None, false).is_empty());
        assert!(collect(engine, None, None, true).is_empty());

        // Put, overwrite, delete; empty keys and values are legal.
        put(engine, b"a", b"1");
        assert_eq!(engine.get(b"a").unwrap(), Some(b("1")));
        put(engine, b"a", b"2");
        assert_eq!(engine.get(b"a").unwrap(), Some(b("2")));
        put(engine, b"", b"");
        assert_eq!(engine.get(b"").unwrap(), Some(vec![]));
        delete(engine, b"a");
        delete(engine, b"");
        delete(engine, b"never-there");
        assert_eq!(engine.get(b"a").unwrap(), None);
        assert_eq!(engine.get(b"").unwrap(), None);

        // Batches apply in order.
        let ops: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"k1", Some(b"v1")),
            (b"k1", None),
            (b"k2", None),
            (b"k2", Some(b"v2")),
            (b"k3", Some(b"x")),
            (b"k3", Some(b"v3")),
        ];
        engine.write(&mut ops.into_iter()).unwrap();
        assert_eq!(engine.get(b"k1").unwrap(), None);
        assert_eq!(engine.get(b"k2").unwrap(), Some(b("v2")));
        assert_eq!(engine.get(b"k3").unwrap(), Some(b("v3")));
        // An empty batch is fine.
        engine.write(&mut std::iter::empty()).unwrap();
        delete(engine, b"k2");
        delete(engine, b"k3");

        // Ranges: byte order, half-open bounds, early stop.
        for k in ["b", "a", "ab", "c", "d\u{7f}", "d", "\u{0}"] {
            put(engine, k.as_bytes(), format!("v{k}").as_bytes());
        }
        // Byte 0xff sorts after every ASCII key.
        put(engine, &[0xff, 0x01], b"high");
        let all: Vec<&[u8]> = vec![b"\0", b"a", b"ab", b"b", b"c", b"d", b"d\x7f", &[0xff, 1]];
        let fwd = collect(engine, None, None, false);
        assert_eq!(keys(&fwd), all);
        assert_eq!(fwd[1], (b("a"), b("va")));
        let rev = collect(engine, None, None, true);
        let mut all_rev = all.clone();
        all_rev.reverse();
        assert_eq!(keys(&rev), all_rev);
        assert_eq!(rev[0], (vec![0xff, 1], b("high")));

        let r = collect(engine, Some(b"a"), Some(b"c"), false);
        assert_eq!(keys(&r), [b"a" as &[u8], b"ab", b"b"]);
        let r = collect(engine, Some(b"a"), Some(b"c"), true);
        assert_eq!(keys(&r), [b"b" as &[u8], b"ab", b"a"]);
        // Bounds that are not keys.
        let r = collect(engine, Some(b"aa"), Some(b"bb"), false);
        assert_eq!(keys(&r), [b"ab" as &[u8], b"b"]);
        let r = collect(engine, Some(b"aa"), Some(b"bb"), true);
        assert_eq!(keys(&r), [b"b" as &[u8], b"ab"]);
        // One side unbounded.
        let r = collect(engine, Some(b"c"), None, false);
        assert_eq!(keys(&r), [b"c" as &[u8], b"d", b"d\x7f", &[0xff, 1]]);
        let r = collect(engine, Some(b"c"), None, true);
        assert_eq!(keys(&r), [&[0xffu8, 1] as &[u8], b"d\x7f", b"d", b"c"]);
        let r = collect(engine, None, Some(b"ab"), false);
        assert_eq!(keys(&r), [b"\0" as &[u8], b"a"]);
        let r = collect(engine, None, Some(b"ab"), true);
        assert_eq!(keys(&r), [b"a" as &[u8], b"\0"]);
        // Empty and inverted ranges.
        assert!(collect(engine, Some(b"b"), Some(b"b"), false).is_empty());
        assert!(collect(engine, Some(b"b"), Some(b"b"), true).is_empty());
        assert!(collect(engine, Some(b"c"), Some(b"a"), false).is_empty());
        assert!(collect(engine, Some(b"c"), Some(b"a"), true).is_empty());
        assert!(collect(engine, Some(b"bb"), Some(b"bc"), false).is_empty());
        assert!(collect(engine, Some(b"bb"), Some(b"bc"), true).is_empty());
        assert!(collect(engine, Some(&[0xff, 2]), None, false).is_empty());
        assert!(collect(engine, None, Some(b""), true).is_empty());

        // Early stop after the second entry.
        for rev in [false, true] {
            let mut seen = Vec::new();
            let mut visit = |k: &[u8], _: &[u8]| {
                seen.push(k.to_vec());
                seen.len() < 2
            };
            if rev {
                engine.range_rev(None, None, &mut visit).unwrap();
                assert_eq!(seen, [vec![0xff, 1], b("d\x7f")]);
            } else {
                engine.range(None, None, &mut visit).unwrap();
                assert_eq!(seen, [b("\0"), b("a")]);
            }
        }

        // delete_range: [from, to), then inverted/empty ranges are no-ops.
        engine.delete_range(b"ab", b"d").unwrap();
        assert_eq!(
            keys(&collect(engine, None, None, false)),
            [b"\0" as &[u8], b"a", b"d", b"d\x7f", &[0xff, 1]]
        );
        assert_eq!(engine.get(b"ab").unwrap(), None);
        assert_eq!(engine.get(b"d").unwrap(), Some(b("vd")));
        engine.delete_range(b"d", b"a").unwrap();
        engine.delete_range(b"d", b"d").unwrap();
        assert_eq!(collect(engine, None, None, false).len(), 5);
        // Keys written after a delete_range are visible.
        put(engine, b"b", b"again");
        assert_eq!(engine.get(b"b").unwrap(), Some(b("again")));
        assert_eq!(
            keys(&collect(engine, Some(b"a"), Some(b"d"), true)),
            [b"b" as &[u8], b"a"]
        );

        // Flush keeps everything readable.
        engine.flush().unwrap();
        assert_eq!(engine.get(b"b").unwrap(), Some(b("again")));
        assert_eq!(collect(engine, None, None, false).len(), 6);

        // Clear for the length check.
        engine.delete_range(b"", &[0xff, 0xff]).unwrap();
        assert!(collect(engine, None, None, false).is_empty());
        assert!(collect(engine, None, None, true).is_empty());
        engine.flush().unwrap();

        // approximate_len on 1000 distinct keys (RocksDB: an estimate).
        let owned: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        engine
            .write(&mut owned.iter().map(|k| (k.as_slice(), Some(k.as_slice()))))
            .unwrap();
        engine.flush().unwrap();
        let n = engine.approximate_len();
        assert!((900..=1100).contains(&n), "approximate_len {n}");
        assert_eq!(collect(engine, None, None, false).len(), 1000);
        assert_eq!(
            engine.get(&500u32.to_be_bytes()).unwrap(),
            Some(500u32.to_be_bytes().to_vec())
        );
        engine
            .delete_range(&0u32.to_be_bytes(), &1000u32.to_be_bytes())
            .unwrap();
        assert!(collect(engine, None, None, false).is_empty());
    }

    #[test]
    fn memory_engine_suite() {
        let mut engine = MemoryEngine::default();
        suite(&mut engine);
    }

    #[test]
    fn rocks_engine_suite() {
        let dir = TempDir::new("suite");
        let shared = RocksShared::new(&RocksConfig::default());
        let mut engine = RocksEngine::open(&dir.path().join("store"), &shared).unwrap();
        suite(&mut engine);
    }

    #[test]
    fn engines_are_send() {
        fn send<T: Send>() {}
        send::<RocksEngine>();
        send::<MemoryEngine>();
        send::<RocksShared>();
        send::<Box<dyn Engine>>();
    }

    #[test]
    fn empty_range_is_from_not_below_to() {
        assert!(!empty_range(None, None));
        assert!(!empty_range(Some(b"z"), None));
        assert!(!empty_range(None, Some(b"")));
        assert!(!empty_range(Some(b"a"), Some(b"b")));
        assert!(empty_range(Some(b"b"), Some(b"b")));
        assert!(empty_range(Some(b"c"), Some(b"b")));
    }
}
