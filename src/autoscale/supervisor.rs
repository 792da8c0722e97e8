//! The supervisor: starts and stops worker processes on this machine as
//! the [`Autoscaler`] decides, from the group's lag, once per interval.
//!
//! Workers are numbered from 0; worker `n` keeps its state in
//! `<state_root>/worker-<n>` (so a worker started again in the same slot
//! finds its stores) and serves HTTP on a free local port. A scale-down
//! stops the highest-numbered workers with SIGTERM (each commits and
//! leaves the group) and waits for them; a worker that exits on its own
//! is replaced on the next decision (it counts as missing).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::policy::{Action, Autoscaler, Decision, Observation};
use crate::error::Error;
use crate::kafka::group_lag;
use crate::observability::Metrics;

/// What the supervisor runs and watches.
pub struct SupervisorSpec {
    /// The program of a worker and its arguments (`eddy run --config …`);
    /// `--state-dir` and `--http` are added per worker.
    pub command: Vec<String>,
    /// Where workers keep their state, one folder each.
    pub state_root: PathBuf,
    /// Admin client settings for the cluster.
    pub admin: ClientConfig,
    /// The application's consumer group.
    pub group: String,
    /// Its input topics (repartition topics included).
    pub topics: Vec<String>,
    /// Its changelog topics.
    pub changelogs: Vec<String>,
    /// Time between decisions.
    pub interval: Duration,
    /// Where each decision is appended as a JSON line, if anywhere.
    pub decisions: Option<PathBuf>,
}

/// A running worker.
struct Slot {
    child: Child,
    http: SocketAddr,
}

/// The autoscaler's gauges, in the supervisor's `/metrics`.
struct Gauges {
    workers: IntGauge,
    desired: IntGauge,
    lag: IntGauge,
    drain_ms: IntGauge,
    ready_ms: IntGauge,
    decisions: IntCounterVec,
}

