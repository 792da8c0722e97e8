//! The customer's e-mail and shipping address in a demo run: after a run of
//! generated orders, no topic of the run — outputs, repartitions and
//! changelogs — holds either in clear, except the `orders` topic they come
//! from and the dead-letter topics (which keep the records they could not
//! process as they were, to be replayed); every read-model answer names its
//! customer by the keyed hash of the e-mail, and grouping the answers by it
//! counts each customer's orders exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const COUNT: u64 = 200;
const MALFORMED_EVERY: u64 = 50;

/// Every record of `topics` from the beginning to their end at the time of
/// the call, by topic, each as the bytes of its key, value and headers
/// together.
fn read_all(consumer: &BaseConsumer, topics: &[String]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    let mut records: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for topic in topics {
        records.insert(topic.clone(), Vec::new());
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        for p in metadata.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if high > low {
                ends.insert((topic.clone(), p.id()), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .unwrap();
            }
        }
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "not read to their end: {ends:?}");
        let m = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(m) => m.unwrap(),
        };
        let mut bytes = m.key().unwrap_or_default().to_vec();
        bytes.extend_from_slice(m.payload().unwrap_or_default());
        if let Some(h) = m.headers() {
            for h in h.iter() {
                bytes.extend_from_slice(h.key.as_bytes());
                bytes.extend_from_slice(h.value.unwrap_or_default());
            }
        }
        let at = (m.topic().to_owned(), m.partition());
        if ends.get(&at).is_some_and(|&end| m.offset() + 1 >= end) {
            ends.remove(&at);
        }
        records.get_mut(m.topic()).unwrap().push(bytes);
    }
    records
}

/// The e-mail of order `i` as the generator writes it.
fn email(i: u64) -> String {
    eddy_orders::order_created(1, i, 50, 0)["email"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What any customer's e-mail or the identifying parts of their address
/// (name, street, postal code) contain, as the generator writes them
/// (`eddy_orders::customer`).
const CLEAR: [&str; 4] = ["@example.com", "Shopper ", " Harbour Street", "PC-"];

/// Whether `bytes` hold personal data in clear.
fn in_clear(bytes: &[u8]) -> bool {
    CLEAR.iter().any(|c| contains(bytes, c))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn no_clear_email_or_address_leaves_the_orders_topic() {
    let http = common::free_addr();
    let suffix = common::unique("masking");
    let args = [
        "--count",
        &COUNT.to_string(),
        "--rate",
        "400",
        "--malformed-every",
        &MALFORMED_EVERY.to_string(),
    ]
    .map(|s| s.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = common::demo_command(http, &suffix, &args)
        .env(eddy_orders::PII_KEY_ENV, common::PII_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut bootstrap = std::env::var("EDDY_TEST_BOOTSTRAP").unwrap_or_default();
    let embedded = bootstrap.is_empty();
    let mut lines = stderr.lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if let Some(rest) = line.split("the embedded cluster at ").nth(1) {
            bootstrap = rest.split(' ').next().unwrap().to_owned();
        }
        if line.starts_with("serving until Ctrl-C") {
            break;
        }
        assert!(
            !line.contains("a key drawn for this run"),
            "the demo drew a key although one was given"
        );
    }
    std::thread::spawn(move || lines.for_each(drop));

    let valid: Vec<u64> = (0..COUNT)
        .filter(|i| i % MALFORMED_EVERY != MALFORMED_EVERY - 1)
        .collect();

    // Every topic of this run, read to its end.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", common::unique("masking-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let ours = |t: &str| embedded || t.contains(&suffix);
    let topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|t| !t.starts_with("__") && ours(t))
        .collect();
    let mut leaks: BTreeMap<String, usize> = BTreeMap::new();
    let mut read: BTreeMap<String, usize> = BTreeMap::new();
    for (topic, records) in read_all(&consumer, &topics) {
        let leaked = records.iter().filter(|r| in_clear(r)).count();
        if leaked > 0 {
            leaks.insert(topic.clone(), leaked);
        }
        read.insert(topic, records.len());
    }
    let name = |t: &str| {
        if embedded {
            t.to_owned()
        } else {
            t.replace(&format!("-{suffix}"), "")
        }
    };
    // The run wrote what is scanned: outputs, repartitions, changelogs of
    // the saga and of the inventory's join window.
    let written: BTreeSet<String> = read
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, _)| name(t))
        .collect();
    for t in [
        "order-outcomes",
        "payments",
        "inventory",
        "order-saga-order-summary-changelog",
        "inventory-service-by-product-repartition",
    ] {
        assert!(written.contains(t), "{t} not written: {written:?}");
    }
    assert!(
        written
            .iter()
            .any(|t| t.starts_with("inventory-service-paid-orders") && t.ends_with("-changelog")),
        "the join window's changelog: {written:?}"
    );
    // Clear personal data: the orders themselves (but the two that are not
    // JSON), and the two that break the schema, kept as they were by the
    // dead-letter topic of each service.
    let leaked: BTreeMap<String, usize> = leaks.into_iter().map(|(t, n)| (name(&t), n)).collect();
    let malformed_with_data = (0..COUNT)
        .filter(|i| i % MALFORMED_EVERY == MALFORMED_EVERY - 1 && (i / MALFORMED_EVERY) % 2 == 1)
        .count();
    let mut want = BTreeMap::from([("orders".to_owned(), COUNT as usize - 2)]);
    for app in ["payment-service", "inventory-service", "order-saga"] {
        want.insert(format!("{app}-dlq"), malformed_with_data);
    }
    assert_eq!(leaked, want, "records with clear personal data, by topic");

    // The read model: each order's customer is the keyed hash of its
    // e-mail, and nothing in clear.
    let mut summaries = BTreeMap::new();
    common::wait_for("the read model", Duration::from_secs(60), || {
        let (status, _, body) = common::exchange(http, "GET", "/stores/order-summary", "", None);
        assert_eq!(status, 200, "{body}");
        assert!(!in_clear(body.as_bytes()), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        summaries = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["key"].as_str().unwrap().to_owned(), e["value"].clone()))
            .collect();
        summaries.len() == valid.len()
    });
    let mut per_customer: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_email: BTreeMap<String, u64> = BTreeMap::new();
    for &i in &valid {
        let id = format!("order-1-{i}");
        let summary = &summaries[&id];
        let email = email(i);
        assert_eq!(
            summary["customer"],
            common::hashed_email(&email),
            "{id}: {summary}"
        );
        *per_customer
            .entry(summary["customer"].as_str().unwrap().to_owned())
            .or_default() += 1;
        *per_email.entry(email).or_default() += 1;
    }
    let by_hash: BTreeMap<String, u64> = per_email
        .into_iter()
        .map(|(e, n)| (common::hashed_email(&e), n))
        .collect();
    assert_eq!(per_customer, by_hash);
    assert!(
        by_hash.values().any(|n| *n > 1),
        "some customer ordered twice"
    );

    child.terminate();
}
