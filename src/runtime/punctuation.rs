//! Punctuation schedules of one task, by stream time and by wall clock.

use crate::processor::{PunctuationId, PunctuationType};

#[derive(Debug)]
struct Schedule {
    id: PunctuationId,
    node: usize,
    kind: PunctuationType,
    interval: i64,
    next: i64,
}

/// The schedules of a task's processors.
#[derive(Debug, Default)]
pub(crate) struct Punctuations {
    next_id: u64,
    schedules: Vec<Schedule>,
}

impl Punctuations {
    /// Stream-time (and watermark) schedules are aligned to 0 (they fire at the first record,
    /// then at multiples of `interval`); wall-clock ones first fire one
    /// interval after `now`. This matches Kafka Streams.
    pub(crate) fn schedule(
        &mut self,
        node: usize,
        interval: i64,
        kind: PunctuationType,
        now: i64,
    ) -> PunctuationId {
        let id = PunctuationId(self.next_id);
        self.next_id += 1;
        let next = match kind {
            PunctuationType::StreamTime | PunctuationType::Watermark => 0,
            PunctuationType::WallClockTime => now.saturating_add(interval),
        };
        self.schedules.push(Schedule {
            id,
            node,
            kind,
            interval,
            next,
        });
        id
    }

    pub(crate) fn cancel(&mut self, id: PunctuationId) {
        self.schedules.retain(|s| s.id != id);
    }

    /// Schedules of `kind` due at `now`, as `(id, node)` in the order of
    /// their due times, each advanced past `now`. A clock that jumped several
    /// intervals fires a schedule once, not once per missed interval.
    pub(crate) fn due(&mut self, kind: PunctuationType, now: i64) -> Vec<(PunctuationId, usize)> {
        let mut due: Vec<(i64, PunctuationId, usize)> = Vec::new();
        for s in self
            .schedules
            .iter_mut()
            .filter(|s| s.kind == kind && s.next <= now)
        {
            due.push((s.next, s.id, s.node));
            let missed = (now - s.next) / s.interval;
            s.next += (missed + 1) * s.interval;
        }
        due.sort_unstable();
        due.into_iter().map(|(_, id, node)| (id, node)).collect()
    }

    /// Whether a schedule with this id still exists.
    pub(crate) fn contains(&self, id: PunctuationId) -> bool {
        self.schedules.iter().any(|s| s.id == id)
    }

    /// Whether any schedule of `kind` is due at `now` (cheap check for the
    /// per-record path).
    pub(crate) fn any_due(&self, kind: PunctuationType, now: i64) -> bool {
        self.schedules
            .iter()
            .any(|s| s.kind == kind && s.next <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PunctuationType::*;

    #[test]
    fn stream_time_aligns_to_zero_and_skips_missed_intervals() {
        let mut p = Punctuations::default();
        let id = p.schedule(3, 10, StreamTime, 12345);
        assert!(p.due(StreamTime, -1).is_empty());
        assert_eq!(p.due(StreamTime, 5), vec![(id, 3)]);
        assert!(p.due(StreamTime, 9).is_empty());
        assert_eq!(p.due(StreamTime, 10), vec![(id, 3)]);
        // a jump over three intervals fires once, next at 50
        assert_eq!(p.due(StreamTime, 43), vec![(id, 3)]);
        assert!(p.due(StreamTime, 49).is_empty());
        assert!(p.any_due(StreamTime, 50));
        assert!(!p.any_due(WallClockTime, 1 << 40));
    }

    #[test]
    fn wall_clock_starts_one_interval_later_and_cancel_works() {
        let mut p = Punctuations::default();
        let a = p.schedule(0, 100, WallClockTime, 1000);
        let b = p.schedule(1, 30, WallClockTime, 1000);
        assert!(p.due(WallClockTime, 1029).is_empty());
        assert_eq!(p.due(WallClockTime, 1100), vec![(b, 1), (a, 0)]);
        p.cancel(b);
        assert!(!p.contains(b));
        assert_eq!(p.due(WallClockTime, 1200), vec![(a, 0)]);
    }
}
