use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::Collector;
use crate::observability::Metrics;
use crate::runtime::output::{OutMeta, OutputBuffer};
use crate::topology::TopicTable;

fn committed(consumer: &BaseConsumer) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("in", 0);
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    c.find_partition("in", 0).unwrap().offset()
}

#[test]
fn a_commit_that_does_not_wait_commits_once_its_outputs_are_acknowledged() {
    let mock = MockCluster::new(1).unwrap();
    for t in ["in", "out"] {
        mock.create_topic(t, 1, 1).unwrap();
    }
    let bootstrap = mock.bootstrap_servers();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "g")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut producer = ClientConfig::new();
    producer.set("bootstrap.servers", &bootstrap);
    let mut table = TopicTable::default();
    let out = table.intern("out");
    let mut collector =
        Collector::new(&producer, Arc::new(table), HashSet::new(), "dlq".into()).unwrap();
    let phases = Metrics::new().thread("app", "t").commit_phases;
    // Every answer of the broker takes 300 ms from here on.
    mock.broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    let output = |value: &[u8]| {
        let mut buffer = OutputBuffer::default();
        let meta = OutMeta::new(out, Some(0), 1);
        buffer.push_raw(meta, Some(b"k"), Some(value));
        buffer
    };

    collector.send(&output(b"first")).unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("in", 0, Offset::Offset(7))
        .unwrap();
    collector.commit_later(&consumer, offsets, &phases).unwrap();
    // Sent in the next epoch: the commit does not wait for it.
    collector.send(&output(b"second")).unwrap();
    assert!(
        collector.pending.is_some(),
        "the output was not acknowledged yet"
    );
    assert_eq!(committed(&consumer), Offset::Invalid, "committed early");

    let deadline = Instant::now() + Duration::from_secs(30);
    while collector.pending.is_some() {
        assert!(Instant::now() < deadline, "never committed");
        collector.poll();
        collector.poll_pending(&consumer).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Committed without a flush: the second output may still be in flight.
    assert!(collector.epoch_reported(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&consumer) != Offset::Offset(7) {
        assert!(
            Instant::now() < deadline,
            "the commit did not reach the broker"
        );
        consumer.poll(Duration::from_millis(10));
    }
}
