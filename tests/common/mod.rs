//! Shared helpers of the integration tests: the cluster under test and
//! `eddy` worker processes.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use eddy::testing::{free_addr, unique, wait_for, Consumed, TestCluster};

/// The cluster under test.
/// Creates the compacted topic `changelog` with `partitions` partitions
/// and writes a count of 1 for each of `keys` keys (`key-0`, `key-1`, ...)
/// to its partition 0: a count store's state for task 0_0 to restore.
pub fn fill_counts(c: &TestCluster, changelog: &str, partitions: i32, keys: u32) {
    use rdkafka::producer::{BaseRecord, Producer};
    c.create_topic_with(changelog, partitions, &[("cleanup.policy", "compact")]);
    let producer = c.producer();
    let one = 1i64.to_be_bytes();
    for i in 0..keys {
        let key = format!("key-{i}");
        let record = BaseRecord::<[u8], [u8]>::to(changelog)
            .partition(0)
            .key(key.as_bytes())
            .payload(&one);
        eddy::kafka::send_blocking(&producer, record).expect("produce");
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

pub fn cluster() -> TestCluster {
    TestCluster::from_env()
}

/// An `eddy pipe` worker process.
pub struct Worker {
    child: Child,
    pub http: SocketAddr,
}

/// A dead worker's partitions move within seconds: on the real broker its
/// group settings do it (`scripts/kafka/start.sh`: a 6 s session under the
/// consumer protocol); the embedded cluster runs the classic protocol with
/// a 6 s session set here.
fn fast_group_args() -> Vec<&'static str> {
    if std::env::var("EDDY_TEST_BOOTSTRAP").is_ok() {
        return Vec::new();
    }
    CLASSIC_6S_SESSION.to_vec()
}

/// Worker arguments: the classic group protocol with a 6 s session.
pub const CLASSIC_6S_SESSION: [&str; 6] = [
    "--group-protocol",
    "classic",
    "--set",
    "consumer.session.timeout.ms=6000",
    "--set",
    "consumer.heartbeat.interval.ms=500",
];

impl Worker {
    /// `eddy <args> --brokers <bootstrap>` with test-friendly timeouts,
    /// a 300 ms commit interval and /metrics on a free port.
    pub fn spawn(bootstrap: &str, args: &[&str]) -> Worker {
        let http = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(args)
            .args([
                "--brokers",
                bootstrap,
                "--http",
                &http.to_string(),
                "--commit-interval-ms",
                "300",
            ])
            .args(fast_group_args())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eddy");
        let mut child = child;
        label_logs(child.stderr.take().expect("piped"), http);
        Worker { child, http }
    }

    pub fn pipe(bootstrap: &str, app_id: &str, input: &str, output: &str) -> Worker {
        Self::spawn(
            bootstrap,
            &[
                "pipe", "--app-id", app_id, "--input", input, "--output", output,
            ],
        )
    }

    pub fn count(
        bootstrap: &str,
        app_id: &str,
        input: &str,
        output: &str,
        state_dir: &std::path::Path,
    ) -> Worker {
        Self::count_with(bootstrap, app_id, (input, output), state_dir, &[])
    }

    /// An `eddy count` worker with `extra` arguments.
    pub fn count_with(
        bootstrap: &str,
        app_id: &str,
        (input, output): (&str, &str),
        state_dir: &std::path::Path,
        extra: &[&str],
    ) -> Worker {
        let dir = state_dir.to_str().unwrap();
        let mut args = vec![
            "count",
            "--app-id",
            app_id,
            "--input",
            input,
            "--output",
            output,
            "--state-dir",
            dir,
        ];
        args.extend_from_slice(extra);
        Self::spawn(bootstrap, &args)
    }

    /// An `eddy join` worker of `left` and `right` into `output`, with its
    /// join buffers in `state_dir`, and `extra` arguments.
    pub fn join(
        bootstrap: &str,
        app_id: &str,
        (left, right, output): (&str, &str, &str),
        state_dir: &std::path::Path,
        extra: &[&str],
    ) -> Worker {
        let dir = state_dir.to_str().unwrap();
        let mut args = vec![
            "join",
            "--app-id",
            app_id,
            "--left",
            left,
            "--right",
            right,
            "--output",
            output,
            "--state-dir",
            dir,
        ];
        args.extend_from_slice(extra);
        Self::spawn(bootstrap, &args)
    }

    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics").map(|(_, body)| body)
    }

    /// `GET path` of the worker's HTTP server: the status and the whole
    /// response.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        Some((status, response))
    }

    /// Sum of a metric's samples (all label sets).
    pub fn metric(&self, name: &str) -> i64 {
        let Some(text) = self.metrics() else {
            return -1;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as i64
    }

    pub fn assigned(&self) -> i64 {
        self.metric("eddy_thread_assigned_partitions")
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.wait(Duration::from_secs(60))
            .expect("worker exits after SIGTERM")
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Copies a worker's log to the test's output, each line labelled with the
/// worker's HTTP address: the copying thread inherits libtest's capture, so
/// the logs of several workers show apart, and only when a test fails.
fn label_logs(stderr: std::process::ChildStderr, http: SocketAddr) {
    use std::io::BufRead;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            eprintln!("[worker {http}] {line}");
        }
    });
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many times each value occurs.
pub fn value_counts(records: &[Consumed]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts.entry(r.value_str()).or_insert(0) += 1;
    }
    counts
}

/// Serves `router` on a free local port until the test process ends (a
/// service for call operators to call); its address.
pub fn serve(router: axum::Router) -> SocketAddr {
    let addr = "127.0.0.1:0".parse().unwrap();
    let server = eddy::observability::HttpServer::serve(addr, router, Default::default()).unwrap();
    let addr = server.addr();
    // Kept for the rest of the process: a service dropped with a call
    // still hanging on it would wait out its shutdown grace.
    std::mem::forget(server);
    addr
}
