//! Subcommands of the `eddy` binary.

mod count;
mod demo;
mod files;
mod gen;
mod join;
mod pipe;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use eddy::kafka::StreamsConfig;
use eddy::runtime::TaskIdle;

/// eddy: Kafka Streams-style stream processing.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub json_logs: bool,
    #[command(subcommand)]
    command: Command,
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
    /// Commit interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
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
            .commit_interval(Duration::from_millis(self.commit_interval_ms));
        c.bootstrap_servers = self.brokers.clone();
        c.http_addr = self.http;
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

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Mermaid,
    Dot,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the demo pipeline on the embedded cluster: generates orders,
    /// processes them, and prints a summary.
    Demo(demo::DemoArgs),
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
    /// Produces generated events (`orders`: `order_created`) at a rate, to
    /// any cluster, for load tests.
    Gen(gen::GenArgs),
    /// Checks topology files: prints what each describes, or refuses it
    /// with the file, the field and the reason.
    Validate(files::ValidateArgs),
    /// Runs the topology a file describes until SIGINT/SIGTERM.
    Run(files::RunArgs),
    /// Draws the topology a file describes: sub-topologies, topics, stores.
    Describe(files::DescribeArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Pipe(args) => pipe::run(args),
        Command::Count(args) => count::run(args),
        Command::Join(args) => join::run(args),
        Command::Gen(args) => gen::run(args),
        Command::Validate(args) => files::validate(args),
        Command::Run(args) => files::run(args),
        Command::Describe(args) => files::describe(args),
    }
}
