//! Test-driver tests of the stateless DSL: every operator, split/merge and
//! fan-out, headers, custom processors with `forward_to` and
//! `record_source`, several partitions, intermediate topics, poison records
//! and topology build errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eddy::kafka::partitioner::partition_for_key;
use eddy::processor::{FailureKind, Header, Headers, Processor, ProcessorContext, Record};
use eddy::runtime::{dlq_headers, ErrorPolicy, RecordError, TaskId};
use eddy::serde::{I64Serde, JsonSerde, Serde, SerdeError, StringSerde};
use eddy::testing::{DriverConfig, RawTestRecord, TestRecord, TestTopic, TopologyTestDriver};
use eddy::topology::{StreamsBuilder, TopologyError};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- helpers

/// A string-keyed, string-valued topic.
fn topic(name: &str) -> TestTopic<String, String> {
    TestTopic::new(name, StringSerde, StringSerde)
}

fn driver(builder: StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::new(builder.build().expect("topology builds"))
}

fn driver_with(builder: StreamsBuilder, config: DriverConfig) -> TopologyTestDriver {
    TopologyTestDriver::with_config(builder.build().expect("topology builds"), config)
}

/// Pipes `(key, value, timestamp)` records into `input`, in order.
fn pipe_all(
    d: &mut TopologyTestDriver,
    input: &TestTopic<String, String>,
    records: &[(&str, &str, i64)],
) {
    for &(k, v, ts) in records {
        d.pipe(input, k.into(), v.into(), ts)
            .expect("pipe succeeds");
    }
}

/// `(key, value, timestamp)` of everything written to `t` since the last read.
fn read_kvt<K: 'static, V: 'static>(
    d: &mut TopologyTestDriver,
    t: &TestTopic<K, V>,
) -> Vec<(K, V, i64)> {
    d.read(t)
        .expect("output decodes")
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect()
}

fn kvt(k: &str, v: &str, ts: i64) -> (String, String, i64) {
    (k.into(), v.into(), ts)
}

fn shared<T>() -> Arc<Mutex<Vec<T>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn headers(pairs: &[(&str, Option<&str>)]) -> Headers {
    Headers(
        pairs
            .iter()
            .map(|&(k, v)| Header {
                key: k.into(),
                value: v.map(|v| v.as_bytes().to_vec()),
            })
            .collect(),
    )
}

fn task(subtopology: u32, partition: i32) -> TaskId {
    TaskId {
        subtopology,
        partition,
    }
}

// ---------------------------------------------------------- each operator

#[test]
fn filter_keeps_only_matching_records() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .filter(|_, v: &String| v.starts_with('a'))
        .to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[
            ("k1", "apple", 1),
            ("k2", "banana", 2),
            ("k3", "avocado", 3),
        ],
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [kvt("k1", "apple", 1), kvt("k3", "avocado", 3)]
    );
}

#[test]
fn filter_not_drops_matching_records() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .filter_not(|k: &String, _| k == "k2")
        .to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[
            ("k1", "apple", 1),
            ("k2", "banana", 2),
            ("k3", "avocado", 3),
        ],
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [kvt("k1", "apple", 1), kvt("k3", "avocado", 3)]
    );
}

#[test]
fn map_replaces_key_and_value_and_keeps_timestamp() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .map(|k: String, v: String| (format!("{v}-{k}"), v.len() as i64))
        .to("out", StringSerde, I64Serde);
    let mut d = driver(b);
    pipe_all(&mut d, &topic("in"), &[("a", "one", 10), ("b", "three", 7)]);
    let out = TestTopic::new("out", StringSerde, I64Serde);
    assert_eq!(
        read_kvt(&mut d, &out),
        [("one-a".to_string(), 3, 10), ("three-b".to_string(), 5, 7)]
    );
}

#[test]
fn map_values_replaces_value_and_keeps_key_and_timestamp() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(&mut d, &topic("in"), &[("a", "one", 10), ("b", "two", 3)]);
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [kvt("a", "ONE", 10), kvt("b", "TWO", 3)]
    );
}

