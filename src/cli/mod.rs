//! eddy's command line as a library: any application's `main` gets
//! `run`, `validate` and `describe` for topology files that name its own
//! processors, by handing its [`Registry`] to [`main`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use eddy::config::{CustomProcessor, JsonProcessor, Registry};
//! use eddy::processor::{Processor, ProcessorContext, Record};
//! use serde_json::Value;
//!
//! struct Upper;
//! impl Processor<String, Value, String, Value> for Upper {
//!     fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
//!         ctx.forward(Record { key: r.key.to_uppercase(), ..r });
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut registry = Registry::new();
//!     registry.register("upper-key", |_params| {
//!         Ok(CustomProcessor { stores: Vec::new(), supplier: Arc::new(|| Box::new(Upper) as JsonProcessor) })
//!     });
//!     eddy::cli::main("my-app", registry)
//! }
//! ```
//!
//! An application with subcommands of its own flattens [`Command`] into
//! its clap enum (`#[command(flatten)] Eddy(eddy::cli::Command)`), takes
//! [`LogArgs`] for the logging flags and ends with [`exit`], as the
//! example application in the workspace's `examples/` folder does.

mod acls;
mod app_file;
mod autoscale;
mod count;
mod files;
mod join;
mod lag;
mod pipe;
mod top;

pub use count::CountArgs;
pub use files::{DescribeArgs, RunArgs, ValidateArgs};
pub use join::JoinArgs;
pub use pipe::PipeArgs;

use std::fmt::Display;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, Registry};
use crate::kafka::{GroupProtocol, Guarantee, StreamsConfig};
use crate::runtime::TaskIdle;
use crate::topology::TopologyError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A topology file was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A topology built in code was refused.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The worker could not start or had to stop.
    #[error(transparent)]
    Streams(#[from] crate::Error),
    /// The arguments cannot work together.
    #[error("{0}")]
    Usage(String),
    /// `validate` refused some of its files (each was reported on stderr).
    #[error("{failed} of {total} files refused")]
    Refused {
        /// Files refused.
        failed: usize,
        /// Files checked.
        total: usize,
    },
}

/// The logging flags every command takes.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct LogArgs {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub json_logs: bool,
}

impl LogArgs {
    /// Installs the log subscriber: `RUST_LOG` if set, else
    /// `default_filter` (such as `"info"`).
    pub fn init(&self, default_filter: &str) {
        crate::observability::init_logging(self.json_logs, default_filter);
    }
}

/// The command line of a binary with eddy's commands only.
#[derive(Parser)]
#[command(version, about = "eddy: Kafka Streams-style stream processing.")]
struct Cli {
    #[command(flatten)]
    logs: LogArgs,
    #[command(subcommand)]
    command: Command,
}

/// eddy's commands, to flatten into an application's own.
#[derive(Subcommand)]
pub enum Command {
    /// Runs a worker that upper-cases the UTF-8 values of one topic into
    /// another, until SIGINT/SIGTERM: the minimal worker for scaling and
    /// failure tests.
    Pipe(pipe::PipeArgs),
    /// Runs a worker that counts records per key in a changelogged store
    /// and writes each new count, until SIGINT/SIGTERM.
    Count(count::CountArgs),
    /// Runs a worker that inner-joins two co-partitioned topics within a
    /// time window, until SIGINT/SIGTERM.
    Join(join::JoinArgs),
    /// Checks topology files: prints what each describes, or refuses it
    /// with the file, the field and the reason. The secrets a file names
    /// are not read here: `run` reads them, and refuses to start without.
    Validate(files::ValidateArgs),
    /// Runs the topology a file describes until SIGINT/SIGTERM.
    Run(files::RunArgs),
    /// Draws the topology a file describes: sub-topologies, topics, stores.
    Describe(files::DescribeArgs),
    /// Prints the application's consumer lag per input partition
    /// (repartition topics included): committed offset, end offset, lag.
    Lag(lag::LagArgs),
    /// Runs the topology a file describes on as many local worker
    /// processes as its lag asks for (KEDA's rule, held back while a new
    /// worker would not be ready before the lag drains), until
    /// SIGINT/SIGTERM.
    Autoscale(autoscale::AutoscaleArgs),
    /// Prints the ACLs an application needs (least privilege: its inputs,
    /// outputs, internal topics, group and transactional ids) as
    /// `kafka-acls.sh` commands or JSON, or creates them (`--apply`).
    Acls(acls::AclsArgs),
    /// Shows a running worker's live numbers in the terminal, as its
    /// status page does: per node records per second, totals and time per
    /// record; lag; stores and restores; saga states.
    Top(top::TopArgs),
}

