//! `eddy validate`, `eddy run --config` and `eddy describe`: topology files.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Overrides, Pipeline, Registry};

use super::{CliError, Format};

/// Arguments of `validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Topology files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Arguments of `run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The topology file.
    #[arg(long)]
    config: PathBuf,
    /// Kafka bootstrap servers, overriding the file's `application.brokers`.
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    brokers: Option<String>,
    /// Serve /metrics and the queries on this address, overriding the
    /// file's `application.http_port`.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Delivery guarantee (at_least_once or exactly_once), overriding the
    /// file's `application.guarantee`.
    #[arg(long)]
    guarantee: Option<crate::kafka::Guarantee>,
    /// Consumer group protocol (consumer or classic), overriding the
    /// file's `application.group_protocol`.
    #[arg(long)]
    group_protocol: Option<crate::kafka::GroupProtocol>,
    /// Commit interval in milliseconds, overriding the file's
    /// `application.commit_interval`.
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// State directory, overriding the file's `application.state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Standby replicas of each task's stores, overriding the file's
    /// `application.standby_replicas`.
    #[arg(long)]
    standby_replicas: Option<usize>,
    /// The address other workers and clients reach this one's HTTP
    /// endpoints at (published for query routing), overriding the file's
    /// `application.application_server`; default `http://<--http>`.
    #[arg(long)]
    application_server: Option<String>,
    /// Appended to the application id and every topic name (`<topic>-<S>`),
    /// to run an isolated copy beside others on one cluster.
    #[arg(long)]
    suffix: Option<String>,
    /// Extra librdkafka properties, `key=value` (prefix `consumer.` or
    /// `producer.` for one client), over the file's.
    #[arg(long = "set", value_parser = super::parse_property)]
    properties: Vec<(String, String)>,
    /// Replaces an entry of the file's `[vars]`, `NAME=VALUE` (the value
    /// as TOML, or else as text): a rate, a service's URL.
    #[arg(long = "var", value_parser = super::parse_var)]
    vars: Vec<(String, toml::Value)>,
}

/// Arguments of `describe`.
#[derive(clap::Args)]
pub struct DescribeArgs {
    /// The topology file.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Loads a file to read what it describes: the secrets it names are not
/// read (`run` reads them, and refuses to start without them).
fn load_unkeyed(file: &std::path::Path, registry: &Registry) -> Result<Pipeline, CliError> {
    let overrides = Overrides {
        skip_secrets: true,
        ..Overrides::default()
    };
    Ok(Pipeline::load_with(file, registry, &overrides)?)
}

pub(super) fn validate(args: ValidateArgs, registry: &Registry) -> Result<(), CliError> {
    let mut failed = 0;
    for file in &args.files {
        match load_unkeyed(file, registry) {
            Ok(p) => {
                let stores: Vec<&str> = p.topology.stores().map(|s| s.name.as_str()).collect();
                println!(
                    "{}: ok: application {}, {} sub-topologies, topics [{}], stores [{}]",
                    file.display(),
                    p.config.application_id,
                    p.topology.subtopologies().len(),
                    p.topics.join(", "),
                    stores.join(", ")
                );
            }
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Refused {
            failed,
            total: args.files.len(),
        });
    }
    Ok(())
}

pub(super) fn run(args: RunArgs, registry: &Registry) -> Result<(), CliError> {
    let overrides = Overrides {
        suffix: args.suffix,
        vars: args.vars.into_iter().collect(),
        ..Overrides::default()
    };
    let mut pipeline = Pipeline::load_with(&args.config, registry, &overrides)?;
    if let Some(b) = args.brokers {
        pipeline.config.bootstrap_servers = Some(b);
    }
    if let Some(h) = args.http {
        pipeline.config.http_addr = Some(h);
    }
    if let Some(g) = args.guarantee {
        pipeline.config.guarantee = g;
    }
    if let Some(p) = args.group_protocol {
        pipeline.config.group_protocol = Some(p);
    }
    if let Some(ms) = args.commit_interval_ms {
        pipeline.config.commit_interval = Some(std::time::Duration::from_millis(ms));
    }
    if let Some(d) = args.state_dir {
        pipeline.config.state_dir = d;
    }
    if let Some(n) = args.standby_replicas {
        pipeline.config.num_standby_replicas = n;
    }
    if let Some(a) = args.application_server {
        pipeline.config.application_server = Some(a);
    }
    for (k, v) in &args.properties {
        pipeline.config.properties.insert(k.clone(), v.clone());
    }
    let running = pipeline.into_streams().start()?;
    if let Some(addr) = running.http_addr() {
        tracing::info!("serving http://{addr}/metrics");
    }
    running.run_until_signal()?;
    Ok(())
}

pub(super) fn describe(args: DescribeArgs, registry: &Registry) -> Result<(), CliError> {
    let p = load_unkeyed(&args.file, registry)?;
    let t = &p.topology;
    match args.format {
        Format::Text => print!("{}", t.describe()),
        Format::Mermaid => print!("{}", t.to_mermaid()),
        Format::Dot => print!("{}", t.to_dot()),
    }
    Ok(())
}
