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
use eddy::config::{Overrides, Pipeline};
use eddy::kafka::admin::ensure_topic;
use eddy::kafka::{send_blocking, EmbeddedKafka};
use eddy::observability::{Metrics, Spans};
use eddy::runtime::RunningStreams;
use eddy_orders::gateway::{Gateway, GatewayConfig};
use eddy_orders::order_created;
use eddy_orders::webhook::Webhook;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

mod auth;
mod http;
mod report;

use auth::DemoAuth;
use http::order_route;
use report::{observe, print_summary, read_model, status_line, stock_levels};

const TOPICS: [&str; 6] = [
    "orders",
    "payments",
    "inventory",
    "stock",
    "order-outcomes",
    "notifications",
];
const APPS: [&str; 4] = [
    "payment-service",
    "inventory-service",
    "notification-service",
    "order-saga",
];

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
    /// Share of payments the payment gateway declines (drawn from the
    /// order id).
    #[arg(long, default_value_t = 0.05)]
    payment_failure_rate: f64,
    /// Orders above this amount in cents the payment gateway declines.
    #[arg(long, default_value_t = 100_000)]
    amount_limit: i64,
    /// How long the payment gateway takes to answer (at least; durations
    /// as in topology files: 100ms, 2s).
    #[arg(long, default_value = "20ms", value_parser = crate::simulators::parse_duration)]
    gateway_latency: Duration,
    /// ... plus up to this much more, drawn per request.
    #[arg(long, default_value = "10ms", value_parser = crate::simulators::parse_duration)]
    gateway_jitter: Duration,
    /// Share of requests (0 to 1) the gateway fails transiently (500, or
    /// 429 with Retry-After), which the payment service retries.
    #[arg(long, default_value_t = 0.0)]
    gateway_failure_rate: f64,
    /// A window of the run in which the gateway is down (503 to every
    /// request), such as 20s..40s; may be repeated.
    #[arg(long, value_parser = crate::simulators::parse_window)]
    gateway_outage: Vec<std::ops::Range<Duration>>,
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
    /// Delivery guarantee of the three services, overriding their files':
    /// at_least_once or exactly_once (on the embedded cluster a
    /// demonstration only: it fakes transactions).
    #[arg(long)]
    guarantee: Option<eddy::kafka::Guarantee>,
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
    /// W3C trace context through the pipeline's records, new traces
    /// sampled at this ratio (0 to 1), overriding the files'; 1 when
    /// `--otlp-endpoint` is given without it.
    #[arg(long)]
    trace_sample_ratio: Option<f64>,
    /// An OpenTelemetry collector's OTLP/HTTP endpoint (such as
    /// http://localhost:4318): the spans of `POST /orders` and of every
    /// hop of the three services are exported there.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Require a bearer JWT signed with HS256 by the secret in this
    /// environment variable (32 bytes or more): `POST /orders` with the
    /// scope `orders:write`, `GET /orders/{id}` and the store routes with
    /// `query`; the status page, /metrics and /health stay open. The demo
    /// prints a token to try them with.
    #[arg(long, value_name = "VAR")]
    jwt_secret_env: Option<String>,
    /// The issuer (`iss`) tokens must name.
    #[arg(long, default_value = "eddy-demo")]
    jwt_issuer: String,
    /// The audience (`aud`) tokens must name.
    #[arg(long, default_value = "eddy-orders")]
    jwt_audience: String,
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
    /// Orders sent this run with a `payment_successful`.
    paid: std::collections::HashSet<String>,
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
    let (cluster, servers) = provision(&args)?;
    seed_stock(&args, &servers)?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let metrics = Arc::new(Metrics::new());
    let state = std::env::temp_dir().join(format!("eddy-demo-{}", std::process::id()));
    if let Some(r) = args.trace_sample_ratio {
        if !(0.0..=1.0).contains(&r) {
            bail!("--trace-sample-ratio {r}: not a ratio between 0 and 1");
        }
    }
    let api_spans = args
        .otlp_endpoint
        .as_deref()
        .map(|e| Spans::start(e, &topic(&args, "orders-api"), &metrics))
        .transpose()
        .context("--otlp-endpoint")?;
    let auth = DemoAuth::from_args(&args)?;
    let gateway = start_gateway(&args)?;
    let webhook = Webhook::start(0.0, SocketAddr::from(([127, 0, 0, 1], 0))).context("webhook")?;
    let services = Services {
        gateway: &gateway,
        webhook: &webhook,
        cluster: &cluster,
        servers: &servers,
        state: &state,
        tally: &tally,
        metrics: &metrics,
        api_spans: &api_spans,
        auth: auth.as_ref(),
    };
    let (mut workers, http, expected_partitions) = start_services(&args, &services)?;
    eprintln!(
        "eddy demo: order pipeline on {} — status page http://{http}/, metrics http://{http}/metrics, POST /orders, GET /orders/{{id}}",
        if cluster.is_some() {
            format!("the embedded cluster at {servers}")
        } else {
            servers.clone()
        },
    );
    // A token for the demo's own read of the read model, and one printed
    // for whoever tries the routes.
    let own_token = auth
        .as_ref()
        .map(|a| a.token(auth::QUERY_SCOPE, Duration::from_secs(3600)))
        .transpose()?;
    if let Some(a) = &auth {
        let scopes = format!("{} {}", auth::WRITE_SCOPE, auth::QUERY_SCOPE);
        eprintln!(
            "eddy demo: POST /orders needs a bearer token with the scope {}, GET /orders/{{id}} one with {}; a token with both, valid for an hour: {}",
            auth::WRITE_SCOPE,
            auth::QUERY_SCOPE,
            a.token(&scopes, Duration::from_secs(3600))?
        );
    }
    // Orders flow once every worker holds its partitions.
    let joined = Instant::now();
    while metrics.total("eddy_thread_assigned_partitions") < expected_partitions {
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
            .map(|t| topic(&args, t))
            .collect();
        topics.extend(APPS.iter().map(|a| format!("{}-dlq", topic(&args, a))));
        std::thread::spawn(move || observe(&servers, &topics, &tally, &stop))
    };
    let generated = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let generator = generate(&args, &servers, &tally, &generated);
    show_progress(&args, &workers, &metrics, &tally, &generated, &generator)?;
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
    let summary_of = sample
        .as_ref()
        .map(|id| read_model(http, id, own_token.as_deref()))
        .transpose()?;
    stop.store(true, Ordering::Relaxed);
    let _ = observer.join();
    let t = tally.lock().unwrap_or_else(|e| e.into_inner());
    print_summary(
        &t,
        &args,
        elapsed,
        stock_left,
        sample.zip(summary_of),
        gateway.stats(),
        &webhook,
    );
    drop(t);
    if args.serve {
        // The pipeline keeps running for orders posted to /orders.
        eprintln!("serving until Ctrl-C");
        let saga = workers.pop().expect("the saga's worker is the last");
        saga.run_until_signal()?;
    }
    for w in workers {
        w.close()?;
    }
    if let Some(spans) = api_spans {
        spans.close();
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

/// The payment gateway simulator, as the `--gateway-*` flags and the
/// payment rules say, on a free port.
fn start_gateway(args: &DemoArgs) -> anyhow::Result<Gateway> {
    if !(0.0..=1.0).contains(&args.gateway_failure_rate) {
        bail!(
            "--gateway-failure-rate {}: not a share between 0 and 1",
            args.gateway_failure_rate
        );
    }
    let config = GatewayConfig {
        latency: args.gateway_latency,
        jitter: args.gateway_jitter,
        failure_rate: args.gateway_failure_rate,
        outages: args.gateway_outage.clone(),
        amount_limit: args.amount_limit,
        decline_rate: args.payment_failure_rate,
    };
    Gateway::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).context("payment gateway")
}

