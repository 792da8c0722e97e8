//! `RocksEngine` versus a raw `rocksdb::DB` opened with the same options.
//!
//! Each round opens two fresh databases, each with its own `RocksShared` of
//! the default `RocksConfig` (256 MiB budget): one used through the engine
//! (`Engine::write`, `Engine::get`), one raw (`WriteBatch` + `write_opt`
//! with the WAL off, `get_pinned_opt`), opened with the engine's own
//! options (`RocksShared::db_options`). It loads 1 M keys (16 bytes, in
//! random order) with 100-byte values in batches of 1000, then flushes both,
//! waits for their compactions, and does 1 M random point lookups in blocks
//! of 1000. Batches and lookup blocks alternate between the two databases
//! (each pair in turn starting with the other one), and each is timed on
//! its own, so both see the same background flushes and compactions and the
//! same machine load. Three rounds.
//!
//! Run with `cargo bench --bench store`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use eddy::stores::engine::{Engine, RocksConfig, RocksEngine, RocksShared};
use rocksdb::{ReadOptions, WriteBatch, WriteOptions, DB};

const KEYS: usize = 1_000_000;
const BATCH: usize = 1000;
const GETS: usize = 1_000_000;
const GET_BLOCK: usize = 1000;
const VALUE_LEN: usize = 100;
const ROUNDS: usize = 3;

