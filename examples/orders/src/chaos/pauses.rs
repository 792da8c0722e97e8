//! How long each worker went without processing a record: sampled from
//! the workers' `/metrics` while the load runs, to measure what a
//! rebalance stops.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The longest stretch without a processed record, per worker.
#[derive(Default)]
pub(super) struct Pauses {
    /// Per worker: its processed count, when it last changed, the longest
    /// stretch so far.
    seen: BTreeMap<String, (i64, Instant, Duration)>,
}

impl Pauses {
    /// Records a sample: worker `name` had processed `processed` records
    /// `at`. A stretch starts at the worker's first record.
    pub(super) fn observe(&mut self, name: &str, processed: i64, at: Instant) {
        match self.seen.get_mut(name) {
            None if processed > 0 => {
                self.seen
                    .insert(name.to_owned(), (processed, at, Duration::ZERO));
            }
            None => {}
            Some((last, changed, longest)) => {
                if processed != *last {
                    *last = processed;
                    *changed = at;
                } else {
                    *longest = (*longest).max(at - *changed);
                }
            }
        }
    }

    /// Forgets a worker that stopped on purpose (its silence is not a pause).
    pub(super) fn forget(&mut self, name: &str) {
        self.seen.remove(name);
    }

    /// The longest stretch of each worker still watched, in milliseconds.
    pub(super) fn longest_ms(&self) -> BTreeMap<String, u64> {
        self.seen
            .iter()
            .map(|(name, (_, _, longest))| (name.clone(), longest.as_millis() as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_the_longest_time_the_count_did_not_move() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = Pauses::default();
        p.observe("a", 0, ms(0)); // not started: no stretch yet
        p.observe("a", 5, ms(100));
        p.observe("a", 5, ms(200));
        p.observe("a", 5, ms(700));
        p.observe("a", 9, ms(800));
        p.observe("a", 9, ms(900));
        p.observe("b", 1, ms(0));
        p.observe("b", 2, ms(100));
        p.forget("b");
        assert_eq!(p.longest_ms(), BTreeMap::from([("a".to_owned(), 600)]));
    }
}
