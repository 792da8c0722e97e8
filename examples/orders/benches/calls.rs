//! The call operator against the payment gateway simulator, beside the
//! synchronous call per record that Kafka Streams users make inside
//! `process()` (the yardstick, same run, same HTTP client: a
//! [`Caller`] driven to completion on the stream thread, one record at a
//! time).
//!
//! For each gateway latency (`EDDY_BENCH_LATENCIES_MS`, default `1,10,100`)
//! and each per-task concurrency of the call operator
//! (`EDDY_BENCH_CONCURRENCY`, default `8,64,256`; the worker's limit four
//! times that, its four tasks), records preloaded on a 4-partition topic
//! are charged one each, and the rate is records over the time from the
//! worker's partitions being assigned to the last output read. Rounds
//! (`EDDY_BENCH_ROUNDS`, default 3) alternate the runs' order; medians.
//! The synchronous runs take `3 s / latency` records (at least 30), the
//! call operator's `EDDY_BENCH_CALLS` (default 4 000).
//!
//! Runs against the broker in `EDDY_TEST_BOOTSTRAP` (else an embedded one).

#[path = "../../../benches/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use eddy::calls::{
    Answer, BreakerConfig, Call, CallLimits, CallOutcome, CallRequest, CallSettings, Caller,
    CircuitBreaker, RetryPolicy,
};
use eddy::kafka::StreamsConfig;
use eddy::processor::{Processor, ProcessorContext, Record};
use eddy::runtime::KafkaStreams;
use eddy::serde::StringSerde;
use eddy::testing::{unique, TestCluster};
use eddy::topology::{StreamsBuilder, Topology};
use eddy_orders::gateway::{Gateway, GatewayConfig};

const PARTITIONS: i32 = 4;

