//! A worker: the stream threads of one process, its HTTP endpoint, and (by
//! default) its embedded cluster.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;

use super::stream_thread::{Latch, StreamThread, ThreadSpec};
use super::task::TaskSettings;
use crate::error::Error;
use crate::kafka::admin::{ensure_topic, topic_partitions};
use crate::kafka::{EmbeddedKafka, StreamsConfig};
use crate::observability::{HttpServer, Metrics};
use crate::topology::Topology;

/// A topology with its configuration, ready to run.
///
/// ```no_run
/// use eddy::kafka::StreamsConfig;
/// use eddy::runtime::KafkaStreams;
/// use eddy::serde::StringSerde;
/// use eddy::topology::StreamsBuilder;
///
/// let b = StreamsBuilder::new();
/// b.stream("in", StringSerde, StringSerde).to("out", StringSerde, StringSerde);
/// let config = StreamsConfig::new("my-app").bootstrap_servers("127.0.0.1:9092");
/// let running = KafkaStreams::new(b.build()?, config).start()?;
/// running.run_until_signal()?; // SIGINT/SIGTERM: finish, commit, leave the group
/// # Ok::<(), eddy::Error>(())
/// ```
pub struct KafkaStreams {
    topology: Arc<Topology>,
    config: StreamsConfig,
    metrics: Arc<Metrics>,
    routes: Router,
}

impl KafkaStreams {
    /// A worker for `topology`.
    pub fn new(topology: Topology, config: StreamsConfig) -> Self {
        KafkaStreams {
            topology: Arc::new(topology),
            config,
            metrics: Arc::new(Metrics::new()),
            routes: Router::new(),
        }
    }

    /// Adds HTTP routes served beside `/metrics` (when `http_addr` is set).
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Connects (or starts the embedded cluster), checks or creates topics,
    /// and starts the stream threads and the HTTP server.
    ///
    /// On a real cluster the topics the topology reads and writes must
    /// exist; the dead-letter topic is created if missing. On the embedded
    /// cluster all of them are created with `embedded_partitions`.
    pub fn start(self) -> Result<RunningStreams, Error> {
        let config = &self.config;
        let dlq = config.dead_letter_topic_name();
        let (embedded, servers) = match &config.bootstrap_servers {
            Some(s) => {
                prepare_topics(&self.topology, config, s, &dlq)?;
                (None, s.clone())
            }
            None => {
                let cluster = EmbeddedKafka::start()?;
                let topics = self
                    .topology
                    .source_topics()
                    .into_iter()
                    .chain(self.topology.sink_topics());
                for t in topics.chain([dlq.as_str()]) {
                    cluster.create_topic(t, config.embedded_partitions)?;
                }
                tracing::info!("embedded Kafka cluster at {}", cluster.bootstrap_servers());
                let servers = cluster.bootstrap_servers().to_owned();
                (Some(cluster), servers)
            }
        };
        let mut topics = self.topology.topics.clone();
        let dead_letter_topic = topics.intern(&dlq);
        let settings = TaskSettings {
            application_id: config.application_id.as_str().into(),
            topics: Arc::new(topics),
            dead_letter_topic,
            on_error: config.on_error,
        };
        let http = config
            .http_addr
            .map(|addr| HttpServer::start(addr, self.metrics.clone(), self.routes.clone()))
            .transpose()?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let committed = Arc::new(Latch::new(config.num_stream_threads));
        for i in 0..config.num_stream_threads {
            let name = format!("StreamThread-{}", i + 1);
            let spec = ThreadSpec {
                name: name.clone(),
                topology: self.topology.clone(),
                settings: settings.clone(),
                servers: servers.clone(),
                metrics: self.metrics.thread(&name),
                shutdown: shutdown.clone(),
                committed: committed.clone(),
            };
            let config = config.clone();
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let (flag, latch) = (spec.shutdown.clone(), spec.committed.clone());
                    let result = match StreamThread::new(spec, &config) {
                        Ok(thread) => thread.run(),
                        Err(e) => {
                            latch.count_down_and_wait(Duration::ZERO);
                            Err(e)
                        }
                    };
                    if result.is_err() {
                        // One failed thread stops the worker.
                        flag.store(true, Ordering::Release);
                    }
                    result
                })
                .map_err(|e| Error::Config(format!("cannot spawn {name}: {e}")))?;
            threads.push((name, handle));
        }
        Ok(RunningStreams {
            shutdown,
            threads,
            http,
            embedded,
            servers,
            metrics: self.metrics,
        })
    }
}

fn prepare_topics(
    topology: &Topology,
    config: &StreamsConfig,
    servers: &str,
    dlq: &str,
) -> Result<(), Error> {
    let admin = config.admin_client_config(servers);
    let existing = topic_partitions(&admin, config.startup_timeout)?;
    let missing = |role, topics: Vec<&str>| {
        topics
            .into_iter()
            .find(|t| !existing.contains_key(*t))
            .map_or(Ok(()), |t| {
                Err(Error::MissingTopic {
                    role,
                    topic: t.to_owned(),
                    servers: servers.to_owned(),
                })
            })
    };
    missing("source", topology.source_topics())?;
    missing("sink", topology.sink_topics())?;
    if !existing.contains_key(dlq) {
        let partitions = topology
            .source_topics()
            .iter()
            .filter_map(|t| existing.get(*t))
            .max()
            .copied()
            .unwrap_or(1);
        ensure_topic(&admin, dlq, partitions, config.startup_timeout)?;
    }
    Ok(())
}

/// A started worker.
pub struct RunningStreams {
    shutdown: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Result<(), Error>>)>,
    http: Option<HttpServer>,
    embedded: Option<EmbeddedKafka>,
    servers: String,
    metrics: Arc<Metrics>,
}

impl RunningStreams {
    /// The cluster the worker uses (the embedded one's address if embedded).
    pub fn bootstrap_servers(&self) -> &str {
        &self.servers
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::addr)
    }

    /// The embedded cluster, if the worker started one.
    pub fn embedded(&self) -> Option<&EmbeddedKafka> {
        self.embedded.as_ref()
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether a stream thread has stopped (after an error or a shutdown).
    pub fn has_stopped(&self) -> bool {
        self.shutdown.load(Ordering::Acquire) || self.threads.iter().any(|(_, t)| t.is_finished())
    }

    /// Stops the threads (each finishes its batch, flushes, commits and
    /// leaves the group), then the HTTP server and the embedded cluster.
    /// Returns the first thread error.
    pub fn close(mut self) -> Result<(), Error> {
        self.shutdown.store(true, Ordering::Release);
        let mut result = Ok(());
        for (name, handle) in self.threads.drain(..) {
            let r = handle.join().unwrap_or(Err(Error::ThreadPanicked(name)));
            if result.is_ok() {
                result = r;
            }
        }
        self.http.take();
        self.embedded.take();
        result
    }

    /// Runs until SIGINT or SIGTERM (then closes cleanly) or until a stream
    /// thread fails (then returns its error).
    pub fn run_until_signal(self) -> Result<(), Error> {
        let signalled = Arc::new(AtomicBool::new(false));
        spawn_signal_listener(signalled.clone());
        while !signalled.load(Ordering::Acquire) && !self.has_stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if signalled.load(Ordering::Acquire) {
            tracing::info!(
                "signal received: finishing in-flight records, committing, leaving the group"
            );
        }
        self.close()
    }
}

impl Drop for RunningStreams {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        for (_, handle) in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Sets `flag` on SIGINT or SIGTERM.
fn spawn_signal_listener(flag: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("eddy-signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                flag.store(true, Ordering::Release);
            });
        });
}
