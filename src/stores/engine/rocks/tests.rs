//! Tests of the RocksDB engine: reopening, range reads beside writes,
//! persisting on close, shared memory accounting and extra options.

use super::super::tests::TempDir;
use super::*;

fn small_config() -> RocksConfig {
    RocksConfig {
        memory_budget: 32 * MIB,
        ..RocksConfig::default()
    }
}

#[test]
fn reopen_after_flush_finds_the_data() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("a/b/store");
    let shared = RocksShared::new(&small_config());
    {
        let mut engine = RocksEngine::open(&path, &shared).unwrap();
        assert_eq!(engine.path(), path);
        let ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..100u32)
            .map(|i| (i.to_be_bytes().to_vec(), Some(format!("v{i}").into_bytes())))
            .chain([(7u32.to_be_bytes().to_vec(), None)])
            .collect();
        engine
            .write(&mut ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
            .unwrap();
        engine
            .delete_range(&10u32.to_be_bytes(), &20u32.to_be_bytes())
            .unwrap();
        engine.flush().unwrap();
        assert!(engine.int_property("rocksdb.num-live-versions").is_some());
        assert_eq!(engine.int_property("rocksdb.no-such-property"), None);
    }
    let engine = RocksEngine::open(&path, &shared).unwrap();
    assert_eq!(
        engine.get(&5u32.to_be_bytes()).unwrap(),
        Some(b"v5".to_vec())
    );
    assert_eq!(engine.get(&7u32.to_be_bytes()).unwrap(), None);
    assert_eq!(engine.get(&15u32.to_be_bytes()).unwrap(), None);
    assert_eq!(
        engine.get(&99u32.to_be_bytes()).unwrap(),
        Some(b"v99".to_vec())
    );
    let mut n = 0;
    engine
        .range(None, None, &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 100 - 1 - 10);
}

#[test]
fn range_reads_see_every_write_before_them() {
    let dir = TempDir::new("iterator");
    let shared = RocksShared::new(&small_config());
    let mut engine = RocksEngine::open(&dir.path().join("s"), &shared).unwrap();
    let keys = |engine: &RocksEngine, from: &[u8], to: &[u8], rev: bool| {
        let mut seen = Vec::new();
        let mut visit = |k: &[u8], _: &[u8]| {
            seen.push(k[0]);
            true
        };
        if rev {
            engine.range_rev(Some(from), Some(to), &mut visit).unwrap();
        } else {
            engine.range(Some(from), Some(to), &mut visit).unwrap();
        }
        seen
    };
    let put = |engine: &mut RocksEngine, k: u8, v: Option<&[u8]>| {
        engine.write(&mut [(&[k][..], v)].into_iter()).unwrap();
    };
    put(&mut engine, 1, Some(b"a"));
    put(&mut engine, 3, Some(b"c"));
    assert_eq!(keys(&engine, &[0], &[9], false), [1, 3]);
    // The iterator of that read must not hide what is written next.
    put(&mut engine, 2, Some(b"b"));
    put(&mut engine, 1, None);
    assert_eq!(keys(&engine, &[0], &[9], false), [2, 3]);
    assert_eq!(keys(&engine, &[0], &[3], true), [2]);
    engine.delete_range(&[3], &[4]).unwrap();
    assert_eq!(keys(&engine, &[0], &[9], false), [2]);
    engine.flush().unwrap();
    put(&mut engine, 5, Some(b"e"));
    assert_eq!(keys(&engine, &[0], &[9], true), [5, 2]);
    // A range read from within another's visit gets its own iterator.
    let mut pairs = Vec::new();
    engine
        .range(None, None, &mut |outer, _| {
            engine
                .range(None, None, &mut |inner, _| {
                    pairs.push((outer[0], inner[0]));
                    true
                })
                .unwrap();
            true
        })
        .unwrap();
    assert_eq!(pairs, [(2, 2), (2, 5), (5, 2), (5, 5)]);
}

