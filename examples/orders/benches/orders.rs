//! The order pipeline end to end: the three topology files of `config/`
//! (payment, inventory, order saga) as three workers of one process, one
//! stream thread each, over 4-partition topics.
//!
//! - Throughput: with the workers running, `EDDY_BENCH_ORDERS` orders
//!   (default 20 000) are produced as fast as possible; orders/s is that
//!   count over the time from the first order sent to the last outcome read.
//! - Latency: then orders are paced at `EDDY_BENCH_RATE` per second (default
//!   300) for `EDDY_BENCH_WARMUP_SECS` (default 3, not counted) and 10 s
//!   more; latency is outcome read time minus order creation time.
//! - Yardsticks, same run: a raw librdkafka consume of the same number of
//!   order records; and, for latency, the paced orders again (after the
//!   pipeline's, the workers idle) through a chain of [`RELAYS`] raw
//!   librdkafka relays (consume, produce with the same settings as eddy's
//!   producers, no processing, no commits): as many topic hops as an
//!   order's way to its outcome, so what the client and broker alone cost
//!   on this machine.
//! - `EDDY_BENCH_GUARANTEE`: `at_least_once` (default) or `exactly_once`;
//!   the run ends with the time its commits spent in each phase
//!   (`eddy_thread_commit_phase_seconds`), summed over the three workers.
//! - `EDDY_BENCH_TRACE`: `off` (default), `context` (trace context in
//!   every record, 100 % sampled) or `spans` (every hop's span exported too,
//!   to a stand-in collector that does not decode them): the cost of
//!   tracing, from runs that alternate.
//! - `EDDY_BENCH_NODE_METRICS=off`: node and store-operation metrics off
//!   (on by default): their cost, from runs that alternate.
//! - `EDDY_BENCH_SIGNED=1`: `payments` and `inventory` signed by every
//!   service that writes them and verified by every one that reads them
//!   (HMAC-SHA256, one key): the cost of signed events, from runs that
//!   alternate.
//! - `EDDY_BENCH_SET`: client settings for every worker, as
//!   `key=value,key=value` (e.g. `producer.linger.ms=0`).
//! - `EDDY_BENCH_HOPS=1`: during the paced run, every topic of the
//!   pipeline (inputs, internal repartition topics, outputs) is read too,
//!   and the latency up to each is reported (read time minus the record's
//!   timestamp, which every hop carries over from its order).
//! - `EDDY_BENCH_TIMELINE=<file>` (with `EDDY_BENCH_HOPS=1`): every record
//!   the hop reader read, as `read-time-ms topic latency-ms` lines, to see
//!   when the slow ones were written and whether they share a moment.
//!
//! Runs against the broker in `EDDY_TEST_BOOTSTRAP` (else an embedded one).

// The helpers the library's own benchmarks share (yardsticks, state
// directories), used the same way here.
#[path = "../../../benches/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::config::{Overrides, Pipeline};
use eddy::kafka::send_blocking;
use eddy::runtime::RunningStreams;
use eddy::security::{SigningKey, TopicSigning};
use eddy::testing::{unique, OtlpCollector, TestCluster};
use eddy_orders::order_created;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};

const PRODUCTS: u64 = 100;

/// The topic hops from an order to its outcome after `orders`: payments,
/// the inventory's two repartitions, inventory, order-outcomes.
const RELAYS: usize = 5;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The latencies of the orders numbered from `warm` on, sorted: the
/// first seconds of a paced run after the burst (the workers' and the
/// broker's background work, a relay's first requests to new topics) are
/// not its steady state.
fn steady(latencies: Vec<(u64, i64)>, warm: u64) -> Vec<i64> {
    let mut l: Vec<i64> = latencies
        .into_iter()
        .filter(|&(i, _)| i >= warm)
        .map(|(_, l)| l)
        .collect();
    l.sort_unstable();
    l
}

/// `p50 … ms, p99 … ms, max … ms (n` of sorted latencies.
fn summary(sorted: &[i64]) -> String {
    format!(
        "p50 {:>4} ms, p99 {:>4} ms, max {:>4} ms ({}",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().unwrap(),
        sorted.len()
    )
}

/// Reads outcomes until `n` arrived; returns the latency of each (read
/// time minus the outcome's event time, which is its order's creation time
/// for completions and payment failures) by its order's number (the end of
/// its key), and when the last one was read.
fn outcomes(consumer: &BaseConsumer, n: usize) -> (Vec<(u64, i64)>, Instant) {
    let mut latencies = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} outcomes",
            latencies.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let number = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.rsplit('-').next()?.parse().ok())
                    .unwrap_or(u64::MAX);
                latencies.push((number, now_ms() - m.timestamp().to_millis().unwrap()));
            }
            // A connection lost for a moment: the consumer reconnects.
            Some(Err(e)) => eprintln!("outcome consumer: {e}"),
            None => {}
        }
    }
    (latencies, Instant::now())
}

