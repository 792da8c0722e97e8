//! `RocksEngine` versus a raw `rocksdb::DB` opened with the same options.
//!
//! Each round loads 1 M keys (16 bytes, in random order) with 100-byte
//! values in batches of 1000 (one WriteBatch each, WAL off), flushes, waits
//! for compactions to settle, then does 1 M random point lookups; once
//! through the engine (`Engine::write`, `Engine::get`) and once through the
//! raw DB (`WriteBatch` + `write_opt`, `get_pinned_opt`), alternating which
//! goes first. Each database gets its own `RocksShared` with the default
//! `RocksConfig` (256 MiB budget), so both see the same cache size.
//!
//! Run with `cargo bench --bench store`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy::stores::engine::{Engine, RocksConfig, RocksEngine, RocksShared};
use rocksdb::{ReadOptions, WriteBatch, WriteOptions, DB};

const KEYS: usize = 1_000_000;
const BATCH: usize = 1000;
const GETS: usize = 1_000_000;
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
        let gets = (0..GETS)
            .map(|_| key(rng.next() as usize % KEYS))
            .collect();
        let values = (0..4096 + VALUE_LEN).map(|_| rng.next() as u8).collect();
        Data { puts, gets, values }
    }

    fn value(&self, i: usize) -> &[u8] {
        &self.values[i % 4096..][..VALUE_LEN]
    }
}

