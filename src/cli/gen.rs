//! `eddy gen orders`: produces `order_created` events for load tests.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use eddy::kafka::send_blocking;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(clap::Args)]
pub struct GenArgs {
    /// What to generate.
    #[arg(value_enum)]
    kind: GenKind,
    /// Kafka bootstrap servers.
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    brokers: String,
    /// Topic to write.
    #[arg(long, default_value = "orders")]
    topic: String,
    /// Events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Events in all.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Products to draw items from (`product-0` …).
    #[arg(long, default_value_t = 50)]
    products: u64,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GenKind {
    /// `order_created` events keyed by order id.
    Orders,
}

#[derive(Serialize)]
struct Item {
    product_id: String,
    qty: u32,
    unit_price: i64,
}

#[derive(Serialize)]
struct OrderCreated {
    r#type: &'static str,
    order_id: String,
    user_id: String,
    items: Vec<Item>,
    created_at: String,
}

/// Deterministic pseudo-random numbers (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn order(seed: u64, i: u64, products: u64, now: OffsetDateTime) -> anyhow::Result<OrderCreated> {
    let r = mix(seed.wrapping_mul(1_000_003) ^ i);
    let items = (0..1 + r % 3)
        .map(|j| {
            let x = mix(r ^ j);
            Item {
                product_id: format!("product-{}", x % products.max(1)),
                qty: 1 + (x >> 20) as u32 % 4,
                unit_price: 100 + (x >> 32) as i64 % 9_900,
            }
        })
        .collect();
    Ok(OrderCreated {
        r#type: "order_created",
        order_id: format!("order-{seed}-{i}"),
        user_id: format!("user-{}", (r >> 40) % 1000),
        items,
        created_at: now.format(&Rfc3339)?,
    })
}

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let GenKind::Orders = args.kind;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .context("creating the producer")?;
    let start = Instant::now();
    let mut buf = Vec::with_capacity(512);
    for i in 0..args.count {
        // Pace to `rate` events per second.
        let due = Duration::from_secs_f64(i as f64 / args.rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            producer.poll(wait.min(Duration::from_millis(100)));
            std::thread::sleep(due.saturating_sub(start.elapsed()));
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        let now = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)?;
        let event = order(args.seed, i, args.products, now)?;
        buf.clear();
        serde_json::to_writer(&mut buf, &event)?;
        let record = BaseRecord::<str, [u8]>::to(&args.topic)
            .key(&event.order_id)
            .payload(&buf)
            .timestamp(now_ms);
        send_blocking(&producer, record)?;
    }
    producer.flush(Duration::from_secs(60))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {} order_created events to {} in {secs:.2} s ({:.0}/s)",
        args.count,
        args.topic,
        args.count as f64 / secs
    );
    Ok(())
}
