//! Topic checks and creation at start-up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use crate::error::Error;

/// Partition counts of the topics that exist, fetched from cluster
/// metadata; fails if no broker answers within `timeout`.
pub fn topic_partitions(
    config: &ClientConfig,
    timeout: Duration,
) -> Result<HashMap<String, i32>, Error> {
    let servers = config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_owned();
    let unreachable = |source| Error::Unreachable {
        servers: servers.clone(),
        timeout,
        source,
    };
    let client: BaseConsumer = config.create().map_err(unreachable)?;
    let deadline = Instant::now() + timeout;
    let metadata = retrying(deadline, || {
        client.fetch_metadata(None, deadline.saturating_duration_since(Instant::now()))
    })
    .map_err(unreachable)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// Creates `topic` with `partitions` partitions, the broker's default
/// replication factor and the given topic configs, unless it exists.
pub fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Spawn {
            what: "an async runtime".into(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let created = retrying(deadline, || {
        let results = runtime.block_on(admin.create_topics([&new], &options))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(KafkaError::AdminOp(code)),
            }
        }
        Ok(())
    });
    created.map_err(|e| Error::CreateTopic {
        topic: topic.to_owned(),
        reason: e.to_string(),
    })
}

/// Runs `op` again, every half second until `deadline`, while it fails
/// for a reason that passes: a broker that restarts refuses connections
/// for a while, and librdkafka sends an admin request to one broker (the
/// controller it last heard of) without trying another.
fn retrying<T>(
    deadline: Instant,
    mut op: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match op() {
            Err(KafkaError::AdminOp(code) | KafkaError::MetadataFetch(code))
                if passes(code) && Instant::now() < deadline =>
            {
                tracing::warn!("a Kafka admin request failed ({code}); trying again");
                std::thread::sleep(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Whether an admin request that failed with `code` may succeed later.
fn passes(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | OperationTimedOut
            | RequestTimedOut
            | NotController
            | LeaderNotAvailable
            | NotLeaderForPartition
            | NetworkException
            | BrokerNotAvailable
            | CoordinatorNotAvailable
            | KafkaStorageError
    )
}

/// How far ahead of the broker's clock each of `topics` accepts a record
/// timestamp, in ms: `message.timestamp.after.max.ms` (Kafka 3.6+), else
/// `message.timestamp.difference.max.ms`. Topics whose config cannot be
/// read are left out.
pub fn future_timestamp_limits(
    config: &ClientConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, i64>, Error> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let specifiers: Vec<_> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Spawn {
            what: "an async runtime".into(),
            source,
        })?;
    let results = runtime.block_on(admin.describe_configs(&specifiers, &options))?;
    let mut limits = HashMap::new();
    for (topic, result) in topics.iter().zip(results) {
        let Ok(resource) = result else { continue };
        let entries = resource.entry_map();
        let limit = [
            "message.timestamp.after.max.ms",
            "message.timestamp.difference.max.ms",
        ]
        .iter()
        .find_map(|k| entries.get(k)?.value.as_deref()?.parse::<i64>().ok());
        if let Some(limit) = limit {
            limits.insert((*topic).to_owned(), limit);
        }
    }
    Ok(limits)
}
