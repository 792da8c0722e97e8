//! Test-driver tests of punctuations (stream time and wall-clock time),
//! cancelling them, commit requests and the processor lifecycle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::kafka::partitioner::partition_for_key;
use eddy::processor::{
    InitError, Processor, ProcessorContext, PunctuationId, PunctuationType, Record,
};
use eddy::serde::StringSerde;
use eddy::testing::{DriverConfig, TestTopic, TopologyTestDriver};
use eddy::topology::StreamsBuilder;

// ---------------------------------------------------------------- helpers

fn topic(name: &str) -> TestTopic<String, String> {
    TestTopic::new(name, StringSerde, StringSerde)
}

/// `(key, value, timestamp)` of everything written to `t` since the last read.
fn read_kvt(
    d: &mut TopologyTestDriver,
    t: &TestTopic<String, String>,
) -> Vec<(String, String, i64)> {
    d.read(t)
        .expect("output decodes")
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect()
}

fn kvt(k: &str, v: &str, ts: i64) -> (String, String, i64) {
    (k.into(), v.into(), ts)
}

/// A record passed through by [`Ticker`].
fn rec(ts: i64) -> (String, String, i64) {
    kvt("k", &format!("v{ts}"), ts)
}

/// A punctuation of [`Ticker`] on partition `p`, where the clock read
/// inside `punctuate` was `clock`.
fn tick(p: i32, clock: i64, ts: i64) -> (String, String, i64) {
    kvt(&format!("tick-{p}"), &format!("clock={clock}"), ts)
}

/// A key that Kafka's partitioner puts on `partition` of `count`.
fn key_on(partition: i32, count: i32) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| partition_for_key(k.as_bytes(), count) == partition)
        .expect("some key lands on every partition")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Schedules one punctuation in `init`, passes records through, and on each
/// punctuation forwards `tick-<partition>` / `clock=<its clock>` stamped
/// with the punctuation timestamp. Records the stream time seen in
/// `process`.
struct Ticker {
    interval: Duration,
    kind: PunctuationType,
    id: Option<PunctuationId>,
    stream_times: Arc<Mutex<Vec<i64>>>,
}

impl Processor<String, String, String, String> for Ticker {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), InitError> {
        self.id = Some(ctx.schedule(self.interval, self.kind));
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        self.stream_times.lock().unwrap().push(ctx.stream_time());
        ctx.forward(r);
    }

    fn punctuate(
        &mut self,
        id: PunctuationId,
        ts: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        assert_eq!(Some(id), self.id, "the id schedule returned");
        assert_eq!(ctx.record_source(), None, "no record inside a punctuation");
        let clock = match self.kind {
            PunctuationType::StreamTime | PunctuationType::Watermark => ctx.stream_time(),
            PunctuationType::WallClockTime => ctx.wall_clock_time(),
        };
        let key = format!("tick-{}", ctx.task_id().partition);
        ctx.forward(Record::new(key, format!("clock={clock}"), ts));
    }
}

/// in -> Ticker -> out, and the stream times the tickers saw.
fn ticker_driver(
    interval: Duration,
    kind: PunctuationType,
    config: DriverConfig,
) -> (TopologyTestDriver, Arc<Mutex<Vec<i64>>>) {
    let stream_times = Arc::new(Mutex::new(Vec::new()));
    let seen = stream_times.clone();
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .process(move || Ticker {
            interval,
            kind,
            id: None,
            stream_times: seen.clone(),
        })
        .to("out", StringSerde, StringSerde);
    let d = TopologyTestDriver::with_config(b.build().unwrap(), config);
    (d, stream_times)
}

fn pipe_at(d: &mut TopologyTestDriver, key: &str, ts: i64) {
    d.pipe(&topic("in"), key.into(), format!("v{ts}"), ts)
        .unwrap();
}

// ------------------------------------------------------------ stream time

#[test]
fn stream_time_punctuation_is_aligned_to_zero_and_fires_once_per_jump() {
    let (mut d, stream_times) =
        ticker_driver(ms(10), PunctuationType::StreamTime, DriverConfig::default());
    for ts in [0, 5, 12, 13, 45, 44] {
        pipe_at(&mut d, "k", ts);
    }
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            // Due at 0: fires on the first record.
            rec(0),
            tick(0, 0, 0),
            rec(5),
            // Due at 10: fires at stream time 12, next due at 20.
            rec(12),
            tick(0, 12, 12),
            rec(13),
            // 20, 30 and 40 were all missed: one punctuation, next due at 50.
            rec(45),
            tick(0, 45, 45),
            // Late record: stream time stays 45.
            rec(44),
        ]
    );
    assert_eq!(*stream_times.lock().unwrap(), [0, 5, 12, 13, 45, 45]);

    pipe_at(&mut d, "k", 49);
    assert_eq!(read_kvt(&mut d, &topic("out")), [rec(49)]);
    pipe_at(&mut d, "k", 50);
    assert_eq!(read_kvt(&mut d, &topic("out")), [rec(50), tick(0, 50, 50)]);
}