/// splitmix64: deterministic, fast, good enough for shuffling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `user` and 12 decimal digits: 16 bytes, sorted by `i`.
fn key(i: usize) -> [u8; 16] {
    let mut k = *b"user000000000000";
    let mut n = i;
    for b in k[4..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

struct Data {
    /// Keys in insertion order (a random permutation).
    puts: Vec<[u8; 16]>,
    /// Keys to look up (uniformly random, all present).
    gets: Vec<[u8; 16]>,
    /// Value bytes: value `i` is `values[i % 4096..][..100]`.
    values: Vec<u8>,
}

impl Data {
    fn new() -> Self {
        let mut rng = Rng(42);
        let mut order: Vec<usize> = (0..KEYS).collect();
        for i in (1..KEYS).rev() {
            order.swap(i, rng.next() as usize % (i + 1));
        }
        let puts = order.iter().map(|&i| key(i)).collect();
        let gets = (0..GETS).map(|_| key(rng.next() as usize % KEYS)).collect();
        let values = (0..4096 + VALUE_LEN).map(|_| rng.next() as u8).collect();
        Data { puts, gets, values }
    }

    fn value(&self, i: usize) -> &[u8] {
        &self.values[i % 4096..][..VALUE_LEN]
    }
}

/// The engine, or the raw DB with its options.
enum Store {
    Eddy(RocksEngine),
    Raw {
        db: DB,
        write_opts: WriteOptions,
        read_opts: ReadOptions,
    },
}

impl Store {
    fn write(&mut self, data: &Data, base: usize, chunk: &[[u8; 16]]) {
        match self {
            Store::Eddy(engine) => engine
                .write(
                    &mut chunk
                        .iter()
                        .enumerate()
                        .map(|(j, k)| (k.as_slice(), Some(data.value(base + j)))),
                )
                .expect("write"),
            Store::Raw { db, write_opts, .. } => {
                let mut batch = WriteBatch::default();
                for (j, k) in chunk.iter().enumerate() {
                    batch.put(k, data.value(base + j));
                }
                db.write_opt(batch, write_opts).expect("write");
            }
        }
    }

    /// Looks up `keys`; returns the bytes found.
    fn get(&self, keys: &[[u8; 16]]) -> usize {
        let mut found = 0;
        match self {
            Store::Eddy(engine) => {
                for k in keys {
                    if let Some(v) = engine.get(k).expect("get") {
                        found += black_box(v).len();
                    }
                }
            }
            Store::Raw { db, read_opts, .. } => {
                for k in keys {
                    if let Some(v) = db.get_pinned_opt(k, read_opts).expect("get") {
                        found += black_box(&*v).len();
                    }
                }
            }
        }
        found
    }

    fn flush(&mut self) {
        match self {
            Store::Eddy(engine) => engine.flush().expect("flush"),
            Store::Raw { db, .. } => db.flush().expect("flush"),
        }
    }

    fn property(&self, name: &str) -> Option<u64> {
        match self {
            Store::Eddy(engine) => engine.int_property(name),
            Store::Raw { db, .. } => db.property_int_value(name).ok().flatten(),
        }
    }

    /// Waits until the database has no pending or running flush or compaction (at most 60 s).
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let busy = [
                "rocksdb.compaction-pending",
                "rocksdb.num-running-compactions",
                "rocksdb.num-running-flushes",
            ]
            .iter()
            .map(|p| self.property(p).unwrap_or(0))
            .sum::<u64>();
            if busy == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Figures {
    puts: Duration,
    gets: Duration,
}

impl Figures {
    fn puts_per_s(&self, n: usize) -> f64 {
        n as f64 / self.puts.as_secs_f64()
    }

    fn gets_per_s(&self, n: usize) -> f64 {
        n as f64 / self.gets.as_secs_f64()
    }
}

/// One round over `data`: returns the engine's and the raw DB's times.
fn round(data: &Data, root: &std::path::Path, round: usize) -> [Figures; 2] {
    let e_dir = root.join(format!("eddy-{round}"));
    let r_dir = root.join(format!("raw-{round}"));
    let e_shared = RocksShared::new(&RocksConfig::default());
    let r_shared = RocksShared::new(&RocksConfig::default());
    let mut write_opts = WriteOptions::default();
    write_opts.disable_wal(true);
    let raw_opts = r_shared.db_options().expect("options");
    let mut stores = [
        Store::Eddy(RocksEngine::open(&e_dir, &e_shared).expect("open")),
        Store::Raw {
            db: DB::open(&raw_opts, &r_dir).expect("open"),
            write_opts,
            read_opts: ReadOptions::default(),
        },
    ];
    let mut figures = [Figures::default(); 2];

    for (n, chunk) in data.puts.chunks(BATCH).enumerate() {
        for s in [(n + round) % 2, (n + round + 1) % 2] {
            let start = Instant::now();
            stores[s].write(data, n * BATCH, chunk);
            figures[s].puts += start.elapsed();
        }
    }
    for store in &mut stores {
        store.flush();
    }
    for store in &stores {
        store.settle();
    }
    let mut found = [0; 2];
    for (n, keys) in data.gets.chunks(GET_BLOCK).enumerate() {
        for s in [(n + round) % 2, (n + round + 1) % 2] {
            let start = Instant::now();
            found[s] += stores[s].get(keys);
            figures[s].gets += start.elapsed();
        }
    }
    assert_eq!(found, [data.gets.len() * VALUE_LEN; 2]);
    drop(stores);
    let _ = std::fs::remove_dir_all(&e_dir);
    let _ = std::fs::remove_dir_all(&r_dir);
    figures
}

fn main() {
    let root = std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache/eddy/bench-tmp")
        .join(format!("store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    println!(
        "store: {KEYS} keys x 16 B, values {VALUE_LEN} B, batches of {BATCH}, {GETS} random gets, \
         {ROUNDS} rounds, engine and raw DB interleaved; dir {}",
        root.display()
    );
    let t0 = Instant::now();
    let data = Data::new();

    // Warm-up (not reported): page in the code and the allocator's arenas.
    let warm = Data {
        puts: data.puts[..KEYS / 10].to_vec(),
        gets: data.puts[..KEYS / 10].iter().rev().copied().collect(),
        values: data.values.clone(),
    };
    round(&warm, &root, ROUNDS);

    let mut totals = [Figures::default(); 2];
    for r in 0..ROUNDS {
        let [e, raw] = round(&data, &root, r);
        println!(
            "round {}: eddy {:>8.0} puts/s {:>8.0} gets/s | raw {:>8.0} puts/s {:>8.0} gets/s | eddy/raw puts {:.3} gets {:.3}",
            r + 1,
            e.puts_per_s(KEYS),
            e.gets_per_s(GETS),
            raw.puts_per_s(KEYS),
            raw.gets_per_s(GETS),
            raw.puts.as_secs_f64() / e.puts.as_secs_f64(),
            raw.gets.as_secs_f64() / e.gets.as_secs_f64(),
        );
        for (total, f) in totals.iter_mut().zip([e, raw]) {
            total.puts += f.puts;
            total.gets += f.gets;
        }
    }
    let _ = std::fs::remove_dir_all(&root);

    let [e, raw] = totals;
    let n = ROUNDS;
    println!();
    println!("{:<6} {:>10} {:>10}", "all", "puts/s", "gets/s");
    println!(
        "{:<6} {:>10.0} {:>10.0}",
        "eddy",
        e.puts_per_s(n * KEYS),
        e.gets_per_s(n * GETS)
    );
    println!(
        "{:<6} {:>10.0} {:>10.0}",
        "raw",
        raw.puts_per_s(n * KEYS),
        raw.gets_per_s(n * GETS)
    );
    println!(
        "{:<6} {:>10.3} {:>10.3}   (eddy/raw, target >= 0.80)",
        "ratio",
        raw.puts.as_secs_f64() / e.puts.as_secs_f64(),
        raw.gets.as_secs_f64() / e.gets.as_secs_f64()
    );
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
