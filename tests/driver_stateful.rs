//! Test-driver tests of stateful operators: aggregations, tables, windows
//! (tumbling, hopping, session), grace and late drops, emit-final, stores
//! and changelogs.

use std::time::Duration;

use eddy::processor::{InitError, Processor, ProcessorContext, Record};
use eddy::serde::{I64Serde, Nullable, StringSerde};
use eddy::stores::{KeyValueStore, StoreSpec};
use eddy::testing::{DriverConfig, TestTopic, TopologyTestDriver};
use eddy::topology::{
    SessionWindows, StreamsBuilder, TimeWindows, Window, Windowed, WindowedSerde,
};

fn strings(name: &str) -> TestTopic<String, String> {
    TestTopic::new(name, StringSerde, StringSerde)
}

fn counts(name: &str) -> TestTopic<String, Option<i64>> {
    TestTopic::new(name, StringSerde, Nullable(I64Serde))
}

fn windowed_counts(name: &str) -> TestTopic<Windowed<String>, Option<i64>> {
    TestTopic::new(name, WindowedSerde(StringSerde), Nullable(I64Serde))
}

fn pipe(
    d: &mut TopologyTestDriver,
    topic: &TestTopic<String, String>,
    records: &[(&str, &str, i64)],
) {
    for &(k, v, ts) in records {
        d.pipe(topic, k.into(), v.into(), ts).unwrap();
    }
}

fn kv<V>(k: &str, v: V) -> (String, V) {
    (k.to_owned(), v)
}

fn w(k: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed {
        key: k.to_owned(),
        window: Window { start, end },
    }
}

#[test]
fn count_per_key_emits_every_update_and_keeps_the_store() {
    let b = StreamsBuilder::new();
    b.stream("words", StringSerde, StringSerde)
        .group_by_key(StringSerde, StringSerde)
        .count("counts")
        .to_stream()
        .to("out", StringSerde, Nullable(I64Serde));
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    pipe(
        &mut d,
        &strings("words"),
        &[("a", "x", 1), ("b", "x", 2), ("a", "x", 3)],
    );
    assert_eq!(
        d.read_key_values(&counts("out")).unwrap(),
        [kv("a", Some(1)), kv("b", Some(1)), kv("a", Some(2))]
    );
    let store: KeyValueStore<String, i64> = d
        .key_value_store("counts", 0, StringSerde, I64Serde)
        .unwrap();
    assert_eq!(store.all().unwrap(), [kv("a", 2), kv("b", 1)]);
    // Every update went to the changelog, on the task's partition.
    let changelog = d
        .read(&TestTopic::new(
            "test-app-counts-changelog",
            StringSerde,
            I64Serde,
        ))
        .unwrap();
    let got: Vec<_> = changelog
        .iter()
        .map(|r| (r.key.as_str(), r.value, r.partition))
        .collect();
    assert_eq!(got, [("a", 1, 0), ("b", 1, 0), ("a", 2, 0)]);
}

#[test]
fn group_by_repartitions_by_the_new_key_across_partitions() {
    let b = StreamsBuilder::new();
    b.stream("clicks", StringSerde, StringSerde)
        .group_by(|_, page: &String| page.clone(), StringSerde, StringSerde)
        .count("per-page")
        .to_stream()
        .to("out", StringSerde, Nullable(I64Serde));
    let topology = b.build().unwrap();
    let repartition = topology.internal_topics();
    assert_eq!(repartition.len(), 1);
    assert!(repartition[0].ends_with("-repartition"));
    let config = DriverConfig::default()
        .partitions("clicks", 3)
        .partitions("out", 3);
    let mut d = TopologyTestDriver::with_config(topology, config);
    // 3 input partitions, so the repartition topic has 3 too: 6 tasks.
    assert_eq!(d.task_ids().len(), 6);
    pipe(
        &mut d,
        &strings("clicks"),
        &[
            ("u1", "home", 1),
            ("u2", "cart", 2),
            ("u3", "home", 3),
            ("u4", "home", 4),
        ],
    );
    let mut out = d.read_key_values(&counts("out")).unwrap();
    out.sort();
    assert_eq!(
        out,
        [
            kv("cart", Some(1)),
            kv("home", Some(1)),
            kv("home", Some(2)),
            kv("home", Some(3))
        ]
    );
}

