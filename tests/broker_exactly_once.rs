//! Exactly-once on the real broker: counts stay exact across SIGKILLs, a
//! poison record is dead-lettered inside a transaction that commits, an
//! output the broker refuses aborts one transaction and is dead-lettered
//! when its input is processed again, and interactive queries never answer
//! from a transaction that was aborted.
//!
//! The embedded cluster fakes transactions (aborted records stay visible
//! to read-committed consumers), so these tests prove nothing there and
//! return at once.

mod common;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cluster, unique, wait_for, Consumed, TestCluster, Worker};
use eddy::kafka::{Guarantee, StreamsConfig};
use eddy::processor::{InitError, Processor, ProcessorContext, Record};
use eddy::runtime::{KafkaStreams, Lookup};
use eddy::serde::{I64Serde, StringSerde};
use eddy::stores::{KeyValueStore, StoreSpec};
use eddy::topology::StreamsBuilder;

const MINUTE: Duration = Duration::from_secs(60);

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real broker, or `None` on the embedded cluster.
fn broker() -> Option<TestCluster> {
    let c = cluster();
    if c.is_embedded() {
        eprintln!("exactly-once is proven on the real broker only");
        return None;
    }
    Some(c)
}

fn text(b: &Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
}

/// Every count of every key in output order; fails on a count that does
/// not grow (an update written twice, or one from an aborted transaction).
fn counts(records: &[Consumed]) -> HashMap<String, i64> {
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in records {
        let n = i64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap());
        let before = last.insert(text(&r.key), n).unwrap_or(0);
        assert!(
            n > before,
            "{}: count {n} after {before}: written twice",
            text(&r.key)
        );
    }
    last
}

#[test]
fn counts_are_exact_across_sigkills() {
    let Some(c) = broker() else { return };
    let (input, output, app) = (unique("eos-in"), unique("eos-out"), unique("eos"));
    c.create_topic(&input, 4);
    c.create_topic(&output, 4);
    let keys = 40;
    let produce = |range: std::ops::Range<u32>| {
        let records: Vec<_> = range
            .map(|i| {
                (
                    Some(format!("key-{}", i % keys).into_bytes()),
                    Some(b"x".to_vec()),
                )
            })
            .collect();
        c.produce(&input, &records);
    };
    let dir = state_dir("eos");
    let eos = ["--guarantee", "exactly_once"];
    let spawn = || Worker::count_with(&c.bootstrap, &app, (&input, &output), &dir, &eos);
    produce(0..4000);
    let mut w = spawn();
    wait_for("the first records to be counted", MINUTE, || {
        w.metric("eddy_thread_records_processed_total") >= 500
    });
    w.kill();
    produce(4000..8000);
    let mut w = spawn();
    wait_for("more records to be counted", MINUTE, || {
        w.metric("eddy_thread_records_processed_total") >= 1000
    });
    w.kill();
    // A restart on an empty state directory restores from the changelog,
    // which holds committed writes only.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    produce(8000..10000);
    let mut w = spawn();
    let done = |r: &[Consumed]| {
        let mut last: HashMap<String, i64> = HashMap::new();
        for x in r {
            let n = i64::from_be_bytes(x.value.as_deref().unwrap().try_into().unwrap());
            last.insert(text(&x.key), n);
        }
        last.len() == keys as usize && last.values().all(|&n| n >= 250)
    };
    let mut reader = c.reader(&output);
    assert!(reader.read_until(MINUTE, done), "every key counted to 250");
    reader.read_until(Duration::from_secs(3), |_| false);
    let got = counts(&reader.records);
    assert_eq!(got.len(), keys as usize);
    for (k, n) in &got {
        assert_eq!(*n, 250, "{k}");
    }
    assert!(w.terminate().success());
}

#[test]
fn a_poison_record_is_dead_lettered_in_a_transaction_that_commits() {
    let Some(c) = broker() else { return };
    let (input, output, app) = (unique("eos-p-in"), unique("eos-p-out"), unique("eos-p"));
    c.create_topic(&input, 1);
    c.create_topic(&output, 1);
    let n = |v: i64| v.to_be_bytes().to_vec();
    let records: Vec<_> = [
        ("a", n(1)),
        ("b", n(2)),
        ("a", b"oops".to_vec()),
        ("a", n(4)),
    ]
    .into_iter()
    .map(|(k, v)| (Some(k.as_bytes().to_vec()), Some(v)))
    .collect();
    c.produce(&input, &records);
    let b = StreamsBuilder::new();
    b.stream(&input, StringSerde, I64Serde)
        .map_values(|v: i64| v * 10)
        .to(&output, StringSerde, I64Serde);
    let config = StreamsConfig::new(&app)
        .bootstrap_servers(&c.bootstrap)
        .guarantee(Guarantee::ExactlyOnce);
    let running = KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .unwrap();
    let out = c.consume_count(&output, 3, MINUTE, Duration::from_secs(2));
    let values: Vec<_> = out
        .iter()
        .map(|r| {
            let v = i64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap());
            (text(&r.key), v)
        })
        .collect();
    assert_eq!(
        values,
        [("a".into(), 10), ("b".into(), 20), ("a".into(), 40)]
    );
    let dlq = c.consume_count(&format!("{app}-dlq"), 1, MINUTE, Duration::from_secs(1));
    assert_eq!(dlq.len(), 1);
    assert_eq!(text(&dlq[0].value), "oops");
    assert_eq!(
        dlq[0].header("__streams.errors.exception").as_deref(),
        Some("deserialization")
    );
    assert_eq!(
        running
            .metrics()
            .total("eddy_thread_transaction_aborts_total"),
        0
    );
    running.close().unwrap();
}