/// Reads every topic whose name holds `suffix` until `stop`: by topic, the
/// latency of each record timestamped from `since` on (read time minus
/// its timestamp), in the order the pipeline reaches the topics (by median).
fn hop_latencies(
    bootstrap: &str,
    suffix: &str,
    since: i64,
    stop: &AtomicBool,
) -> Vec<(String, Vec<i64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("ob-hops"))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| n.contains(suffix) && !n.ends_with("-changelog") && !n.contains("members"))
        .collect();
    consumer.subscribe(&topics).unwrap();
    let mut by_topic: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut timeline = std::env::var_os("EDDY_BENCH_TIMELINE")
        .map(|f| std::io::BufWriter::new(std::fs::File::create(f).unwrap()));
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let ts = m.timestamp().to_millis().unwrap_or(0);
            if ts >= since {
                let topic = m.topic().replace(&format!("-{suffix}"), "");
                let now = now_ms();
                let latency = now - ts;
                if let Some(out) = &mut timeline {
                    use std::io::Write;
                    writeln!(out, "{now} {topic} {latency}").unwrap();
                }
                by_topic.entry(topic).or_default().push(latency);
            }
        }
    }
    let mut hops: Vec<(String, Vec<i64>)> = by_topic.into_iter().collect();
    for (_, l) in &mut hops {
        l.sort_unstable();
    }
    hops.sort_by_key(|(_, l)| percentile(l, 0.5));
    hops
}

