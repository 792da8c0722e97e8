//! The processor path alone, no broker: records/s through the test driver
//! (source decode, filter, map_values, sink encode, output capture) beside a
//! hand-written loop doing the same decode/filter/map/encode work in the
//! same run.
//!
//! `cargo bench --bench driver` (`EDDY_BENCH_RECORDS` sets the count).

use std::hint::black_box;
use std::time::Instant;

use eddy::processor::Headers;
use eddy::serde::{BytesSerde, Serde, StringSerde};
use eddy::testing::TopologyTestDriver;
use eddy::topology::StreamsBuilder;

fn records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = format!("key-{i}").into_bytes();
            let mut value = format!("value-{i}-").into_bytes();
            value.resize(100, b'x');
            (key, value)
        })
        .collect()
}

fn keep(v: &[u8]) -> bool {
    v[0] != b'#'
}

fn shout(mut v: Vec<u8>) -> Vec<u8> {
    v.make_ascii_uppercase();
    v
}

fn main() {
    let n: usize = std::env::var("EDDY_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let data = records(n);

    // Yardstick: the same work with no engine.
    let start = Instant::now();
    let mut out = Vec::with_capacity(256);
    let mut bytes = 0usize;
    for (k, v) in &data {
        let key = StringSerde.deserialize(Some(k)).unwrap();
        let value = BytesSerde.deserialize(Some(v)).unwrap();
        if keep(&value) {
            let value = shout(value);
            out.clear();
            StringSerde.serialize(&key, &mut out).unwrap();
            BytesSerde.serialize(&value, &mut out).unwrap();
            bytes += black_box(out.len());
        }
    }
    let raw = start.elapsed();
    black_box(bytes);

    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, BytesSerde)
        .filter(|_, v| keep(v))
        .map_values(shout)
        .to("out", StringSerde, BytesSerde);
    let mut driver = TopologyTestDriver::new(b.build().unwrap());
    let start = Instant::now();
    for (i, (k, v)) in data.iter().enumerate() {
        driver
            .pipe_raw("in", Some(0), Some(k), Some(v), i as i64, Headers::new())
            .unwrap();
        if i % 10_000 == 9_999 {
            black_box(driver.read_raw("out"));
        }
    }
    let eddy = start.elapsed();
    assert_eq!(driver.read_raw("out").len(), n % 10_000);

    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!("driver benchmark: {n} records of 100 bytes, one partition");
    println!("  plain loop     {:>12.0} records/s", rate(raw));
    println!("  eddy driver    {:>12.0} records/s", rate(eddy));
    println!(
        "  ratio          {:>12.2} (eddy / plain loop)",
        rate(eddy) / rate(raw)
    );
}