#[test]
fn flat_map_emits_zero_one_or_several_records_with_the_input_timestamp() {
    let b = StreamsBuilder::new();
    // The value is how many copies to emit.
    b.stream("in", StringSerde, StringSerde)
        .flat_map(|k: String, v: String| {
            let n: usize = v.parse().unwrap();
            (0..n)
                .map(move |i| (format!("{k}{i}"), i as i64))
                .collect::<Vec<_>>()
        })
        .to("out", StringSerde, I64Serde);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[("none", "0", 1), ("one", "1", 2), ("three", "3", 30)],
    );
    let out = TestTopic::new("out", StringSerde, I64Serde);
    assert_eq!(
        read_kvt(&mut d, &out),
        [
            ("one0".to_string(), 0, 2),
            ("three0".to_string(), 0, 30),
            ("three1".to_string(), 1, 30),
            ("three2".to_string(), 2, 30),
        ]
    );
}

#[test]
fn flat_map_values_splits_values_under_the_same_key() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .flat_map_values(|v: String| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[
            ("s1", "the quick fox", 4),
            ("s2", "", 5),
            ("s3", "jumps", 6),
        ],
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            kvt("s1", "the", 4),
            kvt("s1", "quick", 4),
            kvt("s1", "fox", 4),
            kvt("s3", "jumps", 6)
        ]
    );
}

#[test]
fn select_key_rekeys_and_output_is_partitioned_by_the_new_key() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .select_key(|k: &String, v: &String| format!("{v}/{k}"))
        .to("out", StringSerde, StringSerde);
    let mut d = driver_with(b, DriverConfig::default().partitions("out", 3));
    let records = [("a", "x", 1), ("b", "y", 2), ("c", "z", 3), ("d", "w", 4)];
    pipe_all(&mut d, &topic("in"), &records);
    let got: Vec<_> = d
        .read(&topic("out"))
        .unwrap()
        .into_iter()
        .map(|r| (r.partition, r.key, r.value, r.timestamp))
        .collect();
    let expected: Vec<_> = records
        .iter()
        .map(|&(k, v, ts)| {
            let key = format!("{v}/{k}");
            (partition_for_key(key.as_bytes(), 3), key, v.to_string(), ts)
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn peek_observes_each_record_and_passes_it_on_unchanged() {
    let seen = shared();
    let b = StreamsBuilder::new();
    let log = seen.clone();
    b.stream("in", StringSerde, StringSerde)
        .peek(move |k: &String, v: &String| log.lock().unwrap().push((k.clone(), v.clone())))
        .to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    let input = topic("in");
    let mut with_headers = Record::new("k1".to_string(), "v1".to_string(), 11);
    with_headers.headers.add("h", "1");
    d.pipe_record(&input, with_headers).unwrap();
    d.pipe(&input, "k2".into(), "v2".into(), 12).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("k1".to_string(), "v1".to_string()),
            ("k2".to_string(), "v2".to_string())
        ]
    );
    assert_eq!(
        d.read(&topic("out")).unwrap(),
        [
            TestRecord {
                partition: 0,
                key: "k1".to_string(),
                value: "v1".to_string(),
                timestamp: 11,
                headers: headers(&[("h", Some("1"))]),
            },
            TestRecord {
                partition: 0,
                key: "k2".to_string(),
                value: "v2".to_string(),
                timestamp: 12,
                headers: Headers::new(),
            },
        ]
    );
}

#[test]
fn foreach_observes_each_record_and_ends_the_stream() {
    let seen = shared();
    let b = StreamsBuilder::new();
    let log = seen.clone();
    b.stream("in", StringSerde, StringSerde)
        .foreach(move |k: &String, v: &String| log.lock().unwrap().push(format!("{k}={v}")));
    let topology = b.build().unwrap();
    assert_eq!(topology.sink_topics(), Vec::<&str>::new());
    let mut d = TopologyTestDriver::new(topology);
    pipe_all(
        &mut d,
        &topic("in"),
        &[("a", "1", 1), ("b", "2", 2), ("a", "3", 3)],
    );
    assert_eq!(*seen.lock().unwrap(), ["a=1", "b=2", "a=3"]);
    assert_eq!(d.read_raw("test-app-dlq"), []);
}