/// Stores a fresh random nonce per record under its key and writes it out;
/// a record with a key starting with `big` writes a value larger than the output topic
/// takes.
struct Nonces {
    store: Option<KeyValueStore<String, i64>>,
    seed: std::collections::hash_map::RandomState,
    n: u64,
}

impl Processor<String, String, String, String> for Nonces {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), InitError> {
        self.store =
            Some(ctx.key_value_store("nonces", Arc::new(StringSerde), Arc::new(I64Serde))?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        if r.key.starts_with("big") {
            ctx.forward(r.with_value("x".repeat(4000)));
            return;
        }
        self.n += 1;
        let mut h = self.seed.build_hasher();
        h.write_u64(self.n);
        let nonce = (h.finish() >> 1) as i64;
        self.store.as_ref().unwrap().put(&r.key, &nonce).unwrap();
        ctx.forward(r.with_value(nonce.to_string()));
    }
}

#[test]
fn queries_never_answer_from_an_aborted_transaction() {
    let Some(c) = broker() else { return };
    let (input, output, app) = (unique("eos-q-in"), unique("eos-q-out"), unique("eos-q"));
    c.create_topic(&input, 2);
    // Each `big` output is refused by the broker: its transaction aborts.
    c.create_topic_with(&output, 2, &[("max.message.bytes", "2000")]);
    let partition = |k: &str| eddy::kafka::partitioner::partition_for_key(k.as_bytes(), 2);
    // A refused batch holds the big output alone.
    let big = (0..)
        .map(|i| format!("big-{i}"))
        .find(|b| partition(b) != partition("k"))
        .unwrap();
    let b = StreamsBuilder::new();
    b.add_state_store(StoreSpec::key_value("nonces"));
    b.stream(&input, StringSerde, StringSerde)
        .process_with_stores(
            || Nonces {
                store: None,
                seed: Default::default(),
                n: 0,
            },
            &["nonces"],
        )
        .to(&output, StringSerde, StringSerde);
    let config = StreamsConfig::new(&app)
        .bootstrap_servers(&c.bootstrap)
        .state_dir(state_dir("eos-q"))
        .guarantee(Guarantee::ExactlyOnce)
        // Long transactions, queried many times while open.
        .commit_interval(Duration::from_millis(1500));
    let running = KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .unwrap();
    let queries = running.queries().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Lookup::Local { value: Some(v), .. }) =
                    queries.get("nonces", &"k".to_string(), &StringSerde, &I64Serde)
                {
                    seen.insert(v);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        })
    };
    let records = 300;
    let producer = c.producer();
    for i in 0..records {
        let key = if i % 60 == 59 { big.as_str() } else { "k" };
        let r = rdkafka::producer::BaseRecord::<str, str>::to(&input)
            .key(key)
            .payload("v");
        eddy::kafka::send_blocking(&producer, r).unwrap();
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(15));
    }
    let nonces = records - records / 60;
    let out = c.consume_count(&output, nonces as usize, MINUTE, Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let seen = asker.join().unwrap();
    let committed: HashSet<i64> = out
        .iter()
        .filter(|r| text(&r.key) == "k")
        .map(|r| text(&r.value).parse().unwrap())
        .collect();
    assert_eq!(committed.len(), nonces as usize, "one nonce per record");
    let aborts = running
        .metrics()
        .total("eddy_thread_transaction_aborts_total");
    assert!(aborts >= 1, "the refused outputs aborted transactions");
    assert!(seen.len() >= 10, "the store was queried while it changed");
    let aborted: Vec<_> = seen.difference(&committed).collect();
    assert!(
        aborted.is_empty(),
        "{} answers came from aborted transactions ({aborts} aborts)",
        aborted.len()
    );
    let dlq = c.consume_count(&format!("{app}-dlq"), 5, MINUTE, Duration::from_secs(1));
    assert_eq!(dlq.len(), 5, "each refused output dead-lettered once");
    for d in &dlq {
        assert_eq!(text(&d.key), big);
        assert_eq!(
            d.header("__streams.errors.exception").as_deref(),
            Some("production")
        );
    }
    running.close().unwrap();
}