#[test]
fn group_by_key_after_a_key_change_repartitions_but_not_otherwise() {
    let plain = StreamsBuilder::new();
    plain
        .stream("in", StringSerde, StringSerde)
        .filter(|_, _| true)
        .group_by_key(StringSerde, StringSerde)
        .count("c");
    assert!(plain.build().unwrap().internal_topics().is_empty());
    let rekeyed = StreamsBuilder::new();
    rekeyed
        .stream("in", StringSerde, StringSerde)
        .map(|k: String, v: String| (v, k))
        .filter(|_, _| true)
        .group_by_key(StringSerde, StringSerde)
        .count("c");
    assert_eq!(rekeyed.build().unwrap().internal_topics().len(), 1);
}

#[test]
fn reduce_and_aggregate_fold_values_per_key() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, I64Serde);
    let grouped = s.group_by_key(StringSerde, I64Serde);
    grouped
        .reduce(|a, b| a + b, "sums", I64Serde)
        .to_stream()
        .to("sums", StringSerde, Nullable(I64Serde));
    grouped
        .aggregate(
            String::new,
            |_, v: i64, acc: String| format!("{acc}{v},"),
            "lists",
            StringSerde,
        )
        .to_stream()
        .to("lists", StringSerde, Nullable(StringSerde));
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let input = TestTopic::new("in", StringSerde, I64Serde);
    for (k, v) in [("a", 5), ("a", 7), ("b", 1), ("a", -2)] {
        d.pipe(&input, k.into(), v, 0).unwrap();
    }
    assert_eq!(
        d.read_key_values(&counts("sums")).unwrap(),
        [
            kv("a", Some(5)),
            kv("a", Some(12)),
            kv("b", Some(1)),
            kv("a", Some(10))
        ]
    );
    let lists = TestTopic::new("lists", StringSerde, Nullable(StringSerde));
    assert_eq!(
        d.read_key_values(&lists).unwrap(),
        [
            kv("a", Some("5,".to_string())),
            kv("a", Some("5,7,".to_string())),
            kv("b", Some("1,".to_string())),
            kv("a", Some("5,7,-2,".to_string()))
        ]
    );
}

#[test]
fn table_updates_and_tombstones_flow_and_filter_turns_misses_into_deletes() {
    let b = StreamsBuilder::new();
    let table = b.table("prices", StringSerde, I64Serde, "prices-store");
    table.to_stream().to("all", StringSerde, Nullable(I64Serde));
    table
        .filter(|_, p| *p >= 100)
        .to_stream()
        .to("expensive", StringSerde, Nullable(I64Serde));
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let prices = TestTopic::new("prices", StringSerde, Nullable(I64Serde));
    for (k, v) in [
        ("x", Some(150)),
        ("y", Some(50)),
        ("x", Some(90)),
        ("y", None),
        ("z", None),
        ("y", Some(120)),
    ] {
        d.pipe(&prices, k.into(), v, 0).unwrap();
    }
    assert_eq!(
        d.read_key_values(&counts("all")).unwrap(),
        [
            kv("x", Some(150)),
            kv("y", Some(50)),
            kv("x", Some(90)),
            kv("y", None),
            kv("y", Some(120))
        ],
        "deleting an absent key (z) changes nothing"
    );
    assert_eq!(
        d.read_key_values(&counts("expensive")).unwrap(),
        [kv("x", Some(150)), kv("x", None), kv("y", Some(120))]
    );
    let store: KeyValueStore<String, i64> = d
        .key_value_store("prices-store", 0, StringSerde, I64Serde)
        .unwrap();
    assert_eq!(store.all().unwrap(), [kv("x", 90), kv("y", 120)]);
}

