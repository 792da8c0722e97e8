//! A Kafka cluster for tests and benchmarks: the real broker named by
//! `EDDY_TEST_BOOTSTRAP`, or else an embedded cluster in this process (which
//! other processes reach over loopback), with helpers to create topics,
//! produce and read. Like test assertions, these helpers panic on failure.
//! Behind the `test-util` feature.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::kafka::{admin, send_blocking, EmbeddedKafka, Mechanism, Sasl, Secret, Security, Tls};
use crate::processor::Headers;

/// A raw key and value; `None` is null.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The cluster under test.
pub struct TestCluster {
    /// Its bootstrap servers.
    pub bootstrap: String,
    embedded: Option<std::sync::Arc<EmbeddedKafka>>,
    /// The secured broker's folder, when this is it.
    secured: Option<PathBuf>,
}

/// The user every helper of a secured [`TestCluster`] connects as (a super
/// user of the secured broker).
pub const SECURED_ADMIN: &str = "admin";

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

/// A free loopback address (a port the system just handed out).
///
/// # Panics
/// If no port can be bound.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Waits until `cond` holds, checking every 200 ms.
///
/// # Panics
/// With `what` if it does not hold within `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes (`None` is null).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None` is null).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
    /// Timestamp, epoch milliseconds (-1 if none).
    pub timestamp: i64,
}

impl Consumed {
    /// The value as UTF-8 (empty if null).
    pub fn value_str(&self) -> String {
        String::from_utf8(self.value.clone().unwrap_or_default()).unwrap()
    }
    /// The last header named `key`, as UTF-8.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .last(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl TestCluster {
    /// The broker named by `EDDY_TEST_BOOTSTRAP`, else a new embedded one.
    ///
    /// # Panics
    /// If the embedded cluster cannot start.
    pub fn from_env() -> Self {
        match std::env::var("EDDY_TEST_BOOTSTRAP") {
            Ok(b) if !b.is_empty() => TestCluster {
                bootstrap: b,
                embedded: None,
                secured: None,
            },
            _ => {
                let e = EmbeddedKafka::start().expect("embedded cluster starts");
                TestCluster {
                    bootstrap: e.bootstrap_servers().to_owned(),
                    embedded: Some(std::sync::Arc::new(e)),
                    secured: None,
                }
            }
        }
    }

    /// The secured broker (`scripts/kafka/start.sh --secured`) named by
    /// `EDDY_TEST_SECURED_BOOTSTRAP`, its folder (certificates, users) by
    /// `EDDY_TEST_SECURED_DIR`; `None` if they are not set. Its helpers
    /// connect as [`SECURED_ADMIN`] over TLS.
    pub fn secured_from_env() -> Option<Self> {
        let bootstrap = std::env::var("EDDY_TEST_SECURED_BOOTSTRAP").ok()?;
        let dir = std::env::var("EDDY_TEST_SECURED_DIR").ok()?;
        Some(TestCluster {
            bootstrap,
            embedded: None,
            secured: Some(PathBuf::from(dir)),
        })
    }

    /// The secured broker's folder.
    ///
    /// # Panics
    /// If this is not the secured broker.
    pub fn secured_dir(&self) -> &Path {
        self.secured.as_deref().expect("the secured broker")
    }

    /// The password of a user of the secured broker (its `users` file).
    ///
    /// # Panics
    /// If the user is not listed.
    pub fn password(&self, user: &str) -> String {
        let users = std::fs::read_to_string(self.secured_dir().join("users")).unwrap();
        users
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{user} ")))
            .unwrap_or_else(|| panic!("no user {user} on the secured broker"))
            .to_owned()
    }

    /// Settings to connect to the secured broker as `user` with
    /// SCRAM-SHA-512 over TLS verified by its CA, the password read from
    /// environment variable `password_env` (which the caller sets).
    pub fn security(&self, user: &str, password_env: &str) -> Security {
        Security {
            tls: Some(Tls {
                ca_file: Some(self.secured_dir().join("tls/ca.pem")),
                ..Tls::default()
            }),
            sasl: Some(Sasl {
                mechanism: Mechanism::ScramSha512,
                username: user.to_owned(),
                password: Secret::Env(password_env.to_owned()),
            }),
        }
    }

    /// A client configuration for this cluster (as the admin user on the
    /// secured broker).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        if let Some(dir) = &self.secured {
            c.set("security.protocol", "sasl_ssl")
                .set(
                    "ssl.ca.location",
                    dir.join("tls/ca.pem").display().to_string(),
                )
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", SECURED_ADMIN)
                .set("sasl.password", self.password(SECURED_ADMIN));
        }
        c
    }

    /// Whether this is an embedded cluster.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// The embedded cluster, for workers of this process to share
    /// ([`KafkaStreams::embedded_cluster`](crate::runtime::KafkaStreams::embedded_cluster)).
    pub fn embedded(&self) -> Option<std::sync::Arc<EmbeddedKafka>> {
        self.embedded.clone()
    }

    /// Creates a topic (broker-default replication on a real cluster).
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Creates a topic with topic configs (ignored on the embedded cluster,
    /// which has none).
    pub fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        match &self.embedded {
            Some(e) => e.create_topic(name, partitions).expect("create topic"),
            None => {
                let config = self.client_config();
                admin::ensure_topic(&config, name, partitions, configs, Duration::from_secs(30))
                    .expect("create topic");
            }
        }
    }

    /// A producer for this cluster that partitions by murmur2, as eddy and
    /// the Java client do.
    pub fn producer(&self) -> BaseProducer {
        self.client_config()
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Produces records (murmur2-partitioned by key) and waits for acks.
    pub fn produce(&self, topic: &str, records: &[KeyValue]) {
        let producer = self.producer();
        for (k, v) in records {
            let mut r = BaseRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = k {
                r = r.key(k);
            }
            if let Some(v) = v {
                r = r.payload(v);
            }
            send_blocking(&producer, r).expect("produce");
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Produces `(key, value, timestamp)` records (murmur2-partitioned by
    /// key) and waits for acks.
    pub fn produce_at(&self, topic: &str, records: &[(String, String, i64)]) {
        let producer = self.producer();
        for (k, v, ts) in records {
            let r = BaseRecord::<[u8], [u8]>::to(topic)
                .key(k.as_bytes())
                .payload(v.as_bytes())
                .timestamp(*ts);
            send_blocking(&producer, r).expect("produce");
        }
        producer.flush(Duration::from_secs(60)).unwrap();
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
        let consumer: BaseConsumer = self
            .client_config()
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

/// Reads one topic from the beginning, without a consumer group.
pub struct Reader {
    consumer: BaseConsumer,
    /// Everything read so far.
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
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                });
            }
        }
    }
}
