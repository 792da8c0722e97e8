//! How far the applications upstream of a worker's input topics have got in
//! event time, so that event-time timers (the saga's timeouts) do not fire
//! while an application that will still answer is catching up.
//!
//! A task's stream time says what the task has seen; it cannot say what an
//! upstream application has yet to write. When that application is behind
//! (a backlog after downtime), the answers it will write carry event times
//! the task's stream time has long passed, and a timeout waiting for one of
//! them fires before it arrives. So for each consumer group declared
//! upstream of an input topic ([`StreamsConfig::upstream`]), a watch thread
//! looks at the group once per period:
//!
//! 1. Its members' assignment (DescribeGroups), its committed offsets and
//!    the log end of every assigned partition.
//! 2. The record timestamp at each committed offset of a partition it has
//!    not caught up on. The group has processed every record before that
//!    offset and, as eddy and Kafka Streams do, committed only after what
//!    they produced was acknowledged; the smallest such timestamp, less
//!    one, is how far it got (a candidate; caught up everywhere: no bound).
//! 3. Its own repartition topics (`<group>-…-repartition`) hold records
//!    derived from inputs it has processed whose results it may not have
//!    written yet: a candidate holds once the group has committed past the
//!    ends those topics had when it was taken, once per repartition topic
//!    (for chained ones).
//! 4. A holding candidate becomes a [`Mark`], with the log ends of the
//!    topics this worker reads from the group: a task's watermark reaches
//!    the mark once it has processed up to those ends.
//!
//! A group that makes no progress for `upstream_stall` (stopped, crashed,
//! never started) stops holding timers back, so that timeouts still notice
//! a service that is down.
//!
//! [`StreamsConfig::upstream`]: crate::kafka::StreamsConfig::upstream

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::background::Background;
use crate::error::Error;
use crate::topology::TopicRef;

/// A partition by topic name.
type Partition = (String, i32);

/// Log end offsets by partition.
pub(crate) type Ends = Vec<((TopicRef, i32), i64)>;

/// How far one upstream group has got, as published by its watch.
pub(crate) struct Mark {
    /// Every input record of the group up to this event time is processed
    /// and what it produced is written.
    pub(crate) time: i64,
    /// Log ends of the topics this worker reads from the group, when the
    /// mark was made.
    pub(crate) ends: Ends,
}

/// The marks of one upstream group, shared by its watch and the stream
/// threads.
#[derive(Default)]
pub(crate) struct Marks {
    inner: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    /// No progress for too long: holds nothing back.
    stalled: bool,
    /// Newest last.
    marks: VecDeque<Mark>,
}

/// Marks kept per group before the older ones are thinned out.
const MARKS_KEPT: usize = 16;

impl Marks {
    /// The time of the newest mark whose ends a task has processed up to:
    /// `processed(partition)` is the task's next offset of a partition it
    /// owns (`None` for others). `i64::MIN` if none is reached, `i64::MAX`
    /// if the group is stalled.
    pub(crate) fn reached(&self, processed: &mut dyn FnMut(TopicRef, i32) -> Option<i64>) -> i64 {
        let published = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if published.stalled {
            return i64::MAX;
        }
        published
            .marks
            .iter()
            .rev()
            .find(|m| {
                m.ends
                    .iter()
                    .all(|&((t, p), end)| processed(t, p).is_none_or(|next| next >= end))
            })
            .map_or(i64::MIN, |m| m.time)
    }

    fn publish(&self, mark: Mark) {
        let mut published = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        published.marks.push_back(mark);
        if published.marks.len() > MARKS_KEPT {
            // Thin the older half rather than drop the oldest: a task far
            // behind the group's outputs still finds a mark it has reached,
            // and the marks' spacing grows with their age.
            let half = published.marks.len() / 2;
            let mut i = 0;
            published.marks.retain(|_| {
                let keep = i >= half || i % 2 == 0;
                i += 1;
                keep
            });
        }
    }

    fn is_stalled(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).stalled
    }

    fn set_stalled(&self, stalled: bool) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).stalled = stalled;
    }
}

/// A group upstream of some of a worker's input topics.
pub(crate) struct Upstream {
    pub(crate) group: String,
    /// The input topics it writes, by ref and name.
    pub(crate) topics: Vec<(TopicRef, String)>,
    pub(crate) marks: Arc<Marks>,
}

/// One look at an upstream group.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Next offset to process of each assigned partition (the log start
    /// where the group has not committed).
    pub(crate) committed: HashMap<Partition, i64>,
    /// Log end of each assigned partition.
    pub(crate) ends: HashMap<Partition, i64>,
    /// Timestamp of the record at the committed offset, where it is below
    /// the end.
    pub(crate) heads: HashMap<Partition, i64>,
}