#[test]
fn negative_timestamps_are_invalid_and_do_not_move_stream_time() {
    let (mut d, stream_times) =
        ticker_driver(ms(10), PunctuationType::StreamTime, DriverConfig::default());
    for ts in [-20, -1, 3, 9, 10] {
        pipe_at(&mut d, "k", ts);
    }
    // The default extractor treats negative record timestamps as invalid
    // (Kafka Streams' FailOnInvalidTimestamp): dead-lettered, unprocessed.
    assert_eq!(d.read_raw("test-app-dlq").len(), 2);
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [rec(3), tick(0, 3, 3), rec(9), rec(10), tick(0, 10, 10)]
    );
    assert_eq!(*stream_times.lock().unwrap(), [3, 9, 10]);
}

#[test]
fn stream_time_is_per_task() {
    let config = DriverConfig::default().partitions("in", 2);
    let (mut d, stream_times) = ticker_driver(ms(10), PunctuationType::StreamTime, config);
    let (k0, k1) = (key_on(0, 2), key_on(1, 2));
    pipe_at(&mut d, &k0, 0);
    pipe_at(&mut d, &k0, 25);
    // Partition 1 has seen nothing yet: its first record fires its schedule.
    pipe_at(&mut d, &k1, 5);
    // Partition 0 is at 25, next due at 30: stream time 28 there fires nothing...
    pipe_at(&mut d, &k0, 28);
    // ...while partition 1 (next due at 10) fires at 12.
    pipe_at(&mut d, &k1, 12);
    let r = |k: &str, ts: i64| kvt(k, &format!("v{ts}"), ts);
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            r(&k0, 0),
            tick(0, 0, 0),
            r(&k0, 25),
            tick(0, 25, 25),
            r(&k1, 5),
            tick(1, 5, 5),
            r(&k0, 28),
            r(&k1, 12),
            tick(1, 12, 12),
        ]
    );
    assert_eq!(*stream_times.lock().unwrap(), [0, 25, 5, 28, 12]);
}

// ------------------------------------------------------------- wall clock

#[test]
fn wall_clock_punctuation_fires_one_interval_after_scheduling_and_once_per_advance() {
    let (mut d, _) = ticker_driver(
        ms(1000),
        PunctuationType::WallClockTime,
        DriverConfig::default(),
    );
    let out = topic("out");

    d.advance_wall_clock(ms(500)).unwrap();
    assert_eq!(d.wall_clock(), 500);
    assert_eq!(read_kvt(&mut d, &out), []);

    d.advance_wall_clock(ms(600)).unwrap();
    assert_eq!(read_kvt(&mut d, &out), [tick(0, 1100, 1100)]);

    // 2000, 3000 and 4000 were all passed: it fires once, next due at 5000.
    d.advance_wall_clock(ms(3500)).unwrap();
    assert_eq!(d.wall_clock(), 4600);
    assert_eq!(read_kvt(&mut d, &out), [tick(0, 4600, 4600)]);

    d.advance_wall_clock(ms(399)).unwrap();
    assert_eq!(read_kvt(&mut d, &out), []);
    d.advance_wall_clock(ms(1)).unwrap();
    assert_eq!(read_kvt(&mut d, &out), [tick(0, 5000, 5000)]);

    // Records do not move the wall clock.
    pipe_at(&mut d, "k", 100_000);
    assert_eq!(read_kvt(&mut d, &out), [rec(100_000)]);
}

#[test]
fn wall_clock_starts_at_the_configured_time() {
    let config = DriverConfig {
        wall_clock: 10_000,
        ..DriverConfig::default()
    };
    let (mut d, _) = ticker_driver(ms(1000), PunctuationType::WallClockTime, config);
    d.advance_wall_clock(ms(999)).unwrap();
    assert_eq!(read_kvt(&mut d, &topic("out")), []);
    d.advance_wall_clock(ms(1)).unwrap();
    assert_eq!(read_kvt(&mut d, &topic("out")), [tick(0, 11_000, 11_000)]);
}

#[test]
fn every_task_punctuates_on_the_wall_clock() {
    let config = DriverConfig::default().partitions("in", 3);
    let (mut d, _) = ticker_driver(ms(1000), PunctuationType::WallClockTime, config);
    assert_eq!(d.task_ids().len(), 3);
    d.advance_wall_clock(ms(1000)).unwrap();
    d.advance_wall_clock(ms(1500)).unwrap();
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            tick(0, 1000, 1000),
            tick(1, 1000, 1000),
            tick(2, 1000, 1000),
            tick(0, 2500, 2500),
            tick(1, 2500, 2500),
            tick(2, 2500, 2500),
        ]
    );
}

