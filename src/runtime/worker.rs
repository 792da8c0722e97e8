//! A worker: the stream threads of one process, its HTTP endpoint, and (by
//! default) its embedded cluster.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;

use super::global_thread;
use super::membership::{members_topic, MembersView, Membership, MembershipSpec};
use super::query::{self, Renderer, StoreQueries};
use super::standby::{StandbyRead, StandbySpec, StandbyStore, Standbys};
use super::state_dir::StoreProvider;
use super::stream_thread::{Latch, StreamThread, ThreadSpec};
use super::task::TaskSettings;
use super::task_id::TaskId;
use super::upstream::{Upstream, UpstreamWatch};
use crate::error::Error;
use crate::kafka::admin::{
    denied_topics, ensure_topic, future_timestamp_limits, principal, topic_partitions,
};
use crate::kafka::{EmbeddedKafka, Guarantee, StreamsConfig};
use crate::observability::{HttpServer, Metrics, Spans};
use crate::serde::Serde;
use crate::stores::RocksShared;
use crate::topology::{TopicRef, Topology};

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
    renderers: HashMap<String, Renderer>,
    aliases: Vec<(String, String)>,
    cluster: Option<Arc<EmbeddedKafka>>,
    shared_metrics: bool,
}

impl KafkaStreams {
    /// A worker for `topology`.
    pub fn new(topology: Topology, config: StreamsConfig) -> Self {
        KafkaStreams {
            topology: Arc::new(topology),
            config,
            metrics: Arc::new(Metrics::new()),
            routes: Router::new(),
            renderers: HashMap::new(),
            aliases: Vec::new(),
            cluster: None,
            shared_metrics: false,
        }
    }