// ------------------------------------------------- split, merge, fan-out

#[test]
fn split_sends_each_record_to_the_first_matching_branch_or_the_default() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream("in", StringSerde, StringSerde)
        .split("by-letter")
        .branch("a", |_, v: &String| v.contains('a'))
        .branch("b", |_, v: &String| v.contains('b'))
        .default_branch("rest");
    assert_eq!(branches.keys().collect::<Vec<_>>(), ["a", "b", "rest"]);
    for (name, stream) in &branches {
        stream.to(&format!("out-{name}"), StringSerde, StringSerde);
    }
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[
            ("1", "ab", 1),
            ("2", "b", 2),
            ("3", "c", 3),
            ("4", "a", 4),
            ("5", "ba", 5),
        ],
    );
    // "ab" and "ba" match both predicates: they go to "a" only.
    assert_eq!(
        read_kvt(&mut d, &topic("out-a")),
        [kvt("1", "ab", 1), kvt("4", "a", 4), kvt("5", "ba", 5)]
    );
    assert_eq!(read_kvt(&mut d, &topic("out-b")), [kvt("2", "b", 2)]);
    assert_eq!(read_kvt(&mut d, &topic("out-rest")), [kvt("3", "c", 3)]);
}

#[test]
fn split_without_default_branch_drops_unmatched_records() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream("in", StringSerde, StringSerde)
        .split("by-letter")
        .branch("a", |_, v: &String| v.contains('a'))
        .branch("b", |_, v: &String| v.contains('b'))
        .no_default_branch();
    assert_eq!(branches.keys().collect::<Vec<_>>(), ["a", "b"]);
    branches["a"].to("out-a", StringSerde, StringSerde);
    branches["b"].to("out-b", StringSerde, StringSerde);
    let topology = b.build().unwrap();
    let names: Vec<_> = (0..)
        .map_while(|i| topology.node(i))
        .map(|(n, _, _)| n.to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "KSTREAM-SOURCE-0000000000",
            "by-letter",
            "by-letter-a",
            "by-letter-b",
            "KSTREAM-SINK-0000000004",
            "KSTREAM-SINK-0000000005"
        ]
    );
    let mut d = TopologyTestDriver::new(topology);
    pipe_all(
        &mut d,
        &topic("in"),
        &[
            ("1", "c", 1),
            ("2", "b", 2),
            ("3", "xyz", 3),
            ("4", "ab", 4),
        ],
    );
    assert_eq!(read_kvt(&mut d, &topic("out-a")), [kvt("4", "ab", 4)]);
    assert_eq!(read_kvt(&mut d, &topic("out-b")), [kvt("2", "b", 2)]);
    assert_eq!(d.read_raw("test-app-dlq"), []);
}

#[test]
fn merge_interleaves_both_inputs_in_arrival_order() {
    let b = StreamsBuilder::new();
    let left = b.stream("left", StringSerde, StringSerde);
    let right = b
        .stream("right", StringSerde, StringSerde)
        .map_values(|v: String| format!("r:{v}"));
    left.merge(&right).to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    let (l, r) = (topic("left"), topic("right"));
    d.pipe(&l, "k".into(), "1".into(), 5).unwrap();
    d.pipe(&r, "k".into(), "2".into(), 3).unwrap();
    d.pipe(&r, "j".into(), "3".into(), 9).unwrap();
    d.pipe(&l, "j".into(), "4".into(), 1).unwrap();
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            kvt("k", "1", 5),
            kvt("k", "r:2", 3),
            kvt("j", "r:3", 9),
            kvt("j", "4", 1)
        ]
    );
}