impl Snapshot {
    fn behind(&self) -> impl Iterator<Item = (&Partition, i64)> {
        self.committed
            .iter()
            .filter(|(p, &c)| self.ends.get(*p).is_some_and(|&e| c < e))
            .map(|(p, &c)| (p, c))
    }
}

struct Candidate {
    time: i64,
    /// Repartition topics committed past since the candidate was taken.
    stage: usize,
    /// Ends of the repartition partitions the group must commit past next.
    required: HashMap<Partition, i64>,
}

/// Turns snapshots of one group into the event time it has got to (steps 2
/// and 3 of the module's description).
pub(crate) struct Tracker {
    group: String,
    candidates: VecDeque<Candidate>,
    /// The latest time confirmed.
    pub(crate) time: i64,
}

/// Candidates pending confirmation; while full, no new one is taken.
const CANDIDATES_KEPT: usize = 16;

impl Tracker {
    pub(crate) fn new(group: &str) -> Self {
        Tracker {
            group: group.to_owned(),
            candidates: VecDeque::new(),
            time: i64::MIN,
        }
    }

    fn is_repartition(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.group.as_str())
            .is_some_and(|rest| rest.starts_with('-') && rest.ends_with("-repartition"))
    }

    /// Takes one snapshot in; returns the time it confirms, if any: the
    /// newest confirmed candidate's. Not monotonic: a group that had caught
    /// up (`i64::MAX`) and is behind again gets a finite time.
    pub(crate) fn observe(&mut self, snap: &Snapshot) -> Option<i64> {
        let repartition_ends: HashMap<Partition, i64> = snap
            .ends
            .iter()
            .filter(|((t, _), _)| self.is_repartition(t))
            .map(|(p, &e)| (p.clone(), e))
            .collect();
        let stages = repartition_ends
            .keys()
            .map(|(t, _)| t)
            .collect::<BTreeSet<_>>()
            .len();
        for c in &mut self.candidates {
            let passed = c
                .required
                .iter()
                .all(|(p, &end)| snap.committed.get(p).is_some_and(|&o| o >= end));
            if passed {
                c.stage += 1;
                c.required = repartition_ends.clone();
            }
        }
        let time = snap
            .behind()
            .map(|(p, _)| snap.heads.get(p).map(|&t| t.saturating_sub(1)))
            .try_fold(i64::MAX, |min, t| Some(min.min(t?)));
        if let Some(time) = time {
            if self.candidates.len() < CANDIDATES_KEPT {
                self.candidates.push_back(Candidate {
                    time,
                    stage: 0,
                    required: repartition_ends,
                });
            }
        }
        let confirmed = self.candidates.iter().rposition(|c| c.stage >= stages)?;
        let time = self.candidates[confirmed].time;
        self.candidates.drain(..=confirmed);
        self.time = time;
        Some(time)
    }
}

/// The partitions assigned to one member, from the consumer protocol's
/// assignment bytes (version, then topics with their partitions).
pub(crate) fn parse_assignment(bytes: &[u8]) -> Option<Vec<Partition>> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head)
    }
    fn int(rest: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(rest, 4)?.try_into().ok()?))
    }
    let mut rest = bytes.get(2..)?; // the version
    let mut out = Vec::new();
    for _ in 0..int(&mut rest)?.max(0) {
        let len = i16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?);
        let topic = std::str::from_utf8(take(&mut rest, usize::try_from(len).ok()?)?).ok()?;
        for _ in 0..int(&mut rest)?.max(0) {
            out.push((topic.to_owned(), int(&mut rest)?));
        }
    }
    Some(out)
}

/// Reads one upstream group: who is assigned what, where it committed, and
/// the records at those offsets.
struct Reader {
    /// Offset lookups of the group (never subscribes or commits).
    group: BaseConsumer,
    /// Reads the records at committed offsets (assigned, no group use).
    peek: BaseConsumer,
    timeout: Duration,
}

impl Reader {
    fn new(base: &ClientConfig, group: &str, peek_group: &str) -> Result<Self, KafkaError> {
        let consumer = |group: &str| {
            let mut c = base.clone();
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("max.partition.fetch.bytes", "65536");
            c.create::<BaseConsumer>()
        };
        Ok(Reader {
            group: consumer(group)?,
            peek: consumer(peek_group)?,
            timeout: Duration::from_secs(5),
        })
    }

