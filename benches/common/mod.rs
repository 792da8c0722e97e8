//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eddy::runtime::RunningStreams;

/// `name` from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Waits until the counter `metric` (summed over threads) first moves, then
/// until it reaches `n`; returns when it first moved, so that start-up and
/// group joins are not timed. Polls every 10 ms.
pub fn wait_for_metric(running: &RunningStreams, metric: &str, n: usize) -> Instant {
    let value = || running.metrics().total(metric) as usize;
    while value() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    while value() < n {
        std::thread::sleep(Duration::from_millis(10));
    }
    start
}

/// A fresh state directory under `~/.cache/eddy/bench-state`.
pub fn state_dir(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/eddy/bench-state")
        .join(eddy::testing::unique(name))
}