#[test]
fn fan_out_gives_every_record_to_each_operator_in_attachment_order() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, StringSerde);
    // Attached first, though it sorts after "lower".
    s.map_values(|v: String| format!("upper:{}", v.to_uppercase()))
        .to("out", StringSerde, StringSerde);
    s.map_values(|v: String| format!("lower:{v}"))
        .to("out", StringSerde, StringSerde);
    s.filter(|_, v: &String| v == "b")
        .to("only-b", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(&mut d, &topic("in"), &[("1", "a", 1), ("2", "b", 2)]);
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            kvt("1", "upper:A", 1),
            kvt("1", "lower:a", 1),
            kvt("2", "upper:B", 2),
            kvt("2", "lower:b", 2)
        ]
    );
    assert_eq!(read_kvt(&mut d, &topic("only-b")), [kvt("2", "b", 2)]);
}

#[test]
fn merging_a_stream_with_a_derived_stream_follows_depth_first_attachment_order() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, StringSerde);
    let tagged = s.map_values(|v: String| format!("tagged:{v}"));
    s.merge(&tagged).to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(&mut d, &topic("in"), &[("1", "a", 1), ("2", "b", 2)]);
    // The source's children are [map_values, merge]: the mapped copy reaches
    // the merge first.
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [
            kvt("1", "tagged:a", 1),
            kvt("1", "a", 1),
            kvt("2", "tagged:b", 2),
            kvt("2", "b", 2)
        ]
    );
}

// ---------------------------------------------------------------- headers

#[test]
fn headers_are_carried_from_input_to_output() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .flat_map_values(|v: String| vec![v.clone(), v])
        .select_key(|_, v: &String| v.clone())
        .to("out", StringSerde, StringSerde);
    let mut d = driver(b);
    let h = headers(&[
        ("trace", Some("t-1")),
        ("null", None),
        ("trace", Some("t-2")),
    ]);
    let mut record = Record::new("k".to_string(), "v".to_string(), 42);
    record.headers = h.clone();
    d.pipe_record(&topic("in"), record).unwrap();
    d.pipe(&topic("in"), "k".into(), "w".into(), 43).unwrap();
    let out: Vec<_> = d
        .read(&topic("out"))
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp, r.headers))
        .collect();
    assert_eq!(
        out,
        [
            ("V".to_string(), "V".to_string(), 42, h.clone()),
            ("V".to_string(), "V".to_string(), 42, h.clone()),
            ("W".to_string(), "W".to_string(), 43, Headers::new()),
            ("W".to_string(), "W".to_string(), 43, Headers::new()),
        ]
    );
    assert_eq!(h.last("trace"), Some(&b"t-2"[..]));
}

// ------------------------------------------------------ custom processors

/// Sends numeric values to child "a" and the others to child "b", tagging
/// each with where it came from.
struct Router {
    log: Arc<Mutex<Vec<String>>>,
}

impl Processor<String, String, String, String> for Router {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        let src = ctx.record_source().expect("a record is being processed");
        let tagged = format!("{}@{}/{}/{}", r.value, src.topic, src.partition, src.offset);
        let children = ctx.child_names().collect::<Vec<_>>().join(",");
        let target = if r.value.parse::<i64>().is_ok() {
            "a"
        } else {
            "b"
        };
        let delivered = ctx.forward_to(target, r.clone().with_value(tagged));
        let to_missing = ctx.forward_to("missing", r);
        self.log.lock().unwrap().push(format!(
            "children={children} {target}={delivered} missing={to_missing}"
        ));
    }
}

#[test]
fn custom_processor_forwards_to_named_children_and_sees_the_record_source() {
    let log = shared();
    let b = StreamsBuilder::new();
    let l = log.clone();
    let routed = b
        .stream("in", StringSerde, StringSerde)
        .process(move || Router { log: l.clone() });
    routed
        .map_values(|v: String| format!("number {v}"))
        .named("a")
        .to("out-a", StringSerde, StringSerde);
    routed
        .filter(|_, _| true)
        .named("b")
        .to("out-b", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[("k1", "12", 100), ("k2", "twelve", 101), ("k3", "7", 102)],
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out-a")),
        [
            kvt("k1", "number 12@in/0/0", 100),
            kvt("k3", "number 7@in/0/2", 102)
        ]
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out-b")),
        [kvt("k2", "twelve@in/0/1", 101)]
    );
    assert_eq!(
        *log.lock().unwrap(),
        [
            "children=a,b a=true missing=false",
            "children=a,b b=true missing=false",
            "children=a,b a=true missing=false",
        ]
    );
}