    /// The group's assigned partitions; `None` while it has no stable
    /// membership.
    fn assignment(&self, group: &str) -> Result<Option<Vec<Partition>>, KafkaError> {
        let list = self.group.fetch_group_list(Some(group), self.timeout)?;
        let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
            return Ok(None);
        };
        if info.state() != "Stable" || info.members().is_empty() {
            return Ok(None);
        }
        let mut partitions = Vec::new();
        for m in info.members() {
            match m.assignment().and_then(parse_assignment) {
                Some(p) => partitions.extend(p),
                None => return Ok(None),
            }
        }
        Ok(Some(partitions))
    }

    fn snapshot(&self, partitions: &[Partition]) -> Result<Snapshot, KafkaError> {
        let mut snap = Snapshot::default();
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let committed = self.group.committed_offsets(tpl, self.timeout)?;
        for e in committed.elements() {
            let p = (e.topic().to_owned(), e.partition());
            let (low, high) = self.peek.fetch_watermarks(&p.0, p.1, self.timeout)?;
            let next = match e.offset() {
                Offset::Offset(o) => o.max(low),
                _ => low,
            };
            snap.committed.insert(p.clone(), next);
            snap.ends.insert(p, high);
        }
        let mut behind = TopicPartitionList::new();
        for ((t, p), next) in snap.behind() {
            behind.add_partition_offset(t, *p, Offset::Offset(next))?;
        }
        if behind.count() == 0 {
            return Ok(snap);
        }
        self.peek.assign(&behind)?;
        let deadline = Instant::now() + self.timeout;
        while snap.heads.len() < behind.count() && Instant::now() < deadline {
            match self.peek.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let p = (m.topic().to_owned(), m.partition());
                    if snap.committed.get(&p) == Some(&m.offset()) {
                        let ts = m.timestamp().to_millis().unwrap_or(i64::MIN);
                        snap.heads.entry(p).or_insert(ts);
                    }
                }
                Some(Err(e)) => tracing::debug!("reading upstream records: {e}"),
                None => {}
            }
        }
        self.peek.unassign()?;
        Ok(snap)
    }

    /// Log ends of every partition of `topics`.
    fn ends(&self, topics: &[(TopicRef, String)]) -> Result<Ends, KafkaError> {
        let mut out = Vec::new();
        for (t, name) in topics {
            let meta = self.peek.fetch_metadata(Some(name), self.timeout)?;
            for topic in meta.topics() {
                for p in topic.partitions() {
                    let (_, high) = self.peek.fetch_watermarks(name, p.id(), self.timeout)?;
                    out.push(((*t, p.id()), high));
                }
            }
        }
        Ok(out)
    }
}

/// The watch thread of a worker's upstream groups; stops when dropped.
pub(crate) struct UpstreamWatch {
    _thread: Background,
}