// ----------------------------------------------------------------- cancel

/// Schedules `main` and `other`; cancels `main` in its second punctuation
/// and `other` in `main`'s first. Logs every punctuation.
struct Canceller {
    kind: PunctuationType,
    main: Option<PunctuationId>,
    other: Option<PunctuationId>,
    fired: usize,
    log: Arc<Mutex<Vec<String>>>,
}

impl Processor<String, String, String, String> for Canceller {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), InitError> {
        self.main = Some(ctx.schedule(ms(10), self.kind));
        self.other = Some(ctx.schedule(ms(10), self.kind));
        Ok(())
    }

    fn process(&mut self, _: Record<String, String>, _: &mut ProcessorContext<'_, String, String>) {
    }

    fn punctuate(
        &mut self,
        id: PunctuationId,
        ts: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        let name = if Some(id) == self.main {
            "main"
        } else {
            "other"
        };
        self.log.lock().unwrap().push(format!("{name}@{ts}"));
        if Some(id) != self.main {
            return;
        }
        self.fired += 1;
        if self.fired == 1 {
            // Due at the same time, after this one: it must not fire.
            ctx.cancel(self.other.unwrap());
        }
        if self.fired == 2 {
            ctx.cancel(id);
        }
    }
}

fn canceller_driver(kind: PunctuationType) -> (TopologyTestDriver, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let b = StreamsBuilder::new();
    let _ = b
        .stream("in", StringSerde, StringSerde)
        .process(move || Canceller {
            kind,
            main: None,
            other: None,
            fired: 0,
            log: l.clone(),
        });
    (TopologyTestDriver::new(b.build().unwrap()), log)
}

#[test]
fn a_punctuation_cancelled_in_punctuate_stops_firing() {
    let (mut d, log) = canceller_driver(PunctuationType::WallClockTime);
    for _ in 0..5 {
        d.advance_wall_clock(ms(10)).unwrap();
    }
    assert_eq!(*log.lock().unwrap(), ["main@10", "main@20"]);

    let (mut d, log) = canceller_driver(PunctuationType::StreamTime);
    for ts in [0, 10, 20, 30, 40] {
        pipe_at(&mut d, "k", ts);
    }
    assert_eq!(*log.lock().unwrap(), ["main@0", "main@10"]);
}

// ------------------------------------------------------ commit, lifecycle

/// Asks for a commit on every record and forwards it.
struct Committer;

impl Processor<String, String, String, String> for Committer {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        ctx.commit();
        ctx.forward(r);
    }
}

#[test]
fn commit_requests_do_not_disturb_the_driver() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .process(|| Committer)
        .to("out", StringSerde, StringSerde);
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    for ts in [1, 2, 3] {
        pipe_at(&mut d, "k", ts);
    }
    d.advance_wall_clock(ms(1000)).unwrap();
    assert_eq!(read_kvt(&mut d, &topic("out")), [rec(1), rec(2), rec(3)]);
}

/// Logs init (with the clocks it sees), process and close.
struct Lifecycle {
    log: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicUsize>,
}

impl Processor<String, String, String, String> for Lifecycle {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), InitError> {
        let line = format!(
            "init {} app={} stream={} wall={} source={:?}",
            ctx.task_id(),
            ctx.application_id(),
            ctx.stream_time(),
            ctx.wall_clock_time(),
            ctx.record_source()
        );
        self.log.lock().unwrap().push(line);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        let line = format!("process {} {}", ctx.task_id(), r.value);
        self.log.lock().unwrap().push(line);
    }

    fn close(&mut self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn processors_are_initialized_per_task_and_closed_when_the_driver_drops() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(AtomicUsize::new(0));
    let (l, c) = (log.clone(), closed.clone());
    let b = StreamsBuilder::new();
    let _ = b
        .stream("in", StringSerde, StringSerde)
        .process(move || Lifecycle {
            log: l.clone(),
            closed: c.clone(),
        });
    let config = DriverConfig {
        application_id: "lifecycle".into(),
        wall_clock: 777,
        ..DriverConfig::default()
    }
    .partitions("in", 2);
    let mut d = TopologyTestDriver::with_config(b.build().unwrap(), config);
    pipe_at(&mut d, &key_on(1, 2), 5);
    pipe_at(&mut d, &key_on(0, 2), 6);
    assert_eq!(closed.load(Ordering::SeqCst), 0);
    drop(d);
    assert_eq!(closed.load(Ordering::SeqCst), 2);
    let min = i64::MIN;
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("init 0_0 app=lifecycle stream={min} wall=777 source=None"),
            format!("init 0_1 app=lifecycle stream={min} wall=777 source=None"),
            "process 0_1 v5".to_string(),
            "process 0_0 v6".to_string(),
        ]
    );
}