/// Counts the records of its task and says where each came from.
struct Counter {
    count: u32,
}

impl Processor<String, String, String, String> for Counter {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        self.count += 1;
        let src = ctx.record_source().expect("a record is being processed");
        let value = format!(
            "task={} src={}-{}@{} n={}",
            ctx.task_id(),
            src.topic,
            src.partition,
            src.offset,
            self.count
        );
        ctx.forward(r.with_value(value));
    }
}

#[test]
fn each_partition_has_its_own_task_and_processor_state() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .process(|| Counter { count: 0 })
        .to("out", StringSerde, StringSerde);
    let mut d = driver_with(
        b,
        DriverConfig::default()
            .partitions("in", 4)
            .partitions("out", 4),
    );
    assert_eq!(
        d.task_ids(),
        [task(0, 0), task(0, 1), task(0, 2), task(0, 3)]
    );

    let keys = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let partitions: Vec<i32> = keys
        .iter()
        .map(|k| partition_for_key(k.as_bytes(), 4))
        .collect();
    // Sanity: the keys spread over several partitions, and share some.
    let mut distinct = partitions.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 2 && distinct.len() < keys.len(),
        "{partitions:?}"
    );

    let input = topic("in");
    let mut per_partition: HashMap<i32, u32> = HashMap::new();
    let mut expected = Vec::new();
    for round in 0..2 {
        for (key, &p) in keys.iter().zip(&partitions) {
            let ts = round * 100 + i64::from(p);
            d.pipe(&input, key.to_string(), "v".into(), ts).unwrap();
            let n = per_partition.entry(p).or_default();
            *n += 1;
            expected.push(TestRecord {
                partition: p,
                key: key.to_string(),
                value: format!("task=0_{p} src=in-{p}@{} n={n}", *n - 1),
                timestamp: ts,
                headers: Headers::new(),
            });
        }
    }
    assert_eq!(d.read(&topic("out")).unwrap(), expected);
    // Piped input is processed in place, not kept for reading.
    assert!(d.read_raw("in").is_empty());
}

// ------------------------------------------------------ intermediate topics

#[test]
fn records_written_to_an_intermediate_topic_are_read_back() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .to("mid", StringSerde, StringSerde);
    b.stream("mid", StringSerde, StringSerde)
        .map_values(|v: String| format!("{v}!"))
        .to("out", StringSerde, StringSerde);
    let topology = b.build().unwrap();

    let subs = topology.subtopologies();
    assert_eq!(subs.len(), 2);
    assert_eq!(
        (
            subs[0].id,
            &subs[0].source_topics[..],
            &subs[0].sink_topics[..]
        ),
        (0, &["in".to_string()][..], &["mid".to_string()][..])
    );
    assert_eq!(
        (
            subs[1].id,
            &subs[1].source_topics[..],
            &subs[1].sink_topics[..]
        ),
        (1, &["mid".to_string()][..], &["out".to_string()][..])
    );
    assert_eq!(
        topology.describe(),
        "Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [in])
      --> KSTREAM-MAP-VALUES-0000000001
    Processor: KSTREAM-MAP-VALUES-0000000001 (op: map-values)
      --> KSTREAM-SINK-0000000002
      <-- KSTREAM-SOURCE-0000000000
    Sink: KSTREAM-SINK-0000000002 (topic: mid)
      <-- KSTREAM-MAP-VALUES-0000000001

   Sub-topology: 1
    Source: KSTREAM-SOURCE-0000000003 (topics: [mid])
      --> KSTREAM-MAP-VALUES-0000000004
    Processor: KSTREAM-MAP-VALUES-0000000004 (op: map-values)
      --> KSTREAM-SINK-0000000005
      <-- KSTREAM-SOURCE-0000000003
    Sink: KSTREAM-SINK-0000000005 (topic: out)
      <-- KSTREAM-MAP-VALUES-0000000004

"
    );

    let mut d =
        TopologyTestDriver::with_config(topology, DriverConfig::default().partitions("mid", 2));
    assert_eq!(d.task_ids(), [task(0, 0), task(1, 0), task(1, 1)]);
    pipe_all(
        &mut d,
        &topic("in"),
        &[("k1", "a", 5), ("k2", "b", 6), ("k3", "c", 4)],
    );
    let mid: Vec<_> = d
        .read(&topic("mid"))
        .unwrap()
        .into_iter()
        .map(|r| (r.partition, r.key, r.value, r.timestamp))
        .collect();
    let on_mid = |k: &str| partition_for_key(k.as_bytes(), 2);
    assert_eq!(
        mid,
        [
            (on_mid("k1"), "k1".to_string(), "A".to_string(), 5),
            (on_mid("k2"), "k2".to_string(), "B".to_string(), 6),
            (on_mid("k3"), "k3".to_string(), "C".to_string(), 4),
        ]
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [kvt("k1", "A!", 5), kvt("k2", "B!", 6), kvt("k3", "C!", 4)]
    );
}

