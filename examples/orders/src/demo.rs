//! `eddy-orders demo`: the e-commerce order pipeline end to end.
//!
//! Creates the topics, seeds stock, runs the payment, inventory and order
//! saga topologies of `config/`, generates orders (a few of them malformed,
//! for the dead-letter topics), shows live progress, serves `/metrics`,
//! `POST /orders` and `GET /orders/{id}`, and ends with a summary: outcomes,
//! compensations, dead letters, a stock check and end-to-end latency.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use eddy::config::{Overrides, Pipeline};
use eddy::kafka::admin::ensure_topic;
use eddy::kafka::{send_blocking, EmbeddedKafka};
use eddy::observability::{ApiError, JsonBody, Metrics};
use eddy::runtime::RunningStreams;
use eddy::serde::{I64Serde, StringSerde};
use eddy_orders::order_created;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

const TOPICS: [&str; 5] = ["orders", "payments", "inventory", "stock", "order-outcomes"];
const APPS: [&str; 3] = ["payment-service", "inventory-service", "order-saga"];

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Orders per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Orders to generate.
    #[arg(long, default_value_t = 2_000)]
    count: u64,
    /// Stop generating after this many seconds, even before `count`.
    #[arg(long)]
    duration: Option<u64>,
    /// Share of payments declined (drawn from the order id).
    #[arg(long, default_value_t = 0.05)]
    payment_failure_rate: f64,
    /// Orders above this amount in cents are declined.
    #[arg(long, default_value_t = 100_000)]
    amount_limit: i64,
    /// Products to order from.
    #[arg(long, default_value_t = 50)]
    products: u64,
    /// Units of each product in stock at the start (fewer means more
    /// orders cancelled for lack of stock).
    #[arg(long, default_value_t = 180)]
    stock: i64,
    /// Every Nth generated record is malformed (0: none).
    #[arg(long, default_value_t = 500)]
    malformed_every: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Kafka bootstrap servers; without it an embedded cluster is started.
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    brokers: Option<String>,
    /// Address of /metrics, POST /orders and GET /orders/{id} (default
    /// 127.0.0.1:8080, or a free port if that one is taken).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Folder of the topology files.
    #[arg(long, default_value = "config")]
    config_dir: PathBuf,
    /// Suffix of the topics and application ids (`orders-<suffix>`, ...),
    /// to run beside earlier runs on a real cluster.
    #[arg(long)]
    suffix: Option<String>,
    /// Seed of the order generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep serving after the summary, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Give up waiting for outcomes this many seconds after the last order.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Log at INFO (the workers' start, assignments, commits) instead of
    /// WARN, between the status lines; `RUST_LOG` overrides both.
    #[arg(long)]
    pub verbose: bool,
}