    /// Adds HTTP routes served beside `/metrics` (when `http_addr` is set).
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// Serves key-value store `store` over HTTP (`GET /stores/{store}/{key}`
    /// for UTF-8 keys, and `GET /stores/{store}?from=&to=` for ranges), its
    /// values decoded with `value_serde` and rendered as JSON.
    pub fn queryable_store<V: serde::Serialize + 'static>(
        mut self,
        store: &str,
        value_serde: impl Serde<V>,
    ) -> Self {
        let render: Renderer = Arc::new(move |bytes: &[u8]| {
            let v = value_serde
                .deserialize(Some(bytes))
                .map_err(|e| e.to_string())?;
            serde_json::to_value(&v).map_err(|e| e.to_string())
        });
        self.renderers.insert(store.to_owned(), render);
        self
    }

    /// Also serves queryable store `store` at `GET <prefix>/{key}` (for
    /// example `/accounts/{id}` for an account read model).
    pub fn query_route(mut self, prefix: &str, store: &str) -> Self {
        self.aliases
            .push((prefix.trim_end_matches('/').to_owned(), store.to_owned()));
        self
    }

    /// Runs on an embedded cluster started elsewhere (shared by several
    /// workers of one process) instead of starting one, when no bootstrap
    /// servers are configured.
    pub fn embedded_cluster(mut self, cluster: Arc<EmbeddedKafka>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Shares `metrics` (one registry for several workers of a process);
    /// thread labels then carry the application id:
    /// `<application.id>-StreamThread-<n>`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self.shared_metrics = true;
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
        config.check()?;
        let dlq = config.dead_letter_topic_name();
        // Only a topology with persistent stores takes (and locks) a state
        // directory.
        let provider = if self.topology.stores().any(|s| !s.in_memory) {
            StoreProvider::rocks(
                config.state_dir.join(&config.application_id),
                RocksShared::new(&config.rocks),
            )?
        } else {
            StoreProvider::Memory
        };
        let mut settings = TaskSettings::new(
            &self.topology,
            &config.application_id,
            &dlq,
            config.on_error,
            provider,
        );
        settings.max_future_timestamp = config.max_future_timestamp;
        settings.sign(&config.signing);
        settings.trace_sample_ratio = config.effective_trace_sample_ratio();
        let spans = config
            .otlp_endpoint
            .as_deref()
            .map(|e| Spans::start(e, &config.application_id, &self.metrics))
            .transpose()
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some(spans) = &spans {
            spans.name_topics(settings.topics.clone());
        }
        settings.spans = spans.clone();
        settings.exactly_once = config.guarantee == Guarantee::ExactlyOnce;
        settings.metrics = Some((self.metrics.clone(), config.node_metrics));
        settings.calls = Arc::new(crate::calls::CallRuntime::with_metrics(
            self.metrics.clone(),
            &config.application_id,
        ));
        self.metrics
            .add_topology(&config.application_id, &self.topology);
        let (process_id, stable_id) = settings.stores.process_id();
        let (embedded, servers, partitions) = match &config.bootstrap_servers {
            Some(s) => {
                let existing = prepare_topics(&self.topology, &settings, config, s)?;
                let limits = future_output_limits(&self.topology, &settings, config, s);
                settings.future_output_limits = Arc::new(limits);
                (None, s.clone(), existing)
            }
            None => {
                let cluster = match &self.cluster {
                    Some(c) => c.clone(),
                    None => Arc::new(EmbeddedKafka::start()?),
                };
                let n = config.embedded_partitions;
                for t in external_topics(&self.topology) {
                    cluster.create_topic(t, n)?;
                }
                let known = |t: TopicRef| (!self.topology.topics.is_internal(t)).then_some(n);
                for plan in internal_topics(&self.topology, &settings, &known) {
                    cluster.create_topic(&plan.name, plan.partitions)?;
                }
                cluster.create_topic(&dlq, n)?;
                if self.topology.stores().next().is_some() {
                    cluster.create_topic(&members_topic(&config.application_id), 1)?;
                }
                tracing::info!("embedded Kafka cluster at {}", cluster.bootstrap_servers());
                if settings.exactly_once {
                    tracing::warn!("exactly-once on the embedded cluster is a demonstration only: it does not hide aborted or open transactions from read-committed consumers");
                }
                let servers = cluster.bootstrap_servers().to_owned();
                let external = external_topics(&self.topology)
                    .map(|t| (t.to_owned(), n))
                    .collect();
                (Some(cluster), servers, external)
            }
        };
        let upstreams = upstreams(&self.topology, &settings, config)?;
        settings.upstreams = upstreams
            .iter()
            .map(|u| (u.topics.iter().map(|(t, _)| *t).collect(), u.marks.clone()))
            .collect();
        let watch = match (&embedded, upstreams.is_empty()) {
            (_, true) => None,
            (Some(_), false) => {
                // The embedded cluster cannot describe groups: timers run
                // on stream time alone there.
                tracing::info!("upstream groups are not watched on the embedded cluster");
                settings.upstreams.clear();
                None
            }
            (None, false) => Some(UpstreamWatch::start(
                config.admin_client_config(&servers),
                &config.application_id,
                upstreams,
                Duration::from_secs(1),
                config.upstream_stall,
            )?),
        };
        let known = |t: TopicRef| partitions.get(settings.topics.name(t)).copied();
        let store_partitions: HashMap<String, i32> = self
            .topology
            .stores()
            .filter_map(|s| {
                let sub = self.topology.store_subtopology(&s.name)?;
                Some((
                    s.name.clone(),
                    self.topology.subtopology_partitions(sub, &known),
                ))
            })
            .collect();
        let (query_senders, query_receivers): (Vec<_>, Vec<_>) = (0..config.num_stream_threads)
            .map(|_| std::sync::mpsc::channel())
            .unzip();
        let view = Arc::new(MembersView::default());
        let store_tasks: HashMap<String, u32> = self
            .topology
            .stores()
            .filter_map(|s| Some((s.name.clone(), self.topology.store_subtopology(&s.name)?.id)))
            .collect();
        let (standby_reads, standby_rx) = std::sync::mpsc::channel();
        let queries = StoreQueries {
            standby: standby_reads,
            threads: query_senders,
            partitions: Arc::new(store_partitions.clone()),
            subtopologies: Arc::new(store_tasks),
            members: view.clone(),
        };
        let query_routes = query::routes(queries.clone(), self.renderers.clone(), &self.aliases);
        let query_routes = match &config.http_auth {
            Some((auth, scope)) => auth.protect(query_routes, scope),
            None => query_routes,
        };
        let routes = self.routes.clone().merge(query_routes);
        let http = config
            .http_addr
            .map(|addr| HttpServer::start(addr, self.metrics.clone(), routes))
            .transpose()?;
        let address = config.application_server.clone().or_else(|| {
            let addr = http.as_ref()?.addr();
            (!addr.ip().is_unspecified()).then(|| format!("http://{addr}"))
        });
        let (membership, standbys) = self.start_membership(
            &settings,
            (&process_id, address),
            &servers,
            &store_partitions,
            &view,
            standby_rx,
        )?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let global = global_thread::start(&settings.globals, config, &servers, shutdown.clone())?;
        let mut threads = Vec::new();
        let committed = Arc::new(Latch::new(config.num_stream_threads));
        for (i, query_receiver) in query_receivers.into_iter().enumerate() {
            let name = match self.shared_metrics {
                true => format!("{}-StreamThread-{}", config.application_id, i + 1),
                false => format!("StreamThread-{}", i + 1),
            };
            let spec = ThreadSpec {
                name: name.clone(),
                topology: self.topology.clone(),
                settings: settings.clone(),
                servers: servers.clone(),
                metrics: self.metrics.thread(&config.application_id, &name),
                shutdown: shutdown.clone(),
                committed: committed.clone(),
                queries: query_receiver,
                member_id: format!("{}-{process_id}-{}", config.application_id, i + 1),
                static_member: stable_id && config.static_members(),
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
                .map_err(|source| Error::Spawn {
                    what: name.clone(),
                    source,
                })?;
            threads.push((name, handle));
        }
        Ok(RunningStreams {
            standbys,
            membership,
            watch,
            global,
            queries,
            shutdown,
            threads,
            http,
            embedded,
            servers,
            metrics: self.metrics,
            spans,
        })
    }
}