#[derive(Default, Clone, Copy)]
struct Figures {
    puts_per_s: f64,
    gets_per_s: f64,
    flush: Duration,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Waits until the database has no pending or running compaction (at most 30 s).
fn settle(property: &dyn Fn(&str) -> Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let pending = property("rocksdb.compaction-pending").unwrap_or(0);
        let running = property("rocksdb.num-running-compactions").unwrap_or(0);
        let flushing = property("rocksdb.num-running-flushes").unwrap_or(0);
        if pending + running + flushing == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_eddy(data: &Data, dir: &Path) -> Figures {
    let shared = RocksShared::new(&RocksConfig::default());
    let mut engine = RocksEngine::open(dir, &shared).expect("open");

    let start = Instant::now();
    for (n, chunk) in data.puts.chunks(BATCH).enumerate() {
        let base = n * BATCH;
        engine
            .write(
                &mut chunk
                    .iter()
                    .enumerate()
                    .map(|(j, k)| (k.as_slice(), Some(data.value(base + j)))),
            )
            .expect("write");
    }
    let puts = start.elapsed();

    let start = Instant::now();
    engine.flush().expect("flush");
    let flush = start.elapsed();
    settle(&|name| engine.int_property(name));

    let start = Instant::now();
    let mut found = 0usize;
    for k in &data.gets {
        if let Some(v) = engine.get(k).expect("get") {
            found += black_box(v).len();
        }
    }
    let gets = start.elapsed();
    assert_eq!(found, data.gets.len() * VALUE_LEN);
    Figures {
        puts_per_s: rate(data.puts.len(), puts),
        gets_per_s: rate(data.gets.len(), gets),
        flush,
    }
}

fn run_raw(data: &Data, dir: &Path) -> Figures {
    let shared = RocksShared::new(&RocksConfig::default());
    let opts = shared.db_options().expect("options");
    let db = DB::open(&opts, dir).expect("open");
    let mut write_opts = WriteOptions::default();
    write_opts.disable_wal(true);
    let read_opts = ReadOptions::default();

    let start = Instant::now();
    for (n, chunk) in data.puts.chunks(BATCH).enumerate() {
        let base = n * BATCH;
        let mut batch = WriteBatch::default();
        for (j, k) in chunk.iter().enumerate() {
            batch.put(k, data.value(base + j));
        }
        db.write_opt(batch, &write_opts).expect("write");
    }
    let puts = start.elapsed();

    let start = Instant::now();
    db.flush().expect("flush");
    let flush = start.elapsed();
    settle(&|name| db.property_int_value(name).ok().flatten());

    let start = Instant::now();
    let mut found = 0usize;
    for k in &data.gets {
        if let Some(v) = db.get_pinned_opt(k, &read_opts).expect("get") {
            found += black_box(&*v).len();
        }
    }
    let gets = start.elapsed();
    assert_eq!(found, data.gets.len() * VALUE_LEN);
    Figures {
        puts_per_s: rate(data.puts.len(), puts),
        gets_per_s: rate(data.gets.len(), gets),
        flush,
    }
}

fn bench_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/eddy/bench-tmp")
        .join(format!("store-{}", std::process::id()))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn main() {
    let root = bench_root();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    println!(
        "store: {KEYS} keys x 16 B, values {VALUE_LEN} B, batches of {BATCH}, {GETS} random gets, \
         {ROUNDS} rounds; dir {}",
        root.display()
    );
    let t0 = Instant::now();
    let data = Data::new();

    // Warm-up (not reported): page in the code and the allocator's arenas.
    {
        let small = Data {
            puts: data.puts[..KEYS / 10].to_vec(),
            gets: data.puts[..KEYS / 10].iter().rev().copied().collect(),
            values: data.values.clone(),
        };
        let _ = run_eddy(&small, &root.join("warm-eddy"));
        let _ = run_raw(&small, &root.join("warm-raw"));
        let _ = std::fs::remove_dir_all(root.join("warm-eddy"));
        let _ = std::fs::remove_dir_all(root.join("warm-raw"));
    }

    let mut eddy = Vec::new();
    let mut raw = Vec::new();
    for round in 0..ROUNDS {
        let e_dir = root.join(format!("eddy-{round}"));
        let r_dir = root.join(format!("raw-{round}"));
        let (e, r) = if round % 2 == 0 {
            let e = run_eddy(&data, &e_dir);
            let r = run_raw(&data, &r_dir);
            (e, r)
        } else {
            let r = run_raw(&data, &r_dir);
            let e = run_eddy(&data, &e_dir);
            (e, r)
        };
        let _ = std::fs::remove_dir_all(&e_dir);
        let _ = std::fs::remove_dir_all(&r_dir);
        println!(
            "round {}: eddy {:>9.0} puts/s {:>9.0} gets/s (flush {:>4} ms) | raw {:>9.0} puts/s {:>9.0} gets/s (flush {:>4} ms) | ratio puts {:.3} gets {:.3}",
            round + 1,
            e.puts_per_s,
            e.gets_per_s,
            e.flush.as_millis(),
            r.puts_per_s,
            r.gets_per_s,
            r.flush.as_millis(),
            e.puts_per_s / r.puts_per_s,
            e.gets_per_s / r.gets_per_s,
        );
        eddy.push(e);
        raw.push(r);
    }
    let _ = std::fs::remove_dir_all(&root);

    let e_puts = mean(&eddy.iter().map(|f| f.puts_per_s).collect::<Vec<_>>());
    let r_puts = mean(&raw.iter().map(|f| f.puts_per_s).collect::<Vec<_>>());
    let e_gets = mean(&eddy.iter().map(|f| f.gets_per_s).collect::<Vec<_>>());
    let r_gets = mean(&raw.iter().map(|f| f.gets_per_s).collect::<Vec<_>>());
    let best = |fs: &[Figures], f: fn(&Figures) -> f64| fs.iter().map(f).fold(0.0, f64::max);
    let (eb_puts, rb_puts) = (best(&eddy, |f| f.puts_per_s), best(&raw, |f| f.puts_per_s));
    let (eb_gets, rb_gets) = (best(&eddy, |f| f.gets_per_s), best(&raw, |f| f.gets_per_s));
    println!();
    println!(
        "{:<6} {:>12} {:>12}   {:>12} {:>12}",
        "", "mean puts/s", "mean gets/s", "best puts/s", "best gets/s"
    );
    println!(
        "{:<6} {:>12.0} {:>12.0}   {:>12.0} {:>12.0}",
        "eddy", e_puts, e_gets, eb_puts, eb_gets
    );
    println!(
        "{:<6} {:>12.0} {:>12.0}   {:>12.0} {:>12.0}",
        "raw", r_puts, r_gets, rb_puts, rb_gets
    );
    println!(
        "{:<6} {:>12.3} {:>12.3}   {:>12.3} {:>12.3}   (eddy/raw, target >= 0.80)",
        "ratio",
        e_puts / r_puts,
        e_gets / r_gets,
        eb_puts / rb_puts,
        eb_gets / rb_gets
    );
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
