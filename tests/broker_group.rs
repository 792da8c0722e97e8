//! Workers in one consumer group, against the cluster under test
//! (`EDDY_TEST_BOOTSTRAP`, else an embedded cluster in this process that the
//! worker processes reach over loopback).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{cluster, unique, value_counts, wait_for, Worker};
use eddy::kafka::partitioner::partition_for_key;

const MINUTE: Duration = Duration::from_secs(60);

fn expected_values(range: std::ops::Range<u32>) -> HashSet<String> {
    range.map(|i| format!("VALUE-{i}")).collect()
}

fn app_topics(c: &common::TestCluster, name: &str, partitions: i32) -> (String, String, String) {
    let (input, output, app) = (
        unique(&format!("{name}-in")),
        unique(&format!("{name}-out")),
        unique(name),
    );
    c.create_topic(&input, partitions);
    c.create_topic(&output, partitions);
    if c.is_embedded() {
        // The embedded cluster has no CreateTopics API for the worker to use.
        c.create_topic(&format!("{app}-dlq"), 1);
    }
    (input, output, app)
}

#[test]
fn two_workers_split_four_partitions_and_one_takes_over_after_sigkill() {
    let c = cluster();
    let (input, output, app) = app_topics(&c, "split", 4);
    c.produce_numbered(&input, 0..2000);

    let mut a = Worker::pipe(&c.bootstrap, &app, &input, &output);
    let mut b = Worker::pipe(&c.bootstrap, &app, &input, &output);
    wait_for("the two workers to own two partitions each", MINUTE, || {
        a.assigned() == 2 && b.assigned() == 2
    });
    let first = c.consume_until(&output, MINUTE, |r| {
        let seen: HashSet<_> = r.iter().map(|r| r.value_str()).collect();
        expected_values(0..2000).is_subset(&seen)
    });
    let seen: HashSet<_> = first.iter().map(|r| r.value_str()).collect();
    assert!(
        expected_values(0..2000).is_subset(&seen),
        "missing outputs before the kill"
    );
    // Outputs are partitioned like the Java client would: murmur2 of the key.
    for r in &first {
        assert_eq!(r.partition, partition_for_key(r.key.as_deref().unwrap(), 4));
    }

    b.kill();
    c.produce_numbered(&input, 2000..4000);
    wait_for("the survivor to own all four partitions", MINUTE, || {
        a.assigned() == 4
    });
    let all = c.consume_until(&output, MINUTE, |r| {
        let seen: HashSet<_> = r.iter().map(|r| r.value_str()).collect();
        expected_values(0..4000).is_subset(&seen)
    });
    let seen: HashSet<_> = all.iter().map(|r| r.value_str()).collect();
    let missing: Vec<_> = expected_values(0..4000)
        .difference(&seen)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "at-least-once lost {} records, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(
        seen,
        expected_values(0..4000),
        "no output that no input explains"
    );
    assert!(a.terminate().success());
}

#[test]
fn graceful_sigterm_loses_and_duplicates_nothing() {
    let c = cluster();
    let (input, output, app) = app_topics(&c, "graceful", 2);
    c.produce_numbered(&input, 0..1000);
    let mut w = Worker::pipe(&c.bootstrap, &app, &input, &output);
    let out = c.consume_count(&output, 1000, MINUTE, Duration::ZERO);
    assert_eq!(out.len(), 1000);
    assert!(w.terminate().success(), "SIGTERM exits 0");

    c.produce_numbered(&input, 1000..1500);
    let mut w2 = Worker::pipe(&c.bootstrap, &app, &input, &output);
    let out = c.consume_count(&output, 1500, MINUTE, Duration::from_secs(3));
    let counts = value_counts(&out);
    let dupes: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        dupes.is_empty(),
        "duplicates after a graceful restart: {dupes:?}"
    );
    assert_eq!(
        counts.keys().cloned().collect::<HashSet<_>>(),
        expected_values(0..1500)
    );
    assert!(w2.terminate().success());
}

#[test]
fn poison_record_goes_to_the_dead_letter_topic_and_the_rest_flows() {
    let c = cluster();
    let (input, output, app) = app_topics(&c, "poison", 1);
    c.produce(
        &input,
        &[
            (Some(b"k1".to_vec()), Some(b"good one".to_vec())),
            (Some(b"k2".to_vec()), Some(vec![0xff, 0xfe, 0x00])),
            (Some(b"k3".to_vec()), Some(b"good two".to_vec())),
        ],
    );
    let mut w = Worker::pipe(&c.bootstrap, &app, &input, &output);
    let out = c.consume_count(&output, 2, MINUTE, Duration::from_secs(1));
    assert_eq!(
        out.iter().map(|r| r.value_str()).collect::<Vec<_>>(),
        ["GOOD ONE", "GOOD TWO"]
    );
    let dlq = c.consume_count(&format!("{app}-dlq"), 1, MINUTE, Duration::from_secs(1));
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d.key.as_deref(), Some(&b"k2"[..]));
    assert_eq!(
        d.value.as_deref(),
        Some(&[0xff, 0xfe, 0x00][..]),
        "the original bytes"
    );
    assert_eq!(
        d.header("__streams.errors.exception").as_deref(),
        Some("deserialization")
    );
    assert_eq!(d.header("__streams.errors.topic"), Some(input.clone()));
    assert_eq!(d.header("__streams.errors.partition").as_deref(), Some("0"));
    assert_eq!(d.header("__streams.errors.offset").as_deref(), Some("1"));
    assert!(d
        .header("__streams.errors.message")
        .unwrap()
        .contains("UTF-8"));
    wait_for("the dead-letter counter", MINUTE, || {
        w.metric("eddy_thread_records_dead_lettered_total") == 1
    });
    // Lag is reported per owned partition once offsets are committed.
    let lag =
        format!("eddy_consumer_lag{{application=\"{app}\",partition=\"0\",topic=\"{input}\"}} 0");
    wait_for("the consumer lag gauge", MINUTE, || {
        w.metrics().is_some_and(|m| m.contains(&lag))
    });
    let m = w.metrics().unwrap();
    let labels = format!("{{application=\"{app}\",thread=\"StreamThread-1\"}}");
    for name in [
        "eddy_thread_records_consumed_total{} 3",
        "eddy_thread_records_processed_total{} 3",
        "eddy_thread_records_produced_total{} 3",
        "eddy_thread_process_seconds_count{}",
        "eddy_thread_poll_seconds_count{}",
        "eddy_thread_commit_seconds_count{}",
        "eddy_thread_commits_total{}",
    ] {
        let name = name.replacen("{}", &labels, 1);
        assert!(m.contains(&name), "/metrics lacks {name}:\n{m}");
    }
    assert!(w.terminate().success());
}