impl KafkaStreams {
    /// Starts publishing this worker's tasks and `address` (its HTTP
    /// address for queries) to the members topic (when the topology has
    /// stores) and, with `num_standby_replicas` and a state directory, the
    /// standby thread.
    fn start_membership(
        &self,
        settings: &TaskSettings,
        (process, address): (&str, Option<String>),
        servers: &str,
        store_partitions: &HashMap<String, i32>,
        view: &Arc<MembersView>,
        reads: std::sync::mpsc::Receiver<StandbyRead>,
    ) -> Result<(Option<Membership>, Option<Standbys>), Error> {
        let config = &self.config;
        if self.topology.stores().next().is_none() {
            return Ok((None, None));
        }
        let process = process.to_owned();
        let mut producer = config.producer_client_config(servers, "members");
        producer.set("linger.ms", "0");
        let membership = Membership::start(MembershipSpec {
            topic: members_topic(&config.application_id),
            process: process.clone(),
            address,
            consumer: config.assigned_consumer_config(servers, "members"),
            producer,
            local: settings.local.clone(),
            view: view.clone(),
        })?;
        let persistent = matches!(settings.stores, StoreProvider::Rocks { .. });
        if config.num_standby_replicas == 0 || !persistent {
            if config.num_standby_replicas > 0 {
                tracing::warn!(
                    "standby replicas need persistent stores and a state directory: none kept"
                );
            }
            return Ok((Some(membership), None));
        }
        let mut tasks: BTreeMap<TaskId, Vec<StandbyStore>> = BTreeMap::new();
        for spec in self.topology.stores().filter(|s| s.logged && !s.in_memory) {
            let (Some(sub), Some(&n), Some(&changelog)) = (
                self.topology.store_subtopology(&spec.name),
                store_partitions.get(&spec.name),
                settings.changelogs.get(&spec.name),
            ) else {
                continue;
            };
            for partition in 0..n {
                let task = TaskId {
                    subtopology: sub.id,
                    partition,
                };
                tasks.entry(task).or_default().push(StandbyStore {
                    spec: spec.clone(),
                    changelog: settings.topics.name(changelog).to_owned(),
                });
            }
        }
        let standbys = Standbys::start(StandbySpec {
            process,
            replicas: config.num_standby_replicas,
            tasks,
            stores: settings.stores.clone(),
            consumer: config.assigned_consumer_config(servers, "standby"),
            local: settings.local.clone(),
            view: view.clone(),
            metrics: self.metrics.standby(),
            reads,
        })?;
        Ok((Some(membership), Some(standbys)))
    }
}