fn windowed_count(windows: TimeWindows, emit_final: bool) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let windowed = b
        .stream("events", StringSerde, StringSerde)
        .group_by_key(StringSerde, StringSerde)
        .windowed_by(windows);
    let windowed = if emit_final {
        windowed.emit_final()
    } else {
        windowed
    };
    windowed.count("window-counts").to_stream().to(
        "out",
        WindowedSerde(StringSerde),
        Nullable(I64Serde),
    );
    TopologyTestDriver::new(b.build().unwrap())
}

#[test]
fn tumbling_window_counts_with_grace_and_late_drops() {
    let ms = Duration::from_millis;
    let mut d = windowed_count(TimeWindows::tumbling(ms(10), ms(5)), false);
    let input = strings("events");
    // 0 and 5 share [0,10); 10 opens [10,20); 20 moves stream time to 20.
    pipe(
        &mut d,
        &input,
        &[("a", "", 0), ("a", "", 5), ("a", "", 10), ("a", "", 20)],
    );
    // Out of order but within grace: [10,20) closes at 20 + 5.
    pipe(&mut d, &input, &[("a", "", 12)]);
    // Too late: [0,10) closed at 10 + 5 <= 20. Dropped and counted.
    pipe(&mut d, &input, &[("a", "", 4)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [
            (w("a", 0, 10), Some(1)),
            (w("a", 0, 10), Some(2)),
            (w("a", 10, 20), Some(1)),
            (w("a", 20, 30), Some(1)),
            (w("a", 10, 20), Some(2)),
        ]
    );
    assert_eq!(d.late_drops(), 1);
    let store = d
        .window_store("window-counts", 0, StringSerde, I64Serde)
        .unwrap();
    assert_eq!(
        store.fetch(&"a".to_string(), 0, 30).unwrap(),
        [(0, 2), (10, 2), (20, 1)]
    );
}

#[test]
fn hopping_windows_count_a_record_in_every_window_it_falls_in() {
    let ms = Duration::from_millis;
    let mut d = windowed_count(TimeWindows::hopping(ms(10), ms(5), ms(100)), false);
    pipe(&mut d, &strings("events"), &[("k", "", 7), ("k", "", 12)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [
            (w("k", 0, 10), Some(1)),
            (w("k", 5, 15), Some(1)),
            (w("k", 5, 15), Some(2)),
            (w("k", 10, 20), Some(1)),
        ]
    );
}

#[test]
fn emit_final_emits_each_window_once_when_it_closes() {
    let ms = Duration::from_millis;
    let mut d = windowed_count(TimeWindows::tumbling(ms(10), ms(2)), true);
    let input = strings("events");
    pipe(
        &mut d,
        &input,
        &[("a", "", 1), ("b", "", 5), ("a", "", 3), ("a", "", 11)],
    );
    assert!(d.read_raw("out").is_empty(), "[0,10) closes only at 10 + 2");
    pipe(&mut d, &input, &[("b", "", 12)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [(w("a", 0, 10), Some(2)), (w("b", 0, 10), Some(1))]
    );
    pipe(&mut d, &input, &[("a", "", 21)]);
    assert_eq!(d.read_key_values(&windowed_counts("out")).unwrap(), []);
    pipe(&mut d, &input, &[("a", "", 22)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [(w("a", 10, 20), Some(1)), (w("b", 10, 20), Some(1))]
    );
}

#[test]
fn session_windows_grow_merge_and_drop_late_records() {
    let ms = Duration::from_millis;
    let b = StreamsBuilder::new();
    b.stream("events", StringSerde, StringSerde)
        .group_by_key(StringSerde, StringSerde)
        .session_windowed_by(SessionWindows::with_inactivity_gap(ms(10), ms(0)))
        .count("sessions")
        .to_stream()
        .to("out", WindowedSerde(StringSerde), Nullable(I64Serde));
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let input = strings("events");
    pipe(&mut d, &input, &[("a", "", 0), ("a", "", 5)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [
            (w("a", 0, 0), Some(1)),
            (w("a", 0, 0), None),
            (w("a", 0, 5), Some(2))
        ]
    );
    pipe(&mut d, &input, &[("a", "", 30), ("a", "", 25)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [
            (w("a", 30, 30), Some(1)),
            (w("a", 30, 30), None),
            (w("a", 25, 30), Some(2))
        ]
    );
    // 15 is within the gap of both sessions: all three merge.
    pipe(&mut d, &input, &[("a", "", 15)]);
    assert_eq!(
        d.read_key_values(&windowed_counts("out")).unwrap(),
        [
            (w("a", 0, 5), None),
            (w("a", 25, 30), None),
            (w("a", 0, 30), Some(5))
        ]
    );
    let store = d
        .session_store("sessions", 0, StringSerde, I64Serde)
        .unwrap();
    assert_eq!(
        store.fetch(&"a".to_string()).unwrap(),
        [(Window { start: 0, end: 30 }, 5)]
    );
    // Stream time 30, grace 0: a lone record at 5 would end at 5 < 30: late.
    pipe(&mut d, &input, &[("b", "", 5)]);
    assert_eq!(d.read_key_values(&windowed_counts("out")).unwrap(), []);
    assert_eq!(d.late_drops(), 1);
}

/// Forwards a record only the first time its key is seen.
struct Dedupe {
    store: &'static str,
    seen: Option<KeyValueStore<String, i64>>,
}

impl Processor<String, String, String, String> for Dedupe {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), InitError> {
        self.seen = Some(ctx.key_value_store(
            self.store,
            std::sync::Arc::new(StringSerde),
            std::sync::Arc::new(I64Serde),
        )?);
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        let seen = self.seen.as_ref().unwrap();
        if seen.get(&r.key).unwrap().is_none() {
            seen.put(&r.key, &r.timestamp).unwrap();
            ctx.forward(r);
        }
    }
}

#[test]
fn processor_api_stores_are_declared_connected_and_per_partition() {
    let b = StreamsBuilder::new();
    b.add_state_store(StoreSpec::key_value("seen"));
    b.stream("in", StringSerde, StringSerde)
        .process_with_stores(
            || Dedupe {
                store: "seen",
                seen: None,
            },
            &["seen"],
        )
        .to("out", StringSerde, StringSerde);
    let mut d = TopologyTestDriver::with_config(
        b.build().unwrap(),
        DriverConfig::default().partitions("in", 2),
    );
    pipe(
        &mut d,
        &strings("in"),
        &[("x", "1", 1), ("y", "2", 2), ("x", "3", 3)],
    );
    assert_eq!(
        d.read_key_values(&strings("out")).unwrap(),
        [kv("x", "1".to_string()), kv("y", "2".to_string())]
    );
    let p = eddy::kafka::partitioner::partition_for_key(b"x", 2);
    let store = d.key_value_store("seen", p, StringSerde, I64Serde).unwrap();
    assert_eq!(store.get(&"x".to_string()).unwrap(), Some(1));
    let other = d
        .key_value_store("seen", 1 - p, StringSerde, I64Serde)
        .unwrap();
    assert_eq!(other.get(&"x".to_string()).unwrap(), None);
}

#[test]
fn a_processor_whose_store_is_not_connected_fails_at_start_naming_it() {
    let b = StreamsBuilder::new();
    b.add_state_store(StoreSpec::key_value("seen"));
    b.stream("in", StringSerde, StringSerde)
        .process_with_stores(
            || Dedupe {
                store: "sene",
                seen: None,
            },
            &["seen"],
        )
        .to("out", StringSerde, StringSerde);
    let topology = b.build().unwrap();
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        TopologyTestDriver::new(topology)
    }))
    .err()
    .expect("the driver refuses to start the task");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        message,
        "task 0_0: processor KSTREAM-PROCESSOR-0000000001 could not start: \
         no KeyValue store named \"sene\" is connected to this processor"
    );
}