/// The name of the demo's topic or application `t` (with `--suffix`).
fn topic(args: &DemoArgs, t: &str) -> String {
    match &args.suffix {
        Some(s) => format!("{t}-{s}"),
        None => t.to_owned(),
    }
}

/// The cluster (embedded unless `--brokers`) and its bootstrap servers,
/// with the demo's topics created.
fn provision(args: &DemoArgs) -> anyhow::Result<(Option<Arc<EmbeddedKafka>>, String)> {
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
                c.create_topic(&topic(args, t), args.partitions)?;
            }
        }
        None => {
            let mut admin = ClientConfig::new();
            admin.set("bootstrap.servers", &servers);
            for t in TOPICS {
                ensure_topic(
                    &admin,
                    &topic(args, t),
                    args.partitions,
                    &[],
                    Duration::from_secs(30),
                )?;
            }
        }
    }
    Ok((cluster, servers))
}

/// Writes every product's initial stock.
fn seed_stock(args: &DemoArgs, servers: &str) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()?;
    for p in 0..args.products {
        let id = format!("product-{p}");
        let value = json!({"product_id": id, "qty": args.stock}).to_string();
        send_blocking(
            &producer,
            BaseRecord::to(&topic(args, "stock"))
                .key(&id)
                .payload(&value)
                .timestamp(0),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// What the three services share.
struct Services<'a> {
    cluster: &'a Option<Arc<EmbeddedKafka>>,
    servers: &'a str,
    state: &'a std::path::Path,
    tally: &'a Arc<Mutex<Tally>>,
    metrics: &'a Arc<Metrics>,
    /// Where the spans of `POST /orders` go.
    api_spans: &'a Option<Spans>,
    /// The bearer tokens `POST /orders` and the read model require.
    auth: Option<&'a DemoAuth>,
    /// The payment gateway simulator the payment service calls.
    gateway: &'a Gateway,
    /// The webhook receiver the notification service delivers to.
    webhook: &'a Webhook,
}

/// Starts the payment, inventory and saga services of `config/`: their
/// workers, the HTTP address the saga serves (with `POST /orders`), and
/// how many input partitions they hold between them once joined.
fn start_services(
    args: &DemoArgs,
    s: &Services<'_>,
) -> anyhow::Result<(Vec<RunningStreams>, SocketAddr, u64)> {
    let registry = eddy_orders::registry();
    let mut http = args.http.unwrap_or_else(|| {
        let preferred = SocketAddr::from(([127, 0, 0, 1], 8080));
        match std::net::TcpListener::bind(preferred) {
            Ok(_) => preferred,
            Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    });
    let mut overrides = Overrides {
        suffix: args.suffix.clone(),
        ..Overrides::default()
    };
    if let Some(key) = crate::run_key::drawn_unless_set("eddy demo")? {
        overrides.env_secrets.insert(
            eddy_orders::PII_KEY_ENV.into(),
            eddy::kafka::Secret::Value(key),
        );
    }
    overrides.vars.insert(
        "gateway_url".into(),
        format!("http://{}", s.gateway.addr()).into(),
    );
    overrides.vars.insert(
        "webhook_url".into(),
        format!("http://{}", s.webhook.addr()).into(),
    );
    let mut workers: Vec<RunningStreams> = Vec::new();
    let mut expected_partitions = 0;
    for file in [
        "payment.toml",
        "inventory.toml",
        "notification.toml",
        "order-saga.toml",
    ] {
        let path = args.config_dir.join(file);
        let mut p = Pipeline::load_with(&path, &registry, &overrides)?;
        p.config.bootstrap_servers = args.brokers.clone();
        if args.trace_sample_ratio.is_some() {
            p.config.trace_sample_ratio = args.trace_sample_ratio;
        }
        if args.otlp_endpoint.is_some() {
            p.config.otlp_endpoint = args.otlp_endpoint.clone();
        }
        if let Some(g) = args.guarantee {
            p.config.guarantee = g;
            if g == eddy::kafka::Guarantee::ExactlyOnce {
                // The files' 1 s is for at-least-once.
                p.config.commit_interval = None;
            }
        }
        p.config.state_dir = s.state.to_owned();
        p.config.embedded_partitions = args.partitions;
        let saga = p.config.application_id == topic(args, "order-saga");
        if saga {
            p.config.http_addr = Some(http);
            if let Some(a) = s.auth {
                p.config.http_auth = Some((a.auth.clone(), auth::QUERY_SCOPE.into()));
            }
        }
        expected_partitions += p.topology.source_topics().len() as u64 * args.partitions as u64;
        let mut streams = p.into_streams().with_metrics(s.metrics.clone());
        if let Some(c) = s.cluster {
            streams = streams.embedded_cluster(c.clone());
        }
        if saga {
            streams = streams.with_routes(order_route(
                s.servers,
                &topic(args, "orders"),
                &args.config_dir,
                s.tally,
                s.api_spans.clone(),
                s.auth.map(|a| &a.auth),
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
    Ok((workers, http, expected_partitions))
}

/// Produces `--count` orders at `--rate` (every `--malformed-every`th one
/// malformed), noting each valid one in the tally, on a thread of its own.
fn generate(
    args: &DemoArgs,
    servers: &str,
    tally: &Arc<Mutex<Tally>>,
    generated: &Arc<AtomicU64>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let (servers, tally, generated) = (servers.to_owned(), tally.clone(), generated.clone());
    let orders = topic(args, "orders");
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
}

/// Shows the status line until every valid order has an outcome (or
/// `--timeout-secs` after the last was generated); fails if a worker stops.
/// The payment service's calls: its breaker and the calls in flight.
fn gateway_status(metrics: &Metrics) -> String {
    let gathered = metrics.registry().gather();
    let value = |name: &str| {
        gathered
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_gauge().get_value())
            .fold(0.0f64, f64::max)
    };
    let breaker = match value("eddy_call_breaker_state") as i64 {
        2 => "OPEN",
        1 => "half-open",
        _ => "closed",
    };
    format!(
        "gateway breaker {breaker}, {} calls in flight",
        value("eddy_calls_in_flight")
    )
}

fn show_progress(
    args: &DemoArgs,
    workers: &[RunningStreams],
    metrics: &Metrics,
    tally: &Mutex<Tally>,
    generated: &AtomicU64,
    generator: &std::thread::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
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
            // Records processed by the four workers, per second.
            let records = metrics.total("eddy_thread_records_processed_total");
            let rate = (records - last.1.min(records)) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), records);
            (
                status_line(
                    &t,
                    generated.load(Ordering::Relaxed),
                    rate,
                    &gateway_status(metrics),
                ),
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
    Ok(())
}
