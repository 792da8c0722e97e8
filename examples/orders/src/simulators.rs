//! `eddy-orders gateway` and `eddy-orders webhook`: the services the
//! payment and notification services call, as processes of their own (for
//! the services run by hand or by `benches/baseline/compare.sh`; the demo
//! starts them in its own process).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use anyhow::Context;
use eddy_orders::gateway::{Gateway, GatewayConfig};
use eddy_orders::webhook::Webhook;

/// Flags of `gateway`.
#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Where to listen (`config/payment.toml`'s default `gateway_url`).
    #[arg(long, default_value = "127.0.0.1:8181")]
    addr: SocketAddr,
    /// How long each answer takes at least (durations as in topology
    /// files: 100ms, 2s).
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    latency: Duration,
    /// ... plus up to this much more, drawn per request.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    jitter: Duration,
    /// Share of requests (0 to 1) failed transiently (500, or 429 with
    /// Retry-After).
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Share of charges declined (`card_declined`, drawn from the order id).
    #[arg(long, default_value_t = 0.05)]
    decline_rate: f64,
    /// Charges above this amount in cents are declined.
    #[arg(long, default_value_t = 500_000)]
    amount_limit: i64,
    /// A window counted from the start in which every request is answered
    /// 503, such as 20s..40s; may be repeated.
    #[arg(long, value_parser = parse_window)]
    outage: Vec<Range<Duration>>,
}

/// Flags of `webhook`.
#[derive(clap::Args)]
pub struct WebhookArgs {
    /// Where to listen (`config/notification.toml`'s default
    /// `webhook_url`).
    #[arg(long, default_value = "127.0.0.1:8182")]
    addr: SocketAddr,
    /// Share of requests (0 to 1) answered 503.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
}

/// A share between 0 and 1, or an error naming the flag.
fn share(flag: &str, v: f64) -> anyhow::Result<f64> {
    match (0.0..=1.0).contains(&v) {
        true => Ok(v),
        false => anyhow::bail!("--{flag} {v}: not a share between 0 and 1"),
    }
}

/// Serves the gateway simulator until the process is stopped; prints its
/// charge count each 10 s that it changed.
pub fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let config = GatewayConfig {
        latency: args.latency,
        jitter: args.jitter,
        failure_rate: share("failure-rate", args.failure_rate)?,
        outages: args.outage,
        amount_limit: args.amount_limit,
        decline_rate: share("decline-rate", args.decline_rate)?,
    };
    let g =
        Gateway::start(config, args.addr).with_context(|| format!("listening on {}", args.addr))?;
    eprintln!(
        "payment gateway simulator on http://{}: POST /charges, GET /stats",
        g.addr()
    );
    let mut last = g.stats();
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let now = g.stats();
        if now != last {
            eprintln!(
                "{} requests, {} charges ({} replayed)",
                now.requests, now.charges, now.replays
            );
            last = now;
        }
    }
}

/// Serves the webhook receiver until the process is stopped.
pub fn webhook(args: WebhookArgs) -> anyhow::Result<()> {
    let failure_rate = share("failure-rate", args.failure_rate)?;
    let w = Webhook::start(failure_rate, args.addr)
        .with_context(|| format!("listening on {}", args.addr))?;
    eprintln!("webhook receiver on http://{}: POST /notify", w.addr());
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let delivered = w.deliveries().len();
        if delivered != last {
            eprintln!("{delivered} deliveries ({} requests)", w.requests());
            last = delivered;
        }
    }
}

/// A duration written as in topology files (`100ms`, `2s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("bad duration {text:?}: {e}"))
}

/// `FROM..TO`, two durations from the start.
pub fn parse_window(text: &str) -> Result<Range<Duration>, String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("expected FROM..TO (such as 20s..40s), got {text:?}"))?;
    let (from, to) = (parse_duration(from)?, parse_duration(to)?);
    if from >= to {
        return Err(format!("{text:?}: the window ends before it starts"));
    }
    Ok(from..to)
}
