//! `eddy-orders gen orders`: produces `order_created` events for load tests.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use eddy::kafka::send_blocking;
use eddy_orders::order_created;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

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
        let event = order_created(args.seed, i, args.products, now_ms);
        let id = format!("order-{}-{i}", args.seed);
        buf.clear();
        serde_json::to_writer(&mut buf, &event)?;
        let record = BaseRecord::<str, [u8]>::to(&args.topic)
            .key(&id)
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
