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

#[test]
fn a_bad_topology_file_is_refused_by_validate_and_run() {
    let dir = std::env::temp_dir().join(common::unique("bad-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[application]\nid = \"a\"\n[topics.in]\n[nodes.src]\nop = \"source\"\ntopic = \"in\"\n[nodes.j]\nop = \"join\"\nleft = \"src\"\nright = \"src\"\nvalue = \"left\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let expected = format!(
        "{path}: nodes.j.window: a stream-stream join needs a window (for example window = \"30s\")"
    );
    let (ok, stderr, _) = eddy(&["validate", path]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!("{expected}\neddy: error: 1 of 1 files refused\n")
    );
    let (ok, stderr, _) = eddy(&["run", "--config", path]);
    assert!(!ok);
    assert_eq!(stderr, format!("eddy: error: {expected}\n"));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/page-views.toml");
    let (ok, stderr, _) = eddy(&["validate", shipped]);
    assert!(ok, "{stderr}");
    // A secret the file names is read by run, not by validate.
    let keyed = dir.join("keyed.toml");
    std::fs::write(
        &keyed,
        "[application]\nid = \"a\"\n[topics.in]\n[nodes.src]\nop = \"source\"\ntopic = \"in\"\n[nodes.m]\nop = \"mask\"\ninput = \"src\"\nhash = [\"email\"]\nkey_env = \"EDDY_NO_SUCH_KEY\"\n",
    )
    .unwrap();
    let keyed = keyed.to_str().unwrap();
    let (ok, stderr, _) = eddy(&["validate", keyed]);
    assert!(ok, "{stderr}");
    let (ok, stderr, _) = eddy(&["run", "--config", keyed]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!("eddy: error: {keyed}: nodes.m.key_env: environment variable EDDY_NO_SUCH_KEY is not set\n")
    );
    let _ = std::fs::remove_dir_all(dir);
}