impl UpstreamWatch {
    /// Starts watching `upstreams` through clients made from `base`.
    pub(crate) fn start(
        base: ClientConfig,
        application_id: &str,
        upstreams: Vec<Upstream>,
        period: Duration,
        stall: Duration,
    ) -> Result<Self, Error> {
        let peek_group = format!("{application_id}-upstream-watch");
        let mut readers = Vec::new();
        for u in upstreams {
            let reader = Reader::new(&base, &u.group, &peek_group)?;
            let tracker = Tracker::new(&u.group);
            readers.push((u, reader, tracker, Instant::now()));
        }
        let thread = Background::spawn("eddy-upstream", "the upstream watch", move |flag| {
            while !flag.load(Ordering::Acquire) {
                for (u, reader, tracker, last_progress) in &mut readers {
                    let before = tracker.time;
                    match look(u, reader, tracker) {
                        Ok(()) => {}
                        Err(e) => tracing::debug!(group = %u.group, "upstream watch: {e}"),
                    }
                    if tracker.time > before || tracker.time == i64::MAX {
                        *last_progress = Instant::now();
                    }
                    let stalled = last_progress.elapsed() >= stall;
                    if stalled != u.marks.is_stalled() {
                        tracing::info!(
                            group = %u.group,
                            "upstream group {}",
                            if stalled { "made no progress: no longer waited for" } else { "progresses again" }
                        );
                    }
                    u.marks.set_stalled(stalled);
                }
                let until = Instant::now() + period;
                while Instant::now() < until && !flag.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })?;
        Ok(UpstreamWatch { _thread: thread })
    }
}

/// One look at one group: publishes a mark if it confirms a time.
fn look(u: &Upstream, reader: &Reader, tracker: &mut Tracker) -> Result<(), KafkaError> {
    let Some(assigned) = reader.assignment(&u.group)? else {
        return Ok(());
    };
    let snap = reader.snapshot(&assigned)?;
    let Some(time) = tracker.observe(&snap) else {
        return Ok(());
    };
    // The ends are read after the offsets that confirmed `time`: whatever
    // the group wrote for those records lies below them.
    let ends = reader.ends(&u.topics)?;
    tracing::debug!(group = %u.group, time, "upstream group progressed");
    u.marks.publish(Mark { time, ends });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(t: &str, p: i32) -> Partition {
        (t.to_owned(), p)
    }

    fn snap(rows: &[(&str, i32, i64, i64, Option<i64>)]) -> Snapshot {
        let mut s = Snapshot::default();
        for &(t, p, committed, end, head) in rows {
            s.committed.insert(part(t, p), committed);
            s.ends.insert(part(t, p), end);
            if let Some(h) = head {
                s.heads.insert(part(t, p), h);
            }
        }
        s
    }

    #[test]
    fn the_time_reached_is_just_before_the_oldest_unprocessed_record() {
        let mut t = Tracker::new("inv");
        // No repartition topics: confirmed at once.
        let s = snap(&[
            ("clicks", 0, 5, 9, Some(1_000)),
            ("clicks", 1, 7, 9, Some(400)),
        ]);
        assert_eq!(t.observe(&s), Some(399));
        // Caught up everywhere: nothing left to wait for.
        let s = snap(&[("clicks", 0, 9, 9, None), ("clicks", 1, 9, 9, None)]);
        assert_eq!(t.observe(&s), Some(i64::MAX));
        // A record whose timestamp could not be read makes no candidate.
        let mut t = Tracker::new("inv");
        assert_eq!(t.observe(&snap(&[("clicks", 0, 5, 9, None)])), None);
    }

    #[test]
    fn repartitioned_records_must_be_committed_past_once_per_hop() {
        let mut t = Tracker::new("inv");
        let rows = |c1: i64, c2: i64, e1: i64, e2: i64| {
            snap(&[
                ("clicks", 0, 3, 10, Some(500)),
                ("inv-a-repartition", 0, c1, e1, Some(100)),
                ("inv-b-repartition", 0, c2, e2, Some(100)),
            ])
        };
        // Candidate 99 (the repartition heads are older than the clicks
        // head); two hops to confirm.
        assert_eq!(t.observe(&rows(0, 0, 4, 2)), None);
        // Hop a not yet past 4.
        assert_eq!(t.observe(&rows(3, 2, 6, 5)), None);
        // Both past the first ends (4, 2): stage 1, now needs (6, 5)... the
        // first candidate is past (4,2); the second (taken at ends 6,5) not.
        assert_eq!(t.observe(&rows(4, 2, 6, 5)), None);
        // Past (6, 5): the first candidate reaches stage 2.
        assert_eq!(t.observe(&rows(6, 5, 8, 8)), Some(99));
        // Nothing newer confirmed yet.
        assert_eq!(t.observe(&rows(6, 5, 8, 8)), None);
        assert_eq!(t.time, 99);
    }

    #[test]
    fn marks_are_reached_by_processing_up_to_their_ends() {
        let marks = Marks::default();
        let (a, b) = (TopicRef(0), TopicRef(1));
        assert_eq!(marks.reached(&mut |_, _| Some(0)), i64::MIN);
        marks.publish(Mark {
            time: 100,
            ends: vec![((a, 0), 5), ((a, 1), 9), ((b, 0), 3)],
        });
        marks.publish(Mark {
            time: 200,
            ends: vec![((a, 0), 8), ((a, 1), 9), ((b, 0), 3)],
        });
        // A task owning a-0 only.
        let owns = |next: i64| move |t: TopicRef, p: i32| (t == a && p == 0).then_some(next);
        assert_eq!(marks.reached(&mut owns(4)), i64::MIN);
        assert_eq!(marks.reached(&mut owns(5)), 100);
        assert_eq!(marks.reached(&mut owns(8)), 200);
        marks.set_stalled(true);
        assert_eq!(marks.reached(&mut owns(0)), i64::MAX);
    }

    #[test]
    fn a_task_far_behind_still_reaches_an_old_mark() {
        let marks = Marks::default();
        let a = TopicRef(0);
        for i in 0..100 {
            marks.publish(Mark {
                time: i * 1_000,
                ends: vec![((a, 0), 10 + i)],
            });
        }
        let owns = |next: i64| move |_: TopicRef, _: i32| Some(next);
        // Only the first mark's ends are processed: its time, not nothing.
        assert_eq!(marks.reached(&mut owns(10)), 0);
        assert_eq!(marks.reached(&mut owns(109)), 99_000);
        let kept = marks.inner.lock().unwrap().marks.len();
        assert!(kept <= MARKS_KEPT, "{kept}");
    }

    #[test]
    fn assignments_decode_from_the_consumer_protocol() {
        let mut b = vec![0, 1]; // version 1
        b.extend(2i32.to_be_bytes());
        for (topic, parts) in [("clicks", &[0, 2][..]), ("x-repartition", &[1][..])] {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for &p in parts {
                b.extend(i32::to_be_bytes(p));
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        assert_eq!(
            parse_assignment(&b),
            Some(vec![
                part("clicks", 0),
                part("clicks", 2),
                part("x-repartition", 1)
            ])
        );
        assert_eq!(parse_assignment(&b[..9]), None);
        assert_eq!(parse_assignment(&[]), None);
    }
}