impl Command {
    /// Runs the command; topology files may name the processors of
    /// `registry`.
    pub fn run(self, registry: &Registry) -> Result<(), CliError> {
        match self {
            Command::Pipe(args) => pipe::run(args),
            Command::Count(args) => count::run(args),
            Command::Join(args) => join::run(args),
            Command::Validate(args) => files::validate(args, registry),
            Command::Run(args) => files::run(args, registry),
            Command::Describe(args) => files::describe(args, registry),
            Command::Lag(args) => lag::run(args, registry),
            Command::Autoscale(args) => autoscale::run(args, registry),
            Command::Top(args) => top::run(args, registry),
            Command::Acls(args) => acls::run(args, registry),
        }
    }
}

/// The whole `main` of a binary with eddy's commands: parses the process's
/// arguments (the usage names the binary `name`), installs logging, runs
/// the command with `registry`, and reports a failure as one line,
/// `<name>: error: <reason>`.
pub fn main(name: &'static str, registry: Registry) -> ExitCode {
    let cli = <Cli as clap::CommandFactory>::command().name(name);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&cli.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.logs.init("info");
    exit(name, cli.command.run(&registry))
}

/// The exit code of a finished command, printing a failure as
/// `<name>: error: <reason>` (with the chain of causes).
pub fn exit<E: Display>(name: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Settings every worker subcommand takes.
#[derive(clap::Args, Clone)]
struct WorkerArgs {
    /// Kafka bootstrap servers; without it an embedded cluster is started.
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    brokers: Option<String>,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Serve /metrics on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Delivery guarantee: at_least_once or exactly_once.
    #[arg(long, default_value = "at_least_once")]
    guarantee: Guarantee,
    /// Consumer group protocol: consumer (KIP-848, incremental; the
    /// default on a real cluster) or classic (the embedded cluster's).
    #[arg(long)]
    group_protocol: Option<GroupProtocol>,
    /// Commit interval in milliseconds (default 1000 at-least-once, 100
    /// exactly-once).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// Standby replicas of each task's persistent stores, kept warm on
    /// other workers for a fast failover.
    #[arg(long, default_value_t = 0)]
    standby_replicas: usize,
    /// The address other workers and clients reach this one's HTTP
    /// endpoints at (published for query routing); default `http://<--http>`.
    #[arg(long)]
    application_server: Option<String>,
    /// How long a task waits for an input partition with no buffered
    /// records before processing its others (Kafka Streams'
    /// `max.task.idle.ms`): 0 waits only while the broker holds more of
    /// it, -1 never waits.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    max_task_idle_ms: i64,
    /// Records with a timestamp further ahead of the wall clock are
    /// dead-lettered; -1 accepts any.
    #[arg(long, default_value_t = 60_000, allow_negative_numbers = true)]
    max_future_timestamp_ms: i64,
    /// Extra librdkafka properties, `key=value` (prefix `consumer.` or
    /// `producer.` for one client).
    #[arg(long = "set", value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

impl WorkerArgs {
    fn config(&self, application_id: &str) -> StreamsConfig {
        let mut c = StreamsConfig::new(application_id)
            .num_stream_threads(self.threads)
            .guarantee(self.guarantee);
        c.group_protocol = self.group_protocol;
        c.commit_interval = match (self.commit_interval_ms, self.guarantee) {
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, Guarantee::AtLeastOnce) => Some(Duration::from_secs(1)),
            (None, Guarantee::ExactlyOnce) => None,
        };
        c.bootstrap_servers = self.brokers.clone();
        c.http_addr = self.http;
        c.num_standby_replicas = self.standby_replicas;
        c.application_server = self.application_server.clone();
        c.max_task_idle = match u64::try_from(self.max_task_idle_ms) {
            Ok(ms) => TaskIdle::Wait(Duration::from_millis(ms)),
            Err(_) => TaskIdle::Never,
        };
        c.max_future_timestamp = u64::try_from(self.max_future_timestamp_ms)
            .ok()
            .map(Duration::from_millis);
        for (k, v) in &self.properties {
            c = c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod var_tests {
    #[test]
    fn vars_parse_as_toml_or_text() {
        let v = |s: &str| super::parse_var(s).map(|(n, v)| format!("{n}={v}"));
        assert_eq!(v("rate=0.1"), Ok("rate=0.1".into()));
        assert_eq!(v("users=[\"a\"]"), Ok("users=[\"a\"]".into()));
        assert_eq!(v("url=http://h:1/x"), Ok("url=\"http://h:1/x\"".into()));
        assert!(v("=1").is_err());
        assert!(v("novalue").is_err());
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `NAME=VALUE` of `--var`: the value as TOML (`0.1`, `true`, `["a"]`,
/// `"text"`), or else as a string (`http://host:8181`).
fn parse_var(s: &str) -> Result<(String, toml::Value), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    if name.is_empty() {
        return Err(format!("expected NAME=VALUE, got {s:?}"));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Mermaid,
    Dot,
}