// ---------------------------------------------------------- poison records

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: i64,
}

fn reading(sensor: &str, value: i64) -> Reading {
    Reading {
        sensor: sensor.into(),
        value,
    }
}

/// in (JSON readings) -> value -> out (i64).
fn readings_topology() -> StreamsBuilder {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, JsonSerde::<Reading>::new())
        .map_values(|r: Reading| r.value)
        .to("out", StringSerde, I64Serde);
    b
}

fn readings_in() -> TestTopic<String, Reading> {
    TestTopic::new("in", StringSerde, JsonSerde::new())
}

fn values_out() -> TestTopic<String, i64> {
    TestTopic::new("out", StringSerde, I64Serde)
}

const POISON: &[u8] = b"{not json";

/// The message the driver gives for `bytes` failing to decode as a reading.
fn json_error(bytes: &[u8]) -> String {
    JsonSerde::<Reading>::new()
        .deserialize(Some(bytes))
        .unwrap_err()
        .to_string()
}

fn dlq_record(
    key: &[u8],
    value: &[u8],
    timestamp: i64,
    original: &[(&str, Option<&str>)],
    kind: &str,
    message: &str,
    (topic, partition, offset): (&str, i32, i64),
) -> RawTestRecord {
    let mut h = headers(original);
    h.add(dlq_headers::EXCEPTION, kind)
        .add(dlq_headers::MESSAGE, message)
        .add(dlq_headers::TOPIC, topic)
        .add(dlq_headers::PARTITION, partition.to_string())
        .add(dlq_headers::OFFSET, offset.to_string());
    RawTestRecord {
        partition: 0,
        key: Some(key.to_vec()),
        value: Some(value.to_vec()),
        timestamp,
        headers: h,
    }
}

#[test]
fn undecodable_value_goes_to_the_dead_letter_topic_and_processing_goes_on() {
    let mut d = driver(readings_topology());
    d.pipe(&readings_in(), "k1".into(), reading("s1", 1), 10)
        .unwrap();
    let trace = headers(&[("trace", Some("abc"))]);
    d.pipe_raw("in", None, Some(b"k2"), Some(POISON), 20, trace)
        .unwrap();
    d.pipe(&readings_in(), "k3".into(), reading("s3", 3), 30)
        .unwrap();

    assert_eq!(
        read_kvt(&mut d, &values_out()),
        [("k1".to_string(), 1, 10), ("k3".to_string(), 3, 30)]
    );
    let message = format!("value: {}", json_error(POISON));
    assert!(message.starts_with("value: invalid JSON: "), "{message}");
    assert_eq!(
        d.read_raw("test-app-dlq"),
        [dlq_record(
            b"k2",
            POISON,
            20,
            &[("trace", Some("abc"))],
            "deserialization",
            &message,
            ("in", 0, 1)
        )]
    );
    // Nothing else is dead-lettered later.
    d.pipe(&readings_in(), "k4".into(), reading("s4", 4), 40)
        .unwrap();
    assert_eq!(d.read_raw("test-app-dlq"), []);
}

