//! `eddy demo`: a stateless order pipeline on the embedded cluster.
//!
//! Generates orders as JSON (with a few malformed records among them),
//! drops non-positive amounts, adds VAT, routes large and regular orders to
//! their own topics, and checks the counts against what it generated.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use eddy::kafka::{send_blocking, StreamsConfig};
use eddy::runtime::KafkaStreams;
use eddy::serde::{JsonSerde, StringSerde};
use eddy::topology::{StreamsBuilder, Topology};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use super::WorkerArgs;

const ORDERS: &str = "demo-orders";
const LARGE: &str = "demo-orders-large";
const REGULAR: &str = "demo-orders-regular";
/// Orders whose total with VAT reaches this many cents are "large".
const LARGE_CENTS: i64 = 10_000;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Orders to generate.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Partitions of the demo topics on the embedded cluster.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Give up waiting for the pipeline after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    order_id: String,
    user_id: u32,
    amount_cents: i64,
    country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PricedOrder {
    order_id: String,
    user_id: u32,
    country: String,
    amount_cents: i64,
    vat_cents: i64,
    total_cents: i64,
}

/// What the topology saw, counted by its own `peek`s.
#[derive(Default, Clone)]
pub struct Counters {
    large: Arc<AtomicU64>,
    regular: Arc<AtomicU64>,
}

fn vat_percent(country: &str) -> i64 {
    match country {
        "DE" => 19,
        "FR" => 20,
        "NL" => 21,
        _ => 0,
    }
}

fn price(o: Order) -> PricedOrder {
    let vat_cents = o.amount_cents * vat_percent(&o.country) / 100;
    PricedOrder {
        total_cents: o.amount_cents + vat_cents,
        vat_cents,
        order_id: o.order_id,
        user_id: o.user_id,
        country: o.country,
        amount_cents: o.amount_cents,
    }
}

/// The demo topology.
pub fn topology(counters: &Counters) -> eddy::Result<Topology> {
    let b = StreamsBuilder::new();
    let branches = b
        .stream(ORDERS, StringSerde, JsonSerde::<Order>::new())
        .filter(|_, o| o.amount_cents > 0)
        .named("positive-amounts")
        .map_values(price)
        .named("add-vat")
        .split("by-size")
        .branch("large", |_, o: &PricedOrder| o.total_cents >= LARGE_CENTS)
        .default_branch("regular");
    for (name, topic, counter) in [
        ("large", LARGE, counters.large.clone()),
        ("regular", REGULAR, counters.regular.clone()),
    ] {
        branches[name]
            .peek(move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .to(topic, StringSerde, JsonSerde::new());
    }
    Ok(b.build()?)
}

/// Deterministic pseudo-random numbers (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the generator expects the topology to produce.
#[derive(Default, Debug, PartialEq, Eq)]
struct Expected {
    large: u64,
    regular: u64,
    filtered: u64,
    malformed: u64,
}

fn generate(servers: &str, count: u64) -> anyhow::Result<Expected> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create()?;
    let countries = ["DE", "FR", "NL", "US"];
    let mut expected = Expected::default();
    let mut buf = Vec::with_capacity(256);
    for i in 0..count {
        let r = mix(i);
        let key = format!("order-{i}");
        buf.clear();
        if i % 997 == 996 {
            buf.extend_from_slice(b"{\"order_id\": truncated");
            expected.malformed += 1;
        } else {
            let amount_cents = if i % 50 == 49 {
                0
            } else {
                (r % 20_000) as i64 + 1
            };
            let order = Order {
                order_id: key.clone(),
                user_id: (r >> 32) as u32 % 10_000,
                amount_cents,
                country: countries[(r >> 16) as usize % countries.len()].to_owned(),
            };
            if amount_cents <= 0 {
                expected.filtered += 1;
            } else if price(order.clone()).total_cents >= LARGE_CENTS {
                expected.large += 1;
            } else {
                expected.regular += 1;
            }
            serde_json::to_writer(&mut buf, &order)?;
        }
        send_blocking(
            &producer,
            BaseRecord::<str, [u8]>::to(ORDERS).key(&key).payload(&buf),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(expected)
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let counters = Counters::default();
    let mut config: StreamsConfig = args.worker.config("eddy-demo");
    config.embedded_partitions = args.partitions;
    let embedded = config.bootstrap_servers.is_none();
    let running = KafkaStreams::new(topology(&counters)?, config).start()?;
    let servers = running.bootstrap_servers().to_owned();
    if let Some(addr) = running.http_addr() {
        eprintln!("metrics: http://{addr}/metrics");
    }
    let start = Instant::now();
    let expected = generate(&servers, args.records).context("generating orders")?;
    let metrics = running.metrics().clone();
    let deadline = start + Duration::from_secs(args.timeout_secs);
    loop {
        let processed = metrics.total("eddy_records_processed_total");
        let rate = processed as f64 / start.elapsed().as_secs_f64();
        eprint!(
            "\rprocessed {processed}/{} records ({rate:.0} records/s)   ",
            args.records
        );
        let _ = std::io::stderr().flush();
        if processed >= args.records {
            break;
        }
        if running.has_stopped() {
            running.close()?;
            bail!("the worker stopped early");
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} s with {processed} records processed",
                args.timeout_secs
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    eprintln!();
    let dead_lettered = metrics.total("eddy_records_dead_lettered_total");
    running.close()?;
    let seen = Expected {
        large: counters.large.load(Ordering::Relaxed),
        regular: counters.regular.load(Ordering::Relaxed),
        filtered: args.records
            - dead_lettered
            - counters.large.load(Ordering::Relaxed)
            - counters.regular.load(Ordering::Relaxed),
        malformed: dead_lettered,
    };
    let cluster = if embedded {
        "embedded Kafka"
    } else {
        servers.as_str()
    };
    println!(
        "eddy demo: {} orders, {} partitions, {} stream thread(s), {cluster}",
        args.records, args.partitions, args.worker.threads
    );
    println!("  large orders     {:>9}  -> {LARGE}", seen.large);
    println!("  regular orders   {:>9}  -> {REGULAR}", seen.regular);
    println!("  filtered (<= 0)  {:>9}", seen.filtered);
    println!(
        "  dead-lettered    {:>9}  -> eddy-demo-dlq (malformed JSON)",
        seen.malformed
    );
    println!(
        "  throughput       {:>9.0} records/s end to end ({:.2} s, generation included)",
        args.records as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if seen != expected {
        bail!("counts differ from the generator's: expected {expected:?}, got {seen:?}");
    }
    println!("  check            counts match the generator's expectation");
    Ok(())
}
