//! Shared helpers of the order pipeline's tests: its topology files loaded
//! for the cluster under test.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use eddy::testing::{free_addr, unique, wait_for, Consumed, TestCluster};

use eddy::config::{Overrides, Pipeline};
use eddy::runtime::RunningStreams;

/// The masking key the tests give the order saga (its `EDDY_PII_KEY`).
pub const PII_KEY: &str = "a test key for hashing e-mails";

/// Overrides that give the order saga its masking key.
pub fn with_pii_key(mut overrides: Overrides) -> Overrides {
    overrides.env_secrets.insert(
        eddy_orders::PII_KEY_ENV.into(),
        eddy::kafka::Secret::Value(PII_KEY.into()),
    );
    overrides
}

/// What the order saga makes of an e-mail address with [`PII_KEY`]: its
/// HMAC-SHA256 in lower-case hex, computed here on its own.
pub fn hashed_email(email: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(PII_KEY.as_bytes()).unwrap();
    mac.update(email.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The URL of a payment gateway simulator with the pipeline's payment
/// rules, started once per test binary and shared by its tests (a repeated
/// order id replays its first, identical, answer).
pub fn gateway_url() -> String {
    use eddy_orders::gateway::{Gateway, GatewayConfig};
    static GATEWAY: std::sync::OnceLock<Gateway> = std::sync::OnceLock::new();
    let g = GATEWAY.get_or_init(|| {
        Gateway::start(GatewayConfig::pipeline(), "127.0.0.1:0".parse().unwrap()).unwrap()
    });
    format!("http://{}", g.addr())
}

/// Overrides that point the payment service at `url`.
pub fn with_gateway(mut overrides: Overrides, url: &str) -> Overrides {
    overrides
        .vars
        .insert("gateway_url".into(), url.to_owned().into());
    overrides
}

/// An order's amount in cents: the sum of its items' `qty * unit_price`.
pub fn amount(order: &serde_json::Value) -> i64 {
    order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["qty"].as_i64().unwrap() * i["unit_price"].as_i64().unwrap())
        .sum()
}

/// The cluster under test.
pub fn cluster() -> TestCluster {
    TestCluster::from_env()
}

/// The example's `config/<file>`.
pub fn config_file(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(file)
}

/// Loads the order pipeline's `config/<file>` with its topics and
/// application id suffixed by `suffix`, payments of user `manual` left to
/// the test, and this cluster's settings.
pub fn order_pipeline(file: &str, suffix: &str, c: &TestCluster, state: &Path) -> Pipeline {
    let mut overrides = with_gateway(
        with_pii_key(Overrides {
            suffix: Some(suffix.to_owned()),
            ..Overrides::default()
        }),
        &gateway_url(),
    );
    overrides.vars.insert(
        "manual_users".into(),
        toml::Value::Array(vec!["manual".into()]),
    );
    let mut p =
        Pipeline::load_with(&config_file(file), &eddy_orders::registry(), &overrides).unwrap();
    if !c.is_embedded() {
        p.config.bootstrap_servers = Some(c.bootstrap.clone());
    }
    p.config.state_dir = state.to_owned();
    p.config.embedded_partitions = 3;
    p
}

/// Starts a loaded pipeline on the cluster under test.
pub fn start_pipeline(p: Pipeline, c: &TestCluster) -> RunningStreams {
    let mut s = p.into_streams();
    if let Some(e) = c.embedded() {
        s = s.embedded_cluster(e);
    }
    s.start().unwrap()
}

/// One HTTP/1.1 request with `headers` (`name: value\r\n` lines) and a JSON
/// `body`, on a connection closed after it: the status, the response's
/// head and its body.
pub fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: Option<&serde_json::Value>,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(serde_json::Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_default();
    (status, head.to_owned(), body.to_owned())
}

/// A child process killed when dropped, so that a failing test leaves
/// none running behind it.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Stops the process with SIGTERM, as a user would, and fails unless
    /// it exits within a minute.
    pub fn terminate(&mut self) {
        std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "did not stop on SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `eddy-orders demo ARGS --serve` with its HTTP address `http` and the
/// example's topology files: on the broker under test
/// (`EDDY_TEST_BOOTSTRAP`) with its topics and applications suffixed
/// `suffix`, else on its embedded cluster. Its workers log nothing; the
/// caller sets its standard streams.
pub fn demo_command(
    http: std::net::SocketAddr,
    suffix: &str,
    args: &[&str],
) -> std::process::Command {
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_eddy-orders"));
    demo.arg("demo")
        .args(args)
        .args(["--http", &http.to_string()])
        .args([
            "--config-dir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        ])
        .arg("--serve")
        .env("RUST_LOG", "off");
    let brokers = std::env::var("EDDY_TEST_BOOTSTRAP").unwrap_or_default();
    if !brokers.is_empty() {
        demo.args(["--brokers", &brokers, "--suffix", suffix]);
    }
    demo
}
