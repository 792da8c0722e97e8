//! What the chaos harness checks once the run is over: every topic read
//! with a read-committed consumer, and the counts each guarantee demands.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use eddy::runtime::dlq_headers;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

/// One record of a topic.
pub(super) struct Read {
    pub(super) key: String,
    pub(super) value: Option<Vec<u8>>,
    /// Where a dead letter came from (`topic/partition/offset`).
    pub(super) origin: Option<String>,
}

impl Read {
    fn json(&self) -> Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).unwrap_or(Value::Null)
    }
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "eddy-chaos-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?)
}

/// Every committed record of `topic`, up to its last stable offset.
pub(super) fn read_all(brokers: &str, topic: &str) -> anyhow::Result<Vec<Read>> {
    let c = consumer(brokers)?;
    let timeout = Duration::from_secs(30);
    let metadata = c.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = c.fetch_watermarks(topic, p.id(), timeout)?;
        if high > 0 {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            ends.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ends.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "reading {topic} timed out");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let origin = m.headers().and_then(|h| {
                    let get = |k: &str| {
                        h.iter()
                            .find(|x| x.key == k)
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    };
                    Some(format!(
                        "{}/{}/{}",
                        get(dlq_headers::TOPIC)?,
                        get(dlq_headers::PARTITION)?,
                        get(dlq_headers::OFFSET)?
                    ))
                });
                out.push(Read {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    value: m.payload().map(<[u8]>::to_vec),
                    origin,
                });
                if ends
                    .get(&m.partition())
                    .is_some_and(|&e| m.offset() + 1 >= e)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => tracing::warn!("reading {topic}: {e}"),
            None => {
                // A transaction marker may end a partition.
                for e in c.position()?.elements() {
                    if let (Offset::Offset(o), Some(&end)) = (e.offset(), ends.get(&e.partition()))
                    {
                        if o >= end {
                            ends.remove(&e.partition());
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Follows `topic` until `want` distinct keys were seen or `timeout`
/// passed; returns how many were seen.
pub(super) fn wait_for_keys(
    brokers: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
    progress: impl Fn(usize),
) -> anyhow::Result<usize> {
    let c = consumer(brokers)?;
    let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    while seen.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            seen.insert(m.key().unwrap_or_default().to_vec());
        }
        if last.elapsed() > Duration::from_secs(10) {
            progress(seen.len());
            last = Instant::now();
        }
    }
    Ok(seen.len())
}

/// What the run produced, and what the guarantee makes of it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Verdict {
    pub(crate) valid_orders: usize,
    pub(crate) malformed: usize,
    pub(crate) with_outcome: usize,
    pub(crate) lost: usize,
    pub(crate) completed: usize,
    pub(crate) cancelled: BTreeMap<String, usize>,
    pub(crate) paid_then_cancelled: usize,
    /// Orders with a `payment_successful`, and the charges the payment
    /// gateway made: equal when no order was charged twice or charged
    /// without its payment event.
    pub(crate) paid: usize,
    pub(crate) gateway_charges: u64,
    pub(crate) refunds: usize,
    pub(crate) reserved_then_cancelled: usize,
    pub(crate) releases: usize,
    /// Records beyond the first of one (type, order) or one dead letter's
    /// origin, per topic.
    pub(crate) duplicates: BTreeMap<String, usize>,
    /// Orders with a wrong number of refunds or releases, or an outcome
    /// more than once.
    pub(crate) wrong_compensations: usize,
    pub(crate) several_outcomes: usize,
    pub(crate) dead_letters: BTreeMap<String, usize>,
    /// Products whose final stock differs from the seed minus what the
    /// completed orders took.
    pub(crate) wrong_stock: Vec<String>,
    pub(crate) negative_stock_writes: usize,
}

impl Verdict {
    /// The failures exactly-once rules out (at-least-once: losses only).
    pub(crate) fn failures(&self, exactly_once: bool) -> Vec<String> {
        let mut f = Vec::new();
        if self.lost > 0 {
            f.push(format!("{} orders have no outcome", self.lost));
        }
        // Idempotency keys hold under either guarantee.
        if self.gateway_charges != self.paid as u64 {
            f.push(format!(
                "the gateway made {} charges for {} paid orders",
                self.gateway_charges, self.paid
            ));
        }
        if !exactly_once {
            return f;
        }
        let dups: usize = self.duplicates.values().sum();
        if dups > 0 {
            f.push(format!("duplicates: {:?}", self.duplicates));
        }
        if self.several_outcomes > 0 {
            f.push(format!(
                "{} orders have several outcomes",
                self.several_outcomes
            ));
        }
        if self.wrong_compensations > 0 {
            f.push(format!(
                "{} orders have a wrong number of refunds or releases",
                self.wrong_compensations
            ));
        }
        if !self.wrong_stock.is_empty() {
            f.push(format!("wrong stock: {:?}", self.wrong_stock));
        }
        if self.negative_stock_writes > 0 {
            f.push(format!(
                "{} negative stock levels",
                self.negative_stock_writes
            ));
        }
        f
    }
}

/// The topics of one run.
pub(super) struct Topics {
    pub(super) outcomes: String,
    pub(super) payments: String,
    pub(super) inventory: String,
    pub(super) stock_changelog: String,
    pub(super) dead_letters: Vec<String>,
}

/// Counts `(type, order_id)` pairs of a topic's JSON events.
fn by_type(records: &[Read]) -> HashMap<(String, String), usize> {
    let mut n = HashMap::new();
    for r in records {
        let v = r.json();
        if let (Some(t), Some(id)) = (v["type"].as_str(), v["order_id"].as_str()) {
            *n.entry((t.to_owned(), id.to_owned())).or_default() += 1;
        }
    }
    n
}

fn extra(counts: impl Iterator<Item = usize>) -> usize {
    counts.map(|n| n.saturating_sub(1)).sum()
}

/// Reads every topic and checks it against the orders sent
/// (`order id -> units per product`) and the stock seeded per product.
pub(super) fn verify(
    brokers: &str,
    topics: &Topics,
    orders: &HashMap<String, Vec<(String, i64)>>,
    malformed: usize,
    stock: &BTreeMap<String, i64>,
) -> anyhow::Result<Verdict> {
    let mut v = Verdict {
        valid_orders: orders.len(),
        malformed,
        ..Verdict::default()
    };
    let outcomes = read_all(brokers, &topics.outcomes).context("reading the outcomes")?;
    let payments = by_type(&read_all(brokers, &topics.payments)?);
    let inventory = by_type(&read_all(brokers, &topics.inventory)?);
    let mut outcome: HashMap<String, Vec<Value>> = HashMap::new();
    for r in &outcomes {
        outcome.entry(r.key.clone()).or_default().push(r.json());
    }
    v.duplicates.insert(
        topics.outcomes.clone(),
        extra(outcome.values().map(Vec::len)),
    );
    v.duplicates
        .insert(topics.payments.clone(), extra(payments.values().copied()));
    v.duplicates
        .insert(topics.inventory.clone(), extra(inventory.values().copied()));
    let has = |m: &HashMap<(String, String), usize>, t: &str, id: &str| {
        m.get(&(t.to_owned(), id.to_owned())).copied().unwrap_or(0)
    };
    let mut taken: BTreeMap<String, i64> = BTreeMap::new();
    for (id, units) in orders {
        let Some(o) = outcome.get(id) else {
            v.lost += 1;
            continue;
        };
        v.with_outcome += 1;
        v.several_outcomes += usize::from(o.len() > 1);
        let paid = has(&payments, "payment_successful", id) > 0;
        v.paid += usize::from(paid);
        let reserved = has(&inventory, "stock_reserved", id) > 0;
        let refunds = has(&payments, "payment_refunded", id);
        let releases = has(&inventory, "stock_released", id);
        v.refunds += refunds;
        v.releases += releases;
        if o[0]["type"] == "order_completed" {
            v.completed += 1;
            v.wrong_compensations += usize::from(refunds + releases > 0 || !paid || !reserved);
            for (product, n) in units {
                *taken.entry(product.clone()).or_default() += n;
            }
        } else {
            let reason = o[0]["reason"].as_str().unwrap_or("?").to_owned();
            *v.cancelled.entry(reason).or_default() += 1;
            v.paid_then_cancelled += usize::from(paid);
            v.reserved_then_cancelled += usize::from(reserved);
            v.wrong_compensations +=
                usize::from(refunds != usize::from(paid) || releases != usize::from(reserved));
        }
    }
    for topic in &topics.dead_letters {
        let dead = read_all(brokers, topic)?;
        let mut origins: HashMap<String, usize> = HashMap::new();
        for d in &dead {
            *origins
                .entry(d.origin.clone().unwrap_or_else(|| d.key.clone()))
                .or_default() += 1;
        }
        v.duplicates
            .insert(topic.clone(), extra(origins.values().copied()));
        v.dead_letters.insert(topic.clone(), dead.len());
    }
    let mut level: HashMap<String, i64> = HashMap::new();
    for r in read_all(brokers, &topics.stock_changelog)? {
        let Some(n) = r.value.as_deref().and_then(|b| b.try_into().ok()) else {
            continue;
        };
        let n = i64::from_be_bytes(n);
        v.negative_stock_writes += usize::from(n < 0);
        level.insert(r.key, n);
    }
    for (product, seed) in stock {
        let want = seed - taken.get(product).copied().unwrap_or(0);
        let got = level.get(product).copied().unwrap_or(*seed);
        if got != want {
            v.wrong_stock
                .push(format!("{product}: {got}, expected {want}"));
        }
    }
    Ok(v)
}