#[test]
fn undecodable_key_is_dead_lettered_with_its_partition_and_offset() {
    let mut d = driver_with(
        readings_topology(),
        DriverConfig::default().partitions("in", 3),
    );
    let good = serde_json::to_vec(&reading("s", 5)).unwrap();
    d.pipe_raw("in", Some(2), Some(b"ok"), Some(&good), 1, Headers::new())
        .unwrap();
    d.pipe_raw("in", Some(1), Some(b"ok"), Some(&good), 2, Headers::new())
        .unwrap();
    d.pipe_raw(
        "in",
        Some(2),
        Some(&[0xff, 0xfe]),
        Some(&good),
        3,
        Headers::new(),
    )
    .unwrap();
    let utf8 = StringSerde.deserialize(Some(&[0xff, 0xfe])).unwrap_err();
    assert_eq!(
        d.read_raw("test-app-dlq"),
        [dlq_record(
            &[0xff, 0xfe],
            &good,
            3,
            &[],
            "deserialization",
            &format!("key: {utf8}"),
            ("in", 2, 1)
        )]
    );
    assert_eq!(
        read_kvt(&mut d, &values_out()),
        [("ok".to_string(), 5, 1), ("ok".to_string(), 5, 2)]
    );
}

#[test]
fn fail_policy_returns_the_error_instead_of_dead_lettering() {
    let config = DriverConfig {
        on_error: ErrorPolicy::Fail,
        ..DriverConfig::default()
    };
    let mut d = driver_with(readings_topology(), config);
    d.pipe(&readings_in(), "k1".into(), reading("s1", 1), 10)
        .unwrap();
    let err = d
        .pipe_raw("in", None, Some(b"k2"), Some(POISON), 20, Headers::new())
        .unwrap_err();
    assert_eq!(
        err,
        RecordError {
            kind: FailureKind::Deserialization,
            message: format!("value: {}", json_error(POISON)),
            topic: "in".into(),
            partition: 0,
            offset: 1,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "deserialization error on in-0@1: value: {}",
            json_error(POISON)
        )
    );
    assert_eq!(read_kvt(&mut d, &values_out()), [("k1".to_string(), 1, 10)]);
    assert_eq!(d.read_raw("test-app-dlq"), []);
}

/// A string serde that refuses to encode "boom".
struct Picky;

impl Serde<String> for Picky {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        if value == "boom" {
            return Err(SerdeError::Utf8("refusing boom".into()));
        }
        StringSerde.serialize(value, out)
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<String, SerdeError> {
        StringSerde.deserialize(data)
    }
}

#[test]
fn a_record_failing_in_a_sink_is_dead_lettered_as_a_processing_error() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .to("out", StringSerde, Picky);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[("k1", "fine", 1), ("k2", "boom", 2), ("k3", "ok", 3)],
    );
    assert_eq!(
        read_kvt(&mut d, &topic("out")),
        [kvt("k1", "fine", 1), kvt("k3", "ok", 3)]
    );
    assert_eq!(
        d.read_raw("test-app-dlq"),
        [dlq_record(
            b"k2",
            b"boom",
            2,
            &[],
            "production",
            "serializing for topic out: invalid UTF-8: refusing boom",
            ("in", 0, 1)
        )]
    );

    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .to("out", StringSerde, Picky);
    let config = DriverConfig {
        on_error: ErrorPolicy::Fail,
        ..DriverConfig::default()
    };
    let mut d = driver_with(b, config);
    assert_eq!(
        d.pipe(&topic("in"), "k".into(), "boom".into(), 7),
        Err(RecordError {
            kind: FailureKind::Production,
            message: "serializing for topic out: invalid UTF-8: refusing boom".into(),
            topic: "in".into(),
            partition: 0,
            offset: 0,
        })
    );
}