impl Gauges {
    fn new(metrics: &Metrics) -> Gauges {
        let registry = metrics.registry();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let decisions = IntCounterVec::new(
            Opts::new(
                "eddy_autoscaler_decisions_total",
                "Decisions of the autoscaler, by action (hold, up, down).",
            ),
            &["action"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(decisions.clone()))
            .expect("unique metric");
        Gauges {
            workers: gauge("eddy_autoscaler_workers", "Workers running."),
            desired: gauge(
                "eddy_autoscaler_desired_workers",
                "Workers the last decision wanted.",
            ),
            lag: gauge(
                "eddy_autoscaler_lag",
                "Total lag of the group when last observed.",
            ),
            drain_ms: gauge(
                "eddy_autoscaler_drain_estimate_ms",
                "How long the current workers need to consume the lag (-1: they do not keep up).",
            ),
            ready_ms: gauge(
                "eddy_autoscaler_ready_estimate_ms",
                "How long a new worker needs before it processes (start and restore).",
            ),
            decisions,
        }
    }

    fn show(&self, d: &Decision, workers: usize) {
        self.workers.set(workers as i64);
        self.desired.set(d.desired as i64);
        self.lag.set(d.observed.lag);
        self.drain_ms
            .set(d.drain_secs.map_or(-1, |s| (s * 1000.0) as i64));
        self.ready_ms.set((d.ready_secs * 1000.0) as i64);
        let action = serde_json::to_value(d.action).expect("an action serializes");
        self.decisions
            .with_label_values(&[action.as_str().unwrap_or("hold")])
            .inc();
    }
}

/// Runs the supervisor until `stop` is set; then stops every worker.
pub fn supervise(
    spec: SupervisorSpec,
    mut autoscaler: Autoscaler,
    metrics: &Metrics,
    stop: &AtomicBool,
) -> Result<(), Error> {
    let gauges = Gauges::new(metrics);
    let mut log = match &spec.decisions {
        Some(path) => Some(File::create(path).map_err(|source| Error::StateDir {
            dir: path.clone(),
            source,
        })?),
        None => None,
    };
    let mut slots: BTreeMap<usize, Slot> = BTreeMap::new();
    let started = Instant::now();
    let mut state = StateSize::new(&spec)?;
    let result = (|| {
        while !stop.load(Ordering::Acquire) {
            let tick = Instant::now();
            reap(&mut slots);
            let observed = match observe(&spec, &mut state, started, slots.len()) {
                Ok(o) => o,
                Err(e) => {
                    // A broker starting or moving its coordinator: asked
                    // again on the next interval.
                    tracing::warn!("reading the group's lag: {e}; no decision this interval");
                    std::thread::sleep(spec.interval);
                    continue;
                }
            };
            let decision = autoscaler.decide(observed);
            tracing::info!(
                action = ?decision.action,
                workers = slots.len(),
                desired = decision.desired,
                lag = observed.lag,
                recommended = decision.recommended,
                in_rate = decision.in_rate as i64,
                out_rate = decision.out_rate as i64,
                capacity = decision.capacity as i64,
                drain_secs = ?decision.drain_secs.map(|s| (s * 10.0).round() / 10.0),
                ready_secs = (decision.ready_secs * 10.0).round() / 10.0,
                "{}", decision.reason
            );
            gauges.show(&decision, slots.len());
            if let Some(f) = &mut log {
                let line = serde_json::to_string(&decision).expect("a decision serializes");
                let _ = writeln!(f, "{line}");
            }
            match decision.action {
                Action::Up => {
                    while slots.len() < decision.desired {
                        let n = (0..).find(|n| !slots.contains_key(n)).expect("a free slot");
                        slots.insert(n, start(&spec, n)?);
                    }
                }
                Action::Down => stop_workers(&mut slots, decision.desired),
                Action::Hold => {}
            }
            if let Some(rest) = spec.interval.checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Ok(())
    })();
    stop_workers(&mut slots, 0);
    result
}

/// Forgets workers that exited on their own.
fn reap(slots: &mut BTreeMap<usize, Slot>) {
    slots.retain(|n, s| match s.child.try_wait() {
        Ok(Some(status)) => {
            tracing::warn!(worker = n, %status, "a worker exited");
            false
        }
        _ => true,
    });
}

fn start(spec: &SupervisorSpec, n: usize) -> Result<Slot, Error> {
    let http = free_port()?;
    let dir = spec.state_root.join(format!("worker-{n}"));
    let (program, args) = spec.command.split_first().expect("a worker command");
    let child = Command::new(program)
        .args(args)
        .arg("--state-dir")
        .arg(&dir)
        .args(["--http", &http.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| Error::Spawn {
            what: format!("worker {n} ({program})"),
            source,
        })?;
    tracing::info!(worker = n, pid = child.id(), %http, "worker started");
    Ok(Slot { child, http })
}

/// Stops the highest-numbered workers until `keep` are left: SIGTERM,
/// then SIGKILL after 60 s.
fn stop_workers(slots: &mut BTreeMap<usize, Slot>, keep: usize) {
    while slots.len() > keep {
        let (n, mut slot) = slots.pop_last().expect("more than keep");
        let pid = slot.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = slot.child.try_wait() {
                tracing::info!(worker = n, %status, http = %slot.http, "worker stopped");
                break;
            }
            if Instant::now() > deadline {
                tracing::warn!(worker = n, "worker did not stop within 60 s: killed");
                let _ = slot.child.kill();
                let _ = slot.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn free_port() -> Result<SocketAddr, Error> {
    let io = |source| Error::Spawn {
        what: "a port for a worker".into(),
        source,
    };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    listener.local_addr().map_err(io)
}

/// The changelogs' record count, looked up every [`StateSize::EVERY`].
struct StateSize {
    consumer: BaseConsumer,
    changelogs: Vec<String>,
    records: i64,
    at: Option<Instant>,
}

impl StateSize {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(spec: &SupervisorSpec) -> Result<Self, Error> {
        let mut config = spec.admin.clone();
        config
            .set("group.id", format!("{}-autoscaler", spec.group))
            .set("enable.auto.commit", "false");
        Ok(StateSize {
            consumer: config.create()?,
            changelogs: spec.changelogs.clone(),
            records: 0,
            at: None,
        })
    }

    fn records(&mut self) -> i64 {
        if self.at.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return self.records;
        }
        let timeout = Duration::from_secs(5);
        let mut total = 0;
        for topic in &self.changelogs {
            let Ok(metadata) = self.consumer.fetch_metadata(Some(topic), timeout) else {
                continue;
            };
            for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
                for p in t.partitions() {
                    if let Ok((low, high)) = self.consumer.fetch_watermarks(topic, p.id(), timeout)
                    {
                        total += (high - low).max(0);
                    }
                }
            }
        }
        self.records = total;
        self.at = Some(Instant::now());
        total
    }
}

fn observe(
    spec: &SupervisorSpec,
    state: &mut StateSize,
    started: Instant,
    workers: usize,
) -> Result<Observation, Error> {
    let lag = group_lag(
        &spec.admin,
        &spec.group,
        &spec.topics,
        Duration::from_secs(10),
    )?;
    let mut partitions: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &lag {
        *partitions.entry(p.topic.as_str()).or_default() += 1;
    }
    Ok(Observation {
        at: started.elapsed().as_secs_f64(),
        lag: lag.iter().map(|p| p.lag.unwrap_or(p.end)).sum(),
        end: lag.iter().map(|p| p.end).sum(),
        committed: lag.iter().filter_map(|p| p.committed).sum(),
        workers,
        partitions: partitions.values().copied().max().unwrap_or(1),
        state_records: state.records(),
    })
}