#[test]
fn drop_without_flush_persists_on_close() {
    let dir = TempDir::new("close");
    let shared = RocksShared::new(&small_config());
    {
        let mut engine = RocksEngine::open(dir.path(), &shared).unwrap();
        engine
            .write(&mut [(b"k" as &[u8], Some(b"v" as &[u8]))].into_iter())
            .unwrap();
    }
    let engine = RocksEngine::open(dir.path(), &shared).unwrap();
    assert_eq!(engine.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn memory_is_accounted_in_the_shared_cache() {
    let dir = TempDir::new("shared");
    let shared = RocksShared::new(&small_config());
    assert_eq!(shared.memtable_usage(), 0);
    let mut engines: Vec<RocksEngine> = (0..4)
        .map(|i| RocksEngine::open(&dir.path().join(i.to_string()), &shared).unwrap())
        .collect();
    let value = [7u8; 100];
    for (i, engine) in engines.iter_mut().enumerate() {
        let keys: Vec<[u8; 8]> = (0..1000u64)
            .map(|k| (k * 4 + i as u64).to_be_bytes())
            .collect();
        engine
            .write(&mut keys.iter().map(|k| (k.as_slice(), Some(value.as_slice()))))
            .unwrap();
    }
    let memtables = shared.memtable_usage();
    assert!(memtables > 4 * 1000 * 100, "memtable usage {memtables}");
    // The write-buffer manager reserves memtable memory in the cache.
    assert!(
        shared.cache_usage() >= memtables,
        "cache {}",
        shared.cache_usage()
    );
    for engine in &mut engines {
        engine.flush().unwrap();
    }
    assert!(shared.memtable_usage() < memtables);
    for (i, engine) in engines.iter().enumerate() {
        let key = 4 + i as u64;
        assert_eq!(
            engine.get(&key.to_be_bytes()).unwrap(),
            Some(value.to_vec())
        );
        assert_eq!(engine.get(&(key + 1).to_be_bytes()).unwrap(), None);
    }
    assert!(format!("{shared:?}").contains("memtable_usage"));
}

#[test]
fn extra_options_apply_and_keep_the_shared_memory() {
    let dir = TempDir::new("options");
    let mut config = small_config();
    config
        .options
        .insert("max_write_buffer_number".into(), "4".into());
    config
        .options
        .insert("level0_file_num_compaction_trigger".into(), "8".into());
    let shared = RocksShared::new(&config);
    let mut engine = RocksEngine::open(dir.path(), &shared).unwrap();
    engine
        .write(&mut [(b"k" as &[u8], Some([1u8; 1000].as_slice()))].into_iter())
        .unwrap();
    assert!(shared.memtable_usage() > 0);
    assert!(shared.cache_usage() > 0);
    let options = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("OPTIONS-")
        })
        .unwrap();
    let text = std::fs::read_to_string(options).unwrap();
    assert!(text.contains("max_write_buffer_number=4"), "{text}");
    assert!(text.contains("level0_file_num_compaction_trigger=8"));
    assert!(text.contains("block_size=16384"));
    assert!(text.contains("cache_index_and_filter_blocks=true"));
    assert!(text.contains("pin_l0_filter_and_index_blocks_in_cache=true"));
    assert!(text.contains("compression=kLZ4Compression"));
}

#[test]
fn bad_options_fail_open() {
    let dir = TempDir::new("bad");
    for (name, value) in [("no_such_option", "1"), ("max_write_buffer_number", "x;y")] {
        let mut config = small_config();
        config.options.insert(name.into(), value.into());
        let shared = RocksShared::new(&config);
        match RocksEngine::open(dir.path(), &shared) {
            Err(StoreError::Rocks(message)) => assert!(!message.is_empty()),
            other => panic!("{name}={value}: {other:?}"),
        }
    }
}

#[test]
fn default_config() {
    let config = RocksConfig::default();
    assert_eq!(config.memory_budget, 256 * MIB);
    assert_eq!(config.write_buffer_ratio, 0.5);
    assert_eq!(config.write_buffer_size, 16 * MIB);
    assert_eq!(config.bloom_bits_per_key, 10.0);
    assert_eq!(config.block_size, 16 * 1024);
    assert!(config.options.is_empty());
}
