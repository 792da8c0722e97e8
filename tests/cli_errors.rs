//! A misconfigured worker exits non-zero with one clear line.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn eddy(args: &[&str]) -> (bool, String, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    (out.status.success(), stderr, start.elapsed())
}

#[test]
fn unknown_topic_is_refused_naming_the_topic() {
    let c = common::cluster();
    let missing = common::unique("no-such-topic");
    let (ok, stderr, _) = eddy(&[
        "pipe",
        "--brokers",
        &c.bootstrap,
        "--input",
        &missing,
        "--output",
        "x",
    ]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "eddy: error: source topic \"{missing}\" does not exist on {}",
            c.bootstrap
        )),
        "{stderr}"
    );
}

#[test]
fn unreachable_broker_is_refused_after_the_timeout() {
    let dead = common::free_addr().to_string();
    let (ok, stderr, took) = eddy(&["pipe", "--brokers", &dead, "--input", "a", "--output", "b"]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "eddy: error: cannot reach Kafka at {dead} within 10s"
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(30));
}
