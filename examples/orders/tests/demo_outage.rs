//! `eddy-orders demo --gateway-outage`: the payment gateway is down for
//! ten seconds of the run and fails 5 % of the other requests; the payment
//! service's breaker opens, orders wait instead of failing, and every order
//! still gets exactly one outcome, every paid order charged exactly once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn an_outage_of_the_gateway_delays_orders_and_charges_each_once() {
    let http_addr = common::free_addr();
    let args = [
        "--count",
        "1000",
        "--rate",
        "100",
        "--malformed-every",
        "0",
        "--gateway-outage",
        "2s..12s",
        "--gateway-failure-rate",
        "0.05",
    ];
    let mut child = common::KillOnDrop(
        common::demo_command(http_addr, &common::unique("outage"), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut summary = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        let done = line.starts_with("  GET /orders/");
        summary.push(line);
        if done || Instant::now() > deadline {
            break;
        }
    }
    let text = summary.join("\n");
    assert!(
        text.contains("eddy demo: 1000 valid orders, 1000 outcomes"),
        "{text}"
    );
    let gateway = summary
        .iter()
        .find(|l| l.starts_with("  payment gateway: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(gateway.ends_with(": exactly once"), "{text}");
    // "<charges> charges for <paid> paid orders (...)": equal, and as many
    // paid as without an outage (about 94 %: the gateway declines 5 % and
    // orders over the amount limit; none failed for the outage, they
    // waited).
    let words: Vec<&str> = gateway.split_whitespace().collect();
    let (charges, paid): (u64, u64) = (words[2].parse().unwrap(), words[5].parse().unwrap());
    assert_eq!(charges, paid, "{text}");
    assert!(paid >= 900, "{text}");
    assert!(
        text.contains("notifications: 1000 of 1000 outcomes delivered"),
        "{text}"
    );
    // The breaker opened during the outage.
    let (status, _, metrics) = common::exchange(http_addr, "GET", "/metrics", "", None);
    assert_eq!(status, 200);
    let opened: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("eddy_call_breaker_opened_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(opened >= 1.0, "{metrics}");
    child.terminate();
}