#[test]
fn custom_dead_letter_topic_name() {
    let config = DriverConfig {
        application_id: "app".into(),
        dead_letter_topic: Some("poison".into()),
        ..DriverConfig::default()
    };
    let mut d = driver_with(readings_topology(), config);
    d.pipe_raw("in", None, Some(b"k"), Some(POISON), 1, Headers::new())
        .unwrap();
    assert_eq!(d.read_raw("app-dlq"), []);
    assert_eq!(d.read_raw("test-app-dlq"), []);
    let dead = d.read_raw("poison");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(POISON));
}

// ---------------------------------------------------- topology build errors

#[test]
fn a_topology_without_sources_is_rejected() {
    assert_eq!(
        StreamsBuilder::new().build().unwrap_err(),
        TopologyError::NoSources
    );
}

#[test]
fn reading_a_topic_twice_is_rejected() {
    let b = StreamsBuilder::new();
    b.stream("in", StringSerde, StringSerde)
        .to("a", StringSerde, StringSerde);
    b.stream("in", StringSerde, I64Serde)
        .to("b", StringSerde, I64Serde);
    let err = b.build().unwrap_err();
    assert_eq!(err, TopologyError::TopicSourcedTwice("in".into()));
    assert_eq!(
        err.to_string(),
        "topic \"in\" is read by two sources; read it once and reuse the stream"
    );
}

#[test]
fn duplicate_node_names_are_rejected() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, StringSerde);
    s.filter(|_, _| true)
        .named("x")
        .to("a", StringSerde, StringSerde);
    s.map_values(|v: String| v)
        .named("x")
        .to("b", StringSerde, StringSerde);
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::DuplicateName("x".into())
    );

    // Split branches are named "<split>-<branch>".
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, StringSerde);
    let _ = s.split("s").branch("a", |_, _| true).no_default_branch();
    s.peek(|_, _| {}).named("s-a");
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::DuplicateName("s-a".into())
    );

    // Two splits with the same name.
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, StringSerde);
    let _ = s.split("s").branch("a", |_, _| true).no_default_branch();
    let _ = s.split("s").branch("b", |_, _| true).no_default_branch();
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::DuplicateName("s".into())
    );
}

#[test]
fn renaming_a_branch_outlet_keeps_its_records_flowing() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream("in", StringSerde, StringSerde)
        .split("s")
        .branch("a", |_, v: &String| v.starts_with('a'))
        .default_branch("rest");
    branches["a"]
        .clone()
        .named("renamed-a")
        .to("out-a", StringSerde, StringSerde);
    branches["rest"]
        .clone()
        .named("renamed-rest")
        .to("out-rest", StringSerde, StringSerde);
    let mut d = driver(b);
    pipe_all(
        &mut d,
        &topic("in"),
        &[("k1", "apple", 1), ("k2", "pear", 2)],
    );
    assert_eq!(read_kvt(&mut d, &topic("out-a")), [kvt("k1", "apple", 1)]);
    assert_eq!(read_kvt(&mut d, &topic("out-rest")), [kvt("k2", "pear", 2)]);
}

/// "boom" fails in sink "b" (a map with tuple keys has no JSON form) after
/// sink "a" already wrote it.
#[test]
fn under_fail_nothing_a_failed_record_produced_leaks_into_later_output() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", StringSerde, StringSerde);
    s.to("a", StringSerde, StringSerde);
    s.map_values(|v: String| {
        let mut m = HashMap::new();
        if v == "boom" {
            m.insert((1, 2), 3);
        }
        m
    })
    .to("b", StringSerde, JsonSerde::new());
    let mut d = driver_with(
        b,
        DriverConfig {
            on_error: ErrorPolicy::Fail,
            ..DriverConfig::default()
        },
    );
    let input = topic("in");
    let err = d.pipe(&input, "k".into(), "boom".into(), 1).unwrap_err();
    assert_eq!(err.kind, FailureKind::Production);
    d.pipe(&input, "k".into(), "ok".into(), 2).unwrap();
    assert_eq!(read_kvt(&mut d, &topic("a")), [kvt("k", "ok", 2)]);
}