fn request(url: &str, key: &str) -> CallRequest {
    CallRequest {
        method: "POST".into(),
        url: url.to_owned(),
        headers: vec![
            ("Idempotency-Key".into(), key.to_owned()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: Some(format!(r#"{{"order_id": "{key}", "amount": 100}}"#).into_bytes()),
    }
}

/// The yardstick: the call made on the stream thread, record by record.
struct SyncCall {
    url: String,
    caller: Caller,
    runtime: tokio::runtime::Runtime,
}

impl Processor<String, String, String, String> for SyncCall {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) {
        let outcome = self
            .runtime
            .block_on(self.caller.call(&request(&self.url, &r.key)));
        let status = match outcome {
            CallOutcome::Answered { status, .. } => status.to_string(),
            other => format!("{other:?}"),
        };
        ctx.forward(r.with_value(status));
    }
}

fn sync_topology(input: &str, output: &str, url: String) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(input, StringSerde, StringSerde)
        .process(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let caller = runtime.block_on(async {
                Caller::new(
                    RetryPolicy::default(),
                    CallLimits::default(),
                    std::sync::Arc::new(CircuitBreaker::new(BreakerConfig::default())),
                )
            });
            SyncCall {
                url: url.clone(),
                caller,
                runtime,
            }
        })
        .to(output, StringSerde, StringSerde);
    b.build().unwrap()
}

fn call_topology(input: &str, output: &str, url: String, concurrency: usize) -> Topology {
    let call = Call::new(
        StringSerde,
        StringSerde,
        move |k: &String, _: &String| Ok(request(&url, k)),
        |_: &String, _: &String, a: &Answer<'_>| Ok(a.status.to_string()),
    )
    .idempotency_key(|k: &String, _: &String| k.clone())
    .settings(CallSettings {
        concurrency,
        worker_concurrency: concurrency * PARTITIONS as usize,
        max_pending: concurrency * 4,
        ..CallSettings::default()
    });
    let b = StreamsBuilder::new();
    b.stream(input, StringSerde, StringSerde)
        .call("charged", call)
        .to(output, StringSerde, StringSerde);
    b.build().unwrap()
}

/// Records per second of one run of `topology` over `n` preloaded records.
fn run(
    c: &TestCluster,
    name: &str,
    n: usize,
    topology: impl FnOnce(&str, &str) -> Topology,
) -> f64 {
    let u = unique(name);
    let (input, output) = (format!("in-{u}"), format!("out-{u}"));
    c.create_topic(&input, PARTITIONS);
    c.create_topic(&output, PARTITIONS);
    let records: Vec<(String, String, i64)> = (0..n)
        .map(|i| {
            (
                format!("{u}-{i}"),
                "order".to_owned(),
                common::first_timestamp(n),
            )
        })
        .collect();
    c.produce_at(&input, &records);
    let state = common::state_dir(name);
    let mut config = StreamsConfig::new(&u).state_dir(&state);
    if !c.is_embedded() {
        config = config.bootstrap_servers(&c.bootstrap);
    }
    config.embedded_partitions = PARTITIONS;
    let mut streams = KafkaStreams::new(topology(&input, &output), config);
    if let Some(e) = c.embedded() {
        streams = streams.embedded_cluster(e);
    }
    let w = streams.start().unwrap();
    let mut reader = c.reader(&output);
    while w.metrics().total("eddy_thread_assigned_partitions") < PARTITIONS as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    assert!(
        reader.read_until(Duration::from_secs(600), |r| r.len() >= n),
        "{name}: {} of {n}",
        reader.records.len()
    );
    let took = start.elapsed();
    assert!(reader
        .records
        .iter()
        .all(|r| r.value.as_deref() == Some(b"200")));
    w.close().unwrap();
    let _ = std::fs::remove_dir_all(state);
    n as f64 / took.as_secs_f64()
}

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

fn main() {
    let c = TestCluster::from_env();
    let rounds = common::env_usize("EDDY_BENCH_ROUNDS", 3);
    let calls = common::env_usize("EDDY_BENCH_CALLS", 4_000);
    let concurrencies = list("EDDY_BENCH_CONCURRENCY", "8,64,256");
    println!(
        "call operator vs a synchronous call per record, on {}",
        common::cluster_name(&c)
    );
    for latency in list("EDDY_BENCH_LATENCIES_MS", "1,10,100") {
        let gateway = Gateway::start(
            GatewayConfig {
                latency: Duration::from_millis(latency as u64),
                ..GatewayConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let url = format!("http://{}/charges", gateway.addr());
        let sync_n = (3_000 / latency).max(30);
        let mut sync = Vec::new();
        let mut called: Vec<Vec<f64>> = vec![Vec::new(); concurrencies.len()];
        for round in 0..rounds {
            let sync_first = round % 2 == 0;
            let mut sync_run = || {
                let u = url.clone();
                sync.push(run(&c, "calls-sync", sync_n, move |i, o| {
                    sync_topology(i, o, u)
                }));
            };
            if sync_first {
                sync_run();
            }
            for (i, &k) in concurrencies.iter().enumerate() {
                let u = url.clone();
                called[i].push(run(&c, "calls-async", calls, move |i, o| {
                    call_topology(i, o, u, k)
                }));
            }
            if !sync_first {
                sync_run();
            }
        }
        let sync_median = common::median(&mut sync);
        println!(
            "gateway latency {latency} ms: synchronous {sync_median:.0} records/s ({} records a run; rounds {:?})",
            sync_n,
            sync.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        for (k, rates) in concurrencies.iter().zip(&mut called) {
            let median = common::median(rates);
            println!(
                "  call operator, {k} in flight per task ({} per worker): {median:.0} records/s = {:.1}x synchronous (rounds {:?})",
                k * PARTITIONS as usize,
                median / sync_median,
                rates.iter().map(|r| r.round()).collect::<Vec<_>>()
            );
        }
        let stats = gateway.stats();
        println!(
            "  (gateway: {} requests, {} charges)",
            stats.requests, stats.charges
        );
    }
}
