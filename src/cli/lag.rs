//! `eddy lag`: an application's consumer lag per input partition.

use std::time::{Duration, Instant};

use crate::config::Registry;
use crate::kafka::{group_lag, PartitionLag};

use super::app_file::AppFile;
use super::CliError;

/// Arguments of `lag`.
#[derive(clap::Args)]
pub struct LagArgs {
    #[command(flatten)]
    app: AppFile,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: LagFormat,
    /// Prints again every this many seconds, with the consumption rate
    /// since the previous report, until interrupted.
    #[arg(long)]
    watch: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum LagFormat {
    Table,
    Json,
}

/// One report: the lag of every input partition, its total and, when
/// watching, the records the group committed per second since the last one.
#[derive(serde::Serialize)]
struct Report<'a> {
    group: &'a str,
    partitions: &'a [PartitionLag],
    total_lag: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
}

pub(super) fn run(args: LagArgs, registry: &Registry) -> Result<(), CliError> {
    let (pipeline, servers) = args.app.load_on_cluster(registry, "lag")?;
    let config = pipeline.config;
    let group = config.application_id.clone();
    let topics = pipeline.topology.input_topics(&group);
    let admin = config.admin_client_config(&servers);
    let mut last: Option<(Instant, i64)> = None;
    loop {
        let partitions = group_lag(&admin, &group, &topics, Duration::from_secs(10))?;
        let now = Instant::now();
        let committed: i64 = partitions.iter().filter_map(|p| p.committed).sum();
        let rate = last.map(|(at, before)| {
            (committed - before) as f64 / now.duration_since(at).as_secs_f64().max(1e-3)
        });
        let report = Report {
            group: &group,
            partitions: &partitions,
            total_lag: partitions.iter().filter_map(|p| p.lag).sum(),
            rate,
        };
        match args.format {
            LagFormat::Json => println!(
                "{}",
                serde_json::to_string(&report).expect("a report serializes")
            ),
            LagFormat::Table => print_table(&report),
        }
        let Some(secs) = args.watch else {
            return Ok(());
        };
        last = Some((now, committed));
        std::thread::sleep(Duration::from_secs(secs.max(1)));
    }
}

fn print_table(report: &Report<'_>) {
    let width = report
        .partitions
        .iter()
        .map(|p| p.topic.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:>9}  {:>12}  {:>12}  {:>10}",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    let dash = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for p in report.partitions {
        println!(
            "{:width$}  {:>9}  {:>12}  {:>12}  {:>10}",
            p.topic,
            p.partition,
            dash(p.committed),
            p.end,
            dash(p.lag)
        );
    }
    let rate = report
        .rate
        .map(|r| format!(", consuming {r:.1} records/s"))
        .unwrap_or_default();
    println!(
        "group {}: total lag {} over {} partitions{rate}",
        report.group,
        report.total_lag,
        report.partitions.len()
    );
}