/// Seconds and count of each commit phase, summed over `workers`.
fn commit_phases(workers: &[RunningStreams]) -> Vec<(String, f64, f64)> {
    let mut phases: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for w in workers {
        for line in w.metrics().encode().lines() {
            let (kind, rest) = match line.strip_prefix("eddy_thread_commit_phase_seconds_") {
                Some(r) if r.starts_with("sum{") => ("sum", r),
                Some(r) if r.starts_with("count{") => ("count", r),
                _ => continue,
            };
            let Some(phase) = rest
                .split("phase=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
            else {
                continue;
            };
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let e = phases.entry(phase.to_owned()).or_default();
            match kind {
                "sum" => e.0 += value,
                _ => e.1 += value,
            }
        }
    }
    phases.into_iter().map(|(p, (s, n))| (p, s, n)).collect()
}

/// A raw relay: reads `from` (every partition, from its end), writes each
/// record to `to` with its key, value and timestamp, until `stop`.
fn relay(bootstrap: &str, from: &str, to: &str, partitions: i32, stop: &AtomicBool) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("ob-relay"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(from, p, rdkafka::Offset::End)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    // As eddy's producers: acknowledged by all, idempotent, 1 ms linger.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let mut record = BaseRecord::<[u8], [u8]>::to(to)
                .partition(m.partition())
                .payload(m.payload().unwrap_or_default());
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(ts) = m.timestamp().to_millis() {
                record = record.timestamp(ts);
            }
            send_blocking(&producer, record).unwrap();
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Latencies of `n` orders paced at `rate` through [`RELAYS`] raw relays,
/// from the `warm`-th on.
fn relayed(
    c: &TestCluster,
    u: &str,
    partitions: i32,
    rate: usize,
    n: usize,
    warm: u64,
) -> Vec<i64> {
    let topics: Vec<String> = (0..=RELAYS).map(|i| format!("relay{i}-{u}")).collect();
    for t in &topics {
        c.create_topic(t, partitions);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let relays: Vec<_> = topics
        .windows(2)
        .map(|pair| {
            let (b, from, to, stop) = (
                c.bootstrap.clone(),
                pair[0].clone(),
                pair[1].clone(),
                stop.clone(),
            );
            std::thread::spawn(move || relay(&b, &from, &to, partitions, &stop))
        })
        .collect();
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("group.id", unique("ob-relayed"))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topics[RELAYS], p, rdkafka::Offset::End)
            .unwrap();
    }
    reader.assign(&tpl).unwrap();
    // Each relay resolves its "end" with its first fetch.
    std::thread::sleep(Duration::from_secs(2));
    let producer = order_producer(c);
    let done = std::thread::spawn(move || outcomes(&reader, n).0);
    pace(&producer, &topics[0], 3, rate, n);
    let latencies = done.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for r in relays {
        r.join().unwrap();
    }
    steady(latencies, warm)
}

/// The orders' producer: lingers as eddy's producers do.
fn order_producer(c: &TestCluster) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Sends `n` orders of generator `seed` to `topic`, `rate` a second, each
/// timestamped when sent.
fn pace(producer: &BaseProducer, topic: &str, seed: u64, rate: usize, n: usize) {
    let t0 = Instant::now();
    for i in 0..n as u64 {
        let due = Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
        send_order(producer, topic, seed, i);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn send_order(producer: &BaseProducer, topic: &str, seed: u64, i: u64) {
    let o = order_created(seed, i, PRODUCTS, now_ms());
    let id = o["order_id"].as_str().unwrap();
    let value = o.to_string();
    let record = BaseRecord::to(topic)
        .key(id)
        .payload(&value)
        .timestamp(now_ms());
    send_blocking(producer, record).unwrap();
}

/// `EDDY_BENCH_SET`'s `key=value` pairs.
fn settings() -> Vec<(String, String)> {
    std::env::var("EDDY_BENCH_SET")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("EDDY_BENCH_SET: key=value");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn main() {
    let n = common::env_usize("EDDY_BENCH_ORDERS", 20_000);
    let rate = common::env_usize("EDDY_BENCH_RATE", 300);
    let guarantee: eddy::kafka::Guarantee = std::env::var("EDDY_BENCH_GUARANTEE")
        .unwrap_or_else(|_| "at_least_once".into())
        .parse()
        .unwrap();
    let partitions = 4;
    let c = TestCluster::from_env();
    let u = unique("ob");
    let topic = |t: &str| format!("{t}-{u}");
    for t in ["orders", "payments", "inventory", "stock", "order-outcomes"] {
        c.create_topic(&topic(t), partitions);
    }
    let producer = c.producer();
    let send = |t: &str, key: &str, value: &str, ts: i64| {
        let record = BaseRecord::to(t).key(key).payload(value).timestamp(ts);
        send_blocking(&producer, record).unwrap();
    };
    for p in 0..PRODUCTS {
        let id = format!("product-{p}");
        let value = serde_json::json!({"product_id": id, "qty": 1_000_000}).to_string();
        send(&topic("stock"), &id, &value, 0);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // Tracing, to measure its cost: `context` (every record a hop of its
    // trace, 100 % sampled) or `spans` (also every hop's span exported to
    // a collector that takes the requests without decoding them).
    let tracing = std::env::var("EDDY_BENCH_TRACE").unwrap_or_default();
    let signed = std::env::var("EDDY_BENCH_SIGNED").is_ok_and(|v| v == "1");
    let collector = (tracing == "spans").then(OtlpCollector::discarding);
    let state = common::state_dir("orders");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut overrides = Overrides {
        suffix: Some(u.clone()),
        ..Overrides::default()
    };
    overrides.env_secrets.insert(
        eddy_orders::PII_KEY_ENV.into(),
        eddy::kafka::Secret::Value("a bench key for hashing e-mails".into()),
    );
    // The payment service charges through the gateway simulator, answering
    // at once with the pipeline's rules.
    let gateway = eddy_orders::gateway::Gateway::start(
        eddy_orders::gateway::GatewayConfig::pipeline(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    overrides.vars.insert(
        "gateway_url".into(),
        format!("http://{}", gateway.addr()).into(),
    );
    let workers: Vec<RunningStreams> = ["payment.toml", "inventory.toml", "order-saga.toml"]
        .into_iter()
        .map(|f| {
            let mut p =
                Pipeline::load_with(&dir.join(f), &eddy_orders::registry(), &overrides).unwrap();
            if !c.is_embedded() {
                p.config.bootstrap_servers = Some(c.bootstrap.clone());
            }
            p.config.state_dir = state.clone();
            p.config.embedded_partitions = partitions;
            p.config.guarantee = guarantee;
            for (key, value) in settings() {
                p.config = p.config.clone().set(&key, &value);
            }
            match std::env::var("EDDY_BENCH_NODE_METRICS").as_deref() {
                Ok("off") => p.config.node_metrics = false,
                Ok("on") | Err(_) => {}
                Ok(other) => panic!("EDDY_BENCH_NODE_METRICS={other}: on or off"),
            }
            if signed {
                let key = SigningKey::new("bench", b"a benchmark key of 32 bytes long");
                for t in ["payments", "inventory"] {
                    let signing = TopicSigning {
                        sign: Some(key.clone()),
                        verify: vec![key.clone()],
                        headers: Vec::new(),
                    };
                    p.config = p.config.clone().signing(&format!("{t}-{u}"), signing);
                }
            }
            match tracing.as_str() {
                "" | "off" => {}
                "context" => p.config.trace_sample_ratio = Some(1.0),
                "spans" => {
                    p.config.trace_sample_ratio = Some(1.0);
                    p.config.otlp_endpoint = collector.as_ref().map(OtlpCollector::endpoint);
                }
                other => panic!("EDDY_BENCH_TRACE={other}: off, context or spans"),
            }
            if guarantee == eddy::kafka::Guarantee::ExactlyOnce {
                // The files' 1 s is for at-least-once: exactly-once at its
                // default, Kafka Streams' 100 ms.
                p.config.commit_interval = None;
            }
            let mut s = p.into_streams();
            if let Some(e) = c.embedded() {
                s = s.embedded_cluster(e);
            }
            s.start().unwrap()
        })
        .collect();
    // Start timing once every worker holds its partitions.
    for w in &workers {
        while w.metrics().total("eddy_thread_assigned_partitions") == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("group.id", unique("ob-outcomes"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic("order-outcomes")]).unwrap();

    // Throughput: a burst of n orders.
    let orders = topic("orders");
    let producer = order_producer(&c);
    let start = Instant::now();
    for i in 0..n as u64 {
        send_order(&producer, &orders, 1, i);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let sent = start.elapsed();
    let (_, last) = outcomes(&consumer, n);
    let burst = last - start;

    let processed = |ws: &[RunningStreams]| -> u64 {
        ws.iter()
            .map(|w| w.metrics().total("eddy_thread_records_processed_total"))
            .sum()
    };
    let records = processed(&workers);

    // Latency: paced orders, outcomes read as they come.
    let warmup = common::env_usize("EDDY_BENCH_WARMUP_SECS", 3);
    let warm = (rate * warmup) as u64;
    let paced = rate * (warmup + 10);
    let reader = std::thread::spawn(move || outcomes(&consumer, paced).0);
    let hops = std::env::var("EDDY_BENCH_HOPS").is_ok_and(|v| v == "1");
    let stop_hops = Arc::new(AtomicBool::new(false));
    let hop_reader = hops.then(|| {
        let (bootstrap, u, stop) = (c.bootstrap.clone(), u.clone(), stop_hops.clone());
        let since = now_ms() + 1000 * warmup as i64;
        std::thread::spawn(move || hop_latencies(&bootstrap, &u, since, &stop))
    });
    pace(&producer, &orders, 2, rate, paced);
    let latencies = steady(reader.join().unwrap(), warm);
    stop_hops.store(true, Ordering::Relaxed);
    let hops = hop_reader.map(|h| h.join().unwrap()).unwrap_or_default();
    let phases = commit_phases(&workers);
    let relayed = relayed(&c, &u, partitions, rate, paced, warm);
    for w in workers {
        w.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&state);

    let raw = common::raw_consume(&c.bootstrap, &[&orders], n);

    let per_s = |k: usize, d: Duration| k as f64 / d.as_secs_f64();
    let cluster = common::cluster_name(&c);
    println!("order pipeline benchmark: payment + inventory + saga workers, one thread each, {partitions} partitions, {guarantee}, {cluster}");
    println!(
        "  burst of {n} orders        {:>9.0} orders/s ({:.2} s to the last outcome; produced in {:.2} s)",
        per_s(n, burst),
        burst.as_secs_f64(),
        sent.as_secs_f64()
    );
    println!(
        "  records the three workers processed: {records} in the burst, {:.0} records/s",
        records as f64 / burst.as_secs_f64()
    );
    println!(
        "  raw consume of {n} orders  {:>9.0} records/s ({:.2} s)",
        per_s(n, raw),
        raw.as_secs_f64()
    );
    println!(
        "  ratio                      {:>9.3} (pipeline orders/s / raw consume records/s)",
        per_s(n, burst) / per_s(n, raw)
    );
    println!(
        "  latency at {rate} orders/s for 10 s after {warmup} s, order_created -> outcome: {} orders)",
        summary(&latencies)
    );
    for (topic, l) in hops {
        println!("  latency up to {topic:<60} {} records)", summary(&l));
    }
    println!(
        "  yardstick, the same pace through {RELAYS} raw relays:                  {} orders)",
        summary(&relayed)
    );
    for (phase, secs, count) in phases {
        println!(
            "  commit phase {phase:<12} {secs:>7.2} s in {count:.0} commits ({:.2} ms each)",
            1000.0 * secs / count.max(1.0)
        );
    }
}
