//! The chaos harness (`eddy-orders chaos`) on a three-node cluster:
//! exactly-once holds through SIGKILLed workers (some restarted on an
//! empty state directory), a frozen worker that comes back as a zombie,
//! and a broker restart; at-least-once loses no order through kills.
//!
//! Runs only when `EDDY_CHAOS_BOOTSTRAP` names a three-node cluster and
//! `EDDY_CHAOS_KAFKA_DIR` its folder (`scripts/test.sh` starts one); the
//! broker restarted is node 2, at `EDDY_CHAOS_RESTART_PORT` (19094).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `eddy-orders chaos` with `args`; its report.
fn chaos(args: &[&str]) -> Option<Value> {
    let Ok(brokers) = std::env::var("EDDY_CHAOS_BOOTSTRAP") else {
        eprintln!("skipped: EDDY_CHAOS_BOOTSTRAP names no three-node cluster");
        return None;
    };
    let dir = std::env::var("EDDY_CHAOS_KAFKA_DIR").expect("EDDY_CHAOS_KAFKA_DIR");
    let port = std::env::var("EDDY_CHAOS_RESTART_PORT").unwrap_or_else(|_| "19094".into());
    let work = std::env::temp_dir().join(eddy::testing::unique("chaos"));
    let report = work.join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_eddy-orders"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["chaos", "--brokers", &brokers])
        .args(["--restart-broker", &dir, "--restarted-port", &port])
        .args(["--work-dir", work.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap()])
        .args(args)
        .status()
        .expect("run eddy-orders chaos");
    let text = std::fs::read_to_string(&report).expect("the harness wrote its report");
    let report: Value = serde_json::from_str(&text).unwrap();
    if let Some(error) = report["error"].as_str() {
        panic!("the harness could not finish its run: {error}");
    }
    assert!(status.success(), "the run failed its checks: {report:#}");
    Some(report)
}

#[test]
fn exactly_once_holds_through_kills_a_zombie_and_a_broker_restart() {
    let Some(r) = chaos(&[
        "--orders", "20000", "--rate", "250", "--kills", "5", "--zombie",
    ]) else {
        return;
    };
    let v = &r["verdict"];
    assert_eq!(r["kills"], 5);
    assert_eq!(r["broker_restarted"], true);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["with_outcome"], v["valid_orders"]);
    assert_eq!(v["several_outcomes"], 0);
    assert_eq!(v["wrong_compensations"], 0);
    assert_eq!(v["refunds"], v["paid_then_cancelled"]);
    assert_eq!(v["releases"], v["reserved_then_cancelled"]);
    assert_eq!(v["wrong_stock"], Value::Array(vec![]));
    for (topic, n) in v["duplicates"].as_object().unwrap() {
        assert_eq!(n, 0, "duplicates in {topic}");
    }
    // Every malformed order is dead-lettered once by each service.
    for (topic, n) in v["dead_letters"].as_object().unwrap() {
        assert_eq!(n, &v["malformed"], "{topic}");
    }
}

#[test]
fn at_least_once_loses_no_order_through_kills() {
    let Some(r) = chaos(&[
        "--guarantee",
        "at_least_once",
        "--orders",
        "6000",
        "--rate",
        "250",
        "--kills",
        "3",
    ]) else {
        return;
    };
    let v = &r["verdict"];
    assert_eq!(v["lost"], 0);
    assert_eq!(v["with_outcome"], v["valid_orders"]);
    eprintln!("at-least-once duplicates: {}", v["duplicates"]);
}
