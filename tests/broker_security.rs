//! TLS and SASL to the secured broker (`scripts/kafka/start.sh --secured`,
//! named by `EDDY_TEST_SECURED_BOOTSTRAP` and `EDDY_TEST_SECURED_DIR`):
//! a worker of a topology file connects with SCRAM-SHA-512 over TLS and a
//! client certificate and processes records, without its password in any
//! log line; a wrong password and an untrusted CA stop it at start with one
//! line naming the setting to check.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy::testing::{unique, TestCluster};

const PASSWORD_ENV: &str = "EDDY_TEST_KAFKA_PASSWORD";

fn topology(dir: &Path, ca: &str) -> String {
    let tls = dir.display();
    format!(
        r#"
[application]
id = "secure"
commit_interval = "200ms"

[kafka.tls]
ca_file = "{tls}/tls/{ca}"
cert_file = "{tls}/tls/client.pem"
key_file = "{tls}/tls/client.key"

[kafka.sasl]
mechanism = "SCRAM-SHA-512"
username = "admin"
password_env = "{PASSWORD_ENV}"

[topics.in]

[topics.out]

[nodes.in]
op = "source"
topic = "in"

[nodes.doubled]
op = "map"
input = "in"
value = "value.n * 2"

[nodes.out]
op = "sink"
input = "doubled"
topic = "out"
"#
    )
}

/// A worker process, its output read as it comes (debug logs would fill a
/// pipe).
struct Worker {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    output: Arc<Mutex<String>>,
}

impl Worker {
    fn start(mut command: Command) -> Worker {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let readers = pipes
            .into_iter()
            .map(|mut pipe| {
                let output = output.clone();
                std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = pipe.read_to_string(&mut text);
                    output.lock().unwrap().push_str(&text);
                })
            })
            .collect();
        Worker {
            child,
            readers,
            output,
        }
    }

    /// Everything it wrote, once it has stopped.
    fn output(self) -> String {
        for r in self.readers {
            r.join().unwrap();
        }
        let out = self.output.lock().unwrap().clone();
        out
    }

    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.output()
    }

    /// Waits for it to stop by itself: whether it succeeded, and its output.
    fn finished(mut self, within: Duration) -> (bool, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                panic!(
                    "the worker did not stop within {within:?}:\n{}",
                    self.kill()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (status.success(), self.output())
    }
}

/// `eddy run` of the topology, with `password` in the environment and
/// debug logs of eddy and of librdkafka (connections, security, settings).
fn run(c: &TestCluster, suffix: &str, ca: &str, password: &str) -> Worker {
    let dir = std::env::temp_dir().join(suffix);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secure.toml");
    std::fs::write(&file, topology(c.secured_dir(), ca)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command
        .args(["run", "--config", file.to_str().unwrap()])
        .args(["--brokers", &c.bootstrap, "--suffix", suffix])
        // librdkafka's own debug logs of the connection and its settings.
        .args(["--set", "debug=security,broker,conf"])
        .env(PASSWORD_ENV, password)
        .env("RUST_LOG", "debug");
    Worker::start(command)
}

/// The lines of a worker's output that report an error.
fn error_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains(" ERROR ") || l.starts_with("eddy: error: "))
        .collect()
}

fn secured() -> Option<TestCluster> {
    let c = TestCluster::secured_from_env();
    if c.is_none() {
        eprintln!("skipped: EDDY_TEST_SECURED_BOOTSTRAP names no secured broker");
    }
    c
}

#[test]
fn a_worker_connects_with_scram_over_tls_and_never_logs_its_password() {
    let Some(c) = secured() else { return };
    let u = unique("secure");
    for t in [format!("in-{u}"), format!("out-{u}")] {
        c.create_topic(&t, 2);
    }
    let password = c.password("admin");
    let worker = run(&c, &u, "ca.pem", &password);
    let records: Vec<_> = (1..=4)
        .map(|n| {
            (
                Some(format!("k{n}").into_bytes()),
                Some(format!(r#"{{"n":{n}}}"#).into_bytes()),
            )
        })
        .collect();
    c.produce(&format!("in-{u}"), &records);
    let out = c.consume_count(
        &format!("out-{u}"),
        4,
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let logs = worker.kill();
    let mut values: Vec<_> = out
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                r.value_str(),
            )
        })
        .collect();
    values.sort();
    let expected: Vec<_> = (1..=4)
        .map(|n| (format!("k{n}"), (2 * n).to_string()))
        .collect();
    assert_eq!(values, expected, "{logs}");
    assert!(
        logs.contains("SASL") && logs.contains("sasl.username"),
        "librdkafka's debug logs of the handshake and settings were written: {logs}"
    );
    assert!(
        !logs.contains(&password),
        "the password is in the logs:\n{logs}"
    );
}

#[test]
fn a_wrong_password_stops_the_worker_at_start_naming_the_setting() {
    let Some(c) = secured() else { return };
    let u = unique("secure-pw");
    let worker = run(&c, &u, "ca.pem", "not-the-password");
    let (ok, out) = worker.finished(Duration::from_secs(30));
    assert!(!ok, "{out}");
    let errors = error_lines(&out);
    let expected = format!(
        "authentication to Kafka at {} failed as User:admin: check kafka.sasl.password_env = {PASSWORD_ENV} (",
        c.bootstrap
    );
    assert_eq!(errors.len(), 1, "one error line:\n{out}");
    assert!(errors[0].contains(&expected), "{out}");
    assert!(!out.contains("not-the-password"), "{out}");
}

#[test]
fn an_untrusted_broker_certificate_stops_the_worker_at_start_naming_the_setting() {
    let Some(c) = secured() else { return };
    let u = unique("secure-ca");
    let worker = run(&c, &u, "other-ca.pem", &c.password("admin"));
    let (ok, out) = worker.finished(Duration::from_secs(30));
    assert!(!ok, "{out}");
    let errors = error_lines(&out);
    let expected = format!(
        "TLS to Kafka at {} failed: check kafka.tls.ca_file = {}/tls/other-ca.pem (",
        c.bootstrap,
        c.secured_dir().display()
    );
    assert_eq!(errors.len(), 1, "one error line:\n{out}");
    assert!(errors[0].contains(&expected), "{out}");
    assert!(errors[0].contains("certificate verify failed"), "{out}");
}
