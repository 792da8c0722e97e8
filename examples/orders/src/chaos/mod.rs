//! `eddy-orders chaos`: the order pipeline's three services as separate
//! worker processes on a real cluster, under generated load, while the
//! harness SIGKILLs random workers (some restarted on an empty state
//! directory), freezes one worker (SIGSTOP) until its tasks have moved and
//! thaws it (SIGCONT: a zombie that must be fenced), and restarts a
//! broker; then every topic is read with a read-committed consumer and
//! checked (see [`check`]).

mod check;
mod pauses;
mod procs;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use eddy::kafka::{send_blocking, GroupProtocol, Guarantee, StreamsConfig};
use eddy_orders::gateway::{Gateway, GatewayConfig};
use eddy_orders::order_created;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde::Serialize;
use serde_json::json;

use check::{Topics, Verdict};
use procs::{Broker, Worker, WorkerSpec};

/// Arguments of `chaos`.
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// Bootstrap servers of the cluster (three nodes for a broker restart).
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    brokers: String,
    /// Delivery guarantee of the services.
    #[arg(long, default_value = "exactly_once")]
    guarantee: Guarantee,
    /// Orders to generate.
    #[arg(long, default_value_t = 20_000)]
    orders: u64,
    /// Orders per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Workers SIGKILLed (and restarted) during the load.
    #[arg(long, default_value_t = 5)]
    kills: u32,
    /// Freeze one worker (SIGSTOP) until its tasks move, then thaw it.
    #[arg(long)]
    zombie: bool,
    /// Restart a broker (SIGKILL, then start it again) during the load:
    /// the folder of the cluster started by `scripts/kafka/start.sh`
    /// (`<cache>/kafka-data/3node`), whose node 2 is restarted.
    #[arg(long)]
    restart_broker: Option<PathBuf>,
    /// Port of the broker restarted (node 2 of `scripts/kafka/start.sh`).
    #[arg(long, default_value_t = 19094)]
    restarted_port: u16,
    /// Workers per service.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Scale each service to this many workers a third into the load, and
    /// back (SIGTERM) two thirds into it; the report gives each worker's
    /// longest stretch without a processed record.
    #[arg(long)]
    scale_to: Option<usize>,
    /// Scale only this service (`payment`, `inventory` or `order-saga`):
    /// the others' pauses then do not starve it of input.
    #[arg(long)]
    scale_service: Option<String>,
    /// The workers' consumer group protocol (default: eddy's, `consumer`).
    #[arg(long)]
    group_protocol: Option<GroupProtocol>,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Products (`product-0` …).
    #[arg(long, default_value_t = 50)]
    products: u64,
    /// Every Nth order is malformed (goes to the dead-letter topics).
    #[arg(long, default_value_t = 997)]
    malformed_every: u64,
    /// Folder of the topology files.
    #[arg(long, default_value = "config")]
    config_dir: PathBuf,
    /// Where state directories and worker logs go (default: a new folder
    /// in the temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Seed of the generator and of the chaos schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up waiting for outcomes this many seconds after the load.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Write the report (JSON) here too.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// What a run did and found.
#[derive(Debug, Serialize)]
struct Report {
    guarantee: String,
    orders: u64,
    kills: u32,
    wiped_state: u32,
    zombie: bool,
    broker_restarted: bool,
    workers: usize,
    scaled_to: Option<usize>,
    group_protocol: String,
    partitions: i32,
    load_secs: f64,
    /// Per worker watched from its first record to the end of the load
    /// (and not stopped on purpose): its longest stretch without
    /// processing a record, sampled every 100 ms or so.
    longest_pause_ms: BTreeMap<String, u64>,
    total_secs: f64,
    verdict: Verdict,
    failures: Vec<String>,
}

/// splitmix64: the chaos schedule's random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Kill,
    Zombie,
    RestartBroker,
    ScaleUp,
    ScaleDown,
}