/// What the observer has seen.
#[derive(Default)]
struct Tally {
    /// Order id -> (sent at, units per product) for orders sent this run.
    sent: HashMap<String, (Instant, Vec<(String, i64)>)>,
    /// Ids of the orders posted to `/orders` that `sent` holds, oldest
    /// first (at most [`REMEMBERED_POSTS`]).
    posted: VecDeque<String>,
    /// Order id -> outcome type and reason.
    outcomes: HashMap<String, (String, Option<String>)>,
    latencies_ms: Vec<f64>,
    cancelled: BTreeMap<String, u64>,
    refunds: u64,
    releases: u64,
    dead_letters: u64,
    last_dead_letter: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn units(order: &Value) -> Vec<(String, i64)> {
    order["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["product_id"].as_str().unwrap_or_default().to_owned(),
                        i["qty"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let registry = eddy_orders::registry();
    let name = |t: &str| match &args.suffix {
        Some(s) => format!("{t}-{s}"),
        None => t.to_owned(),
    };
    let (cluster, servers) = match &args.brokers {
        None => {
            let c = Arc::new(EmbeddedKafka::start()?);
            let servers = c.bootstrap_servers().to_owned();
            (Some(c), servers)
        }
        Some(b) => (None, b.clone()),
    };
    match &cluster {
        Some(c) => {
            for t in TOPICS {
                c.create_topic(&name(t), args.partitions)?;
            }
        }
        None => {
            let mut admin = ClientConfig::new();
            admin.set("bootstrap.servers", &servers);
            for t in TOPICS {
                ensure_topic(
                    &admin,
                    &name(t),
                    args.partitions,
                    &[],
                    Duration::from_secs(30),
                )?;
            }
        }
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()?;
    for p in 0..args.products {
        let id = format!("product-{p}");
        let value = json!({"product_id": id, "qty": args.stock}).to_string();
        send_blocking(
            &producer,
            BaseRecord::to(&name("stock"))
                .key(&id)
                .payload(&value)
                .timestamp(0),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;

    let mut http = args.http.unwrap_or_else(|| {
        let preferred = SocketAddr::from(([127, 0, 0, 1], 8080));
        match std::net::TcpListener::bind(preferred) {
            Ok(_) => preferred,
            Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let metrics = Arc::new(Metrics::new());
    let state = std::env::temp_dir().join(format!("eddy-demo-{}", std::process::id()));
    let mut overrides = Overrides {
        suffix: args.suffix.clone(),
        ..Overrides::default()
    };
    let vars = &mut overrides.vars;
    vars.insert("failure_rate".into(), args.payment_failure_rate.into());
    vars.insert("amount_limit".into(), args.amount_limit.into());
    let mut workers: Vec<RunningStreams> = Vec::new();
    let mut expected_partitions = 0;
    for file in ["payment.toml", "inventory.toml", "order-saga.toml"] {
        let path = args.config_dir.join(file);
        let mut p = Pipeline::load_with(&path, &registry, &overrides)?;
        p.config.bootstrap_servers = args.brokers.clone();
        p.config.state_dir = state.clone();
        p.config.embedded_partitions = args.partitions;
        let saga = p.config.application_id == name("order-saga");
        if saga {
            p.config.http_addr = Some(http);
        }
        expected_partitions += p.topology.source_topics().len() as u64 * args.partitions as u64;
        let mut streams = p.into_streams().with_metrics(metrics.clone());
        if let Some(c) = &cluster {
            streams = streams.embedded_cluster(c.clone());
        }
        if saga {
            streams = streams.with_routes(order_route(
                &servers,
                &name("orders"),
                &args.config_dir,
                &tally,
            )?);
        }
        let running = streams
            .start()
            .with_context(|| format!("starting {}", path.display()))?;
        if let (true, Some(addr)) = (saga, running.http_addr()) {
            http = addr;
        }
        workers.push(running);
    }
    eprintln!(
        "eddy demo: order pipeline on {} — http://{}/metrics, POST /orders, GET /orders/{{id}}",
        if cluster.is_some() {
            format!("the embedded cluster at {servers}")
        } else {
            servers.clone()
        },
        http
    );

    // Orders flow once every worker holds its partitions.
    let joined = Instant::now();
    while metrics.total("eddy_assigned_partitions") < expected_partitions {
        if joined.elapsed() > Duration::from_secs(60) {
            bail!("the workers did not get their partitions within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (servers, tally, stop) = (servers.clone(), tally.clone(), stop.clone());
        let mut topics: Vec<String> = ["order-outcomes", "payments", "inventory"]
            .into_iter()
            .map(name)
            .collect();
        topics.extend(APPS.iter().map(|a| format!("{}-dlq", name(a))));
        std::thread::spawn(move || observe(&servers, &topics, &tally, &stop))
    };
    let generated = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let generator = {
        let (servers, tally, generated) = (servers.clone(), tally.clone(), generated.clone());
        let orders = name("orders");
        let (rate, count, duration) = (args.rate.max(1), args.count, args.duration);
        let (seed, products, malformed_every) = (args.seed, args.products, args.malformed_every);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("partitioner", "murmur2_random")
                .set("linger.ms", "5")
                .create()?;
            let start = Instant::now();
            for i in 0..count {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if duration.is_some_and(|d| due >= Duration::from_secs(d)) {
                    break;
                }
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(wait);
                }
                let order = order_created(seed, i, products, now_ms());
                let id = order["order_id"].as_str().unwrap_or_default().to_owned();
                let payload = if malformed_every > 0 && i % malformed_every == malformed_every - 1 {
                    // Alternately not JSON and against the schema.
                    if (i / malformed_every) % 2 == 0 {
                        "{not json".to_owned()
                    } else {
                        let mut bad = order.clone();
                        bad["items"][0]["qty"] = json!(0);
                        bad.to_string()
                    }
                } else {
                    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                    t.sent.insert(id.clone(), (Instant::now(), units(&order)));
                    order.to_string()
                };
                send_blocking(
                    &producer,
                    BaseRecord::to(&orders).key(&id).payload(&payload),
                )?;
                generated.fetch_add(1, Ordering::Relaxed);
            }
            producer.flush(Duration::from_secs(30))?;
            Ok(())
        })
    };

    let tty = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), 0u64);
    let mut generation_done: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(if tty { 250 } else { 2000 }));
        if generation_done.is_none() && generator.is_finished() {
            generation_done = Some(Instant::now());
        }
        let (line, done, expected) = {
            let t = tally.lock().unwrap_or_else(|e| e.into_inner());
            let done = t
                .outcomes
                .keys()
                .filter(|id| t.sent.contains_key(*id))
                .count();
            // Records processed by the three workers, per second.
            let records = metrics.total("eddy_records_processed_total");
            let rate = (records - last.1.min(records)) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), records);
            (
                status_line(&t, generated.load(Ordering::Relaxed), rate),
                done,
                t.sent.len(),
            )
        };
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
        if workers.iter().any(RunningStreams::has_stopped) {
            bail!("a worker stopped; see the log above");
        }
        if let Some(at) = generation_done {
            if done >= expected || at.elapsed() > Duration::from_secs(args.timeout_secs) {
                break;
            }
        }
    }
    if tty {
        eprintln!();
    }
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("generator panicked"))??;
    // Let the last compensations and dead letters arrive.
    std::thread::sleep(Duration::from_secs(2));
    let elapsed = started.elapsed();
    let stock_left = stock_levels(&workers[1], args.products)?;
    let sample = {
        let t = tally.lock().unwrap_or_else(|e| e.into_inner());
        t.outcomes
            .keys()
            .find(|id| t.sent.contains_key(*id))
            .cloned()
    };
    let summary_of = sample.as_ref().map(|id| read_model(http, id)).transpose()?;
    stop.store(true, Ordering::Relaxed);
    let _ = observer.join();
    let t = tally.lock().unwrap_or_else(|e| e.into_inner());
    print_summary(&t, &args, elapsed, stock_left, sample.zip(summary_of));
    drop(t);
    if args.serve {
        // The pipeline keeps running for orders posted to /orders.
        eprintln!("serving until Ctrl-C");
        let saga = workers.pop().expect("three workers");
        saga.run_until_signal()?;
    }
    for w in workers {
        w.close()?;
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

fn status_line(t: &Tally, generated: u64, rate: f64) -> String {
    let completed = t
        .outcomes
        .values()
        .filter(|(k, _)| k == "order_completed")
        .count();
    let cancelled: Vec<String> = t
        .cancelled
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    format!(
        "created {generated} | completed {completed} | cancelled {} ({}) | refunds {} releases {} | dead letters {} | {rate:.0} records/s",
        t.cancelled.values().sum::<u64>(),
        if cancelled.is_empty() { "-".to_owned() } else { cancelled.join(", ") },
        t.refunds,
        t.releases,
        t.dead_letters,
    )
}

/// Follows the outcome, payment, inventory and dead-letter topics.
fn observe(
    servers: &str,
    topics: &[String],
    tally: &Mutex<Tally>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set(
            "group.id",
            format!("eddy-demo-observer-{}", std::process::id()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    // Assigned rather than subscribed: no group join to wait for, so the
    // first outcomes are read as soon as they are written.
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        // A topic created a moment ago may not show its partitions yet.
        let deadline = Instant::now() + Duration::from_secs(30);
        let ids: Vec<i32> = loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let ids: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions())
                .map(|p| p.id())
                .collect();
            if !ids.is_empty() || Instant::now() > deadline {
                break ids;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for id in ids {
            partitions.add_partition_offset(topic, id, Offset::Beginning)?;
        }
    }
    consumer.assign(&partitions)?;
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Ok(m) = m else { continue };
        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
        if m.topic().ends_with("-dlq") {
            t.dead_letters += 1;
            use rdkafka::message::Headers;
            t.last_dead_letter = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == eddy::runtime::dlq_headers::MESSAGE)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            continue;
        }
        let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        else {
            continue;
        };
        let id = v["order_id"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str().unwrap_or_default() {
            "payment_refunded" => t.refunds += 1,
            "stock_released" => t.releases += 1,
            kind @ ("order_completed" | "order_cancelled") => {
                if t.outcomes.contains_key(&id) {
                    continue;
                }
                let reason = v["reason"].as_str().map(str::to_owned);
                if let Some(r) = &reason {
                    *t.cancelled.entry(r.clone()).or_default() += 1;
                }
                if let Some((sent, _)) = t.sent.get(&id) {
                    let ms = sent.elapsed().as_secs_f64() * 1000.0;
                    t.latencies_ms.push(ms);
                }
                t.outcomes.insert(id, (kind.to_owned(), reason));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Units left per product, read from the inventory worker's store.
fn stock_levels(inventory: &RunningStreams, products: u64) -> anyhow::Result<i64> {
    let mut total = 0;
    for p in 0..products {
        let key = format!("product-{p}");
        match inventory
            .queries()
            .get("stock-levels", &key, &StringSerde, &I64Serde)?
        {
            eddy::runtime::Lookup::Local { value, .. } => total += value.unwrap_or(0),
            eddy::runtime::Lookup::Remote { .. } => bail!("stock of {key} is held elsewhere"),
        }
    }
    Ok(total)
}

/// `GET /orders/{id}` on the demo's own server.
fn read_model(http: SocketAddr, id: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(http)?;
    write!(
        s,
        "GET /orders/{id} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn print_summary(
    t: &Tally,
    args: &DemoArgs,
    elapsed: Duration,
    stock_left: i64,
    sample: Option<(String, String)>,
) {
    let ours = || t.outcomes.iter().filter(|(id, _)| t.sent.contains_key(*id));
    let completed: Vec<&String> = ours()
        .filter(|(_, (k, _))| k == "order_completed")
        .map(|(id, _)| id)
        .collect();
    let secs = elapsed.as_secs_f64();
    println!(
        "\neddy demo: {} valid orders, {} outcomes in {secs:.1} s (orders generated at {}/s)",
        t.sent.len(),
        ours().count(),
        args.rate
    );
    let reasons: Vec<String> = t
        .cancelled
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!(
        "  completed {}, cancelled {} ({})",
        completed.len(),
        t.cancelled.values().sum::<u64>(),
        reasons.join(", ")
    );
    println!(
        "  compensations: {} payment_refunded, {} stock_released",
        t.refunds, t.releases
    );
    println!(
        "  dead letters: {}{}",
        t.dead_letters,
        t.last_dead_letter
            .as_ref()
            .map(|m| format!(" (last: {m})"))
            .unwrap_or_default()
    );
    let sold: i64 = completed
        .iter()
        .filter_map(|id| t.sent.get(*id))
        .flat_map(|(_, units)| units.iter().map(|(_, q)| q))
        .sum();
    let seeded = args.stock * args.products as i64;
    println!(
        "  stock: {stock_left} units left = {seeded} seeded - {sold} in completed orders: {}",
        if stock_left == seeded - sold {
            "consistent"
        } else {
            "MISMATCH"
        }
    );
    let mut l = t.latencies_ms.clone();
    l.sort_by(f64::total_cmp);
    println!(
        "  latency order_created -> outcome: p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&l, 0.50),
        percentile(&l, 0.95),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(0.0)
    );
    if let Some((id, body)) = sample {
        println!("  GET /orders/{id} -> {body}");
    }
}

/// Longest request body `POST /orders` reads: 512 KiB, half of Kafka's
/// default maximum message size (1 MiB: the broker's `message.max.bytes` of
/// 1048588, the producer's 1000000), so the record made of it fits with room
/// for the fields the route adds. A longer body is refused with 413 once
/// this much of it has been read.
const MAX_ORDER_BODY: usize = 512 * 1024;

/// Largest `order_created` record `POST /orders` produces: the producer's
/// default `message.max.bytes`. JSON under [`MAX_ORDER_BODY`] can still grow
/// when written out again (`1e9` becomes `1000000000.0`); such an order is
/// refused with 413 instead of failing in the producer.
const MAX_ORDER_RECORD: usize = 1_000_000;

/// Items an order posted to `/orders` may have.
const MAX_ORDER_ITEMS: usize = 100;

/// Orders posted to `/orders` remembered to answer a repeated `order_id`
/// (in [`Tally::sent`], with the generated ones); beyond it the oldest
/// posted order is forgotten, and its id can be posted again.
const REMEMBERED_POSTS: usize = 10_000;

/// What a client-chosen `order_id` or `product_id` must look like.
const KEY_RULE: &str = "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";

/// Whether `s` is a key a client may choose: 1 to 64 characters of
/// `[A-Za-z0-9_-]`, so it is safe as a record key, a store key and a path
/// segment of `GET /orders/{id}`.
fn valid_key(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What `POST /orders` checks beyond the schema: the keys a client chose
/// and the number of items.
fn check_order(order: &Value) -> Result<(), ApiError> {
    if !order["order_id"].as_str().is_some_and(valid_key) {
        return Err(ApiError::bad_request(format!("at /order_id: {KEY_RULE}")));
    }
    let items = order["items"].as_array().map_or(&[][..], Vec::as_slice);
    if items.len() > MAX_ORDER_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at /items: at most {MAX_ORDER_ITEMS} items"
        )));
    }
    for (i, item) in items.iter().enumerate() {
        if !item["product_id"].as_str().is_some_and(valid_key) {
            return Err(ApiError::bad_request(format!(
                "at /items/{i}/product_id: {KEY_RULE}"
            )));
        }
    }
    Ok(())
}

/// The state of `POST /orders`.
#[derive(Clone)]
struct OrderRoute {
    producer: FutureProducer,
    validator: Arc<jsonschema::Validator>,
    tally: Arc<Mutex<Tally>>,
    posted: Arc<AtomicU64>,
    topic: Arc<str>,
}

/// `POST /orders`: validates an order and emits `order_created`.
///
/// - A new order: 202 `{"order_id": id}`, once the broker acknowledged it.
///   Without an `order_id` one is made up (`web-<ms>-<n>`); a client's own
///   must be 1 to 64 characters of `[A-Za-z0-9_-]`, like each `product_id`.
/// - An `order_id` this run already sent (generated, or one of the last
///   [`REMEMBERED_POSTS`] posted): 200 `{"order_id": id, "duplicate": true}`
///   and nothing emitted, whatever the body, so a client may retry a create
///   safely. A repeat while the first is still in flight counts as one too.
/// - Refusals are JSON `{"error": reason}`: 400 for malformed JSON, an
///   order against the schema or the rules above, 413 for a body over
///   [`MAX_ORDER_BODY`] (or a record over [`MAX_ORDER_RECORD`]), 415
///   without `Content-Type: application/json`, 503 when the broker does not
///   take the record (the id is then free to be posted again).
fn order_route(
    servers: &str,
    topic: &str,
    config_dir: &std::path::Path,
    tally: &Arc<Mutex<Tally>>,
) -> anyhow::Result<Router> {
    let schema_file = config_dir.join("schemas/order.json");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&schema_file)
            .with_context(|| format!("reading {}", schema_file.display()))?,
    )?;
    let validator = Arc::new(
        jsonschema::validator_for(&schema)
            .map_err(|e| anyhow::anyhow!("{}: {e}", schema_file.display()))?,
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("partitioner", "murmur2_random")
        .create()?;
    async fn create(
        State(s): State<OrderRoute>,
        body: Result<JsonBody<Value>, ApiError>,
    ) -> Result<(StatusCode, Json<Value>), ApiError> {
        let JsonBody(mut body) = body.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                e.status(),
                format!("request body over the {MAX_ORDER_BODY} byte limit"),
            ),
            _ => e,
        })?;
        if let Value::Object(m) = &mut body {
            m.entry("order_id").or_insert_with(|| {
                let n = s.posted.fetch_add(1, Ordering::Relaxed);
                json!(format!("web-{}-{n}", now_ms()))
            });
            m.insert("type".into(), json!("order_created"));
            m.entry("created_at").or_insert_with(|| json!(now_ms()));
        }
        if let Some(e) = s.validator.iter_errors(&body).next() {
            let at = e.instance_path().to_string();
            return Err(ApiError::bad_request(format!("at {at}: {e}")));
        }
        check_order(&body)?;
        let id = body["order_id"].as_str().unwrap_or_default().to_owned();
        let payload = body.to_string();
        if payload.len() + id.len() > MAX_ORDER_RECORD {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the order makes a record of {} bytes, over the {MAX_ORDER_RECORD} byte limit",
                    payload.len() + id.len()
                ),
            ));
        }
        {
            let mut t = s.tally.lock().unwrap_or_else(|e| e.into_inner());
            if t.sent.contains_key(&id) {
                return Ok((
                    StatusCode::OK,
                    Json(json!({"order_id": id, "duplicate": true})),
                ));
            }
            t.sent.insert(id.clone(), (Instant::now(), units(&body)));
            t.posted.push_back(id.clone());
            if t.posted.len() > REMEMBERED_POSTS {
                if let Some(oldest) = t.posted.pop_front() {
                    t.sent.remove(&oldest);
                }
            }
        }
        let record = FutureRecord::to(&s.topic).key(&id).payload(&payload);
        match s.producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => Ok((StatusCode::ACCEPTED, Json(json!({"order_id": id})))),
            Err((e, _)) => {
                let mut t = s.tally.lock().unwrap_or_else(|e| e.into_inner());
                t.sent.remove(&id);
                t.posted.retain(|p| *p != id);
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.to_string(),
                ))
            }
        }
    }
    Ok(Router::new()
        .route("/orders", post(create))
        .layer(DefaultBodyLimit::max(MAX_ORDER_BODY))
        .with_state(OrderRoute {
            producer,
            validator,
            tally: tally.clone(),
            posted: Arc::new(AtomicU64::new(0)),
            topic: Arc::from(topic),
        }))
}
