//! What the demo shows: its status line, the outcomes it follows on the
//! pipeline's topics, and its summary.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use eddy::runtime::RunningStreams;
use eddy::serde::{I64Serde, StringSerde};
use eddy_orders::gateway::GatewayStats;
use eddy_orders::webhook::Webhook;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

use super::{DemoArgs, Tally};

pub(super) fn status_line(t: &Tally, generated: u64, rate: f64, gateway: &str) -> String {
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
        "created {generated} | completed {completed} | cancelled {} ({}) | refunds {} releases {} | dead letters {} | {gateway} | {rate:.0} records/s",
        t.cancelled.values().sum::<u64>(),
        if cancelled.is_empty() { "-".to_owned() } else { cancelled.join(", ") },
        t.refunds,
        t.releases,
        t.dead_letters,
    )
}

/// Follows the outcome, payment, inventory and dead-letter topics.
pub(super) fn observe(
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
        .set("fetch.wait.max.ms", "2")
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
            "payment_successful" if t.sent.contains_key(&id) => {
                t.paid.insert(id);
            }
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
pub(super) fn stock_levels(inventory: &RunningStreams, products: u64) -> anyhow::Result<i64> {
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
pub(super) fn read_model(
    http: SocketAddr,
    id: &str,
    token: Option<&str>,
) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(http)?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /orders/{id} HTTP/1.1\r\nHost: {http}\r\n{authorization}Connection: close\r\n\r\n"
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

pub(super) fn print_summary(
    t: &Tally,
    args: &DemoArgs,
    elapsed: Duration,
    stock_left: i64,
    sample: Option<(String, String)>,
    gateway: GatewayStats,
    webhook: &Webhook,
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
    // Every paid order charged once: retries and calls made again after
    // a failure replay the first answer.
    println!(
        "  payment gateway: {} charges for {} paid orders ({} requests, {} replayed): {}",
        gateway.charges,
        t.paid.len(),
        gateway.requests,
        gateway.replays,
        if gateway.charges == t.paid.len() as u64 {
            "exactly once"
        } else {
            "MISMATCH"
        }
    );
    // Every outcome delivered, once as the receiver keeps them.
    let delivered = webhook.deliveries();
    let notified = ours()
        .filter(|(id, (kind, _))| delivered.contains_key(&format!("{id}:{kind}")))
        .count();
    println!(
        "  notifications: {notified} of {} outcomes delivered to the webhook ({} requests)",
        ours().count(),
        webhook.requests()
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
