//! The global thread: fills the worker's global tables from all partitions
//! of their topics, first to the end (before stream threads start), then
//! following new records until shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::Error;
use crate::kafka::StreamsConfig;
use crate::stores::{GlobalStore, GlobalTables};

fn apply(stores: &HashMap<String, Arc<GlobalStore>>, m: &rdkafka::message::BorrowedMessage<'_>) {
    if let (Some(store), Some(key)) = (stores.get(m.topic()), m.key()) {
        store.apply(key, m.payload());
    }
}

/// Restores every global table, then keeps them current on a thread of
/// their own until `shutdown`.
pub(crate) fn start(
    globals: &GlobalTables,
    config: &StreamsConfig,
    servers: &str,
    shutdown: Arc<AtomicBool>,
) -> Result<Option<JoinHandle<()>>, Error> {
    let stores: HashMap<String, Arc<GlobalStore>> = globals
        .iter()
        .map(|(t, s)| (t.to_owned(), s.clone()))
        .collect();
    if stores.is_empty() {
        return Ok(None);
    }
    let mut client = config.admin_client_config(servers);
    client
        .set("group.id", format!("{}-global", config.application_id))
        .set("client.id", format!("{}-global", config.application_id))
        .set("enable.auto.commit", "false")
        // Only committed writes, up to the last stable offset.
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = client.create()?;
    let timeout = config.startup_timeout;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for topic in stores.keys() {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            ends.insert((topic.clone(), p.id()), high);
        }
    }
    consumer.assign(&tpl)?;
    // Restore: read every partition to the end it had when we started.
    let started = Instant::now();
    let mut restored = 0u64;
    ends.retain(|_, high| *high > 0);
    while !ends.is_empty() && !shutdown.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                apply(&stores, &m);
                restored += 1;
                let key = (m.topic().to_owned(), m.partition());
                if ends.get(&key).is_some_and(|high| m.offset() + 1 >= *high) {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => tracing::warn!("global table restore: {e}"),
            // Records of a transactional writer end with a marker the
            // consumer steps over without handing it out: its position
            // tells when a partition is read to the end.
            None => {
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        let key = (e.topic().to_owned(), e.partition());
                        if let (Offset::Offset(o), Some(high)) = (e.offset(), ends.get(&key)) {
                            if o >= *high {
                                ends.remove(&key);
                            }
                        }
                    }
                }
            }
        }
    }
    tracing::info!(
        restored,
        secs = started.elapsed().as_secs_f64(),
        "global tables restored"
    );
    let handle = std::thread::Builder::new()
        .name("eddy-global".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Acquire) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => apply(&stores, &m),
                    Some(Err(e)) => tracing::warn!("global table: {e}"),
                    None => {}
                }
            }
        })
        .map_err(|source| Error::Spawn {
            what: "the global thread".into(),
            source,
        })?;
    Ok(Some(handle))
}
