//! `eddy lag` against Kafka's own `kafka-consumer-groups.sh --describe`
//! (`scripts/kafka/consumer-groups.sh`) for the same group, on the real
//! broker (`EDDY_TEST_BOOTSTRAP`; skipped on the embedded cluster, which
//! Kafka's tools cannot describe).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{cluster, unique, wait_for, Worker};
use serde_json::Value;

const FILE: &str = r#"
[application]
id = "lagger"
commit_interval = "200ms"

[topics.words]

[topics.counted]

[nodes.words]
op = "source"
topic = "words"

[nodes.by-word]
op = "map"
input = "words"
key = "value.word"

[nodes.regrouped]
op = "repartition"
input = "by-word"

[nodes.out]
op = "sink"
input = "regrouped"
topic = "counted"
"#;

type Offsets = BTreeMap<(String, i32), (i64, i64, i64)>;

/// (topic, partition) → (committed, end, lag), from `eddy lag --format
/// json`; the group's name.
fn eddy_lag(file: &Path, bootstrap: &str, suffix: &str) -> (String, Offsets, i64) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["lag", "--config", file.to_str().unwrap()])
        .args([
            "--brokers",
            bootstrap,
            "--suffix",
            suffix,
            "--format",
            "json",
        ])
        .output()
        .expect("run eddy lag");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let offsets = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_i64().unwrap();
            (
                (
                    p["topic"].as_str().unwrap().to_owned(),
                    n("partition") as i32,
                ),
                (n("committed"), n("end"), n("lag")),
            )
        })
        .collect();
    let group = report["group"].as_str().unwrap().to_owned();
    (group, offsets, report["total_lag"].as_i64().unwrap())
}

/// The same, from Kafka's tool (its rows: group, topic, partition,
/// current offset, log end offset, lag, ...).
fn kafka_lag(bootstrap: &str, group: &str) -> Offsets {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka/consumer-groups.sh");
    let out = Command::new(script)
        .args(["--describe", "--group", group])
        .env("EDDY_KAFKA_BOOTSTRAP", bootstrap)
        .output()
        .expect("run kafka-consumer-groups");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || f[0] != group {
                return None;
            }
            let n = |i: usize| f[i].parse::<i64>().ok();
            Some(((f[1].to_owned(), n(2)? as i32), (n(3)?, n(4)?, n(5)?)))
        })
        .collect()
}

fn words(c: &common::TestCluster, topic: &str, range: std::ops::Range<u32>) {
    let records: Vec<_> = range
        .map(|i| {
            let value = format!("{{\"word\": \"w{}\"}}", i % 37);
            (Some(format!("k{i}").into_bytes()), Some(value.into_bytes()))
        })
        .collect();
    c.produce(topic, &records);
}

#[test]
fn eddy_lag_agrees_with_kafka_consumer_groups() {
    let c = cluster();
    if c.is_embedded() {
        eprintln!("skipped: Kafka's tools describe groups of the real broker only");
        return;
    }
    let dir = std::env::temp_dir().join(unique("lag"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lagger.toml");
    std::fs::write(&file, FILE).unwrap();
    let u = unique("l");
    let (input, output) = (format!("words-{u}"), format!("counted-{u}"));
    c.create_topic(&input, 4);
    c.create_topic(&output, 4);
    words(&c, &input, 0..400);

    let state = dir.join("state");
    let path = file.to_str().unwrap();
    let state_dir = state.to_str().unwrap();
    let args = [
        "run",
        "--config",
        path,
        "--suffix",
        &u,
        "--state-dir",
        state_dir,
    ];
    let mut worker = Worker::spawn(&c.bootstrap, &args);
    // Each word goes through the source and the repartition topic.
    wait_for(
        "the worker to process every word twice",
        Duration::from_secs(90),
        || worker.metric("eddy_thread_records_processed_total") == 800,
    );
    assert!(worker.terminate().success());
    words(&c, &input, 400..500);

    let (group, ours, total) = eddy_lag(&file, &c.bootstrap, &u);
    let theirs = kafka_lag(&c.bootstrap, &group);
    // Four partitions of the input and four of the repartition topic.
    assert_eq!(ours.len(), 8, "{ours:?}");
    assert_eq!(ours, theirs);
    assert_eq!(total, 100, "the words produced after the worker stopped");
    let repartition = format!("{group}-regrouped-repartition");
    for ((topic, _), (_, _, lag)) in &ours {
        if *topic == repartition {
            assert_eq!(*lag, 0, "{topic}");
        }
    }
}
