//! Shared helpers of the integration tests: a cluster (the real broker named
//! by `EDDY_TEST_BOOTSTRAP`, else an embedded one in this process), topic
//! set-up, produce/consume, and `eddy` worker processes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::kafka::{admin, EmbeddedKafka, StreamsConfig};
use eddy::processor::Headers;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A raw key and value; `None` is null.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

pub struct Cluster {
    pub bootstrap: String,
    embedded: Option<EmbeddedKafka>,
}

/// The cluster under test.
pub fn cluster() -> Cluster {
    match std::env::var("EDDY_TEST_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Cluster {
            bootstrap: b,
            embedded: None,
        },
        _ => {
            let e = EmbeddedKafka::start().expect("embedded cluster");
            Cluster {
                bootstrap: e.bootstrap_servers().to_owned(),
                embedded: Some(e),
            }
        }
    }
}

/// A name no earlier run used, so runs against one broker don't collide.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
}

impl Consumed {
    pub fn value_str(&self) -> String {
        String::from_utf8(self.value.clone().unwrap_or_default()).unwrap()
    }
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .last(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl Cluster {
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        match &self.embedded {
            Some(e) => e.create_topic(name, partitions).expect("create topic"),
            None => {
                let config = StreamsConfig::new("test").admin_client_config(&self.bootstrap);
                admin::ensure_topic(&config, name, partitions, Duration::from_secs(30))
                    .expect("create topic");
            }
        }
    }

    pub fn produce(&self, topic: &str, records: &[KeyValue]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (k, v) in records {
            let mut r = BaseRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = k {
                r = r.key(k);
            }
            if let Some(v) = v {
                r = r.payload(v);
            }
            producer.send(r).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Produces `key-{i}` / `value-{i}` for i in `range`.
    pub fn produce_numbered(&self, topic: &str, range: std::ops::Range<u32>) {
        let records: Vec<_> = range
            .map(|i| {
                (
                    Some(format!("key-{i}").into_bytes()),
                    Some(format!("value-{i}").into_bytes()),
                )
            })
            .collect();
        self.produce(topic, &records);
    }

    /// A reader of `topic` from the beginning.
    pub fn reader(&self, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Reader {
            consumer,
            records: Vec::new(),
        }
    }

    /// Reads `topic` from the beginning until `done` holds for what was
    /// read, or `timeout` passes; returns everything read.
    pub fn consume_until(
        &self,
        topic: &str,
        timeout: Duration,
        done: impl Fn(&[Consumed]) -> bool,
    ) -> Vec<Consumed> {
        let mut r = self.reader(topic);
        r.read_until(timeout, done);
        r.records
    }

    /// Reads `topic` until `count` records arrived, then keeps reading for
    /// `settle` to catch any extra (duplicate) records.
    pub fn consume_count(
        &self,
        topic: &str,
        count: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Consumed> {
        let mut r = self.reader(topic);
        if r.read_until(timeout, |r| r.len() >= count) {
            r.read_until(settle, |_| false);
        }
        r.records
    }
}

pub struct Reader {
    consumer: BaseConsumer,
    pub records: Vec<Consumed>,
}

impl Reader {
    /// Reads until `done` holds (returns true) or `timeout` passes.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&[Consumed]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.records) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if let Some(m) = self.consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let mut headers = Headers::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        headers.add(x.key, x.value.unwrap_or_default());
                    }
                }
                self.records.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
}

/// A free loopback port.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An `eddy pipe` worker process.
pub struct Worker {
    child: Child,
    pub http: SocketAddr,
}

impl Worker {
    pub fn pipe(bootstrap: &str, app_id: &str, input: &str, output: &str) -> Worker {
        let http = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "pipe",
                "--brokers",
                bootstrap,
                "--app-id",
                app_id,
                "--input",
                input,
                "--output",
                output,
            ])
            .args(["--http", &http.to_string(), "--commit-interval-ms", "300"])
            .args([
                "--set",
                "consumer.session.timeout.ms=6000",
                "--set",
                "consumer.heartbeat.interval.ms=500",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn eddy");
        Worker { child, http }
    }

    pub fn metrics(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
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
        self.metric("eddy_assigned_partitions")
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

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
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
