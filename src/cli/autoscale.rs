//! `eddy autoscale`: runs the topology a file describes on as many worker
//! processes of this machine as its lag asks for (see [`crate::autoscale`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::app_file::AppFile;
use super::CliError;
use crate::autoscale::{supervise, Autoscaler, Policy, SupervisorSpec};
use crate::config::Registry;
use crate::observability::{HttpServer, Metrics};
use crate::runtime::spawn_signal_listener;

/// Arguments of `autoscale`.
#[derive(clap::Args)]
pub struct AutoscaleArgs {
    #[command(flatten)]
    app: AppFile,
    /// Fewest workers.
    #[arg(long, default_value_t = 1)]
    min: usize,
    /// Most workers (also capped by the input partitions).
    #[arg(long)]
    max: usize,
    /// Lag one worker is expected to handle (KEDA's lagThreshold).
    #[arg(long, default_value_t = 10_000)]
    lag_threshold: i64,
    /// Below this total lag only --min workers run (KEDA's
    /// activationLagThreshold).
    #[arg(long, default_value_t = 1_000)]
    activation_lag: i64,
    /// Seconds the need must stay lower before workers are stopped.
    #[arg(long, default_value_t = 60)]
    cooldown_secs: u64,
    /// Milliseconds between decisions.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Changelog records a new worker restores per second (measured on
    /// the project's 2-core machine: about 180 000; see docs/scaling.md).
    #[arg(long, default_value_t = 150_000.0)]
    restore_rate: f64,
    /// Seconds a new worker takes to start and join the group.
    #[arg(long, default_value_t = 3.0)]
    startup_secs: f64,
    /// Where the workers keep their state (`worker-<n>` each).
    #[arg(long, default_value = "eddy-autoscale-state")]
    state_dir: PathBuf,
    /// Serve the autoscaler's /metrics here.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Append every decision to this file as a JSON line.
    #[arg(long)]
    decisions: Option<PathBuf>,
    /// Arguments passed to every worker (`eddy run …`), after `--`.
    #[arg(last = true)]
    worker_args: Vec<String>,
}

pub(super) fn run(args: AutoscaleArgs, registry: &Registry) -> Result<(), CliError> {
    let (pipeline, servers) = args.app.load_on_cluster(registry, "autoscale")?;
    let config = pipeline.config;
    if args.max < args.min.max(1) {
        return Err(CliError::Usage(format!(
            "--max ({}) must be at least --min ({}) and 1",
            args.max, args.min
        )));
    }
    if args.lag_threshold < 1 || args.restore_rate <= 0.0 || args.startup_secs < 0.0 {
        return Err(CliError::Usage(
            "--lag-threshold and --restore-rate must be positive, --startup-secs not negative"
                .into(),
        ));
    }
    let group = config.application_id.clone();
    let exe = std::env::current_exe().map_err(|e| CliError::Usage(e.to_string()))?;
    let mut command = vec![exe.to_string_lossy().into_owned(), "run".into()];
    command.extend([
        "--config".into(),
        args.app.config.to_string_lossy().into_owned(),
    ]);
    command.extend(["--brokers".into(), servers.clone()]);
    if let Some(s) = &args.app.suffix {
        command.extend(["--suffix".into(), s.clone()]);
    }
    command.extend(args.worker_args.iter().cloned());
    let spec = SupervisorSpec {
        command,
        state_root: args.state_dir.clone(),
        admin: config.admin_client_config(&servers),
        topics: pipeline.topology.input_topics(&group),
        changelogs: pipeline.topology.changelog_topics(&group),
        group,
        interval: Duration::from_millis(args.interval_ms.max(100)),
        decisions: args.decisions.clone(),
    };
    let autoscaler = Autoscaler::new(Policy {
        min: args.min,
        max: args.max,
        lag_threshold: args.lag_threshold,
        activation_lag: args.activation_lag,
        cooldown: Duration::from_secs(args.cooldown_secs),
        restore_rate: args.restore_rate,
        startup: Duration::from_secs_f64(args.startup_secs),
    });
    let metrics = Arc::new(Metrics::new());
    let _http = args
        .http
        .map(|addr| HttpServer::start(addr, metrics.clone(), axum::Router::new()))
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_listener(stop.clone());
    supervise(spec, autoscaler, &metrics, &stop)?;
    Ok(())
}