/// The groups declared upstream of the topology's input topics
/// ([`StreamsConfig::upstreams`]), each with the topics it writes; a
/// declared topic the topology does not read is refused.
fn upstreams(
    topology: &Topology,
    settings: &TaskSettings,
    config: &StreamsConfig,
) -> Result<Vec<Upstream>, Error> {
    let mut groups: BTreeMap<&str, Vec<(TopicRef, String)>> = BTreeMap::new();
    for (topic, writers) in &config.upstreams {
        let t = settings
            .topics
            .get(topic)
            .filter(|t| topology.sources.contains_key(t))
            .ok_or_else(|| {
                Error::Config(format!(
                    "upstream groups are declared for topic {topic:?}, which the topology does not read"
                ))
            })?;
        for group in writers {
            groups
                .entry(group.as_str())
                .or_default()
                .push((t, topic.clone()));
        }
    }
    Ok(groups
        .into_iter()
        .map(|(group, topics)| Upstream {
            group: group.to_owned(),
            topics,
            marks: Arc::default(),
        })
        .collect())
}

/// Refuses a sub-topology whose input topics differ in partition count:
/// partition `p` of each must meet in one task.
fn check_copartitioning(
    topology: &Topology,
    known: &dyn Fn(TopicRef) -> Option<i32>,
) -> Result<(), Error> {
    for sub in topology.subtopologies() {
        let counts: Vec<(&str, i32)> = sub
            .source_topics
            .iter()
            .filter_map(|t| {
                topology
                    .topics
                    .get(t)
                    .map(|r| (t.as_str(), topology.partitions(r, known)))
            })
            .collect();
        if let Some(((a, na), (b, nb))) = counts
            .iter()
            .flat_map(|x| counts.iter().map(move |y| (*x, *y)))
            .find(|((_, na), (_, nb))| na != nb)
        {
            return Err(Error::CoPartition {
                a: a.to_owned(),
                a_partitions: na,
                b: b.to_owned(),
                b_partitions: nb,
            });
        }
    }
    Ok(())
}

/// Topics the application reads or writes that users own.
fn external_topics(topology: &Topology) -> impl Iterator<Item = &str> {
    let topics = &topology.topics;
    topology
        .source_topics()
        .into_iter()
        .chain(topology.sink_topics())
        .filter(|t| topics.get(t).is_some_and(|r| !topics.is_internal(r)))
        .chain(topology.global_tables().map(|(t, _)| t))
}

/// A topic eddy creates.
struct TopicPlan {
    name: String,
    partitions: i32,
    configs: Vec<(&'static str, String)>,
}

/// Repartition topics (deleted by time, as many partitions as their
/// writers' inputs) and changelogs (compacted, as many partitions as their
/// sub-topology's inputs).
fn internal_topics(
    topology: &Topology,
    settings: &TaskSettings,
    known: &dyn Fn(TopicRef) -> Option<i32>,
) -> Vec<TopicPlan> {
    let mut plans: Vec<TopicPlan> = (0..topology.topics.len() as u32)
        .map(TopicRef)
        .filter(|&t| topology.topics.is_internal(t))
        .map(|t| TopicPlan {
            name: settings.topics.name(t).to_owned(),
            partitions: topology.partitions(t, known),
            configs: vec![("cleanup.policy", "delete".into())],
        })
        .collect();
    for spec in topology.stores() {
        let (Some(&topic), Some(sub)) = (
            settings.changelogs.get(&spec.name),
            topology.store_subtopology(&spec.name),
        ) else {
            continue;
        };
        plans.push(TopicPlan {
            name: settings.topics.name(topic).to_owned(),
            partitions: topology.subtopology_partitions(sub, known),
            configs: spec.changelog_config(),
        });
    }
    plans
}

fn prepare_topics(
    topology: &Topology,
    settings: &TaskSettings,
    config: &StreamsConfig,
    servers: &str,
) -> Result<HashMap<String, i32>, Error> {
    let admin = config.admin_client_config(servers);
    // A topic created a moment ago may not be in every broker's metadata
    // yet: asked again until the startup timeout.
    let deadline = std::time::Instant::now() + config.startup_timeout;
    let security = config.client_security();
    let mut existing = topic_partitions(&admin, security, config.startup_timeout)?;
    while external_topics(topology).any(|t| !existing.contains_key(t))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        existing = topic_partitions(&admin, security, config.startup_timeout)?;
    }
    // A topic the principal may not see is left out of the metadata: say
    // so rather than that it does not exist.
    let missing: Vec<&str> = external_topics(topology)
        .filter(|t| !existing.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        let denied = denied_topics(&admin, &missing, config.startup_timeout)?;
        if let Some(t) = denied.first() {
            let operation = match topology.source_topics().contains(&t.as_str()) {
                true => "read",
                false => "write",
            };
            return Err(Error::NotAuthorized {
                principal: principal(&admin),
                operation,
                resource: format!("topic {t:?}"),
            });
        }
    }
    for t in external_topics(topology) {
        if !existing.contains_key(t) {
            let role = if topology.source_topics().contains(&t) {
                "source"
            } else {
                "sink"
            };
            return Err(Error::MissingTopic {
                role,
                topic: t.to_owned(),
                servers: servers.to_owned(),
            });
        }
    }
    let known = |t: TopicRef| existing.get(settings.topics.name(t)).copied();
    check_copartitioning(topology, &known)?;
    let timeout = config.startup_timeout;
    for plan in internal_topics(topology, settings, &known) {
        if !existing.contains_key(&plan.name) {
            let configs: Vec<(&str, &str)> =
                plan.configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ensure_topic(&admin, &plan.name, plan.partitions, &configs, timeout)?;
        }
    }
    let dlq = settings.topics.name(settings.dead_letter_topic);
    if !existing.contains_key(dlq) {
        let partitions = topology
            .source_topics()
            .iter()
            .filter_map(|t| existing.get(*t))
            .max()
            .copied()
            .unwrap_or(1);
        ensure_topic(&admin, dlq, partitions, &[], timeout)?;
    }
    let members = members_topic(&config.application_id);
    if topology.stores().next().is_some() && !existing.contains_key(&members) {
        let compact = [("cleanup.policy", "compact")];
        ensure_topic(&admin, &members, 1, &compact, timeout)?;
    }
    Ok(existing)
}

