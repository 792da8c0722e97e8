//! A consumer group's lag per partition, as `kafka-consumer-groups.sh
//! --describe` reports it: the committed offset, the log end offset (the
//! high watermark) and their difference.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::error::Error;

/// One partition of a group's input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (the next record it will read); `None`
    /// if it never committed one.
    pub committed: Option<i64>,
    /// The log end offset (high watermark).
    pub end: i64,
    /// `end - committed`; `None` without a committed offset.
    pub lag: Option<i64>,
}

/// The lag of group `group` on every partition of `topics` that exists,
/// asked of the cluster `admin` (an admin client's settings) names. Topics
/// that do not exist (a repartition topic not created yet) are left out.
///
/// The end offsets are read uncommitted, like Kafka's tools: under
/// exactly-once the lag then counts the records of open transactions too.
pub fn group_lag(
    admin: &ClientConfig,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>, Error> {
    let mut config = admin.clone();
    // Never subscribes: the group is only asked for its offsets.
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted");
    let consumer: BaseConsumer = config.create()?;
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                partitions.add_partition(topic, p.id());
            }
        }
    }
    if partitions.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(partitions.clone(), timeout)?;
    let mut latest = partitions.clone();
    latest.set_all_offsets(Offset::End)?;
    let ends = consumer.offsets_for_times(latest, timeout)?;
    let mut out = Vec::new();
    for e in partitions.elements() {
        let (topic, partition) = (e.topic(), e.partition());
        let offset = |tpl: &TopicPartitionList| match tpl.find_partition(topic, partition)?.offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        let end = offset(&ends).ok_or_else(|| Error::NoAnswer {
            topic: topic.to_owned(),
            partition,
            what: "its end offset",
        })?;
        let committed = offset(&committed);
        out.push(PartitionLag {
            topic: topic.to_owned(),
            partition,
            committed,
            end,
            lag: committed.map(|c| end - c),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}