/// Samples each worker's processed count into `pauses`.
fn sample(workers: &[Worker], pauses: &mut pauses::Pauses) {
    for w in workers {
        if let Some(n) = w.metric("eddy_thread_records_processed_total") {
            pauses.observe(&w.name(), n, Instant::now());
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the chaos harness; its report (also written to `--report`, with
/// the error alone when the run could not finish).
pub fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let path = args.report.clone();
    let report = match execute(args) {
        Ok(report) => report,
        Err(e) => {
            if let Some(path) = &path {
                std::fs::write(path, json!({ "error": format!("{e:#}") }).to_string())?;
            }
            return Err(e);
        }
    };
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &path {
        std::fs::write(path, &text)?;
    }
    if !report.failures.is_empty() {
        bail!("the run failed its checks: {}", report.failures.join("; "));
    }
    Ok(())
}

fn execute(args: ChaosArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let suffix = format!("chaos{}", now_ms());
    let topic = |t: &str| format!("{t}-{suffix}");
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(&suffix));
    std::fs::create_dir_all(&work)?;
    let admin = StreamsConfig::new("eddy-chaos").admin_client_config(&args.brokers);
    for t in ["orders", "payments", "inventory", "stock", "order-outcomes"] {
        eddy::kafka::admin::ensure_topic(
            &admin,
            &topic(t),
            args.partitions,
            &[],
            Duration::from_secs(30),
        )
        .with_context(|| format!("creating {}", topic(t)))?;
    }
    // About three quarters of the units the orders ask for (five on
    // average): some orders are cancelled for lack of stock.
    let per_product = (args.orders * 15 / 4 / args.products.max(1)).max(10) as i64;
    let stock: BTreeMap<String, i64> = (0..args.products)
        .map(|p| (format!("product-{p}"), per_product))
        .collect();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    for (p, qty) in &stock {
        let v = json!({"product_id": p, "qty": qty}).to_string();
        send_blocking(
            &producer,
            BaseRecord::to(&topic("stock"))
                .key(p)
                .payload(&v)
                .timestamp(0),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;

    // The files commit every second (for at-least-once); exactly-once
    // runs at its own default, Kafka Streams' 100 ms.
    let interval = match args.guarantee {
        Guarantee::AtLeastOnce => "1000",
        Guarantee::ExactlyOnce => "100",
    };
    let mut common: Vec<String> = [
        "--brokers",
        &args.brokers,
        "--suffix",
        &suffix,
        "--guarantee",
        args.guarantee.as_str(),
        "--commit-interval-ms",
        interval,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let protocol = args.group_protocol.unwrap_or(GroupProtocol::Consumer);
    common.extend(["--group-protocol".into(), protocol.as_str().into()]);
    if protocol == GroupProtocol::Classic {
        // The broker's 6 s session of consumer-protocol groups, set here.
        for p in [
            "consumer.session.timeout.ms=6000",
            "consumer.heartbeat.interval.ms=500",
        ] {
            common.extend(["--set".into(), p.into()]);
        }
    }
    // The payment gateway the payment workers call, with the pipeline's
    // rules; it counts charges, so that a worker killed during its calls
    // shows if it charged twice.
    let gateway = Gateway::start(
        GatewayConfig::pipeline(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .context("payment gateway")?;
    common.extend([
        "--var".into(),
        format!("gateway_url=http://{}", gateway.addr()),
    ]);
    const SERVICES: [&str; 3] = ["payment", "inventory", "order-saga"];
    // Every worker of the saga must hash with the same key.
    let env: Vec<(String, String)> = crate::run_key::drawn_unless_set("eddy-orders chaos")?
        .map(|key| (eddy_orders::PII_KEY_ENV.to_owned(), key))
        .into_iter()
        .collect();
    let start_worker = |service: &'static str, index: usize| -> anyhow::Result<Worker> {
        let name = format!("{service}-{index}");
        Worker::start(WorkerSpec {
            service,
            index,
            config: args.config_dir.join(format!("{service}.toml")),
            state_dir: work.join("state").join(&name),
            log: procs::log_file(&work.join("logs"), &name)?,
            common: common.clone(),
            env: env.clone(),
        })
    };
    let mut workers = Vec::new();
    for service in SERVICES {
        for index in 0..args.workers {
            workers.push(start_worker(service, index)?);
        }
    }
    let initial = workers.len();
    // The chaos is for a running pipeline: the load and the schedule start
    // once every worker runs tasks (its internal topics created, its
    // partitions assigned). A worker that cannot start while a broker is
    // down gives up after its start-up timeout, as it should.
    let deadline = Instant::now() + Duration::from_secs(180);
    let assigned = |w: &Worker| {
        w.metric("eddy_thread_assigned_partitions")
            .is_some_and(|n| n > 0)
    };
    while !workers.iter().all(assigned) {
        for w in &mut workers {
            if !w.is_running() {
                bail!(
                    "worker {} exited at start; the end of its log:\n{}",
                    w.name(),
                    w.log_tail(20)
                );
            }
        }
        if Instant::now() > deadline {
            bail!("the workers did not all get partitions within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "chaos: {} workers, {} orders at {}/s, guarantee {}; logs in {}",
        workers.len(),
        args.orders,
        args.rate,
        args.guarantee,
        work.join("logs").display()
    );

    // The load, on a thread of its own.
    let sent = Arc::new(AtomicU64::new(0));
    let generator = {
        let (brokers, orders_topic, sent) = (args.brokers.clone(), topic("orders"), sent.clone());
        let (count, rate, products, seed, bad) = (
            args.orders,
            args.rate,
            args.products,
            args.seed,
            args.malformed_every,
        );
        std::thread::spawn(move || {
            generate(
                &brokers,
                &orders_topic,
                (count, rate, products, seed, bad),
                &sent,
            )
        })
    };
    let load = Duration::from_secs_f64(args.orders as f64 / args.rate.max(1) as f64);

    // The chaos schedule: events at random moments of the load's middle
    // 80 %, in order. The frozen worker and the restarted broker take
    // their time on threads of their own; kills spare the frozen worker.
    let load_start = Instant::now();
    let mut rng = Rng(args.seed ^ 0xc4a0_5eed);
    let events = (0..args.kills)
        .map(|_| Event::Kill)
        .chain(args.zombie.then_some(Event::Zombie))
        .chain(args.restart_broker.as_ref().map(|_| Event::RestartBroker));
    let scale = args
        .scale_to
        .map(|_| [(load / 3, Event::ScaleUp), (load * 2 / 3, Event::ScaleDown)]);
    let mut events: Vec<(Duration, Event)> = events
        .map(|e| {
            (
                load.mul_f64(0.1 + 0.8 * rng.below(10_000) as f64 / 10_000.0),
                e,
            )
        })
        .collect();
    events.extend(scale.into_iter().flatten());
    events.sort_by_key(|(at, _)| *at);
    let frozen = rng.below(initial as u64) as usize;
    let mut pauses = pauses::Pauses::default();
    // The workers sampled: all but those scaled down.
    let mut watched = usize::MAX;
    let (mut wiped, mut killed) = (0, 0);
    let mut background = Vec::new();
    let log = |what: String| {
        eprintln!(
            "chaos: {:>6.1} s, {:>7} orders sent: {what}",
            load_start.elapsed().as_secs_f64(),
            sent.load(Ordering::Relaxed)
        )
    };
    for (at, event) in events {
        while load_start.elapsed() < at {
            sample(&workers[..watched.min(workers.len())], &mut pauses);
            std::thread::sleep(
                Duration::from_millis(100).min(at.saturating_sub(load_start.elapsed())),
            );
        }
        match event {
            Event::Kill => {
                let mut i = rng.below(initial as u64 - 1) as usize;
                if args.zombie && i >= frozen {
                    i += 1;
                }
                let i = i.min(initial - 1);
                let wipe = rng.below(3) == 0;
                let how = if wipe {
                    ", restarted on an empty state directory"
                } else {
                    ""
                };
                log(format!("SIGKILL {}{how}", workers[i].name()));
                // Its silence is the kill's, not a rebalance's.
                pauses.forget(&workers[i].name());
                workers[i].kill_and_restart(wipe, Duration::from_secs(1 + rng.below(3)))?;
                killed += 1;
                wiped += u32::from(wipe);
            }
            Event::Zombie => {
                let w = &workers[frozen];
                log(format!(
                    "SIGSTOP {} for 20 s (its tasks move, its transaction times out)",
                    w.name()
                ));
                let (name, pid) = (w.name(), w.pid().context("the worker runs")?);
                background.push(std::thread::spawn(move || -> anyhow::Result<()> {
                    procs::signal(pid, "STOP")?;
                    std::thread::sleep(Duration::from_secs(20));
                    procs::signal(pid, "CONT")?;
                    eprintln!("chaos: SIGCONT {name}");
                    Ok(())
                }));
            }
            Event::ScaleUp => {
                let to = args.scale_to.expect("scheduled only when scaling");
                log(format!(
                    "scaling each service from {} to {to} workers",
                    args.workers
                ));
                let scaled = SERVICES
                    .into_iter()
                    .filter(|s| args.scale_service.as_deref().is_none_or(|only| only == *s));
                for service in scaled {
                    for index in args.workers..to {
                        workers.push(start_worker(service, index)?);
                    }
                }
            }
            Event::ScaleDown => {
                log(format!(
                    "scaling each service back to {} workers (SIGTERM)",
                    args.workers
                ));
                for w in &workers[initial..] {
                    pauses.forget(&w.name());
                    w.terminate();
                }
                watched = initial;
            }
            Event::RestartBroker => {
                let dir = args
                    .restart_broker
                    .clone()
                    .expect("scheduled only with a folder");
                log("SIGKILL broker 2, restarted 5 s later".into());
                let port = args.restarted_port;
                background.push(std::thread::spawn(move || -> anyhow::Result<()> {
                    Broker::new(&dir, 2, port).kill_and_restart(Duration::from_secs(5))?;
                    eprintln!("chaos: broker 2 is back");
                    Ok(())
                }));
            }
        }
    }
    while !generator.is_finished() {
        sample(&workers[..watched.min(workers.len())], &mut pauses);
        std::thread::sleep(Duration::from_millis(100));
    }
    let longest_pause_ms = pauses.longest_ms();
    for b in background {
        b.join()
            .map_err(|_| anyhow::anyhow!("a chaos thread panicked"))??;
    }
    let (orders, malformed) = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    let load_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "chaos: load done in {load_secs:.1} s; waiting for {} outcomes",
        orders.len()
    );
    for w in &mut workers[..initial] {
        if !w.is_running() {
            bail!(
                "worker {} exited; the end of its log:\n{}",
                w.name(),
                w.log_tail(20)
            );
        }
    }
    check::wait_for_keys(
        &args.brokers,
        &topic("order-outcomes"),
        orders.len(),
        Duration::from_secs(args.timeout_secs),
        |n| eprintln!("chaos: {n} of {} orders have an outcome", orders.len()),
    )?;
    // Compensations follow outcomes, and stock follows compensations.
    std::thread::sleep(Duration::from_secs(10));
    let mut clean = true;
    for w in &mut workers {
        clean &= w.stop(Duration::from_secs(30));
    }
    if !clean {
        eprintln!("chaos: a worker did not stop cleanly; see the logs");
    }
    let topics = Topics {
        outcomes: topic("order-outcomes"),
        payments: topic("payments"),
        inventory: topic("inventory"),
        stock_changelog: format!("inventory-service-{suffix}-stock-levels-changelog"),
        dead_letters: ["payment-service", "inventory-service", "order-saga"]
            .iter()
            .map(|a| format!("{a}-{suffix}-dlq"))
            .collect(),
    };
    let mut verdict = check::verify(&args.brokers, &topics, &orders, malformed, &stock)?;
    verdict.gateway_charges = gateway.stats().charges;
    let exactly_once = args.guarantee == Guarantee::ExactlyOnce;
    let report = Report {
        guarantee: args.guarantee.to_string(),
        orders: args.orders,
        kills: killed,
        wiped_state: wiped,
        zombie: args.zombie,
        broker_restarted: args.restart_broker.is_some(),
        workers: initial,
        scaled_to: args.scale_to,
        group_protocol: protocol.as_str().into(),
        partitions: args.partitions,
        longest_pause_ms,
        load_secs,
        total_secs: started.elapsed().as_secs_f64(),
        failures: verdict.failures(exactly_once),
        verdict,
    };
    Ok(report)
}

type Orders = HashMap<String, Vec<(String, i64)>>;

/// Produces the orders at `rate` (every `bad`th malformed) with an
/// idempotent producer; returns the valid orders' units per product and
/// the number of malformed records.
fn generate(
    brokers: &str,
    topic: &str,
    (count, rate, products, seed, bad): (u64, u64, u64, u64, u64),
    sent: &AtomicU64,
) -> anyhow::Result<(Orders, usize)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let start = Instant::now();
    let mut orders = HashMap::new();
    let mut malformed = 0;
    for i in 0..count {
        let due = Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
        let now = now_ms();
        if bad > 0 && i % bad == bad - 1 {
            let key = format!("bad-{seed}-{i}");
            send_blocking(
                &producer,
                BaseRecord::to(topic)
                    .key(&key)
                    .payload("{not json")
                    .timestamp(now),
            )?;
            malformed += 1;
        } else {
            let o = order_created(seed, i, products, now);
            let id = o["order_id"].as_str().unwrap_or_default().to_owned();
            let units = o["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|it| {
                    (
                        it["product_id"].as_str().unwrap_or_default().to_owned(),
                        it["qty"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            send_blocking(
                &producer,
                BaseRecord::to(topic)
                    .key(&id)
                    .payload(&o.to_string())
                    .timestamp(now),
            )?;
            orders.insert(id, units);
        }
        sent.store(i + 1, Ordering::Relaxed);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok((orders, malformed))
}