/// The timestamp lead each topic the worker writes accepts (see
/// [`TaskSettings::future_output_limits`]), read from the topics' configs:
/// an output further ahead is kept from the broker, which would refuse it.
fn future_output_limits(
    topology: &Topology,
    settings: &TaskSettings,
    config: &StreamsConfig,
    servers: &str,
) -> Vec<i64> {
    let written: Vec<&str> = (0..settings.topics.len() as u32)
        .map(TopicRef)
        .filter(|t| !topology.sources.contains_key(t) || topology.topics.is_internal(*t))
        .map(|t| settings.topics.name(t))
        .collect();
    let admin = config.admin_client_config(servers);
    // A cluster that cannot describe topic configs (librdkafka's mock
    // among them) leaves Kafka's defaults in place.
    let timeout = config.startup_timeout.min(Duration::from_secs(3));
    let found = future_timestamp_limits(&admin, &written, timeout).unwrap_or_else(|e| {
        tracing::warn!("cannot read the timestamp limits of the topics written ({e}): assuming Kafka's default of an hour");
        HashMap::new()
    });
    let mut limits = settings.future_output_limits.as_ref().clone();
    for (t, name) in
        (0..settings.topics.len() as u32).map(|i| (i as usize, settings.topics.name(TopicRef(i))))
    {
        if let Some(&limit) = found.get(name) {
            limits[t] = limit;
        }
    }
    limits
}

/// A started worker.
pub struct RunningStreams {
    standbys: Option<Standbys>,
    membership: Option<Membership>,
    watch: Option<UpstreamWatch>,
    global: Option<JoinHandle<()>>,
    queries: StoreQueries,
    shutdown: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Result<(), Error>>)>,
    http: Option<HttpServer>,
    embedded: Option<Arc<EmbeddedKafka>>,
    servers: String,
    metrics: Arc<Metrics>,
    spans: Option<Spans>,
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

    /// Interactive queries of this worker's stores.
    pub fn queries(&self) -> &StoreQueries {
        &self.queries
    }

    /// The embedded cluster, if the worker started one.
    pub fn embedded(&self) -> Option<&EmbeddedKafka> {
        self.embedded.as_deref()
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
        if let Some(g) = self.global.take() {
            let _ = g.join();
        }
        self.standbys.take();
        self.membership.take();
        self.watch.take();
        if let Some(spans) = self.spans.take() {
            spans.close();
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
pub(crate) fn spawn_signal_listener(flag: Arc<AtomicBool>) {
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
