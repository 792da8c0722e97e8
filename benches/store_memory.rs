//! Memory of many RocksDB stores under one `RocksShared` budget.
//!
//! For each partition count (64, 8, 1) a child process (this binary, re-run
//! with `EDDY_STORE_MEMORY_PARTITIONS` set, so each has its own peak RSS)
//! opens that many `RocksEngine`s under one `RocksShared` with a 128 MiB
//! budget, writes 1 M keys (16 B keys, 100 B values) spread over them in
//! batches of up to 1000 per store, then does 1 M random gets. It reports
//! VmRSS/VmHWM from /proc/self/status before opening (baseline), after the
//! writes and after the gets, with the cache and memtable usage; the parent
//! prints the table. Overhead = peak RSS - baseline RSS - budget (negative:
//! the budget was not all used).
//!
//! Run with `cargo bench --bench store_memory`.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use eddy::stores::engine::{Engine, RocksConfig, RocksEngine, RocksShared};

const MIB: usize = 1 << 20;
const BUDGET: usize = 128 * MIB;
const KEYS: usize = 1_000_000;
const GETS: usize = 1_000_000;
const BATCH: usize = 1000;
const VALUE_LEN: usize = 100;
const VARIANTS: [usize; 3] = [64, 8, 1];
const ENV: &str = "EDDY_STORE_MEMORY_PARTITIONS";

/// What a child reports, and the table's column titles.
const COLUMNS: [(&str, &str); 16] = [
    ("partitions", "stores"),
    ("base_rss", "base RSS"),
    ("open_rss", "opened"),
    ("write_rss", "after put"),
    ("get_rss", "after get"),
    ("hwm", "peak RSS"),
    ("peak_memtables", "memtables"),
    ("write_memtables", "mt @put"),
    ("peak_cache", "cache"),
    ("get_cache", "cache @get"),
    ("pinned", "pinned@get"),
    ("disk", "disk"),
    ("ssts", "sst files"),
    ("keys_estimate", "keys est"),
    ("puts_per_s", "puts/s"),
    ("gets_per_s", "gets/s"),
];
const RATES: [&str; 2] = ["puts_per_s", "gets_per_s"];
const COUNTS: [&str; 3] = ["partitions", "ssts", "keys_estimate"];

/// splitmix64 of `x`: a fixed scramble.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key `i`: 16 hex digits of a scramble of `i` (random order).
fn key(i: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    let h = mix(i as u64);
    for (j, b) in k.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((h >> (60 - 4 * j)) & 0xf) as usize];
    }
    k
}

fn partition(i: usize, partitions: usize) -> usize {
    (mix(i as u64 ^ 0x5555) % partitions as u64) as usize
}

/// (VmRSS, VmHWM) in bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<usize>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// (bytes, number of .sst files) under `path`.
fn dir_size(path: &std::path::Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                let (b, f) = dir_size(&e.path());
                bytes += b;
                files += f;
            } else {
                bytes += meta.len();
                files += u64::from(e.path().extension().is_some_and(|x| x == "sst"));
            }
        }
    }
    (bytes, files)
}

fn child(partitions: usize) {
    let root = std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache/eddy/bench-tmp")
        .join(format!("store-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    // Value `i`: 100 pseudo-random (incompressible) bytes.
    let value = |i: usize| -> [u8; VALUE_LEN] {
        let mut v = [0u8; VALUE_LEN];
        for (j, chunk) in v.chunks_mut(8).enumerate() {
            let r = mix((i as u64) << 8 | j as u64).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        v
    };

    let (base_rss, base_hwm) = rss();
    let mut config = RocksConfig {
        memory_budget: BUDGET,
        ..RocksConfig::default()
    };
    // Extra RocksDB options to try, as `name=value;name=value`.
    if let Ok(extra) = std::env::var("EDDY_STORE_OPTIONS") {
        for pair in extra.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').expect("name=value");
            config.options.insert(name.into(), value.into());
        }
    }
    let shared = RocksShared::new(&config);
    let mut engines: Vec<RocksEngine> = (0..partitions)
        .map(|p| RocksEngine::open(&root.join(format!("{p}")), &shared).expect("open"))
        .collect();
    let (open_rss, _) = rss();

    // Writes: keys go to pending batches per partition, written at BATCH.
    let start = Instant::now();
    let mut pending: Vec<Vec<usize>> = vec![Vec::with_capacity(BATCH); partitions];
    let mut peak_memtables = 0;
    let mut peak_cache = 0;
    let write = |engine: &mut RocksEngine, batch: &mut Vec<usize>| {
        let entries: Vec<([u8; 16], [u8; VALUE_LEN])> =
            batch.iter().map(|&i| (key(i), value(i))).collect();
        engine
            .write(
                &mut entries
                    .iter()
                    .map(|(k, v)| (k.as_slice(), Some(v.as_slice()))),
            )
            .expect("write");
        batch.clear();
    };
    for i in 0..KEYS {
        let p = partition(i, partitions);
        pending[p].push(i);
        if pending[p].len() == BATCH {
            write(&mut engines[p], &mut pending[p]);
            peak_memtables = peak_memtables.max(shared.memtable_usage());
            peak_cache = peak_cache.max(shared.cache_usage());
        }
    }
    for (p, batch) in pending.iter_mut().enumerate() {
        if !batch.is_empty() {
            write(&mut engines[p], batch);
        }
    }
    let put_secs = start.elapsed().as_secs_f64();
    let (write_rss, _) = rss();
    let write_memtables = shared.memtable_usage();
    let write_cache = shared.cache_usage();

    // Random gets.
    let start = Instant::now();
    let mut state = 1u64;
    let mut found = 0usize;
    for _ in 0..GETS {
        state = mix(state);
        let i = (state % KEYS as u64) as usize;
        if let Some(v) = engines[partition(i, partitions)].get(&key(i)).expect("get") {
            assert_eq!(black_box(v)[..8], value(i)[..8]);
            found += VALUE_LEN;
        }
        if found.is_multiple_of(64 * 1024 * VALUE_LEN) {
            peak_cache = peak_cache.max(shared.cache_usage());
        }
    }
    assert_eq!(found, GETS * VALUE_LEN);
    let get_secs = start.elapsed().as_secs_f64();
    let (get_rss, hwm) = rss();
    let get_cache = shared.cache_usage();
    let get_memtables = shared.memtable_usage();
    let pinned = shared.cache_pinned_usage();
    let (disk, ssts) = dir_size(&root);
    let keys_estimate: u64 = engines.iter().map(|e| e.approximate_len()).sum();
    drop(engines);
    let _ = std::fs::remove_dir_all(&root);

    let fields = [
        ("partitions", partitions as f64),
        ("base_rss", base_rss as f64),
        ("base_hwm", base_hwm as f64),
        ("open_rss", open_rss as f64),
        ("write_rss", write_rss as f64),
        ("get_rss", get_rss as f64),
        ("hwm", hwm as f64),
        ("write_cache", write_cache as f64),
        ("write_memtables", write_memtables as f64),
        ("peak_memtables", peak_memtables as f64),
        ("peak_cache", peak_cache as f64),
        ("get_cache", get_cache as f64),
        ("get_memtables", get_memtables as f64),
        ("pinned", pinned as f64),
        ("disk", disk as f64),
        ("ssts", ssts as f64),
        ("keys_estimate", keys_estimate as f64),
        ("puts_per_s", KEYS as f64 / put_secs),
        ("gets_per_s", GETS as f64 / get_secs),
    ];
    for (name, v) in fields {
        println!("{name}={v}");
    }
}

fn mib(x: f64) -> String {
    format!("{:.1}", x / MIB as f64)
}

fn main() {
    if let Ok(p) = std::env::var(ENV) {
        child(p.parse().expect("partitions"));
        return;
    }
    let t0 = Instant::now();
    println!(
        "store_memory: budget {} MiB (write buffers {} MiB), {KEYS} keys x 16 B, values {VALUE_LEN} B, \
         batches of <= {BATCH} per store, {GETS} random gets; one process per row",
        BUDGET / MIB,
        BUDGET / MIB / 2
    );
    let exe = std::env::current_exe().expect("current exe");
    let mut rows = Vec::new();
    for partitions in VARIANTS {
        let out = Command::new(&exe)
            .env(ENV, partitions.to_string())
            .output()
            .expect("run child");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            panic!("child with {partitions} partitions failed: {}", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("child output lacks {name}: {text}"))
        };
        rows.push(COLUMNS.map(|(name, _)| get(name)));
    }

    println!();
    println!(
        "sizes in MiB; RSS of the whole process; overhead = peak RSS - base RSS - budget; \
         memtables and cache = peak of RocksShared::memtable_usage / cache_usage"
    );
    let header: Vec<String> = COLUMNS
        .iter()
        .map(|(_, title)| format!("{title:>11}"))
        .chain(["overhead".to_string()].map(|t| format!("{t:>11}")))
        .collect();
    println!("{}", header.join(""));
    let col = |name: &str| COLUMNS.iter().position(|(n, _)| *n == name).unwrap();
    for row in &rows {
        let cells: Vec<String> = COLUMNS
            .iter()
            .zip(row)
            .map(|((name, _), v)| {
                let text = if RATES.contains(name) || COUNTS.contains(name) {
                    format!("{v:.0}")
                } else {
                    mib(*v)
                };
                format!("{text:>11}")
            })
            .collect();
        let overhead = row[col("hwm")] - row[col("base_rss")] - BUDGET as f64;
        println!("{}{:>11}", cells.join(""), mib(overhead));
    }
    let growth = |r: &[f64; COLUMNS.len()]| r[col("hwm")] - r[col("base_rss")];
    if let (Some(a), Some(b)) = (
        rows.iter().find(|r| r[0] == 64.0),
        rows.iter().find(|r| r[0] == 8.0),
    ) {
        let extra = growth(a) - growth(b);
        println!();
        println!(
            "peak RSS above baseline, 64 vs 8 partitions: {} vs {} MiB: {:+.2} MiB per extra store",
            mib(growth(a)),
            mib(growth(b)),
            extra / 56.0 / MIB as f64
        );
    }
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
